"""A report never contradicts itself: the "checked" line's rose/fell/stayed level and the table's mark for the same
curve come from one judgement (:func:`dpodoctor.rules.curve_move`).

Before, the checked line judged the start and end *levels* only while the table's ⚠ "against its healthy direction"
also compared the end with the raw first value, so "⚠ chosen reward stayed level from …" could be printed. Checked
on every real run in the fixtures (the TRL runs, the corpus subset, the diagnosis regressions),
through the rows every format shows and through the rendered text report.
"""

from __future__ import annotations

import re
from io import StringIO

from rich.console import Console

from dpodoctor import api
from dpodoctor.curve import fmt
from dpodoctor.report import Report
from dpodoctor.reporters.text import ReportView
from dpodoctor.results import RunReport
from dpodoctor.rules import HEALTHY_DIRECTION, MOVE_WORD, curve_move
from dpodoctor.table import metric_rows
from tests.conftest import FIXTURES

# The real runs of every fixture group whose folders are distinct runs (swanlab/ and trackers/ hold the same TRL runs
# through other loggers; tests/test_reader_*.py pin that they read the same)
GROUPS = ("trl", "corpus", "diagnosis")
RUN_DIRS = sorted(p for g in GROUPS if (FIXTURES / g).is_dir() for p in (FIXTURES / g).iterdir() if p.is_dir())
WORD = re.compile(r"^\S+(?: reward)? (rose|fell|stayed level) from ")


def everything() -> Report:
    return api.check(RUN_DIRS, use_config=False, cache=False, exit_zero=True)


def assert_agrees(rr: RunReport) -> None:
    rows = {row.metric: row for row in metric_rows(rr) if row.split == "train" and row.logged}
    assert rr.health, rr.run.name
    for metric, sentence in rr.health.items():
        row = rows[metric]
        c = row.curve
        assert c is not None
        match = WORD.match(sentence)
        assert match, sentence
        word = match[1]
        move = curve_move(c, rr.beta_used)
        assert word == move.word, (rr.run.name, sentence)
        against = MOVE_WORD[-HEALTHY_DIRECTION[metric]]
        # the ⚠ "against its healthy direction" row says the curve went the wrong way, and so does its checked line
        assert row.against == (word == against and row.verdict not in ("error", "warning", "info")), (rr.run, row)
        if row.mark == "✓":
            assert word != against, (rr.run.name, sentence)
        # the numbers quoted agree with the word: it rose to a higher end than where it is said to have come from
        begin = c.start if move.since == "start" else c.first_value
        if word == "rose":
            assert c.end > begin, sentence
        elif word == "fell":
            assert c.end < begin, sentence
        assert fmt(c.first_value) in sentence and fmt(c.end) in sentence


def assert_no_stayed_level_beside_a_warning_mark(report: Report) -> None:
    console = Console(file=StringIO(), width=400, color_system=None)
    console.print(ReportView(report))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    checked = [
        line.strip() for line in out.splitlines() if re.match(r"\s+[✓⚠ℹ] \S+(?: reward)? (rose|fell|stayed)", line)
    ]
    assert len(checked) > 3 * len(RUN_DIRS)
    for line in checked:
        if "against its healthy direction" in line:
            assert line.startswith("⚠") and "stayed level" not in line, line
        assert not (line.startswith("⚠") and "stayed level" in line), line


def test_every_fixture_run_has_checked_lines_that_agree_with_its_table() -> None:
    """One test for both views, so the report of every fixture run (~20 s to build) is built once."""
    report = everything()
    assert len(report.runs) >= len(RUN_DIRS)
    for rr in report.runs:
        assert_agrees(rr)
    assert_no_stayed_level_beside_a_warning_mark(report)
