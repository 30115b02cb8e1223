"""A TensorBoard run without a frame (issue 16): its points are numpy columns (:class:`~dpodoctor.model.Points`), its
pandas frame is built only when something reads ``frame``, and a cold JSON check imports no pandas outside the
diagnosis.

Why these tests: the lazy run must be the eager run in every way a caller can see (the frame itself, each curve,
the metrics, the last step, pickling, the cache, ``--metric-map``), and the point of it, a check that never imports
pandas, is only visible in a fresh process: a subprocess runs the real CLI and says which modules it loaded.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import api
from dpodoctor.discovery import RunSource
from dpodoctor.errors import ReadError
from dpodoctor.loading import LazyReadResult, LazyRun, _rename_metrics, run_from_result
from dpodoctor.model import NO_FRAME_YET, Points, Run, make_frame, points_in
from dpodoctor.readers.tensorboard.reader import TensorBoardReader
from tests.conftest import FIXTURES, TRL

ROOT = Path(__file__).resolve().parent.parent
TB = TensorBoardReader()


def _tb_runs() -> list[tuple[Path, list[Path]]]:
    """Every fixture folder of TensorBoard events, as the reader groups them: (run root, its event files)."""
    runs: dict[Path, list[Path]] = {}
    for path in sorted(FIXTURES.rglob("*tfevents*")):
        if path.is_file() and TB.sniff(path):
            runs.setdefault(TB.run_root(path), []).append(path)
    return sorted(runs.items())


TB_RUNS = _tb_runs()


def _eager(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame make_frame builds from the same points spelled out as strings, given in a shuffled order."""
    order = list(range(len(frame)))
    random.Random(0).shuffle(order)
    rows = frame.iloc[order]
    return make_frame(
        [str(s) for s in rows["split"]],
        [str(m) for m in rows["metric"]],
        rows["step"].to_numpy(),
        rows["value"].to_numpy(),
        rows["wall_time"].to_numpy(),
    )


def _same_run(lazy: Run, eager: Run) -> None:
    """Every way the diagnosis and the reports read a run gives the same answer."""
    assert lazy.metrics == eager.metrics and lazy.steps == eager.steps
    for split, metric in [*eager.metrics, ("train", "no_such_metric"), ("eval", "no_such_metric")]:
        assert lazy.has(metric, split) == eager.has(metric, split)  # type: ignore[arg-type]
        got, want = lazy.arrays(metric, split), eager.arrays(metric, split)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        pd.testing.assert_series_equal(lazy.series(metric, split), eager.series(metric, split))  # type: ignore[arg-type]


def test_every_tensorboard_fixture_is_found() -> None:
    assert len(TB_RUNS) >= 30, [str(root) for root, _ in TB_RUNS]
    assert any(len(files) > 1 for _, files in TB_RUNS), "a resumed run (several event files) is among them"


@pytest.mark.parametrize(("root", "files"), TB_RUNS, ids=[str(r.relative_to(FIXTURES)) for r, _ in TB_RUNS])
def test_a_lazy_tensorboard_run_is_the_eager_one(root: Path, files: list[Path]) -> None:
    try:
        result = TB.read(files)
    except ReadError:
        return  # an unreadable fixture (its own tests say why): nothing to build lazily
    assert isinstance(result, LazyReadResult) and "_frame" not in result.__dict__
    source = RunSource(name="r", root=root, reader=TB, files=files, others=[])
    run = run_from_result(source, result, find=lambda _: None)
    assert isinstance(run, LazyRun)
    eager_frame = _eager(result.frame)  # reads (builds) the frame of the result, which the run shares
    eager = Run(name=run.name, path=run.path, source=run.source, frame=eager_frame)
    assert run.frame is result.frame, "built once, for the result and its run"
    pd.testing.assert_frame_equal(run.frame, eager_frame)
    fresh = run_from_result(source, TB.read(files), find=lambda _: None)
    _same_run(fresh, eager)  # read from the points, before any frame exists
    assert "_frame" not in fresh.__dict__, "reading curves, metrics and steps built no frame"
    again = pickle.loads(pickle.dumps(fresh))
    assert "_frame" not in again.__dict__, "pickled with its points, not a frame"
    pd.testing.assert_frame_equal(again.frame, eager_frame)
    _same_run(again, eager)


