"""One run is counted once (issue 17, defect 4): a file reached under two names, and a SwanLab folder moved away
from ``swanlog/``, are each one run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dpodoctor import api
from dpodoctor.discovery import discover
from tests.conftest import FIXTURES, TRL

HEALTHY = TRL / "healthy"


def test_a_file_symlink_in_a_sweep_is_not_a_second_run(tmp_path: Path) -> None:
    run = tmp_path / "sweep" / "run1"
    run.mkdir(parents=True)
    shutil.copy(HEALTHY / "trainer_state.json", run / "trainer_state.json")
    os.symlink("run1/trainer_state.json", tmp_path / "sweep" / "link.json")
    warnings: list[str] = []
    sources = discover([tmp_path / "sweep"], warnings)
    assert [(s.name, s.reader.name) for s in sources] == [("run1", "trainer_state")]
    assert any("link.json: skipped, the same file as" in w and "run1/trainer_state.json" in w for w in warnings)
    report = api.check([tmp_path / "sweep"], use_config=False)
    assert [r.run.name for r in report.runs] == ["run1"]


def test_a_hard_link_and_an_explicit_second_name_are_one_file(tmp_path: Path) -> None:
    first = tmp_path / "a" / "trainer_state.json"
    first.parent.mkdir()
    shutil.copy(HEALTHY / "trainer_state.json", first)
    (tmp_path / "b").mkdir()
    os.link(first, tmp_path / "b" / "trainer_state.json")
    assert [s.name for s in discover([tmp_path])] == ["a"]
    assert len(discover([first, tmp_path / "b" / "trainer_state.json"])) == 1


def _metric_lines(steps: int) -> str:
    """Console lines as TRL's DPOTrainer prints them (the dict of each log step)."""
    lines = []
    for step in range(1, steps + 1):
        margin = 0.01 * step
        lines.append(
            f"{{'loss': {0.6931 - margin / 2:.4f}, 'grad_norm': 1.0, 'learning_rate': 5e-07, "
            f"'rewards/chosen': {margin / 2:.4f}, 'rewards/rejected': {-margin / 2:.4f}, "
            f"'rewards/accuracies': 0.75, 'rewards/margins': {margin:.4f}, 'epoch': {step / 100:.2f}}}"
        )
    return "\n".join(lines) + "\n"


def test_a_swanlab_folder_renamed_away_from_swanlog_keeps_its_console_in_the_run(tmp_path: Path) -> None:
    [original] = (FIXTURES / "swanlab" / "local-0.10.3" / "swanlog").glob("run-*2gu90pcl")
    moved = tmp_path / "experiments" / original.name
    shutil.copytree(original, moved)
    (moved / "console" / "2026-11-24.log").write_text(_metric_lines(30))  # a capture that holds metrics
    sources = discover([tmp_path])
    assert [(s.name, s.reader.name) for s in sources] == [(f"experiments/{original.name}", "swanlab")]
    assert moved / "console" / "2026-11-24.log" in sources[0].others
