"""Figures for files and the HTML report (matplotlib): one 2×3 figure per run, and one overlay figure per comparison.

Why matplotlib's object API (:class:`matplotlib.figure.Figure` plus a canvas) and never pyplot: pyplot keeps a global
registry of open figures and picks a GUI backend, which a CLI, a CI job and a test suite must not depend on; a
Figure built here is independent of every other one and is garbage-collected like any object. matplotlib is imported
inside the functions, so ``import dpodoctor`` and a ``check`` without plots stay fast.

Why the figure-building functions return the Figure: tests (and scripts) can inspect what was drawn, such as the
finding codes on a panel, before anything is written.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from dpodoctor.report import Report
from dpodoctor.reporters.common import clean
from dpodoctor.reporters.curves import (
    COLORS,
    DEFAULT_COLOR,
    EVAL_COLOR,
    FIGURE_PANELS,
    REFERENCES,
    RUN_COLORS,
    RUN_STYLES,
    SEVERITY_COLORS,
    STYLES,
    Panel,
    Reference,
    findings_by_panel,
    folded_by_panel,
    safe_filename,
    smoothed,
    span,
    y_floor,
)
from dpodoctor.results import Finding, RunReport
from dpodoctor.vocabulary import METRIC_LABELS, points

if TYPE_CHECKING:  # imported for annotations only: matplotlib loads when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dpodoctor.compare import Comparison

PlotFormat = Literal["png", "svg"]
PLOT_FORMATS: tuple[str, ...] = ("png", "svg")
DPI = 100
RUN_FIGSIZE = (15.0, 8.5)  # inches: 1500×850 pixels at DPI, readable on a laptop screen and in a CI artifact
# Fixed so that the same run gives byte-identical SVG (an HTML report can be diffed, a test can compare two renders).
_NO_METADATA: dict[str, str | None] = {"Date": None, "Creator": None}


def figure_text(text: object) -> str:
    """Log text made safe for a one-line matplotlib label: cleaned of terminal escapes, line breaks and tabs made
    spaces (no font has a glyph for them), and ``$`` escaped, so a run called ``$x_1$`` is printed as written rather
    than parsed as mathtext (a malformed one would fail the whole render)."""
    return " ".join(clean(text).replace("$", r"\$").split())


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _metric_color(metric: str) -> str:
    return COLORS.get(metric.removeprefix("logps_"), DEFAULT_COLOR)


def _short(metric: str) -> str:
    return metric.removeprefix("logps_")


def _draw_reference(ax: Axes, reference: Reference | None) -> None:
    """The seed's reference line, labelled at the right edge (not in the legend: it is context, not data)."""
    if reference is None:
        return
    ax.axhline(reference.value, color="0.35", linestyle=":", linewidth=1.1, zorder=1)
    ax.annotate(
        reference.label,
        xy=(1.0, reference.value),
        xycoords=("axes fraction", "data"),
        xytext=(-3, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=7.5,
        color="0.3",
    )


def _draw_spans(ax: Axes, findings: Sequence[Finding]) -> None:
    """Each finding's step range shaded in its severity's colour and labelled with its code at the top, stacked
    when several findings share a panel; a finding without steps is labelled at the left edge."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for i, f in enumerate(findings):
        color = SEVERITY_COLORS[f.severity]
        where = span(f)
        y = 0.97 - 0.1 * i
        label_style: dict[str, Any] = {
            "fontsize": 8.5,
            "fontweight": "bold",
            "color": color,
            "va": "top",
            "ha": "left",
            "bbox": {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": color, "alpha": 0.85},
            "zorder": 5,
        }
        text = f"{f.code} {f.severity.value}"
        if where is None:
            ax.text(0.01, y, text, transform=ax.transAxes, **label_style)
            continue
        first, last = where
        if first == last:
            ax.axvline(first, color=color, linewidth=1.5, alpha=0.7, zorder=1)
        else:
            ax.axvspan(first, last, color=color, alpha=0.12, linewidth=0, zorder=0)
            ax.axvline(first, color=color, linewidth=0.8, alpha=0.5, zorder=1)
        ax.text(first, y, f" {text}", transform=trans, **label_style)


def _draw_metric(
    ax: Axes,
    series: dict[str, pd.Series],
    *,
    color: str,
    eval_color: str,
    labels: tuple[str | None, str | None, str | None],
    style: tuple[str, str | None] = ("-", None),
    direct_label: str | None = None,
) -> bool:
    """One metric: raw train points faint, the smoothed train curve over them, eval points as markers. ``labels``
    name the raw, smoothed and eval artists in the legend (None: left out). ``style``: the smoothed curve's line
    style and marker (a few markers along it), so curves sharing a panel differ in print and without colour;
    ``direct_label``: written at the curve's right end. Returns whether anything was drawn."""
    raw_label, train_label, eval_label = (label or "_nolegend_" for label in labels)
    train, evals = series.get("train"), series.get("eval")
    drawn = False
    linestyle, marker = style
    if train is not None and len(train):
        x = train.index.to_numpy(dtype=float)
        ax.plot(x, train.to_numpy(), color=color, alpha=0.3, linewidth=0.7, label=raw_label)
        curve = smoothed(train)
        cx, cy = curve.index.to_numpy(dtype=float), curve.to_numpy()
        ax.plot(
            cx,
            cy,
            color=color,
            linewidth=1.8,
            linestyle=linestyle,
            marker=marker,
            markevery=max(1, len(cx) // 8),
            markersize=5,
            label=train_label,
        )
        if direct_label and len(cx) and np.isfinite(cy[-1]):
            ax.annotate(
                direct_label,
                (cx[-1], cy[-1]),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=7.5,
                color=color,
                va="center",
                annotation_clip=False,
            )
        drawn = True
    if evals is not None and len(evals):
        ax.plot(
            evals.index.to_numpy(dtype=float),
            evals.to_numpy(),
            color=eval_color,
            linestyle="--",
            linewidth=0.9,
            marker=marker or "o",
            markersize=4,
            markerfacecolor="white",
            markeredgewidth=1.3,
            label=eval_label,
            zorder=4,
        )
        drawn = True
    return drawn


def _not_logged(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}\nnot logged", transform=ax.transAxes, ha="center", va="center", color="0.45")
    ax.set_yticks([])


def _floor_ylim(ax: Axes, floor: float) -> None:
    """Widen the y range to at least ``floor`` around its middle (see :func:`curves.y_floor`)."""
    lo, hi = ax.get_ylim()
    if floor > 0 and hi - lo < floor:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - floor / 2, mid + floor / 2)


def _run_panel(
    ax: Axes, rr: RunReport, panel: Panel, findings: Sequence[Finding], folded: Sequence[str], *, explain: bool
) -> None:
    """One panel of a run's figure. ``explain``: name raw/smoothed/eval in the legend (once per figure, on the first
    single-metric panel); the two-metric panels always name chosen and rejected."""
    run = rr.run
    multi = len(panel.metrics) > 1
    drawn = False
    for metric in panel.metrics:
        series = {split: points(run, metric, split) for split in ("train", "eval")}
        color = _metric_color(metric)
        if multi:
            labels: tuple[str | None, str | None, str | None] = (None, _short(metric), f"{_short(metric)} (eval)")
        else:
            labels = ("train (raw)", "train (smoothed)", "eval") if explain else (None, None, None)
        drawn |= _draw_metric(
            ax,
            series,
            color=color,
            eval_color=color if multi else EVAL_COLOR,
            labels=labels,
            style=STYLES.get(metric.removeprefix("logps_"), ("-", None)) if multi else ("-", None),
            direct_label=_short(metric) if multi else None,
        )
    notes = [f.code for f in findings] + list(dict.fromkeys(folded))
    ax.set_title(panel.title + (f"   —   {'  '.join(notes)}" if notes else ""), fontsize=10.5, loc="left")
    ax.grid(True, color="0.92", linewidth=0.6)
    ax.set_xlim(0, max(1, run.steps))
    if not drawn:
        _not_logged(ax, " / ".join(METRIC_LABELS.get(m, m) for m in panel.metrics))
        _draw_spans(ax, findings)
        return
    _draw_reference(ax, panel.reference)
    ax.ticklabel_format(axis="y", useOffset=False)  # "0.69315", never "1e-5 + 6.931e-1"
    if panel.key == "accuracy":
        ax.set_ylim(-0.03, 1.03)  # a fraction: always on its whole range, so 0.5 looks like chance
    elif panel.key == "grad_norm":
        values = points(run, "grad_norm", "train").to_numpy()
        if values.size and values.min() > 0 and values.max() / max(np.median(values), 1e-12) > 50:
            ax.set_yscale("log")  # one exploding step would flatten everything else on a linear axis
            ax.set_title(ax.get_title(loc="left") + "   (log scale)", fontsize=10.5, loc="left")
    else:
        _floor_ylim(ax, y_floor(panel.key, rr.beta_used))
    _draw_spans(ax, findings)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", framealpha=0.85, ncol=2 if multi else 1)


def _verdict(rr: RunReport) -> str:
    if not rr.findings:
        return "no findings"
    if len(rr.findings) > 3:  # the names would run off the figure: codes only
        return figure_text(f"{len(rr.findings)} findings: " + ", ".join(f.code for f in rr.findings))
    return figure_text("  ·  ".join(f"{f.code} {f.name} ({f.severity.value})" for f in rr.findings))


def run_figure(rr: RunReport, *, panels: Sequence[Panel] = FIGURE_PANELS) -> Figure:
    """A 2×3 figure of one run: loss, margins, accuracy, chosen/rejected rewards, log-probabilities and gradient
    norm, each with its reference line, and each finding's step span shaded and labelled on its metric's panel
    (the loss panel for metrics without one). Not saved: see :func:`save_figure`."""
    fig = _new_figure(RUN_FIGSIZE)
    rows, cols = 2, (len(panels) + 1) // 2
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    grouped = findings_by_panel(rr.findings, panels)
    folded = folded_by_panel(rr.findings, panels)
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
        _run_panel(ax, rr, panel, grouped[panel.key], folded[panel.key], explain=i == 0)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel("step")
    run = rr.run
    steps = f"{run.steps} steps" + (" (derived)" if run.steps_derived else "")
    fig.suptitle(
        f"{figure_text(run.name)}   —   {figure_text(run.source)}, {steps}, β = {rr.beta_used:g}\n{_verdict(rr)}",
        fontsize=12,
    )
    return fig


def comparison_figure(comparison: Comparison) -> Figure:
    """One panel per compared metric, every run overlaid in its own colour (smoothed train line over faint raw
    points, eval as markers), aligned by step or epoch; rewards divided by β when the comparison normalises."""
    metrics = comparison.metrics
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = _new_figure((5.2 * cols, 3.9 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        drawn = False
        for i, (rr, label) in enumerate(zip(comparison.runs, comparison.labels, strict=True)):
            series = {split: comparison.curve(rr, metric, split) for split in ("train", "eval")}
            color = RUN_COLORS[i % len(RUN_COLORS)]
            codes = ", ".join(comparison.codes(rr)) or "no findings"
            name = figure_text(f"{label} ({codes})")
            has_train = len(series["train"]) > 0
            labels = (None, name, None if has_train else f"{name}, eval")
            style = RUN_STYLES[i % len(RUN_STYLES)]
            drawn |= _draw_metric(
                ax,
                series,
                color=color,
                eval_color=color,
                labels=labels,
                style=style,
                direct_label=figure_text(label),
            )
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10.5, loc="left")
        ax.set_xlabel(comparison.x)
        ax.set_xlim(left=0)
        ax.set_ylabel(comparison.axis_label(metric), fontsize=8.5)
        ax.grid(True, color="0.92", linewidth=0.6)
        if not drawn:
            _not_logged(ax, METRIC_LABELS.get(metric, metric))
            continue
        _draw_reference(ax, REFERENCES.get(metric))
        ax.ticklabel_format(axis="y", useOffset=False)
        if metric == "accuracy":
            ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    how = "β-normalised rewards (log-ratios), " if comparison.normalize_beta else ""
    fig.suptitle(
        f"compare: {len(comparison.runs)} runs, {how}aligned by {comparison.x}\n"
        "thick line: train (smoothed), a line style and marker per run · faint line: train (raw) · hollow markers: "
        "eval",
        fontsize=12,
    )
    return fig


def figure_bytes(fig: Figure, fmt: PlotFormat = "png") -> bytes:
    """The figure encoded as PNG or SVG, deterministically (no date in the metadata, fixed SVG ids)."""
    import matplotlib

    buffer = io.BytesIO()
    if fmt == "png":
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    elif fmt == "svg":
        from matplotlib.backends.backend_svg import FigureCanvasSVG

        # Fixed salt and text as text: the same report gives the same SVG bytes.
        with matplotlib.rc_context({"svg.hashsalt": "dpodoctor", "svg.fonttype": "none"}):
            FigureCanvasSVG(fig).print_svg(buffer, metadata=_NO_METADATA)
    else:
        raise ValueError(f"unknown plot format {fmt!r}; one of {', '.join(PLOT_FORMATS)}")
    return buffer.getvalue()


def inline_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to embed in HTML: the XML declaration and DOCTYPE dropped (an HTML parser
    would show them as text), nothing fetched from elsewhere (text is drawn with local fonts)."""
    svg = figure_bytes(fig, "svg").decode("utf-8")
    return svg[svg.index("<svg") :]


def save_figure(fig: Figure, path: Path, *, fmt: PlotFormat = "png") -> Path:
    """Write the figure to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_bytes(fig, fmt))
    return path


def plot_path(directory: Path, name: str, *, fmt: PlotFormat = "png", taken: set[str] | None = None) -> Path:
    """Where a run's plot goes: ``directory/<safe name>.<fmt>``, checked to be inside ``directory`` even after
    symlinks are resolved, so a hostile run name can never write elsewhere."""
    path = directory / f"{safe_filename(name, taken)}.{fmt}"
    if path.resolve().parent != directory.resolve():
        raise ValueError(f"refusing to write a plot outside {directory}: {path}")
    return path


def write_run_plots(report: Report, directory: Path, *, fmt: PlotFormat = "png") -> list[Path]:
    """One figure file per run of the report in ``directory`` (created if needed); returns the paths written.
    Each figure is dropped once written, so a sweep of hundreds of runs never holds them all in memory."""
    directory.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    written = []
    for rr in report.runs:
        path = plot_path(directory, rr.run.name, fmt=fmt, taken=taken)
        written.append(save_figure(run_figure(rr), path, fmt=fmt))
    return written
