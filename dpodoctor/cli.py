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
from dpodoctor.reporters.json import render_json
from dpodoctor.reporters.text import ReportView, render_text
from dpodoctor.rules import RULES, SECTIONS, parse_sections

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Read the logs a DPO training run wrote and say whether the run was healthy.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    text = "text"
    json = "json"


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
    format: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.text,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file; the summary line goes to stderr."),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at or above this severity.")
    ] = FailOn.error,
    beta: Annotated[
        float | None, typer.Option("--beta", help="The DPO β of the run(s), overriding what the logs say.")
    ] = None,
    select: Annotated[
        str | None, typer.Option("--select", help="Only these rule codes or prefixes, comma-separated.")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option("--ignore", help="Skip these rule codes or prefixes, comma-separated.")
    ] = None,
) -> None:
    """Check DPO training logs and report what is healthy and what went wrong."""
    try:
        report = api.check(
            paths or [Path(".")],
            beta=beta,
            fail_on=fail_on.value,
            select=_codes(select),
            ignore=_codes(ignore),
        )
    except DpoDoctorError as exc:
        raise _fail(str(exc)) from None
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in report.problems:
        stderr.print(Text(f"dpodoctor: error: {problem}", style="bold red"))
    if format is Format.json:
        document = render_json(report)
    else:
        color = output is None and sys.stdout.isatty()
        document = render_text(report, width=Console().width if color else 100, color=color)
    if output is not None:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"{output}: cannot write the report ({exc.strerror or exc})") from None
        stderr.print(ReportView(report).summary())
    else:
        sys.stdout.write(document)
        sys.stdout.flush()
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
