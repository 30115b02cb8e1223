"""The rich report, rendered to a 100-column string console as a person would read it."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dpodoctor import api
from dpodoctor.checks import diagnose_run
from dpodoctor.model import Ended, Run, make_frame
from dpodoctor.report import Report
from dpodoctor.reporters.text import ReportView, RunView, sparkline
from dpodoctor.results import Finding, RunReport, Severity
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


# ---------------------------------------------------------------------------------------------------------------
# Numbers a message cites at a step are the values logged there, or say what else they are
# ---------------------------------------------------------------------------------------------------------------

# "0.3556 at step 180" or "0.7069 (step 5)": a value tied to one step.
CITED = re.compile(r"(?P<num>-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?) (?:at step|\(step) (?P<step>\d+)")
# Words that say the number is not the raw point (a level, a smoothed value) or is a threshold, not a value.
LABELLED = ("smoothed", "median", "level", "mean", "average", "below", "above", "within", "under", "over", "beyond")
REAL_LOGS = Path(__file__).resolve().parents[2] / "shared" / "real-logs"


def _last_digit(text: str) -> float:
    """The place value of a printed number's last digit (0.0297 → 1e-4, 1.5e-05 → 1e-6, 42 → 1)."""
    mantissa, _, exponent = text.lower().lstrip("-").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def unquoted_values(report: Report) -> list[str]:
    """Every number a finding's message (or a folded symptom's) cites at a step that is neither the value logged at
    that step (to the digits printed) in some curve of the run, nor labelled as a level, smoothed value or
    threshold in the words just before it."""
    bad = []
    for rr in report.runs:
        curves = [c for c in rr.curves.values() if c.logged]
        for f in rr.findings:
            for message in [f.message, *map(str, f.corroborating)]:
                for m in CITED.finditer(message):
                    clause = re.split(r"[;:,(]", message[max(0, m.start() - 60) : m.start()])[-1]
                    after = re.match(r" \([^)]*\)", message[m.end() :])  # "0.41 at step 180 (3-point median)"
                    if any(word in clause or (after and word in after[0]) for word in LABELLED):
                        continue
                    num, step = float(m["num"]), int(m["step"])
                    tolerance = 0.5 * _last_digit(m["num"]) * (1 + 1e-9)
                    own = [c for c in curves if (c.split, c.metric) == (f.split, f.metric)]
                    logged = [c.value_at(step) for c in own + curves]
                    if not any(v is not None and abs(v - num) <= tolerance for v in logged):
                        bad.append(f"{rr.run.name} {f.code}: {m[0]!r} in {message!r}")
    return bad


def diverging_eval_run() -> Run:
    """Train loss falling, a sparse, noisy eval loss that dips and climbs (the DPO501 shape): the smoothed eval
    minimum is not the value logged at its step, the trap of the issue's "rose from 0.2694 at step 180"."""
    rng = np.random.default_rng(7)
    steps = np.arange(1, 401)
    train = 0.69 - 0.4 * (1 - np.exp(-steps / 120)) + rng.normal(0, 0.01, steps.size)
    eval_steps = np.arange(20, 401, 20)
    trend = 0.6 - 0.2 * np.minimum(eval_steps, 180) / 180 + 0.3 * np.maximum(eval_steps - 180, 0) / 220
    eval_loss = trend + rng.normal(0, 0.03, eval_steps.size)
    frame = make_frame(
        ["train"] * steps.size + ["eval"] * eval_steps.size,
        ["loss"] * (steps.size + eval_steps.size),
        [*steps, *eval_steps],
        [*train, *eval_loss],
    )
    return Run("diverging", Path("diverging"), "synthetic", frame, beta=0.1, ended=Ended.FINISHED)


def test_cited_values_are_logged_values_on_the_fixtures() -> None:
    report = api.check([TRL, TRL.parent / "swanlab"], fail_on="never")
    assert any(CITED.search(f.message) for rr in report.runs for f in rr.findings)  # the check has work to do
    assert unquoted_values(report) == []


def test_cited_values_are_logged_values_on_a_diverging_eval() -> None:
    rr = diagnose_run(diverging_eval_run())
    assert "DPO501" in {f.code for f in rr.findings}
    assert unquoted_values(Report(runs=[rr])) == []


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="../shared/real-logs is not present on this machine")
def test_cited_values_are_logged_values_on_real_logs() -> None:
    report = api.check([REAL_LOGS], fail_on="never")
    assert unquoted_values(report) == []


def test_unquoted_values_catches_a_smoothed_value_quoted_as_raw() -> None:
    """The checker itself: the issue's message (a smoothed 0.2694 quoted at a step that logged 0.3556) is caught,
    and the same number labelled as smoothed passes."""
    rr = diagnose_run(diverging_eval_run())
    c = rr.curves[("eval", "loss")]
    step = int(c.steps[8])
    wrong = float(c.values[8]) + 0.05
    finding = Finding("DPO501", "eval-diverging", Severity.WARNING, "eval", "loss", step, step, "")
    finding.message = f"eval loss rose from {wrong:.4g} at step {step}"
    assert unquoted_values(Report(runs=[RunReport(rr.run, [finding])])) != []
    finding.message = f"eval loss rose from a smoothed {wrong:.4g} at step {step}"
    assert unquoted_values(Report(runs=[RunReport(rr.run, [finding])])) == []
    finding.message = f"eval loss rose from {wrong:.4g} at step {step} (3-point median)"
    assert unquoted_values(Report(runs=[RunReport(rr.run, [finding])])) == []
    finding.message = f"eval loss rose from {c.values[8]:.4g} at step {step}"
    assert unquoted_values(Report(runs=[RunReport(rr.run, [finding])])) == []


def test_a_warning_longer_than_the_width_is_folded_never_cut() -> None:
    """A skipped folder's warning names its path: piped to a file, the report must keep all of it (folded at the
    width), not crop the line at 100 columns."""
    report = api.check([TRL / "healthy"], use_config=False)
    long_path = "/data/" + "sweep-" * 30 + "run-7"
    report.warnings.append(f"{long_path}: skipped, cannot list folder (Permission denied)")
    problem = "/logs/" + "x" * 140 + "/train.log: not valid UTF-8 at byte 12"
    report.problems.append(problem)
    out = render(ReportView(report))
    assert max(len(line) for line in out.splitlines()) <= 100
    joined = "".join(out.splitlines())
    assert f"warning: {long_path}: skipped, cannot list folder (Permission denied)" in joined
    assert f"error: {problem}" in joined
