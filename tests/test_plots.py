"""Plots: terminal charts, --plot-dir figures, compare, and the HTML report, on the real fixture runs.

Why these tests look at the drawn objects and the decoded files: a plot that is written but shows no finding, or a
file that is not a decodable image of the size promised, is a bug a reader meets only when a run has already gone
wrong. Figures are inspected before they are saved (the builders return the Figure); files are decoded from their
bytes (PNG header, SVG XML); the HTML is parsed, and opened in a real headless browser where one is installed.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.checks import diagnose_run
from dpodoctor.cli import app
from dpodoctor.compare import SEED_METRICS, Comparison, compare, steps_to_epochs
from dpodoctor.errors import DpoDoctorError
from dpodoctor.report import Report
from dpodoctor.reporters import FORMATS, render
from dpodoctor.reporters.common import metric_rows
from dpodoctor.reporters.curves import FIGURE_PANELS, nice_ticks, panel_for, safe_filename
from dpodoctor.reporters.html import render_html
from dpodoctor.reporters.plots import (
    DPI,
    RUN_FIGSIZE,
    comparison_figure,
    figure_bytes,
    run_figure,
    write_run_plots,
)
from dpodoctor.reporters.text import ReportView, render_text
from dpodoctor.results import RunReport
from tests.conftest import TRL, TRL_RUNS
from tests.synthetic import curves, make_run

runner = CliRunner()
PNG_SIZE = (int(RUN_FIGSIZE[0] * DPI), int(RUN_FIGSIZE[1] * DPI))
BRAILLE = range(0x2801, 0x2900)  # plotext draws curves in braille cells (U+2800 is the blank one)
HOSTILE_NAME = '<script>alert("x")</script>/../../evil $x_1$ & co'


@pytest.fixture(scope="module")
def sweep() -> Report:
    return api.check([TRL], fail_on="never")


def run_report(sweep: Report, name: str) -> RunReport:
    [rr] = [r for r in sweep.runs if r.run.name == name]
    return rr


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk, right after the 8-byte signature)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def figure_texts(fig: object) -> list[str]:
    """Every string drawn on a figure: suptitle, axes titles, texts and legend labels."""
    out = [fig._suptitle.get_text()] if fig._suptitle else []  # type: ignore[attr-defined]
    for ax in fig.axes:  # type: ignore[attr-defined]
        out += [ax.get_title(loc=loc) for loc in ("left", "center")]
        out += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return out


def has_chart(text: str) -> bool:
    return any(ord(c) in BRAILLE for c in text) and "┤" in text


# ---------------------------------------------------------------------------------------------------------------
# matplotlib figures
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", TRL_RUNS)
def test_run_figure_marks_every_finding_on_its_panel(sweep: Report, run: str) -> None:
    rr = run_report(sweep, run)
    fig = run_figure(rr)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(FIGURE_PANELS) == 6
    by_title = {ax.get_title(loc="left").split("   ")[0]: ax for ax in axes}
    assert list(by_title) == [p.title for p in FIGURE_PANELS]
    for f in rr.findings:
        ax = by_title[panel_for(f.metric, FIGURE_PANELS).title]
        assert f.code in ax.get_title(loc="left"), (f.code, ax.get_title(loc="left"))
        if f.first_step is not None:  # the span is labelled on the panel itself
            assert any(f.code in t.get_text() for t in ax.texts), [t.get_text() for t in ax.texts]
    assert run in fig._suptitle.get_text()  # type: ignore[union-attr]


@pytest.mark.parametrize(("run", "code", "panel"), [("lr_too_low", "DPO101", "loss"), ("overfit", "DPO103", "loss")])
def test_seed_findings_are_shaded_and_labelled(sweep: Report, run: str, code: str, panel: str) -> None:
    fig = run_figure(run_report(sweep, run))
    [ax] = [a for a in fig.axes if a.get_title(loc="left").startswith(panel)]
    assert any(t.get_text().strip().startswith(code) for t in ax.texts)
    assert ax.patches, "the finding's step span is shaded"
    assert any(f"{code} " in t for t in figure_texts(fig))


def test_reference_lines_and_not_logged_panel() -> None:
    rr = diagnose_run(make_run(curves()))  # synthetic: no grad_norm, no logps
    fig = run_figure(rr)
    titles = {ax.get_title(loc="left").split("   ")[0]: ax for ax in fig.axes}
    assert any("not logged" in t.get_text() for t in titles["grad_norm"].texts)
    assert any("not logged" in t.get_text() for t in titles["logps/chosen · logps/rejected"].texts)
    refs = {title: [t.get_text() for t in ax.texts] for title, ax in titles.items()}
    assert "ln 2 = 0.693" in refs["loss"]
    assert "chance = 0.5" in refs["rewards/accuracies"]
    assert "0" in refs["rewards/margins"]
    loss_lines = [line.get_ydata() for line in titles["loss"].get_lines()]
    assert any(np.allclose(y, math.log(2)) for y in loss_lines if len(y) == 2)


def test_hostile_run_name_in_a_figure_is_text_not_mathtext() -> None:
    fig = run_figure(diagnose_run(make_run(curves(), name="a $\\frac{1}{0 b")))
    assert figure_bytes(fig, "png")[:4] == b"\x89PNG"  # an unbalanced $ would fail the render as mathtext


@pytest.mark.slow  # a PNG per fixture run
def test_plot_dir_writes_one_png_per_fixture_run(tmp_path: Path) -> None:
    out = tmp_path / "new" / "plots"
    result = runner.invoke(app, ["check", str(TRL), "--plot-dir", str(out), "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == sorted(f"{safe_filename(r)}.png" for r in TRL_RUNS)
    for f in files:
        assert png_size(f.read_bytes()) == PNG_SIZE
    assert f"wrote {len(TRL_RUNS)} plot(s)" in result.stderr


def test_plot_dir_svg(tmp_path: Path) -> None:
    args = ["check", str(TRL / "overfit"), "--plot-dir", str(tmp_path), "--plot-format", "svg"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [svg] = list(tmp_path.iterdir())
    assert svg.name == "overfit.svg"
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == (f"{RUN_FIGSIZE[0] * 72:g}pt", f"{RUN_FIGSIZE[1] * 72:g}pt")
    assert "DPO103" in svg.read_text(encoding="utf-8")  # text is kept as text (svg.fonttype none)


def test_png_decodes_with_matplotlib(sweep: Report, tmp_path: Path) -> None:
    import matplotlib.image

    [path] = write_run_plots(Report(runs=[run_report(sweep, "lr_too_low")]), tmp_path)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (PNG_SIZE[1], PNG_SIZE[0])
    assert pixels.std() > 0.05  # not a blank canvas


@pytest.mark.slow  # a figure per hostile name
def test_hostile_run_names_never_write_outside_the_plot_dir(tmp_path: Path) -> None:
    names = [HOSTILE_NAME, "../../outside", "sweep/lr=1e-6/seed 1", "sweep/lr=1e-6/seed_1", "..", "", "a" * 300]
    runs = [diagnose_run(make_run(curves(n=30), name=name)) for name in names]
    out = tmp_path / "plots"
    written = write_run_plots(Report(runs=runs), out)
    assert len(written) == len(set(written)) == len(names)  # collisions got a suffix, none overwritten
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(written)
    for p in written:
        assert p.parent == out and len(p.name) <= 130
        assert p.name[0] not in ".-" and all(c.isalnum() or c in "._-" for c in p.name)
    assert safe_filename("sweep/lr=1e-6/seed 1") == "sweep_lr_1e-6_seed_1"
    assert safe_filename("../..") == "run"


def test_importing_dpodoctor_does_not_import_plotting_libraries() -> None:
    code = "import sys, dpodoctor, dpodoctor.cli; print('matplotlib' in sys.modules, 'plotext' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_nice_ticks() -> None:
    assert nice_ticks(0, 400, count=5) == [0, 100, 200, 300, 400]
    assert nice_ticks(0, 360, count=6) == [0, 100, 200, 300]
    assert nice_ticks(0.02, 2.1, count=5) == [0.5, 1.0, 1.5, 2.0]
    assert nice_ticks(3, 3) == [3]


# ---------------------------------------------------------------------------------------------------------------
# Terminal charts
# ---------------------------------------------------------------------------------------------------------------


def console_render(renderable: object, width: int = 100) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_terminal_charts_show_curves_references_and_findings() -> None:
    out = console_render(ReportView(api.check([TRL / "lr_too_low"]), plots=True))
    assert has_chart(out)
    assert "loss · ✗ DPO101 45–400" in out  # the finding's code and step range on its chart
    for title in ("rewards/margins", "rewards/accuracies", "chosen ⠒⠒ · rejected xx"):
        assert title in out
    assert "┈" in out  # the dotted reference lines (ln 2, 0.5, 0)
    chart = out[out.index("loss · ✗ DPO101") :]
    assert max(len(line) for line in chart.splitlines()) <= 100
    # two charts side by side: the loss and margins titles share a line
    assert any("DPO101" in line and "rewards/margins" in line for line in out.splitlines())


def test_terminal_charts_stack_on_a_narrow_console() -> None:
    out = console_render(ReportView(api.check([TRL / "overfit"]), plots=True), width=60)
    assert has_chart(out) and "DPO103" in out
    assert not any("DPO103" in line and "rewards/margins" in line for line in out.splitlines())
    assert max(len(line) for line in out.splitlines()) <= 60


def test_terminal_charts_keep_colour_on_a_colour_console() -> None:
    console = Console(file=StringIO(), width=100, color_system="truecolor", force_terminal=True)
    console.print(ReportView(api.check([TRL / "healthy"]), plots=True))
    out = console.file.getvalue()  # type: ignore[union-attr]
    assert "\x1b[38;2;" in out  # truecolour charts
    # chosen in Okabe–Ito blue, as in the figures. Read from the chart's styles, not from the ANSI text: rich caches
    # a style's escape codes from the first console that renders it, so an earlier 16-colour render in the same
    # process (render_text(color=True)) would show here as its downgrade.
    from dpodoctor.reporters.terminal_plots import build_chart, run_charts

    rewards = build_chart(run_charts(api.check([TRL / "healthy"]).runs[0])[-1], width=48)
    colours = {
        span.style.color.triplet for span in rewards.spans if not isinstance(span.style, str) and span.style.color
    }
    assert (0, 114, 178) in {tuple(c) for c in colours if c is not None}


def test_cli_plots_off_when_piped_or_no_plots_and_on_when_forced() -> None:
    path = str(TRL / "lr_too_low")
    piped = runner.invoke(app, ["check", path]).stdout  # CliRunner's stdout is not a TTY
    off = runner.invoke(app, ["check", path, "--no-plots"]).stdout
    forced = runner.invoke(app, ["check", path, "--plots"]).stdout
    assert not has_chart(piped) and not has_chart(off) and "DPO101" in piped
    assert piped == off == render_text(api.check([TRL / "lr_too_low"]))
    assert has_chart(forced) and "loss · ✗ DPO101 45–400" in forced


def test_cli_plots_go_into_an_output_file_only_when_forced(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    runner.invoke(app, ["check", str(TRL / "overfit"), "-o", str(out)])
    assert not has_chart(out.read_text(encoding="utf-8"))
    runner.invoke(app, ["check", str(TRL / "overfit"), "-o", str(out), "--plots"])
    text = out.read_text(encoding="utf-8")
    assert has_chart(text) and "DPO103" in text and "\x1b" not in text


# ---------------------------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------------------------

BETAS = [TRL / "beta_0.01", TRL / "beta_1.0"]


def test_compare_final_values_and_codes_through_the_api() -> None:
    raw = compare(BETAS)
    norm = compare(BETAS, normalize_beta=True)
    assert [rr.run.name for rr in raw.runs] == ["beta_0.01", "beta_1.0"]
    assert [rr.beta_used for rr in raw.runs] == [0.01, 1.0]
    for rr in raw.runs:
        margins = rr.curves[("train", "margins")].end
        assert raw.final(rr, "margins") == pytest.approx(margins)
        assert norm.final(rr.run.name, "margins") == pytest.approx(margins / rr.beta_used)
        assert norm.final(rr.run.name, "loss") == pytest.approx(raw.final(rr, "loss"))  # only rewards scale
        assert norm.final(rr.run.name, "accuracy") == pytest.approx(raw.final(rr, "accuracy"))
    table = {row.label: row.values for row in norm.table()}
    assert list(table) == [
        "loss",
        "rewards/margins ÷ β (log-ratio, nats)",
        "rewards/accuracies",
        "rewards/chosen ÷ β (log-ratio, nats)",
        "rewards/rejected ÷ β (log-ratio, nats)",
        "eval/loss",
        "eval/rewards/margins ÷ β (log-ratio, nats)",
        "eval/rewards/accuracies",
        "eval/rewards/chosen ÷ β (log-ratio, nats)",
        "eval/rewards/rejected ÷ β (log-ratio, nats)",
        "β",
        "findings",
    ]
    # each metric cell carries the check report's verdict mark for that row
    marks = {row.label: row.marks for row in norm.table()}
    assert marks["loss"] == tuple(metric_rows(rr)[0].mark for rr in norm.runs)
    assert table["findings"] == tuple(", ".join(Comparison.codes(rr)) or "none" for rr in norm.runs)
    assert table["β"] == (0.01, 1.0)
    # at β = 0.01 the raw margin looks ~20× smaller than at β = 1, as log-ratios it is the larger one
    assert raw.final("beta_0.01", "margins") < raw.final("beta_1.0", "margins")
    assert norm.final("beta_0.01", "margins") > norm.final("beta_1.0", "margins")


def test_compare_codes_of_broken_runs() -> None:
    c = compare([TRL / "lr_too_low", TRL / "overfit"], metrics=["margins"])
    assert c.metrics == ("margins",)
    assert "DPO101" in c.codes(c.run("lr_too_low")) and "DPO103" in c.codes(c.run("overfit"))
    assert {row.label: row.values for row in c.table()}["findings"][0].startswith("DPO101")


def test_compare_by_epoch_interpolates_the_logged_epoch() -> None:
    c = compare([TRL / "overfit", TRL / "healthy"], x="epoch", metrics=["loss"])
    overfit = c.run("overfit")
    curve = c.curve(overfit, "loss")
    epoch = overfit.run.series("epoch")
    assert curve.index.max() == pytest.approx(epoch.iloc[-1])
    assert curve.index.is_monotonic_increasing
    evals = c.curve(overfit, "loss", "eval")  # eval logs no epoch of its own: placed by the train epoch
    assert evals.index.max() <= epoch.iloc[-1] + 1e-9
    assert steps_to_epochs(overfit, np.array([0.0]))[0] == 0.0


def test_compare_errors() -> None:
    with pytest.raises(DpoDoctorError, match="unknown metric"):
        compare(BETAS, metrics=["margin"])
    no_epoch = diagnose_run(make_run(curves(n=20)))
    with pytest.raises(DpoDoctorError, match="does not log epoch"):
        steps_to_epochs(no_epoch, np.array([1.0]))


def test_compare_figure_overlays_runs_with_their_codes() -> None:
    c = compare([TRL / "lr_too_low", TRL / "healthy"], normalize_beta=True)
    fig = comparison_figure(c)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(SEED_METRICS)
    texts = figure_texts(fig)
    assert any(t.startswith("lr_too_low (DPO101") for t in texts)
    assert "healthy (no findings)" in texts
    assert any("÷ β (log-ratio" in ax.get_ylabel() for ax in visible)


def test_cli_compare_prints_the_table_and_writes_the_png(tmp_path: Path) -> None:
    args = ["compare", *map(str, BETAS), "--normalize-beta", "--plot-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for label in ("beta_0.01", "beta_1.0", "rewards/margins ÷ β", "rewards/accuracies", "findings", "β"):
        assert label in out
    assert not has_chart(out)  # piped: no charts unless forced
    width, height = png_size((tmp_path / "compare.png").read_bytes())
    assert width > 1000 and height > 600
    forced = runner.invoke(app, ["compare", *map(str, BETAS), "--plots", "--metric", "margins", "--x", "epoch"])
    assert forced.exit_code == 0 and has_chart(forced.stdout) and "⠒⠒ beta_0.01" in forced.stdout


def test_cli_compare_rows_are_the_check_reports_rows() -> None:
    """compare prints, per run, the end value and the verdict mark of the same row of `check`'s table (eval rows
    too), so the two commands cannot disagree about where a curve ended or whether it is healthy."""
    runs = [TRL / "lr_too_low", TRL / "healthy"]
    result = runner.invoke(app, ["compare", *map(str, runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    report = api.check(runs, fail_on="never")
    for label in ("loss", "eval/rewards/margins"):
        [line] = [ln for ln in lines if ln.split("  ")[0].strip() == label]
        expected = [next(r for r in metric_rows(rr) if r.label == label) for rr in report.runs]
        assert expected[0].mark == ("✗" if label == "loss" else "✓")  # lr_too_low: DPO101 on the train loss
        assert line.split()[1:] == [part for row in expected for part in (row.end, row.mark)], line


def test_cli_compare_usage_errors() -> None:
    result = runner.invoke(app, ["compare", str(TRL / "healthy"), "--metric", "nope"])
    assert result.exit_code == 2 and "unknown metric" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# --format html
# ---------------------------------------------------------------------------------------------------------------


class Collect(HTMLParser):
    """Tags, attributes and text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> Collect:
    parser = Collect()
    parser.feed(document)
    parser.close()
    return parser


