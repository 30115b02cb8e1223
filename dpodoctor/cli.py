"""The command line: thin typer commands over :mod:`dpodoctor.api`.

The CLI parses arguments, calls the same functions a Python user calls, and prints. Exit codes: 0 nothing at or
above --fail-on, 1 findings at or above it, 2 bad usage, unreadable input or no run found.
"""

from __future__ import annotations

import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from dpodoctor import api
from dpodoctor.errors import DpoDoctorError
from dpodoctor.reporters import render
from dpodoctor.reporters.github import append_step_summary
from dpodoctor.reporters.text import ReportView, render_text
from dpodoctor.rules import RULES, SECTIONS, parse_sections

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Read the logs a DPO training run wrote and say whether the run was healthy.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    """The report formats: one for people, the rest for machines and CI systems (see dpodoctor.reporters)."""

    text = "text"
    json = "json"
    jsonl = "jsonl"
    markdown = "markdown"
    github = "github"
    junit = "junit"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


def _codes(value: str | None) -> list[str] | None:
    if not value:
        return None
    codes = [c.strip().upper() for c in value.split(",") if c.strip()]
    return codes or None


def _metric_map(values: list[str] | None) -> dict[str, str] | None:
    """``key=canonical`` pairs from repeated or comma-separated --metric-map options."""
    pairs: dict[str, str] = {}
    for value in values or []:
        for item in value.split(","):
            if not item.strip():
                continue
            key, sep, target = item.partition("=")
            if not sep or not key.strip() or not target.strip():
                raise _fail(f"--metric-map takes key=canonical, not {item!r}")
            pairs[key.strip()] = target.strip()
    return pairs or None


def _fail(message: str) -> typer.Exit:
    # soft_wrap: the error stays one line whatever the terminal width, so CI logs and grep see all of it.
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"dpodoctor: error: {message}", style="bold red"))
    return typer.Exit(2)


@app.command()
def check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Log files or folders (a run folder or a whole sweep). Default: ."),
    ] = None,
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="Report format: text (for people), json (schema: dpodoctor/schema/report-v1.schema.json), jsonl "
            "(one finding per line), markdown (PR comments, step summaries), github (workflow annotations; also "
            "appends Markdown to $GITHUB_STEP_SUMMARY), junit (JUnit XML for GitLab, Jenkins).",
        ),
    ] = Format.text,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file; the summary line goes to stderr."),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option("--fail-on", help="Exit 1 when a finding is at or above this severity. Default: error."),
    ] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="The DPO β of the run(s), overriding what the logs say.")
    ] = None,
    select: Annotated[
        str | None, typer.Option("--select", help="Only these rule codes or prefixes, comma-separated.")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option("--ignore", help="Skip these rule codes or prefixes, comma-separated.")
    ] = None,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero", help="Report, but exit 0 even with findings at or above --fail-on (bad input still exits 2)."
        ),
    ] = False,
    require_metrics: Annotated[
        str | None,
        typer.Option(
            "--require-metrics",
            help="Exit 2 when a run does not log one of these metrics in train or eval (canonical names, "
            "comma-separated: loss,margins,accuracy,chosen,rejected,logps_chosen,...), so a gate cannot pass on "
            "missing data.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Read settings from this dpodoctor.toml or pyproject.toml instead of discovering one "
            "(from the checked path upward, then from the current directory).",
        ),
    ] = None,
    no_config: Annotated[bool, typer.Option("--no-config", help="Ignore configuration files.")] = False,
    metric_map: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-map",
            help="Map a logged key onto a canonical metric, as key=canonical (e.g. my_margin=margins). Repeatable; "
            "also comma-separated.",
        ),
    ] = None,
) -> None:
    """Check DPO training logs and report what is healthy and what went wrong."""
    try:
        report = api.check(
            paths or [Path(".")],
            beta=beta,
            fail_on=fail_on.value if fail_on is not None else None,
            select=_codes(select),
            ignore=_codes(ignore),
            config=config,
            use_config=not no_config,
            metric_map=_metric_map(metric_map),
            require_metrics=[m.strip() for m in (require_metrics or "").split(",") if m.strip()],
            exit_zero=exit_zero,
        )
    except DpoDoctorError as exc:
        raise _fail(str(exc)) from None
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in report.problems:
        stderr.print(Text(f"dpodoctor: error: {problem}", style="bold red"))
    if format is Format.text:
        color = output is None and sys.stdout.isatty()
        document = render_text(report, width=Console().width if color else 100, color=color)
    else:
        document = render(report, format.value)
    if output is not None:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"{output}: cannot write the report ({exc.strerror or exc})") from None
        stderr.print(ReportView(report).summary())
    else:
        sys.stdout.write(document)
        sys.stdout.flush()
    if format is Format.github:
        try:
            append_step_summary(report)
        except OSError as exc:  # the annotations are out and the gate's verdict stands; say why the summary is not
            stderr.print(Text(f"dpodoctor: warning: cannot append to $GITHUB_STEP_SUMMARY ({exc})", style="yellow"))
    if exit_zero and report.gate_failed:
        stderr.print(Text("dpodoctor: --exit-zero: exiting 0 although findings are at or above --fail-on"))
    raise typer.Exit(report.exit_code)


@app.command("rules")
def list_rules() -> None:
    """List every rule: code, name, default severity and what it checks."""
    console = Console(highlight=False)
    for r in RULES.values():
        console.print(Text(f"{r.code}  {r.name:<22} {r.severity.value:<8} {r.summary}"))


@app.command()
def explain(code: Annotated[str, typer.Argument(help="A rule code such as DPO101.")]) -> None:
    """Show a rule's page: what it detects, why it matters, likely causes, what to try, an example."""
    r = RULES.get(code.strip().upper())
    if r is None:
        raise _fail(f"unknown rule code {code!r} (see `dpodoctor rules`)")
    console = Console(highlight=False)
    console.print(Text(f"{r.code} {r.name} ({r.severity.value})", style="bold"))
    console.print(Text(r.doc.splitlines()[0]))
    sections = parse_sections(r.doc)
    for heading in SECTIONS:
        if heading in sections:
            console.print(Text(f"\n{heading}", style="bold"))
            console.print(Text(sections[heading]))


def main() -> None:
    """Entry point: any error that is not a DpoDoctorError is a bug; say so in one line, exit 2."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # the top-level catch the brief asks for: no traceback unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(
                f"dpodoctor: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                file=sys.stderr,
            )
        sys.exit(2)
