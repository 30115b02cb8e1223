"""Filesystem oddities: permission denied, broken symlinks, symlink loops, FIFOs and devices, paths that vanish
mid-walk, and a folder of 10,000 empty files. Each is reported and skipped, and the rest is still checked.

Why each matters: a sweep folder on a shared cluster holds other users' files, ``latest`` links to runs that were
deleted, FIFOs left by log shippers, and runs still being cleaned up while dpodoctor walks them. None of that may stop
the check of the runs that are there, and nothing may block (reading a FIFO waits forever for a writer).

The tests run as root here, and root reads any file whatever its mode, so permission errors are simulated (the
readers see ``PermissionError`` exactly as they would); the real ``chmod`` tests run for other users.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from dpodoctor import api
from dpodoctor.discovery import discover
from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers import READERS
from dpodoctor.readers.hparams import find_beta
from tests.bad_inputs.builders import event_file, jsonl_log, swanlab_run
from tests.conftest import TRL

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class _Blocked(Exception):
    pass


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the body blocks, as an open() of a FIFO would."""

    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise _Blocked(f"blocked for {seconds} s (a FIFO or device was opened?)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sweep(root: Path) -> Path:
    """Two good runs: ``good-tb`` (TensorBoard) and ``good-jsonl``."""
    (root / "good-tb").mkdir(parents=True)
    (root / "good-tb" / "events.out.tfevents.1700000000.host.1.0").write_bytes(event_file(40).data)
    (root / "good-jsonl").mkdir()
    (root / "good-jsonl" / "metrics.jsonl").write_bytes(jsonl_log(40))
    return root


def _names(report: Any) -> set[str]:
    return {rr.run.name for rr in report.runs}


# ---------------------------------------------------------------- permission denied


def test_unreadable_file_is_reported_and_skipped_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.access`` says no (as it would for another user's file): the walk warns and goes on."""
    root = _sweep(tmp_path)
    (root / "secret").mkdir()
    secret = root / "secret" / "train.log"
    secret.write_bytes((TRL / "healthy" / "train.log").read_bytes())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != secret and real_access(p, mode, **kw))
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert any(str(secret) in w and "permission denied" in w for w in report.warnings)


def test_file_whose_open_fails_is_a_problem_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk could list it, but opening it raises PermissionError (an ACL, a race with chmod): the run is an
    unreadable input (exit 2) and the other runs are still checked."""
    root = _sweep(tmp_path)
    (root / "locked").mkdir()
    locked = root / "locked" / "events.out.tfevents.1700000000.host.2.0"
    locked.write_bytes(event_file(10).data)
    real_open = pathlib.Path.open

    def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", guarded)
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert report.exit_code == 2
    assert any(str(locked) in p and "Permission denied" in p for p in report.problems)


def test_unlistable_folder_is_reported_and_skipped_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _sweep(tmp_path)
    (root / "private" / "run").mkdir(parents=True)
    (root / "private" / "run" / "metrics.jsonl").write_bytes(jsonl_log(5))
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == root / "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert any("private" in w and "cannot list folder" in w for w in report.warnings)


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode; the simulated tests above cover it")
def test_unreadable_file_and_folder_real_chmod(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    (root / "secret").mkdir()
    secret = root / "secret" / "train.log"
    secret.write_bytes((TRL / "healthy" / "train.log").read_bytes())
    secret.chmod(0)
    (root / "closed").mkdir()
    (root / "closed" / "metrics.jsonl").write_bytes(jsonl_log(5))
    (root / "closed").chmod(0)
    try:
        report = api.check([root], use_config=False)
    finally:
        secret.chmod(0o644)
        (root / "closed").chmod(0o755)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert any("permission denied" in w for w in report.warnings)
    assert any("closed" in w for w in report.warnings)


# ---------------------------------------------------------------- symlinks


def test_broken_symlink_is_reported_and_skipped(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    (root / "gone").mkdir()
    (root / "gone" / "train.log").symlink_to(tmp_path / "deleted" / "train.log")
    (root / "latest").symlink_to(tmp_path / "no-such-run", target_is_directory=True)
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert any("train.log" in w and "broken symlink" in w for w in report.warnings)
    with pytest.raises(DpoDoctorError, match="broken symlink"):
        api.check([root / "gone" / "train.log"], use_config=False)


def test_symlink_loops_end_and_are_reported(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    (root / "good-tb" / "again").symlink_to(root, target_is_directory=True)  # a folder loop
    (root / "a.log").symlink_to(root / "b.log")  # a file loop: a -> b -> a
    (root / "b.log").symlink_to(root / "a.log")
    with _deadline(15):
        report = api.check([root], use_config=False)
    assert {"good-tb", "good-jsonl"} <= _names(report)
    assert any("symlink loop" in w for w in report.warnings)
    assert any("a.log" in w and "broken symlink" in w for w in report.warnings)


# ---------------------------------------------------------------- FIFOs and devices

# Names every reader would claim (or a reader opens beside a run), as FIFOs.
_FIFO_NAMES = [
    "train.log",
    "stdout.txt",
    "events.out.tfevents.1700000000.host.9.0",
    "trainer_state.json",
    "metrics.jsonl",
    "trainer_log.jsonl",
    "metrics.csv",
    "export.json",
    "training_args.json",
    "config.yaml",
]


def test_fifos_are_never_opened(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    fifos = root / "fifos"
    fifos.mkdir()
    for name in _FIFO_NAMES:
        os.mkfifo(fifos / name)
    swan = root / "swan" / "swanlog" / "run-20260101_000000-abcdefgh"
    (swan / "files").mkdir(parents=True)
    (swan / "console").mkdir()
    (swan / "run-abcdefgh.swanlab").write_bytes(swanlab_run(20, finish=False).data)
    os.mkfifo(swan / "files" / "config.yaml")
    os.mkfifo(swan / "console" / "error.log")
    os.mkfifo(swan / "backup.swanlab")
    os.mkfifo(root / "good-jsonl" / "config.yaml")  # find_beta's YAML pass globs *.yaml beside the log
    with _deadline(15):
        for reader in READERS:
            for fifo in [*fifos.iterdir(), swan / "backup.swanlab"]:
                assert not reader.sniff(fifo), (reader.name, fifo)
        assert find_beta(fifos) is None
        report = api.check([root], use_config=False)
        with pytest.raises(DpoDoctorError, match="not a regular file"):
            api.check([fifos / "train.log"], use_config=False)
    assert {"good-tb", "good-jsonl"} <= _names(report)
    assert "swan" in _names(report)  # its FIFO config and error.log were skipped, its records read
    skipped = [w for w in report.warnings if "not a regular file (a FIFO)" in w]
    assert len(skipped) >= len(_FIFO_NAMES)


def test_device_files_are_never_opened(tmp_path: Path) -> None:
    """``/dev/zero`` never ends and ``/dev/null`` is empty: linked into a run folder under log names, both are
    skipped as devices (never read), whatever their names promise."""
    root = _sweep(tmp_path)
    devices = root / "devices"
    devices.mkdir()
    (devices / "events.out.tfevents.1700000000.host.3.0").symlink_to("/dev/zero")
    (devices / "train.log").symlink_to("/dev/null")
    (devices / "trainer_state.json").symlink_to("/dev/urandom")
    with _deadline(15):
        report = api.check([root], use_config=False)
        with pytest.raises(DpoDoctorError, match="character device"):
            api.check([devices / "train.log"], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert sum("a character device" in w for w in report.warnings) == 3


# ---------------------------------------------------------------- paths that vanish mid-walk


def test_file_vanishing_between_walk_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _sweep(tmp_path)
    (root / "doomed").mkdir()
    doomed = root / "doomed" / "train.log"
    doomed.write_bytes((TRL / "healthy" / "train.log").read_bytes())
    sources = discover([root])
    doomed.unlink()  # deleted after discovery listed it, before it is read
    monkeypatch.setattr(api, "discover", lambda paths, warnings=None: sources)
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert any("doomed" in p and "No such file" in p for p in report.problems)


def test_folder_and_file_vanishing_during_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.walk lists a folder, then the folder (and a file listed in the root) disappear before they are visited or
    sniffed: warnings or nothing, never an exception."""
    root = _sweep(tmp_path)
    (root / "zz-cleanup" / "run").mkdir(parents=True)
    (root / "zz-cleanup" / "run" / "metrics.jsonl").write_bytes(jsonl_log(5))
    (root / "zz-listed.log").write_bytes((TRL / "healthy" / "train.log").read_bytes())
    real_walk = os.walk

    def walk(top: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            yield dirpath, dirnames, filenames
            if Path(dirpath) == root:  # the listing of root is out: now the cleanup job strikes
                shutil.rmtree(root / "zz-cleanup")
                (root / "zz-listed.log").unlink()

    monkeypatch.setattr(os, "walk", walk)
    report = api.check([root], use_config=False)
    assert _names(report) == {"good-tb", "good-jsonl"}
    assert not report.problems


def test_file_vanishing_between_sniff_and_grouping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log that was listed and sniffed, then deleted before discovery ranks the files of its folder (by size):
    that stat() raised FileNotFoundError out of discovery. Now the run is read from what is left."""
    import dpodoctor.discovery as discovery

    root = _sweep(tmp_path)
    (root / "race").mkdir()
    first, second = root / "race" / "a.log", root / "race" / "b.log"
    for path in (first, second):
        path.write_bytes((TRL / "healthy" / "train.log").read_bytes())
    real_reader_for = discovery.reader_for

    def reader_for(path: Path) -> Any:
        found = real_reader_for(path)
        if path == second and first.exists():
            first.unlink()  # a.log was sniffed already: it vanishes while b.log is looked at
        return found

    monkeypatch.setattr(discovery, "reader_for", reader_for)
    report = api.check([root], use_config=False)
    assert {"good-tb", "good-jsonl", "race"} <= _names(report)


# ---------------------------------------------------------------- many files


@pytest.mark.slow  # creates and walks 10,000 files
def test_ten_thousand_empty_files(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    crowd = root / "crowd"
    crowd.mkdir()
    names = ["train{:05d}.log", "events.out.tfevents.{:05d}", "m{:05d}.jsonl", "x{:05d}.csv", "n{:05d}.bin"]
    for i in range(10_000):
        (crowd / names[i % len(names)].format(i)).touch()
    started = time.perf_counter()
    report = api.check([root], use_config=False)
    elapsed = time.perf_counter() - started
    assert {"good-tb", "good-jsonl"} <= _names(report)
    assert elapsed < 45, f"{elapsed:.1f} s for 10,000 empty files"
    # The empty event files are one (unreadable) TensorBoard run; the other empty files are not logs at all.
    assert any("empty file" in p for p in report.problems)
