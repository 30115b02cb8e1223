"""Meaning not carried by colour alone (issue 18, point 4): with NO_COLOR, or for a red–green colour-blind reader,
the overlaid curves of `compare` and chosen/rejected in a run's charts differ by glyph (terminal) or by line style
and marker (figures), are named next to them, and the colours are the Okabe–Ito palette."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.compare import compare
from dpodoctor.reporters.curves import COLORS, OKABE_ITO, RUN_COLORS, SEVERITY_COLORS
from dpodoctor.reporters.plots import comparison_figure, run_figure
from dpodoctor.reporters.terminal_plots import RUN_MARKERS, glyph
from tests.conftest import TRL
from tests.test_narrow_terminal import ANSI, ROOT, pty_run

runner = CliRunner()
RUNS = [str(TRL / "healthy"), str(TRL / "overfit"), str(TRL / "lr_too_low")]
OLD_PALETTE = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e")  # matplotlib's tab10 green/red/blue/orange


def chart(out: str, title: str) -> list[str]:
    """The lines of the stacked chart titled ``title`` (its title line down to its x-axis tick labels)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    end = next(i for i in range(start + 2, len(lines)) if lines[i].lstrip().startswith("└"))
    return lines[start : end + 1]


def test_compare_in_a_no_color_terminal_tells_the_runs_apart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    env.update(NO_COLOR="1", TERM="xterm-256color", PYTHONPATH=str(ROOT), DPODOCTOR_CACHE_DIR=str(tmp_path))
    raw = pty_run([sys.executable, "-m", "dpodoctor", "compare", *RUNS[:2]], 60, env=env)
    assert not re.search(r"\x1b\[[0-9;]*3[0-9;]*m", raw), "NO_COLOR: no foreground colours"
    out = "\n".join(line.rstrip() for line in ANSI.sub("", raw).replace("\r", "").split("\n"))
    legend = next(line for line in out.splitlines() if "healthy" in line and "overfit" in line and "xx" in line)
    assert legend.split() == [glyph(RUN_MARKERS[0]), "healthy", glyph(RUN_MARKERS[1]), "overfit"]
    assert "■" not in out and "(green)" not in out and "(red)" not in out
    loss = "\n".join(chart(out, "loss"))
    assert re.search("[⠁-⣿]", loss) and "xxx" in loss  # healthy in braille, overfit in x: both visible


def test_the_run_charts_name_chosen_and_rejected_by_glyph_not_colour() -> None:
    result = runner.invoke(app, ["check", str(TRL / "overfit"), "--plots", "--no-config"], env={"NO_COLOR": "1"})
    out = result.stdout
    assert "\x1b[" not in out
    assert "chosen ⠒⠒ · rejected xx" in out and "(green)" not in out and "(red)" not in out
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if "chosen ⠒⠒ · rejected xx" in line)
    left = lines[top].index("chosen ⠒⠒") < 50
    rows = []
    for line in lines[top + 1 :]:  # the chart's own half of the two-chart row
        half = line[:50] if left else line[50:]
        rows.append(half)
        if "└" in half:
            break
    rewards = "\n".join(rows)
    assert "xxx" in rewards and re.search("[⠁-⣿]", rewards)  # rejected in x, chosen in braille


def test_every_colour_is_okabe_ito() -> None:
    palette = set(OKABE_ITO.values())
    assert set(COLORS.values()) <= palette and set(RUN_COLORS) <= palette and set(SEVERITY_COLORS.values()) <= palette
    assert len(set(RUN_COLORS)) == len(RUN_COLORS) and COLORS["chosen"] != COLORS["rejected"]


def test_compare_figure_varies_line_style_and_marker_and_labels_each_curve(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", *RUNS, "--no-plots", "--plot-dir", str(tmp_path), "--plot-format", "svg"])
    assert result.exit_code == 0, result.output
    svg = (tmp_path / "compare.svg").read_text(encoding="utf-8").lower()
    for colour in RUN_COLORS[:3]:
        assert colour.lower() in svg
    assert not any(old in svg for old in OLD_PALETTE)
    assert "stroke-dasharray" in svg  # dashed and dash-dotted runs, not only colours

    fig = comparison_figure(compare(RUNS, use_config=False))
    ax = fig.axes[0]  # loss
    smoothed = [line for line in ax.get_lines() if line.get_linewidth() > 1.5]
    styles = {(line.get_linestyle(), line.get_marker()) for line in smoothed}
    assert len(smoothed) == 3 and len(styles) == 3  # three runs, three looks
    direct = {t.get_text() for t in ax.texts}
    assert {"healthy", "overfit", "lr_too_low"} <= direct  # each curve named at its end


@pytest.mark.parametrize("run", ["healthy", "overfit"])
def test_run_figure_draws_chosen_and_rejected_differently(run: str) -> None:
    fig = run_figure(api.check(TRL / run, use_config=False).runs[0])
    rewards = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("rewards/chosen"))
    smoothed = {line.get_label(): line for line in rewards.get_lines() if line.get_linewidth() > 1.5}
    chosen, rejected = smoothed["chosen"], smoothed["rejected"]
    assert (chosen.get_linestyle(), chosen.get_marker()) != (rejected.get_linestyle(), rejected.get_marker())
    assert {"chosen", "rejected"} <= {t.get_text() for t in rewards.texts}
    assert chosen.get_color().upper() == COLORS["chosen"] and rejected.get_color().upper() == COLORS["rejected"]
