"""Every fixture's JSON report equals its snapshot in tests/fixtures/golden/.

Why: restructuring and speed work promise the same reports before and after. This is the differential test that
proves it over every reader and every fixture run; a change that means to alter reports regenerates the snapshots
with ``python -m tools.golden --update`` and the diff shows what changed (see tools/golden.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.golden import GOLDEN, ROOT, cases, golden_name, render, report_of

CASES = cases()


def test_every_case_has_a_snapshot_and_every_snapshot_a_case() -> None:
    assert len(CASES) > 100
    assert {golden_name(c) for c in CASES} == {p.name for p in GOLDEN.glob("*.json")}


@pytest.mark.parametrize("case", CASES, ids=[str(c.relative_to("tests/fixtures")) for c in CASES])
def test_report_equals_snapshot(case: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DPODOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    expected = (GOLDEN / golden_name(case)).read_text(encoding="utf-8")
    actual = render(report_of(case))
    if actual != expected:
        old, new = json.loads(expected), json.loads(actual)
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        pytest.fail(
            f"{case}: report differs from its snapshot in {changed}; if intended: python -m tools.golden --update"
        )
