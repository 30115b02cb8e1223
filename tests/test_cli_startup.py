"""What the CLI does to start fast changes nothing it prints.

* ``--help`` imports typer's help panels with stand-ins for ``rich.markdown`` and ``rich.traceback``
  (:func:`dpodoctor.cli._import_help_panels`): the help is byte for byte the one typer prints with the real modules,
  colours included, and the stand-ins give the real classes when called.
* A line on stderr is written without rich when rich would print it bare (:func:`dpodoctor.cli._say`): the same
  bytes as rich's console, and rich itself whenever it would style the line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from dpodoctor import cli

ROOT = Path(__file__).resolve().parent.parent

HELP_PROBE = """
import sys
if sys.argv[1] == "real":
    import rich.markdown, rich.traceback  # already imported: the CLI's stand-ins are not used
sys.argv = ["dpodoctor", *sys.argv[2:]]
from dpodoctor.cli import main
main()
"""


def _help(mode: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORCE_COLOR": "1", "COLUMNS": "100", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("TTY_COMPATIBLE", None)
    proc = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, mode, *args], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode in (0, 2), proc.stderr
    return proc.stdout


@pytest.mark.parametrize("args", [("--help",), ("check", "--help"), ("compare", "-h"), ("watch", "--help")])
def test_help_is_typers_own_with_or_without_the_stand_ins(args: tuple[str, ...]) -> None:
    light, real = _help("light", *args), _help("real", *args)
    assert "Usage" in light and "\x1b[" in light  # the rich panels, in colour
    assert light == real


def test_the_stand_ins_give_the_real_classes_and_leave_the_modules_importable() -> None:
    code = """
import sys
from dpodoctor.cli import _import_help_panels
_import_help_panels()
import typer.rich_utils as ru
assert "rich.markdown" not in sys.modules and "rich.traceback" not in sys.modules
import rich.markdown, rich.traceback
assert ru.Markdown is not rich.markdown.Markdown  # the stand-in
made = ru.Markdown("# title")
assert type(made) is rich.markdown.Markdown
assert ru.Traceback.from_exception.__func__ is rich.traceback.Traceback.from_exception.__func__
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.stdout.strip() == "ok", out.stderr


LINES = [
    ("dpodoctor: error: runs/x: no such file or directory", "bold red"),
    ("1 run(s) checked: 0 error(s), 0 warning(s), 0 info · 0 run(s) at or above --fail-on error · exit 0", "green"),
    ("a [red]markup-looking[/red] name :smile: and a very long line " + "x" * 300, "dim"),
    ("no style at all", ""),
    ("a\ttab", "yellow"),
]


def _rich_line(capsys: pytest.CaptureFixture[str], line: str, style: str) -> str:
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(line, style=style))
    return capsys.readouterr().err


@pytest.mark.parametrize(("line", "style"), LINES)
@pytest.mark.parametrize("force", [None, "", "1"])
def test_a_line_on_stderr_is_what_richs_console_prints(
    line: str, style: str, force: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    if force is None:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
    else:
        monkeypatch.setenv("FORCE_COLOR", force)
    expected = _rich_line(capsys, line, style)
    cli._say(line, style=style)
    assert capsys.readouterr().err == expected
    if force == "1" and style:
        assert "\x1b[" in expected  # forced colour: the styled line went through rich


@pytest.mark.parametrize("force", [None, "", "1"])
@pytest.mark.parametrize("tty_compatible", [None, "0", "1", "x"])
def test_bare_only_when_rich_sees_no_terminal(
    force: str | None, tty_compatible: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("FORCE_COLOR", force), ("TTY_COMPATIBLE", tty_compatible)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if cli._stderr_prints_bare():
        assert not Console(stderr=True).is_terminal
