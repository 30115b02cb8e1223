"""Exit codes: an internal error is caught at the top level, printed as one line with a hint, and exits 2.

Why exit 2 and one line: a bug met on a crashed run's odd logs must not look like a clean pass to a CI gate (0) or
like findings (1), and must not bury the report under a traceback; ``--debug`` shows the traceback for the bug
report. These tests run the real entry point, ``dpodoctor.cli.main`` (what the ``dpodoctor`` script calls), with
``sys.argv`` set, and once as a subprocess.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpodoctor import cli
from dpodoctor.checks import RULES
from dpodoctor.readers import get_reader
from tests.conftest import TRL

HEALTHY = TRL / "healthy"
HINT = "run with --debug for the traceback"


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("kaboom\nsecond line \x1b]8;;http://x\x07from a log")


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dpodoctor", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("where", ["reader", "rule"])
def test_internal_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "reader":
        monkeypatch.setattr(get_reader("tensorboard"), "read", _boom)
    else:
        monkeypatch.setitem(RULES, "DPO101", dataclasses.replace(RULES["DPO101"], check=_boom))
    code, _, err = _main(monkeypatch, capsys, "check", str(HEALTHY), "--no-cache", "--jobs", "1", "--no-config")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dpodoctor: internal error: RuntimeError: kaboom second line")
    assert lines[0].endswith(f"({HINT})")
    assert "Traceback" not in err and "\x1b" not in err and "\x07" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(get_reader("tensorboard"), "read", _boom)
    code, _, err = _main(monkeypatch, capsys, "check", "--debug", str(HEALTHY), "--no-cache", "--jobs", "1")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "RuntimeError: kaboom" in err and "_boom" in err
    assert err.strip().splitlines()[-1].startswith("dpodoctor: internal error: RuntimeError: kaboom")
    assert HINT not in err


def test_bad_input_is_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A documented error (DpoDoctorError) is the usual one-line "error:" with exit 2, no hint about --debug."""
    bad = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = _main(monkeypatch, capsys, "check", str(bad), "--no-cache")
    assert code == 2
    assert "dpodoctor: error:" in err and "bad record header at byte 0" in err
    assert "internal error" not in err and HINT not in err


def test_exit_codes_of_good_and_bad_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(monkeypatch, capsys, "check", str(HEALTHY), "--no-cache", "--no-config")[0] == 0
    assert _main(monkeypatch, capsys, "check", str(TRL / "lr_too_low"), "--no-cache", "--no-config")[0] == 1


def test_subprocess_entry_point(tmp_path: Path) -> None:
    """The installed way in: a fresh interpreter running ``dpodoctor.cli.main`` with a reader that raises."""
    code = (
        "import sys\n"
        "from dpodoctor.readers import get_reader\n"
        "def boom(*a, **k):\n"
        "    raise KeyError('from a subprocess')\n"
        "get_reader('tensorboard').read = boom\n"
        "from dpodoctor.cli import main\n"
        f"sys.argv = ['dpodoctor', 'check', {str(HEALTHY)!r}, '--no-cache', '--jobs', '1']\n"
        "main()\n"
    )
    env = {**os.environ, "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"dpodoctor: internal error: KeyError: 'from a subprocess' ({HINT})"], (
        proc.stderr
    )
