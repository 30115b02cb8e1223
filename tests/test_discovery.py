"""Walking sweeps: one run per output folder whatever the formats, names relative to the argument, and a walk
that survives symlink loops, broken links and unreadable files with a warning naming each."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dpodoctor import api
from dpodoctor.discovery import discover
from dpodoctor.errors import DpoDoctorError
from tests.conftest import TRL


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two real runs in a nested sweep; the first keeps every format it was written in."""
    shutil.copytree(TRL / "healthy", tmp_path / "lr3e-4" / "healthy", symlinks=True)
    shutil.copytree(TRL / "lr_too_low" / "runs", tmp_path / "lr1e-9" / "runs")
    shutil.copy(TRL / "lr_too_low" / "train.log", tmp_path / "lr1e-9" / "train.log")
    return tmp_path


def test_one_run_per_output_folder_named_relative_to_the_argument(sweep: Path) -> None:
    sources = discover([sweep])
    assert [s.name for s in sources] == ["lr1e-9", "lr3e-4/healthy"]
    assert {s.reader.name for s in sources} == {"tensorboard"}
    healthy = sources[1]
    others = {p.name for p in healthy.others}
    assert "train.log" in others  # the other formats of the same run are named, not read as more runs


def test_resumed_run_in_two_dated_folders_is_one_run(tmp_path: Path) -> None:
    events = next((TRL / "healthy" / "runs").glob("*/events.out.tfevents.*"))
    for stamp in ("Nov24_03-08-08_vm", "Nov24_05-00-00_vm"):
        (tmp_path / "out" / "runs" / stamp).mkdir(parents=True)
        shutil.copy(
            events, tmp_path / "out" / "runs" / stamp / events.name.replace("1795", "1796" if "05" in stamp else "1795")
        )
    [run] = api.load(tmp_path)
    assert run.name == "out" and len(run.series("loss")) == 80  # merged by step, repeated steps kept once


def test_symlink_loop_and_broken_link_are_warned_and_skipped(sweep: Path) -> None:
    os.symlink(sweep, sweep / "lr1e-9" / "loop")
    os.symlink(sweep / "nowhere", sweep / "dangling.log")
    loaded = api.load_all([sweep])
    assert sorted(r.name for r in loaded.runs) == ["lr1e-9", "lr3e-4/healthy"]
    text = "\n".join(loaded.warnings)
    assert "loop" in text and "dangling.log: skipped, broken symlink" in text


def test_symlinked_run_folder_is_followed(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    top = tmp_path_factory.mktemp("links")
    os.symlink(sweep / "lr1e-9", top / "latest")
    assert [r.name for r in api.load(top)] == ["latest"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_warned(sweep: Path) -> None:
    log = sweep / "lr1e-9" / "train.log"
    log.chmod(0)
    try:
        loaded = api.load_all([sweep])
        assert any("train.log: skipped, permission denied" in w for w in loaded.warnings)
    finally:
        log.chmod(0o644)


def test_missing_and_broken_arguments_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DpoDoctorError, match="no such file"):
        discover([tmp_path / "absent"])
    os.symlink(tmp_path / "absent", tmp_path / "link")
    with pytest.raises(DpoDoctorError, match="broken symlink"):
        discover([tmp_path / "link"])


def test_warnings_reach_the_report(sweep: Path) -> None:
    os.symlink(sweep / "nowhere", sweep / "dangling.log")
    report = api.check([sweep], use_config=False)
    assert any("dangling.log" in w for w in report.warnings)
