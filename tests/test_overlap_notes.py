"""Resumed runs: when a reader merges files that log the same steps, the report says which steps were logged
twice and that the later file's values are used (issue 17, defect 6)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from dpodoctor import api
from dpodoctor.live import Tailer
from dpodoctor.readers import get_reader
from dpodoctor.readers.overlap import repeated_steps_notes
from tests.conftest import FIXTURES
from tests.test_reader_tensorboard import READER, _scalar_event, _write_events

FIRST = "events.out.tfevents.1700000000.host.1.0"
SECOND = "events.out.tfevents.1700000100.host.2.0"
NOTE = f"steps 40–50 were logged twice ({FIRST}, then {SECOND}); the later file's values are used"


def _resumed(folder: Path, resume_at: int = 40) -> None:
    """A run logged every 10 steps to 50, then resumed from its checkpoint at ``resume_at`` into a second file."""
    _write_events(folder, [_scalar_event("train/loss", s, 0.69) for s in range(10, 60, 10)], name=FIRST)
    second = [_scalar_event("train/loss", s, 0.5) for s in range(resume_at, 90, 10)]
    _write_events(folder, [*second, _scalar_event("eval/loss", 20, 0.7)], name=SECOND)


def test_tensorboard_says_which_steps_two_event_files_both_logged(tmp_path: Path) -> None:
    _resumed(tmp_path / "run")
    files = sorted((tmp_path / "run").iterdir())
    for result in (READER.read(files), READER.read_reference(files)):
        assert NOTE in result.notes
    # The note reaches the report through the run's notes, and the later values are the ones used.
    [report] = api.check([tmp_path], use_config=False).runs
    assert NOTE in report.run.notes
    loss = report.run.frame.query("split == 'train' and metric == 'loss' and step == 40")["value"]
    assert loss.tolist() == [0.5]


def test_files_that_do_not_overlap_get_no_note(tmp_path: Path) -> None:
    _resumed(tmp_path / "run", resume_at=60)
    result = READER.read(sorted((tmp_path / "run").iterdir()))
    assert not any("logged twice" in note for note in result.notes)


def test_watch_merges_event_files_with_the_same_note(tmp_path: Path) -> None:
    _resumed(tmp_path / "run")
    [run] = Tailer([tmp_path / "run"]).poll().runs
    assert NOTE in run.notes


def test_swanlab_record_files_of_one_run_that_repeat_steps(tmp_path: Path) -> None:
    [original] = (FIXTURES / "swanlab" / "offline-0.10.3" / "swanlog").glob("run-*q8o3529m")
    run = tmp_path / "swanlog" / original.name
    shutil.copytree(original, run)
    [record] = run.glob("run-*.swanlab")
    shutil.copy(record, run / record.name.replace(".swanlab", "b.swanlab"))  # a second file holding the same steps
    result = get_reader("swanlab").read(sorted(run.glob("*.swanlab")))
    repeated = [n for n in result.notes if "logged twice" in n]
    steps = sorted({int(s) for s in result.frame["step"]})
    assert repeated == [
        f"steps {steps[0]}–{steps[-1]} were logged twice (swanlog/{run.name}/{record.name}, then "
        f"swanlog/{run.name}/{record.name.replace('.swanlab', 'b.swanlab')}); the later file's values are used"
    ]


def test_ranges_are_runs_of_consecutive_logged_steps_per_series() -> None:
    parts = [
        ("a", ["loss"] * 5 + ["acc"], np.array([1, 2, 3, 4, 5, 9])),
        ("b", ["loss"] * 4 + ["acc"], np.array([2, 3, 5, 6, 4])),  # acc at 4 is new: acc was only at 9 before
        ("c", ["loss"], np.array([100])),
    ]
    assert repeated_steps_notes(parts) == [
        "steps 2–3, 5 were logged twice (a, then b); the later file's values are used"
    ]
    assert repeated_steps_notes([("a", ["x"], np.array([1])), ("b", ["x"], np.array([1]))]) == [
        "step 1 was logged twice (a, then b); the later file's values are used"
    ]
    assert repeated_steps_notes(parts[:1]) == []