def test_the_reference_read_is_lazy_too_and_equal() -> None:
    """The protobuf-per-record read (damaged files go through it) ends in the same assembler and the same points."""
    for _, files in TB_RUNS[:5]:
        fast, reference = TB.read(files), TB.read_reference(files)
        pd.testing.assert_frame_equal(fast.frame, reference.frame)


def test_a_cached_tensorboard_run_is_written_from_its_points_and_read_back_as_points(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "diagnosis" / "lf_simpo", run_dir)  # a resumed run: two event files
    cache = tmp_path / "cache"
    fresh = api.load_all([run_dir]).runs[0]
    cold = api.load_all([run_dir], cache=cache).runs[0]
    assert "_frame" not in cold.__dict__, "the cache entry was written without building the frame"
    warm = api.load_all([run_dir], cache=cache).runs[0]
    assert isinstance(warm, LazyRun) and isinstance(points_in(warm.__dict__), Points) and "_frame" not in warm.__dict__
    eager = Run(name=fresh.name, path=fresh.path, source=fresh.source, frame=_eager(fresh.frame))
    _same_run(warm, eager)
    pd.testing.assert_frame_equal(warm.frame, fresh.frame)
    pd.testing.assert_frame_equal(cold.frame, fresh.frame)


def test_a_run_read_with_a_metric_map_is_renamed_on_its_points() -> None:
    root, files = next((r, f) for r, f in TB_RUNS if "healthy" in str(r))
    source = RunSource(name="r", root=root, reader=TB, files=files, others=[])
    plain = run_from_result(source, TB.read(files), find=lambda _: None)
    some = plain.metrics[0][1]
    mapping = {some: "renamed_metric", plain.metrics[-1][1]: some}
    mapped = run_from_result(source, TB.read(files), mapping, find=lambda _: None)
    assert isinstance(mapped, LazyRun) and "_frame" not in mapped.__dict__
    expected = _rename_metrics(plain.frame, mapping)
    _same_run(mapped, Run(name="r", path=root, source="tensorboard", frame=expected))
    pd.testing.assert_frame_equal(mapped.frame, expected)


def test_setting_a_frame_replaces_the_points() -> None:
    _, files = TB_RUNS[0]
    run = run_from_result(RunSource(name="r", root=files[0].parent, reader=TB, files=files, others=[]), TB.read(files))
    other = make_frame(["train"], ["loss"], [7], [0.5])
    run.frame = other
    assert run.metrics == [("train", "loss")] and run.steps == 7 and run.frame is other


ROWS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(-3, 30), st.floats()), max_size=80)
SPLITS, METRICS = ["train", "eval", "zz", "a"], ["loss", "m", "b", "a", "x"]


def _columns(rows: list[tuple[int, int, int, float]]) -> tuple[np.ndarray, ...]:
    codes = np.array(rows, dtype=object).reshape(-1, 4) if rows else np.zeros((0, 4), dtype=object)
    s, m = codes[:, 0].astype(np.int8), codes[:, 1].astype(np.int16)
    return s, m, codes[:, 2].astype(np.int64), codes[:, 3].astype(float), np.arange(len(rows), dtype=float)


@settings(max_examples=100, deadline=None)
@given(ROWS, st.dictionaries(st.sampled_from(METRICS), st.sampled_from([*METRICS, "new"]), max_size=3))
def test_points_are_make_frames_rows_and_rename_as_make_frame_does(
    rows: list[tuple[int, int, int, float]], mapping: dict[str, str]
) -> None:
    s, m, t, v, w = _columns(rows)
    expected = make_frame([SPLITS[i] for i in s], [METRICS[i] for i in m], t, v, w)
    points = Points.from_codes(s, SPLITS, m, METRICS, t, v, w)
    pd.testing.assert_frame_equal(points.to_frame(), expected)
    lazy = LazyRun(name="r", path=Path("r"), source="t", frame=NO_FRAME_YET)
    lazy.defer(None, points)
    _same_run(lazy, Run(name="r", path=Path("r"), source="t", frame=expected))
    pd.testing.assert_frame_equal(points.renamed(mapping).to_frame(), _rename_metrics(expected, mapping))
    # the cache's check: points in make_frame's order are taken, any other order refused
    again = Points.from_sorted(
        points.split,
        list(points.split_labels),
        points.metric,
        list(points.metric_labels),
        points.step,
        points.value,
        points.wall_time,
    )
    assert again is not None and again.groups == points.groups
    if len(points) > 1:
        backwards = slice(None, None, -1)
        assert (
            Points.from_sorted(
                points.split[backwards],
                list(points.split_labels),
                points.metric[backwards],
                list(points.metric_labels),
                points.step[backwards],
                points.value,
                points.wall_time,
            )
            is None
        )
    assert Points.from_sorted(s[:0], ["b", "a"], m[:0], [], t[:0], v[:0], w[:0]) is None, "labels must be sorted"


