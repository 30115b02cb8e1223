"""The rich report, rendered to a 100-column string console as a person would read it."""

from __future__ import annotations

from io import StringIO

import numpy as np
from rich.console import Console

from dpodoctor import api
from dpodoctor.reporters.text import ReportView, RunView, sparkline
from dpodoctor.rules import diagnose_run
from tests.conftest import TRL
from tests.synthetic import curves, make_run


def render(renderable: object) -> str:
    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_healthy_run_report() -> None:
    report = api.check([TRL / "healthy"])
    out = render(ReportView(report))
    assert "healthy" in out and "β = 0.1" in out and "400 steps" in out
    for row in ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
        assert row in out
    assert "no findings" in out and "✗" not in out
    assert out.rstrip().splitlines()[-1].startswith("1 run(s) checked: 0 error(s), 0 warning(s)")


def test_broken_run_report_names_code_steps_cause_and_fix() -> None:
    report = api.check([TRL / "lr_too_low"])
    out = render(ReportView(report))
    assert "DPO101 loss-stuck-ln2" in out and "[error]" in out
    assert "steps 45–400" in out
    assert "likely cause:" in out and "what to try:" in out
    assert "also: DPO301" in out  # corroborating evidence, not a second finding
    assert "✗" in out


def test_log_text_is_not_markup() -> None:
    run = make_run(curves(), name="[red]evil[/red] [link=http://x]run")
    out = render(RunView(diagnose_run(run)))
    assert "[red]evil[/red] [link=http://x]run" in out


def test_stdout_run_says_steps_are_derived() -> None:
    out = render(ReportView(api.check([TRL / "healthy" / "train.log"])))
    assert "derived" in out


def test_sparkline_shape() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1, 1, 1]) == "▄▄▄"
    assert sparkline([]) == ""
    assert len(sparkline(np.arange(1000.0), width=20)) == 20
    assert sparkline([np.nan, 1.0, np.inf, 2.0]) == "▁█"


def test_terminal_escapes_from_logs_are_stripped() -> None:
    run = make_run(curves(), name="evil\x1b[2J\x1b]8;;http://x\x07link\x1b]8;;\x07run")
    out = render(RunView(diagnose_run(run)))
    assert "\x1b" not in out and "evil" in out and "linkrun" in out
