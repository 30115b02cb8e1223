"""Finding and RunReport read back from their JSON form: the one serialiser the JSON report and the cache share."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest

from dpodoctor import api
from dpodoctor.results import Corroboration, Finding, RunReport

FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def _reports() -> list[RunReport]:
    report = api.check([FIXTURES / "diagnosis" / "collapse", FIXTURES / "diagnosis" / "lr_1e-9_ipo"], use_config=False)
    assert any(f.corroborating for rr in report.runs for f in rr.findings)  # folded symptoms are exercised
    return report.runs


def test_a_report_survives_its_json_form() -> None:
    for rr in _reports():
        data = json.loads(json.dumps(rr.to_dict()))
        back = RunReport.from_dict(rr.run, data)
        assert back.to_dict() == rr.to_dict()
        assert [dataclasses.asdict(f) for f in back.findings] == [dataclasses.asdict(f) for f in rr.findings]


def test_the_serialised_form_covers_every_field() -> None:
    finding = next(f for rr in _reports() for f in rr.findings)
    assert set(finding.to_dict()) == {f.name for f in dataclasses.fields(Finding)}
    rr = _reports()[0]
    assert set(rr.to_dict()) | {"run"} == {f.name for f in dataclasses.fields(RunReport)}


def test_corroborating_findings_keep_their_parts_and_their_printed_form() -> None:
    folded = Corroboration("DPO301", "acc-at-chance", "accuracy sits at 0.5: chance")
    assert str(folded) == "DPO301 acc-at-chance: accuracy sits at 0.5: chance"
    assert Corroboration.parse(str(folded)) == folded
    for text in ("DPO301", "DPO301 acc at chance: x", "DPO301 acc-at-chance x"):
        with pytest.raises(ValueError):
            Corroboration.parse(text)


@pytest.mark.parametrize(
    "change",
    [
        {"severity": "fatal"},
        {"first_step": "10"},
        {"corroborating": [1]},
        {"corroborating": ["not a folded finding"]},
        {"evidence": []},
        {"message": None},
    ],
)
def test_a_tampered_finding_is_refused(change: dict[str, object]) -> None:
    finding = next(f for rr in _reports() for f in rr.findings)
    with pytest.raises((ValueError, TypeError)):
        Finding.from_dict({**finding.to_dict(), **change})
    with pytest.raises(ValueError):
        Finding.from_dict({**finding.to_dict(), "extra": 1})
