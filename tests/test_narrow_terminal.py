"""Narrow terminals (issue 18, point 3): at 60 columns the verdict column and the numbers keep their room, the
"healthy behaviour" text gives way, and no line is wider than the terminal: rendered with rich at a fixed width, and
through the real CLI in a pseudo-terminal whose size is set with TIOCSWINSZ, as a 60-column tmux pane would be."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from dpodoctor import api
from dpodoctor.reporters.common import metric_rows
from dpodoctor.reporters.text import GAP, MIN_SPARK, ReportView, table_layout
from tests.conftest import TRL

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
ROW = re.compile(r"^([✓⚠✗ℹ·–-])  (\S+)\s")


def rendered(path: Path, width: int) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(ReportView(api.check(path, use_config=False)))
    return console.file.getvalue()  # type: ignore[attr-defined]


def table_rows(text: str) -> dict[str, str]:
    """metric label -> its table line (the line that starts with the verdict mark)."""
    return {m.group(2): line for line in text.splitlines() if (m := ROW.match(line))}


@pytest.mark.parametrize("run", ["lr_too_low", "healthy", "overfit"])
@pytest.mark.parametrize("width", [60, 72, 80])
def test_at_narrow_widths_the_verdict_and_numbers_stay_whole(run: str, width: int) -> None:
    text = rendered(TRL / run, width)
    assert max(cell_len(line) for line in text.splitlines()) <= width
    report = api.check(TRL / run, use_config=False).runs[0]
    rows = table_rows(text)
    for row in metric_rows(report):
        line = rows[row.label]
        assert line.startswith(f"{row.mark}  {row.label}")
        assert f" {row.span} " in f"{line} ", line  # "start → end" whole, not cut
        trend = line.split(row.span, 1)[1].strip()
        assert len(trend) >= MIN_SPARK and set(trend) <= set("▁▂▃▄▅▆▇█"), line
    # the description is still there, wrapped beside the numbers or under the metric, never cut with "…"
    assert "…" not in text
    words = set(text.split())
    for row in metric_rows(report):
        assert set(row.healthy.split()) <= words, row.healthy


def test_at_100_columns_the_table_is_the_wide_one() -> None:
    text = rendered(TRL / "healthy", 100)
    assert "healthy behaviour" in text
    report = api.check(TRL / "healthy", use_config=False).runs[0]
    rows = table_rows(text)
    for row in metric_rows(report):  # every row whole on one line: mark, label, description start, numbers, trend
        line = rows[row.label]
        assert line.startswith(f"{row.mark}  {row.label}") and f" {row.span} " in line, line
        assert row.healthy.split()[0] in line and len(line.split(row.span, 1)[1].strip()) >= MIN_SPARK, line


@pytest.mark.parametrize("width", range(20, 121, 7))
def test_the_layout_never_exceeds_the_width(width: int) -> None:
    layout = table_layout(width, label=18, span=19, healthy=33, spark=20)
    columns = [1, layout.label, layout.healthy, layout.span, layout.spark]
    used = sum(c for c in columns if c) + GAP * (sum(1 for c in columns if c) - 1)
    assert used <= max(width, 1 + GAP + 1 + GAP + 2)
    if width >= 1 + 18 + 19 + 3 * GAP + MIN_SPARK:
        assert layout.span == 19 and layout.label == 18 and layout.spark >= MIN_SPARK  # the numbers first


def pty_run(args: list[str], columns: int, rows: int = 50, env: dict[str, str] | None = None) -> str:
    """Run a command with its stdin/stdout/stderr on a pseudo-terminal of ``columns`` x ``rows``; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    return out.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    "with_columns_variable",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # the second spelling of the width: CI runs it
    ids=["ioctl", "COLUMNS"],
)
def test_the_cli_in_a_60_column_terminal_keeps_every_line_in_it(tmp_path: Path, with_columns_variable: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT), DPODOCTOR_CACHE_DIR=str(tmp_path / "cache"))
    if with_columns_variable:
        env["COLUMNS"] = "60"
    raw = pty_run([sys.executable, "-m", "dpodoctor", "check", "tests/fixtures/trl/lr_too_low"], 60, env=env)
    assert "\x1b[" in raw  # a terminal: colour and charts are on, as a person sees them
    lines = [line for part in ANSI.sub("", raw).split("\n") for line in part.split("\r")]
    assert max(cell_len(line) for line in lines) <= 60, "\n".join(line for line in lines if cell_len(line) > 60)
    rows = table_rows("\n".join(lines))
    # the same marks and numbers as the API's table (the first value and the end level of each curve)
    report = api.check(TRL / "lr_too_low", use_config=False).runs[0]
    for row in metric_rows(report):
        assert rows[row.label].startswith(f"{row.mark}  {row.label}") and row.span in rows[row.label], rows[row.label]
    assert rows["loss"].startswith("✗  loss") and rows["rewards/chosen"].startswith("✓  rewards/chosen")
    assert "DPO101 loss-stuck-ln2" in raw and "1 run(s) checked: 1 error(s)" in " ".join(ANSI.sub("", raw).split())
