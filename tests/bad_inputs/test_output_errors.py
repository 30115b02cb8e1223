"""Writing the report where it cannot go (issue 17, defect 5): a full disk is the environment, not a bug.

Real subprocesses, because what matters is the interpreter's own stdout: a failed write leaves bytes in its buffer,
and the last flush at exit must not turn a clean one-line error into "Exception ignored" and exit 120.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TRL

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("fmt", ["html", "json", "text"])
def test_a_full_disk_is_one_line_and_exit_2(tmp_path: Path, fmt: str) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "dpodoctor", "check", str(TRL), "--format", fmt],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
            cwd=tmp_path,
            timeout=300,
        )
    assert proc.returncode == 2
    assert proc.stderr == "dpodoctor: error: cannot write the report to stdout (No space left on device)\n"


def test_a_pipe_closed_early_exits_quietly_with_the_verdict(tmp_path: Path) -> None:
    """``dpodoctor check R | head``: the reader went away. No error, no traceback; the gate's exit code stands
    (a healthy run: 0, where click's own broken-pipe handling would exit 1)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpodoctor", "check", str(TRL / "healthy"), "--format", "html"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has written anything: its write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0
    assert err == b""