def assert_self_contained(doc: Collect) -> None:
    for tag, key, value in doc.attrs:
        if key in ("src", "href", "xlink:href", "action", "data", "srcset"):
            assert not (value or "").strip().lower().startswith(("http:", "https:", "//")), (tag, key, value)
    assert not {"script", "link", "iframe", "object", "embed"} & set(doc.tags)
    styles = "".join(doc.text)
    assert "@import" not in styles and "url(" not in styles


@pytest.mark.slow  # an SVG figure per fixture run
def test_html_report_has_every_run_finding_and_figure(sweep: Report) -> None:
    assert "html" in FORMATS
    document = render(sweep, "html")
    doc = parse(document)
    text = " ".join(doc.text)
    for rr in sweep.runs:
        assert rr.run.name in text
        for f in rr.findings:
            assert f.code in text
    assert doc.tags.count("svg") == len(sweep.runs)
    assert document.startswith("<!DOCTYPE html>") and "<?xml" not in document
    assert_self_contained(doc)


def test_html_is_deterministic() -> None:
    report = api.check([TRL / "overfit"])
    assert render_html(report) == render_html(api.check([TRL / "overfit"]))


def test_html_escapes_hostile_log_text() -> None:
    rr = diagnose_run(make_run(curves(), name=HOSTILE_NAME + "\x1b[31mred"))
    document = render_html(Report(runs=[rr], problems=["<img src=http://x/y onerror=alert(1)>: unreadable"]))
    doc = parse(document)
    assert "script" not in doc.tags and "img" not in doc.tags
    assert "<script>" not in document and "&lt;script&gt;" in document
    assert HOSTILE_NAME + "red" in " ".join(doc.text)  # shown as written, escapes stripped
    assert "\x1b" not in document
    assert_self_contained(doc)


def test_cli_format_html_writes_one_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["check", str(TRL / "lr_too_low"), "-f", "html", "-o", str(out)])
    assert result.exit_code == 1 and result.stdout == ""
    document = out.read_text(encoding="utf-8")
    assert "DPO101" in document and "<svg" in document


def test_html_opens_in_headless_chromium(sweep: Report, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it on CI)")
    report = tmp_path / "report.html"
    report.write_text(render(Report(runs=[run_report(sweep, "lr_too_low"), run_report(sweep, "overfit")]), "html"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "shot.png"
    url = report.as_uri()
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shot.exists(), "chromium wrote no screenshot"
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10, "the screenshot is blank"
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert "lr_too_low" in dom and "overfit" in dom and "DPO101" in dom and "<svg" in dom
