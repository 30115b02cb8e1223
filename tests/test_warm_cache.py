"""A warm re-check (issue 16): the cache answers with each run's stored report and JSON entry, and its report is the
cold one byte for byte in every format.

Why these tests: a warm check builds no frame and derives no curve summary for ``--format json``; anything it got
wrong would show only as a report that differs from the cold one, so every format is compared on real fixtures, and
the frames are checked to be still unbuilt after the JSON was written.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.loading import LazyRun
from dpodoctor.reporters import FORMATS, render
from tests.conftest import FIXTURES, TRL

# The multi-run folders render every format of dozens of runs three times (38 s and 11 s on 2 cores): they run with
# the slow tests (CI's `pytest -m ""`); the quick run keeps the three TRL runs.
CASES = [
    TRL / "healthy",
    TRL / "lr_too_high",
    TRL / "random_labels",
    pytest.param(FIXTURES / "swanlab", marks=pytest.mark.slow),
    pytest.param(FIXTURES / "trackers", marks=pytest.mark.slow),
]


def _case_id(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


@pytest.fixture(params=CASES, ids=_case_id)
def sweep(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the fixture: the cache keys entries by absolute path, and the copy is ours to check twice."""
    copy = tmp_path / "logs"
    shutil.copytree(request.param, copy)
    return copy


@pytest.fixture(params=["run-entries", "sweep-entry"])
def entries(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which entries answer the warm check: the per-run ones (the files are too fresh for a whole-sweep entry), or
    the whole-sweep one (:class:`dpodoctor.sweep.SweepState`; the copied files count as settled at once)."""
    from dpodoctor import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "SETTLED_NS", 0 if request.param == "sweep-entry" else 3600 * 10**9)
    return str(request.param)


def test_a_warm_report_equals_the_cold_one_in_every_format(sweep: Path, tmp_path: Path, entries: str) -> None:
    cache = tmp_path / "cache"
    uncached = api.check(sweep, use_config=False)
    cold = api.check(sweep, use_config=False, cache=cache)
    assert bool(list(cache.glob("sweep/*/*.json"))) == (entries == "sweep-entry")
    warm = api.check(sweep, use_config=False, cache=cache)
    cached = [r for r in warm.runs if isinstance(r.run, LazyRun)]  # (a read that cannot be cached is read again)
    assert cached, "the second check came from the cache"
    assert render(warm, "json") == render(cold, "json") == render(uncached, "json")
    assert all("_frame" not in r.run.__dict__ for r in cached), "the JSON report needed no point"
    for fmt in FORMATS:
        assert render(warm, fmt) == render(cold, fmt) == render(uncached, fmt), fmt
    assert warm.to_dict() == cold.to_dict()


def test_the_cli_writes_the_same_json_cold_and_warm(sweep: Path, tmp_path: Path, entries: str) -> None:
    env = {"DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    outputs = []
    for name in ("cold.json", "warm.json"):
        target = tmp_path / name
        result = CliRunner().invoke(
            app, ["check", str(sweep), "--no-config", "--format", "json", "-o", str(target)], env=env
        )
        assert result.exit_code in (0, 1, 2) and target.is_file(), result.output  # 2: a fixture of unreadable input
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    nocache = tmp_path / "nocache.json"
    CliRunner().invoke(app, ["check", str(sweep), "--no-config", "--format", "json", "--no-cache", "-o", str(nocache)])
    assert nocache.read_bytes() == outputs[0]


def test_a_lazy_run_reads_its_frame_once_and_pickles_with_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(TRL / "healthy", run_dir)
    cache = tmp_path / "cache"
    fresh = api.load_all([run_dir]).runs[0]
    api.check(run_dir, use_config=False, cache=cache)
    warm = api.check(run_dir, use_config=False, cache=cache).runs[0].run
    assert isinstance(warm, LazyRun) and "_frame" not in warm.__dict__
    assert warm.frame is warm.frame  # built once
    assert warm.frame.equals(fresh.frame) and warm.steps == fresh.steps
    again = pickle.loads(pickle.dumps(warm))
    assert again.frame.equals(fresh.frame) and "_frame_loader" not in again.__dict__


def test_an_entry_whose_json_part_is_cut_is_a_miss(tmp_path: Path) -> None:
    """The run's JSON entry is inside the MAC: changing it (here: cutting it) makes the whole entry a miss, and the
    check's report is the fresh one."""
    from dpodoctor.cache import _MAC_SIZE

    run_dir = tmp_path / "run"
    shutil.copytree(TRL / "lr_too_high", run_dir)
    cache = tmp_path / "cache"
    cold = api.check(run_dir, use_config=False, cache=cache)
    cut: dict[Path, bytes] = {}
    for entry in (cache / "diag").rglob("*.json"):
        raw = entry.read_bytes()
        body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        cut[entry] = body[: body.index(b"\0") + 10] + mac
        entry.write_bytes(cut[entry])
    assert cut
    again = api.check(run_dir, use_config=False, cache=cache)
    assert all(entry.read_bytes() != data for entry, data in cut.items()), "a miss: diagnosed and stored again"
    assert render(again, "json") == render(cold, "json")
