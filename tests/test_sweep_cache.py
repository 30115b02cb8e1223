"""The whole-sweep cache entry (issue 16: a warm re-check of 600 runs in one entry read and a stat of each file):
used only when nothing the check depended on changed, and then its report is the cold one byte for byte.

Why through the real CLI: the entry is named by the paths as given, the settings and the rule options the CLI
resolves, and it must miss for every change a user makes between two checks of a sweep (an event file that grew, a
run added or removed, a config written beside a run, another ``--beta``, another rule option); each case compares the
warm report with a ``--no-cache`` one and says whether the entry answered.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpodoctor import sweep as sweep_module
from dpodoctor.cache import RunCache
from dpodoctor.cli import app
from tests.conftest import FIXTURES, TRL

CORPUS = FIXTURES / "corpus"


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each check was answered by a whole-sweep entry (True) or went through the per-run entries. The
    fixture files were copied a moment ago: their change times count as settled at once (:data:`SETTLED_NS`)."""
    monkeypatch.setattr(sweep_module, "SETTLED_NS", 0)
    calls: list[bool] = []
    load = RunCache.load_sweep

    def spy(self: RunCache, identity: object) -> object:
        got = load(self, identity)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(RunCache, "load_sweep", spy)
    yield calls


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A sweep of three runs: one of TensorBoard events only (its β in the ``args`` summary), two of a
    ``trainer_state.json`` only (β from a config beside it when there is one, else assumed)."""
    root = tmp_path / "sweep"
    shutil.copytree(CORPUS / "healthy_s0" / "runs", root / "events" / "runs")
    for name in ("healthy", "lr_too_high"):
        (root / name).mkdir(parents=True)
        shutil.copy(TRL / name / "trainer_state.json", root / name / "trainer_state.json")
    return root


def _check(tmp_path: Path, logs: Path, *args: str, cache: bool = True) -> bytes:
    target = tmp_path / "report.json"
    env = {"DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    flags = [] if cache else ["--no-cache"]
    result = CliRunner().invoke(
        app, ["check", str(logs), "--no-config", "--format", "json", "-o", str(target), *flags, *args], env=env
    )
    assert result.exit_code in (0, 1), result.output
    return target.read_bytes()


def _same_as_uncached(tmp_path: Path, logs: Path, answered: list[bool], *args: str) -> tuple[bool, bytes]:
    """(Whether the whole-sweep entry answered, the report), after checking it equals a --no-cache report."""
    before = len(answered)
    warm = _check(tmp_path, logs, *args)
    hit = answered[before:] == [True]
    assert warm == _check(tmp_path, logs, *args, cache=False)
    return hit, warm


def test_an_unchanged_sweep_is_answered_by_its_entry(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    cold = _check(tmp_path, logs)
    assert answered == [False] and list((tmp_path / "cache" / "sweep").rglob("*.json")), "the cold check wrote one"
    hit, warm = _same_as_uncached(tmp_path, logs, answered)
    assert hit and warm == cold
    assert len(json.loads(warm)["runs"]) == 3


def test_a_touched_event_file_misses(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    _check(tmp_path, logs)
    event = next(logs.rglob("events.out.tfevents.*"))
    st = event.stat()
    os.utime(event, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert _same_as_uncached(tmp_path, logs, answered)[0] is False
    assert _same_as_uncached(tmp_path, logs, answered)[0] is True, "the re-check stored the new state"


def test_an_added_and_a_removed_run_miss(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    _check(tmp_path, logs)
    (logs / "overfit").mkdir()
    shutil.copy(TRL / "overfit" / "trainer_state.json", logs / "overfit" / "trainer_state.json")
    hit, report = _same_as_uncached(tmp_path, logs, answered)
    assert not hit and len(json.loads(report)["runs"]) == 4
    shutil.rmtree(logs / "healthy")
    hit, report = _same_as_uncached(tmp_path, logs, answered)
    assert not hit and [r["name"] for r in json.loads(report)["runs"]] == ["events", "lr_too_high", "overfit"]


def test_a_config_written_beside_a_run_misses(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    before = json.loads(_check(tmp_path, logs))
    (logs / "healthy" / "training_args.json").write_text(json.dumps({"beta": 0.5}))
    hit, report = _same_as_uncached(tmp_path, logs, answered)
    run = next(r for r in json.loads(report)["runs"] if r["name"] == "healthy")
    old = next(r for r in before["runs"] if r["name"] == "healthy")
    assert not hit and run["beta_logged"] == 0.5 and old["beta_logged"] != 0.5
    (logs / "healthy" / "training_args.json").write_text(json.dumps({"beta": 0.25}))  # the same folder listing
    hit, report = _same_as_uncached(tmp_path, logs, answered)
    assert not hit and next(r for r in json.loads(report)["runs"] if r["name"] == "healthy")["beta_logged"] == 0.25


def test_another_beta_or_rule_option_misses(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    _check(tmp_path, logs)
    assert _same_as_uncached(tmp_path, logs, answered, "--beta", "0.3")[0] is False
    assert _same_as_uncached(tmp_path, logs, answered, "--beta", "0.3")[0] is True
    config = tmp_path / "dpodoctor.toml"
    config.write_text("[rules.DPO301]\nupper = 0.9\n")
    assert _same_as_uncached(tmp_path, logs, answered, "--config", str(config))[0] is False
    config.write_text("[rules.DPO301]\nupper = 0.8\n")
    assert _same_as_uncached(tmp_path, logs, answered, "--config", str(config))[0] is False
    assert _same_as_uncached(tmp_path, logs, answered)[0] is True, "the first settings' entry is still there"


def test_a_fresh_file_is_not_remembered(tmp_path: Path, logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within SETTLED_NS of the check may change again with the same times: no entry is written
    (the per-run entries still serve the next check)."""
    monkeypatch.setattr(sweep_module, "SETTLED_NS", 3600 * 10**9)
    _check(tmp_path, logs)
    assert not list((tmp_path / "cache").glob("sweep/*/*.json"))
    assert list((tmp_path / "cache").glob("runs/*/*.bin")), "the per-run entries were written"


def test_a_warm_text_report_reads_its_points_again(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    """The text report draws each run's curves: a run from the whole-sweep entry reads them through the per-run
    entries when first needed, and the report is the cold one."""
    env = {"DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    outputs = []
    for flags in ([], [], ["--no-cache"]):
        result = CliRunner().invoke(app, ["check", str(logs), "--no-config", "--plots", *flags], env=env)
        assert result.exit_code in (0, 1), result.output
        outputs.append(result.output)
    assert answered == [False, True]
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_tampered_entry_is_a_miss(tmp_path: Path, logs: Path, answered: list[bool]) -> None:
    cold = _check(tmp_path, logs)
    (entry,) = (tmp_path / "cache" / "sweep").rglob("*.json")
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 1
    entry.write_bytes(bytes(raw))
    hit, warm = _same_as_uncached(tmp_path, logs, answered)
    assert not hit and warm == cold