# ------------------------------------------------------------------------------------------------ a fresh process

# Runs the real CLI in a fresh interpreter. It says whether pandas was imported, and where from (the stack that
# imported it first), so a failure names the culprit.
PROBE = """
import json, sys, traceback
first = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" and not first:
            first.append([f.name for f in traceback.extract_stack()])
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["dpodoctor", *sys.argv[1:]]
from dpodoctor.cli import main
try:
    main()
finally:
    print("PROBE " + json.dumps({
        "pandas": "pandas" in sys.modules,
        "imported_from": first[0][-12:] if first else [],
    }), file=sys.stderr)
"""

CHECKS = {
    "no-cache": ["--no-cache"],
    "cold-cache": [],
}


def _probe(target: Path, extra: list[str], tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "report.json"
    args = ["check", str(target), "-f", "json", "-o", str(out), "--jobs", "1", *extra]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    document = json.loads(out.read_text())
    assert document["runs"] and all(run["source"] == "tensorboard" for run in document["runs"])
    assert all(run["curves"] for run in document["runs"]), "the curves were summarised from the points"
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PROBE "))
    return dict(json.loads(line.removeprefix("PROBE ")))


# A folder of events alone; a resumed LLaMA-Factory run beside its YAML and JSON lines; a TRL output folder (events
# beside train.log, trainer_state.json and a SwanLab folder: every other reader sniffs a file); a sweep of 15 runs.
TARGETS = [
    FIXTURES / "diagnosis" / "healthy_kto",
    FIXTURES / "diagnosis" / "lf_simpo",
    TRL / "healthy",
    FIXTURES / "corpus",
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
@pytest.mark.parametrize("check", list(CHECKS))
def test_a_cold_json_check_of_tensorboard_events_imports_no_pandas(target: Path, check: str, tmp_path: Path) -> None:
    """Reading the events, the cache write, the diagnosis, the curve summaries and the JSON report import no pandas
    (the run's points are numpy columns, the rules read Curves of them)."""
    got = _probe(target, CHECKS[check], tmp_path)
    assert not got["pandas"], got


@pytest.mark.parametrize("check", list(CHECKS))
def test_a_cold_json_check_of_a_llamafactory_run_imports_no_pandas(check: str, tmp_path: Path) -> None:
    """A LLaMA-Factory SimPO run (events beside its YAML and JSON lines) likewise."""
    got = _probe(FIXTURES / "diagnosis" / "lf_simpo", CHECKS[check], tmp_path)
    assert not got["pandas"], got


def test_the_trl_fixtures_read_through_their_event_files() -> None:
    """(The TRL runs hold event files beside their other logs: the richest reader, TensorBoard, reads them.)"""
    runs = api.load_all([TRL / "healthy"]).runs
    assert [r.source for r in runs] == ["tensorboard"] and isinstance(runs[0], LazyRun)


def test_runs_read_in_worker_processes_come_back_as_points_and_equal_one_process(tmp_path: Path) -> None:
    """A worker sends each run back pickled with its points, not a frame (the main process imports no pandas for
    it); the runs equal those read in one process."""
    from dpodoctor.discovery import discover
    from dpodoctor.sweep import load_sources

    sources = discover([FIXTURES / "corpus"], [])
    one = load_sources(sources, jobs=1)
    two = load_sources(sources, jobs=2, parallel_min_bytes=0)
    runs_one = [run for outcome in one for run in outcome.runs]
    runs_two = [run for outcome in two for run in outcome.runs]
    assert len(runs_two) == len(runs_one) >= 10
    for a, b in zip(runs_one, runs_two, strict=True):
        assert isinstance(b, LazyRun) and "_frame" not in b.__dict__, b.name
        _same_run(b, a)
        pd.testing.assert_frame_equal(b.frame, a.frame)
