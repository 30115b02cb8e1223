"""The HTML report (``--format html``): one self-contained file with every run's table, findings and figure.

Why self-contained: it is kept as a CI artifact and opened days later, maybe offline, maybe from a sandboxed artifact
viewer, so it fetches nothing: the CSS is inline, the figures are inline SVG (drawn by
:mod:`dpodoctor.reporters.plots`, text in local fonts), and there is no script at all.

Why every log string goes through :func:`esc`: run names, paths and messages come from logs a stranger may have
written; :func:`common.clean` drops terminal escapes, then :func:`html.escape` makes ``<``, ``>``, ``&`` and quotes
inert, so a run called ``<script>`` is shown, not run. Text inside the figures is escaped by matplotlib's SVG writer.
"""

from __future__ import annotations

import html

from dpodoctor.report import Report
from dpodoctor.reporters.common import (
    MARK,
    PASS_MARK,
    SPAN_HEADER,
    against_legend,
    clean,
    details,
    metric_rows,
    span_legend,
    summary_line,
    title,
    where_text,
)
from dpodoctor.results import Finding, RunReport, Severity

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem;
     overflow-wrap: anywhere; }
.meta { color: #555; font-size: .9rem; margin: .2rem 0 .8rem; overflow-wrap: anywhere; }
.summary { font-weight: 600; padding: .5rem .8rem; border-radius: 4px; background: #eef7ee; }
.summary.failed { background: #fdecea; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
th { background: #f5f5f7; }
td.num { font-variant-numeric: tabular-nums; }
td.mark { text-align: center; }
.error { color: #c62828; } .warning { color: #b26a00; } .info { color: #1565c0; } .ok { color: #2e7d32; }
.finding { border-left: 4px solid #999; padding: .3rem .8rem; margin: .7rem 0; background: #fafafa; }
.finding.error { border-color: #c62828; } .finding.warning { border-color: #ef6c00; }
.finding.info { border-color: #1565c0; }
.finding h3 { font-size: 1rem; margin: 0 0 .3rem; }
.finding p, .finding ul { color: #1d1d1f; margin: .2rem 0; }
.dim { color: #666; }
figure { margin: 1rem 0; }
figure svg { width: 100%; height: auto; }
nav ul { columns: 2; padding-left: 1.2rem; }
footer { margin-top: 3rem; color: #888; font-size: .8rem; }
"""

_CLASS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "info"}
_ROW_CLASS = {"pass": "ok", "not_logged": "dim", "against": "warning"}


def esc(text: object) -> str:
    """Log text as HTML: terminal escapes and unsafe characters removed, then HTML-escaped (quotes too)."""
    return html.escape(clean(text), quote=True)


def _finding(f: Finding) -> str:
    cls = _CLASS[f.severity]
    items = "".join(f"<li>{esc(line)}</li>" for line in details(f))
    return (
        f'<div class="finding {cls}"><h3 class="{cls}">{MARK[f.severity]} {esc(title(f.code))} '
        f'<span class="dim">({f.severity.value}) · {esc(where_text(f))}</span></h3>'
        f"<p>{esc(f.message)}</p>" + (f"<ul>{items}</ul>" if items else "") + "</div>"
    )


def _table(rr: RunReport) -> str:
    rows = []
    shown = metric_rows(rr)
    for row in shown:
        cls = _ROW_CLASS.get(row.verdict) or _CLASS[row.severity or Severity.WARNING]
        rows.append(
            f'<tr><td>{esc(row.label)}</td><td>{esc(row.healthy)}</td><td class="num">{esc(row.span)}</td>'
            f'<td class="mark {cls}">{row.mark}</td></tr>'
        )
    head = f"<tr><th>metric</th><th>healthy behaviour</th><th>{SPAN_HEADER}</th><th>verdict</th></tr>"
    legend = "<br>".join(esc(line) for line in (span_legend(shown), against_legend(shown)) if line)
    return f"<table>{head}{''.join(rows)}</table>" + (f'<p class="dim">{legend}</p>' if legend else "")


def _figure(rr: RunReport, *, plots: bool) -> str:
    if not plots:
        return ""
    from dpodoctor.reporters.plots import inline_svg, run_figure  # matplotlib loads only when a figure is drawn

    caption = (
        "Raw points faint, the smoothed curve over them, eval points as markers; dotted lines are the reference "
        "levels (ln 2, chance, 0); shaded spans are findings, labelled with their code."
    )
    return f'<figure>{inline_svg(run_figure(rr))}<figcaption class="dim">{caption}</figcaption></figure>'


def _run(rr: RunReport, index: int, *, plots: bool) -> str:
    run = rr.run
    worst = rr.worst()
    mark, cls = (PASS_MARK, "ok") if worst is None else (MARK[worst], _CLASS[worst])
    steps = f"{run.steps} steps" + (" (derived)" if run.steps_derived else "")
    parts = [
        f'<section id="run-{index}">',
        f'<h2><span class="{cls}">{mark}</span> {esc(run.name)}</h2>',
        f'<p class="meta">{esc(run.source)}: {esc(run.path)} · {steps} · ended: {esc(run.ended.value)} · '
        f"β = {rr.beta_used:g}, {esc(rr.beta_note)}</p>",
        _table(rr),
        *(_finding(f) for f in rr.findings),
    ]
    if not rr.findings:
        parts.append('<p class="ok">No findings: every rule that could run passed.</p>')
    if rr.skipped:
        skipped = ", ".join(f"{code} (needs {', '.join(m)})" for code, m in rr.skipped.items())
        parts.append(f'<p class="dim">Not checked, metric missing: {esc(skipped)}</p>')
    parts += [_figure(rr, plots=plots), "</section>"]
    return "\n".join(p for p in parts if p)


def render_html(report: Report, *, plots: bool = True) -> str:
    """The whole report as one HTML document, with a figure per run unless ``plots`` is False. Deterministic (no
    date, fixed SVG ids), so two reports of the same logs are byte-identical."""
    failed = report.exit_code != 0
    nav = ""
    if len(report.runs) > 1:
        items = []
        for i, rr in enumerate(report.runs, 1):
            worst = rr.worst()
            mark, cls = (PASS_MARK, "ok") if worst is None else (MARK[worst], _CLASS[worst])
            items.append(f'<li><a href="#run-{i}"><span class="{cls}">{mark}</span> {esc(rr.run.name)}</a></li>')
        nav = f"<nav><ul>{''.join(items)}</ul></nav>"
    problems = "".join(f'<li class="error">unreadable input: {esc(p)}</li>' for p in report.problems)
    warnings = "".join(f'<li class="warning">skipped: {esc(w)}</li>' for w in report.warnings)
    notes = f"<ul>{problems}{warnings}</ul>" if problems or warnings else ""
    body = "\n".join(_run(rr, i, plots=plots) for i, rr in enumerate(report.runs, 1))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>dpodoctor report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1>dpodoctor report</h1>\n"
        f'<p class="summary{" failed" if failed else ""}">{esc(summary_line(report))}</p>\n'
        f"{notes}{nav}\n{body}\n"
        "<footer>Written by dpodoctor check --format html.</footer>\n</body>\n</html>\n"
    )
