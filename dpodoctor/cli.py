"""The command line: thin typer commands over :mod:`dpodoctor.api`.

The CLI parses arguments, calls the same functions a Python user calls, and prints. Exit codes: 0 nothing at or
above --fail-on, 1 findings at or above it, 2 bad usage, unreadable input or no run found.
"""

from __future__ import annotations

import os
import sys
import traceback
import types
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from typer.core import TyperCommand, TyperGroup

from dpodoctor._version import __version__
from dpodoctor.errors import DpoDoctorError

if TYPE_CHECKING:
    from dpodoctor.report import Report

# Each command imports what it needs inside its body: `rules`, `explain`, `--help` and `--version` never import the
# readers, the API or pandas, and `check` imports the reporter of its format, not the comparison or the live view.
# rich is imported by what draws with it (help panels, tables, the text report), not for a line on stderr (_say).


class _FlagsTakeNoValue:
    """Help without a ``<bool>`` type beside flags (typer shows one for every flag, --help included): a flag takes
    no value, and a shown placeholder invites ``--exit-zero true``, whose ``true`` is then read as a path.

    Also gives each parameter the cheap coercion of :class:`_PlainValues` (typer versions that coerce through
    pydantic only)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
                param._runtime_param = _PlainValues(param)
        return params


class _PlainValues:
    """Coerces the values that need no conversion without building typer's pydantic adapter.

    Why: typer 0.2x builds a pydantic TypeAdapter for every parameter it processes, even one not given on the
    command line, before coercing its value; importing pydantic for that costs 0.1–0.2 s, half of what `dpodoctor
    rules` may take. A value that is absent (None), already of the parameter's type (a default), the exact value
    of a choice, or strings for a ``str``, ``Path``, ``list[str]`` or ``list[Path]`` parameter come out as typer's
    own coercion would give them; anything else (a number, a choice in another case) goes to typer's coercion,
    built on first need.
    """

    def __init__(self, param: Any) -> None:
        self._param = param
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        annotation = self._param.type_descriptor.annotation
        if multi and typing.get_origin(annotation) is list and typing.get_args(annotation)[0] in (str, Path):
            item = typing.get_args(annotation)[0]
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return [item(v) for v in value]
        kind = _plain_type(annotation)
        if not multi and kind is not None:
            if isinstance(value, kind) and (kind is not int or not isinstance(value, bool)):
                return value
            if isinstance(value, str) and kind is Path:
                return Path(value)
            if isinstance(value, str) and issubclass(kind, Enum) and value in kind._value2member_map_:
                return kind._value2member_map_[value]  # the exact value of a choice (--format json)
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self._param.type_descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def _plain_type(annotation: Any) -> type | None:
    """``X`` for an annotation ``X`` or ``X | None`` where X is a plain class, else None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    return annotation if isinstance(annotation, type) and typing.get_origin(annotation) is None else None


class _DeferredClass(type):
    """A class that stands for a class of rich and imports its module only when it is called or read.

    Why: typer's help and error panels live in ``typer.rich_utils``, which imports ``rich.markdown`` (markdown-it,
    ~0.1 s) and ``rich.traceback`` (rich.pretty, rich.syntax, pygments, ~0.05 s) at its top for two things
    dpodoctor's help never uses: Markdown help text (the app's markup mode is rich) and typer's pretty tracebacks
    (:func:`main` catches every exception first). That is more than half of what ``dpodoctor --help`` took. A class
    (not a function) because ``rich_utils`` writes ``Markdown | Text`` in its signatures.
    """

    _load: Callable[[], type]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._load()(*args, **kwargs)

    def __getattr__(cls, attribute: str) -> Any:
        return getattr(cls._load(), attribute)


def _rich_markdown() -> type:
    from rich.markdown import Markdown

    return Markdown


def _rich_traceback() -> type:
    from rich.traceback import Traceback

    return Traceback


# The classes typer.rich_utils imports from modules that only Markdown help and pretty tracebacks need:
# module -> (class name, what imports the real class).
_HELP_PANEL_DEFERRED: dict[str, tuple[str, Callable[[], type]]] = {
    "rich.markdown": ("Markdown", _rich_markdown),
    "rich.traceback": ("Traceback", _rich_traceback),
}


def _import_help_panels() -> None:
    """Import ``typer.rich_utils`` with :data:`_HELP_PANEL_DEFERRED` standing in for their modules while it loads.

    The stand-in modules are in ``sys.modules`` only during that import, so any later ``import rich.markdown`` gets
    the real module; the help text is rich_utils' own, unchanged (tests/test_cli_startup.py compares it).
    """
    if "typer.rich_utils" in sys.modules:
        return
    stubs: dict[str, types.ModuleType] = {}
    for home, (name, load) in _HELP_PANEL_DEFERRED.items():
        if home not in sys.modules:
            stubs[home] = types.ModuleType(home)
            setattr(stubs[home], name, _DeferredClass(name, (), {"_load": staticmethod(load)}))
    sys.modules.update(stubs)
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for home, stub in stubs.items():
            if sys.modules.get(home) is stub:
                del sys.modules[home]


class Command(_FlagsTakeNoValue, TyperCommand):
    pass


class Group(_FlagsTakeNoValue, TyperGroup):
    pass


app = typer.Typer(
    cls=Group,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell): commands, options, choices, paths, and
    # rule codes and names (explain, --select, --ignore) complete.
    add_completion=True,
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
    html = "html"


class PlotFormat(str, Enum):
    """File formats of the figures --plot-dir writes (matplotlib)."""

    png = "png"
    svg = "svg"


class XAxis(str, Enum):
    """What `compare` aligns runs by."""

    step = "step"
    epoch = "epoch"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


# Options that check and watch share, declared once.
BetaOption = Annotated[
    float | None, typer.Option("--beta", help="The DPO β of the run(s), overriding what the logs say.")
]


def _complete_rules(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of rule codes and names (the last item of a comma-separated list), with the rule's summary."""
    from dpodoctor.checks import RULES

    head, sep, last = incomplete.rpartition(",")
    prefix = head + sep
    out = []
    for rule in RULES.values():
        for word in (rule.code, rule.name):
            if word.lower().startswith(last.lower()):
                out.append((prefix + word, rule.summary))
    return out


SelectOption = Annotated[
    str | None,
    typer.Option(
        "--select",
        help="Only these rules: codes, prefixes or names, comma-separated (DPO1,loss-collapse).",
        autocompletion=_complete_rules,
    ),
]
IgnoreOption = Annotated[
    str | None,
    typer.Option(
        "--ignore",
        help="Skip these rules: codes, prefixes or names, comma-separated (DPO104,margin-slow).",
        autocompletion=_complete_rules,
    ),
]
NoConfigOption = Annotated[bool, typer.Option("--no-config", help="Ignore configuration files.")]


def _codes(value: str | None) -> list[str] | None:
    """The comma-separated selectors of --select/--ignore; the API resolves codes, prefixes and rule names."""
    if not value:
        return None
    codes = [c.strip() for c in value.split(",") if c.strip()]
    return codes or None


def _version(value: bool) -> None:
    if value:
        print(f"dpodoctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Read the logs a DPO training run wrote and say whether the run was healthy."""


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


def _names(values: list[str] | None) -> list[str] | None:
    """Names from repeated and/or comma-separated options (``--metric margins,loss --metric accuracy``)."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


def _write_plots(report: Report, plot_dir: Path, fmt: str) -> None:
    """--plot-dir: one figure per run; matplotlib is imported only here, so a check without it stays fast."""
    from dpodoctor.reporters.plots import write_run_plots

    try:
        written = write_run_plots(report, plot_dir, fmt=fmt)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise _fail(f"{plot_dir}: cannot write the plots ({exc})") from None
    _say(f"dpodoctor: wrote {len(written)} plot(s) to {plot_dir}", style="dim")


def progress_wanted() -> bool:
    """Whether a progress bar is for a person (sweep.progress_wanted; imported when a check runs)."""
    from dpodoctor.sweep import progress_wanted as wanted

    return wanted()


def _one_line(text: object) -> str:
    """Text for a one-line message on the terminal: it often names a log's file or key, so terminal escapes are
    removed and line breaks folded (a name holding ``\n::error::`` must not start a line a CI runner obeys)."""
    from dpodoctor.reporters.common import clean

    return " ".join(clean(text).splitlines())


# Formats the zero-width space is not put in: github escapes its own data; JSON and JSON Lines cannot start a line
# with "::" (a JSON string holds no raw line break, so each line starts with indentation then a token or a quote),
# and scanning a 600-run document (20 MB, ':' in every line) for nothing took 20 ms of a 0.55 s warm check.
_NO_FORGED_LINES: Final = frozenset({Format.github, Format.json, Format.jsonl})


def _defuse_workflow_commands(document: str) -> str:
    """A zero-width space before any line that starts with ``::`` (after spaces).

    Why: GitHub Actions runs every stdout line of a step that starts so as a workflow command, and a report can put
    log text at a line start (a wrapped run name, a line break inside an HTML or XML text node). No report line
    starts with ``::`` on purpose except in the github format, which escapes its data and is left alone; the space
    is invisible, so the report reads the same.
    """
    if "::" not in document:
        return document
    return "\n".join("\u200b" + line if line.lstrip().startswith("::") else line for line in document.split("\n"))


_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


def _no_flag_values(paths: list[Path] | None) -> None:
    """Refuse ``--exit-zero true``: flags take no value, so the word lands among the paths. Named as what it
    is instead of "true: no such file or directory" (a file that exists under that name is read as usual)."""
    for path in paths or ():
        if str(path).lower() in _BOOLEAN_WORDS and not path.exists():
            raise _fail(
                f"{path}: no such file or directory; flags such as --exit-zero take no value, write the flag alone"
            )


def _fail(message: str) -> typer.Exit:
    # soft_wrap: the error stays one line whatever the terminal width, so CI logs and grep see all of it.
    _say(f"dpodoctor: error: {_one_line(message)}", style="bold red")
    return typer.Exit(2)


def _say(line: str, style: str = "") -> None:
    """One line on stderr, as ``Console(stderr=True, highlight=False, soft_wrap=True).print(Text(line, style))``
    prints it, but without importing rich (~25 ms) when that console would print the bare text.

    soft_wrap: the line stays one line whatever the terminal width, so CI logs and grep see all of it. rich prints
    the text unchanged, styles dropped, when stderr is not a terminal by its rules (``TTY_COMPATIBLE``,
    ``FORCE_COLOR``, ``isatty``; Jupyter and IDLE aside) and the line holds no tab (expanded) nor line break; any
    other case goes through rich itself. tests/test_cli.py compares both ways on the lines the CLI prints.
    """
    if _stderr_prints_bare() and "\t" not in line and "\n" not in line and "\r" not in line:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        return
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(line, style=style))


def _stderr_prints_bare() -> bool:
    """Whether rich's console on stderr would be no terminal (and so print text without any escape code)."""
    import builtins

    if hasattr(builtins, "get_ipython") or getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return False  # rich's own rules for notebooks and IDLE: leave them to rich
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "0"
    if os.environ.get("FORCE_COLOR") is not None:
        return os.environ["FORCE_COLOR"] == ""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


def _write_stdout(document: str) -> None:
    """Write the report to stdout; a failed write is the environment's doing, not a bug in dpodoctor.

    A closed pipe (``| head`` read what it wanted) is quiet: the verdict still decides the exit code. Any other
    write error (a full disk behind ``> file``) is one line and exit 2, like unreadable input. Either way stdout is
    pointed at the null device, so the interpreter's last flush of what is still buffered cannot fail again.
    """
    try:
        sys.stdout.write(document)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        raise _fail(f"cannot write the report to stdout ({exc.strerror or exc})") from None


def _silence_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@app.command(cls=Command)
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
            "appends Markdown to $GITHUB_STEP_SUMMARY), junit (JUnit XML for GitLab, Jenkins), html (one "
            "self-contained page with every run's table, findings and figure, for CI artifacts).",
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
    beta: BetaOption = None,
    select: SelectOption = None,
    ignore: IgnoreOption = None,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero",
            help="Report, but exit 0 even with findings at or above --fail-on (bad input still exits 2).",
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
    no_config: NoConfigOption = False,
    metric_map: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-map",
            help="Map a logged key onto a canonical metric, as key=canonical (e.g. my_margin=margins). Repeatable; "
            "also comma-separated.",
        ),
    ] = None,
    plots: Annotated[
        bool | None,
        typer.Option(
            "--plots/--no-plots",
            help="Charts of loss, margins, accuracy and chosen/rejected under each run of the text report, with "
            "each finding's steps marked. Default: on when stdout is a terminal, off when piped or with --output.",
        ),
    ] = None,
    plot_dir: Annotated[
        Path | None,
        typer.Option(
            "--plot-dir",
            help="Also write one figure per run to this folder (created if needed), named after the run: loss, "
            "margins, accuracy, rewards, logps and grad_norm, findings shaded.",
        ),
    ] = None,
    plot_format: Annotated[
        PlotFormat, typer.Option("--plot-format", help="File format of the --plot-dir figures.")
    ] = PlotFormat.png,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Read and diagnose runs in up to this many processes. Default: the CPUs the machine's load leaves "
            "idle (small inputs always use one).",
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Do not use the cache of parsed runs ($DPODOCTOR_CACHE_DIR, else the user cache folder); "
            "read every log again.",
        ),
    ] = False,
) -> None:
    """Check DPO training logs and report what is healthy and what went wrong."""
    from dpodoctor import api
    from dpodoctor.reporters import render

    _no_flag_values(paths)
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
            jobs=jobs,
            cache=not no_cache,
            # a progress bar only for people: text/markdown reports, stderr a terminal, not CI
            progress=format in (Format.text, Format.markdown) and progress_wanted(),
        )
    except DpoDoctorError as exc:
        raise _fail(str(exc)) from None
    for problem in report.problems:
        _say(f"dpodoctor: error: {_one_line(problem)}", style="bold red")
    if plot_dir is not None:
        _write_plots(report, plot_dir, plot_format.value)
    if format is Format.text:
        from rich.console import Console

        from dpodoctor.reporters.text import render_text

        color = output is None and sys.stdout.isatty()
        charts = plots if plots is not None else color
        document = render_text(report, width=Console().width if color else 100, color=color, plots=charts)
    else:
        document = render(report, format.value)
    if format not in _NO_FORGED_LINES:
        document = _defuse_workflow_commands(document)
    if output is not None:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"{output}: cannot write the report ({exc.strerror or exc})") from None
        from dpodoctor.reporters.common import summary_line, summary_style

        _say(summary_line(report), style=summary_style(report))
    else:
        _write_stdout(document)
    if format is Format.github:
        from dpodoctor.reporters.github import append_step_summary

        try:
            append_step_summary(report)
        except OSError as exc:  # the annotations are out and the gate's verdict stands; say why the summary is not
            _say(f"dpodoctor: warning: cannot append to $GITHUB_STEP_SUMMARY ({exc})", style="yellow")
    if exit_zero and report.gate_failed:
        _say("dpodoctor: --exit-zero: exiting 0 although findings are at or above --fail-on")
    raise typer.Exit(report.exit_code)


@app.command(cls=Command)
def compare(
    paths: Annotated[
        list[Path],
        typer.Argument(help="The runs to compare: log files or run folders (a sweep folder adds each of its runs)."),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Metrics to overlay (canonical names; repeatable or comma-separated). Default: loss, margins, "
            "accuracy, chosen, rejected.",
        ),
    ] = None,
    normalize_beta: Annotated[
        bool,
        typer.Option(
            "--normalize-beta",
            help="Divide rewards (margins, chosen, rejected) by each run's β, so runs trained with different β "
            "compare as log-ratios.",
        ),
    ] = False,
    x: Annotated[
        XAxis, typer.Option("--x", help="Align the runs by step, or by epoch (from each run's logged epoch).")
    ] = XAxis.step,
    plot_dir: Annotated[
        Path | None,
        typer.Option("--plot-dir", help="Also write the overlay figure to DIR/compare.png (created if needed)."),
    ] = None,
    plot_format: Annotated[
        PlotFormat, typer.Option("--plot-format", help="File format of the --plot-dir figure.")
    ] = PlotFormat.png,
    plots: Annotated[
        bool | None,
        typer.Option(
            "--plots/--no-plots",
            help="Overlay charts in the terminal. Default: on when stdout is a terminal.",
        ),
    ] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="The DPO β of every run, overriding what the logs say.")
    ] = None,
) -> None:
    """Compare runs side by side: where each metric ended, each run's findings, and the curves overlaid."""
    from rich.console import Console

    from dpodoctor.compare import compare as compare_runs
    from dpodoctor.reporters.comparison import ComparisonView

    _no_flag_values(paths)
    try:
        comparison = compare_runs(paths, metrics=_names(metric), x=x.value, normalize_beta=normalize_beta, beta=beta)
    except DpoDoctorError as exc:
        raise _fail(str(exc)) from None
    for problem in comparison.problems:
        _say(f"dpodoctor: error: {_one_line(problem)}", style="bold red")
    tty = sys.stdout.isatty()
    console = Console(highlight=False, width=None if tty else 100)
    console.print(ComparisonView(comparison, plots=plots if plots is not None else tty))
    if plot_dir is not None:
        from dpodoctor.reporters.plots import comparison_figure, plot_path, save_figure

        try:
            plot_dir.mkdir(parents=True, exist_ok=True)
            path = plot_path(plot_dir, "compare", fmt=plot_format.value)
            save_figure(comparison_figure(comparison), path, fmt=plot_format.value)
        except (OSError, ValueError) as exc:
            raise _fail(f"{plot_dir}: cannot write the plot ({exc})") from None
        _say(f"dpodoctor: wrote {path}", style="dim")
    raise typer.Exit(2 if comparison.problems else 0)


@app.command(cls=Command)
def watch(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="The log files or run folder(s) a training run is writing. Default: ."),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between looks at the logs.")] = 10.0,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast",
            help="Exit 1 as soon as a finding at or above --fail-on appears (a job script can then kill the trainer).",
        ),
    ] = False,
    fail_on: Annotated[
        FailOn | None,
        typer.Option("--fail-on", help="The gate: exit 1 for findings at or above this severity. Default: error."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop watching after this many seconds (exit per the gate).")
    ] = None,
    confirm: Annotated[
        int,
        typer.Option(
            "--confirm",
            min=1,
            help="Announce (and fail fast on) a finding only once it has held in this many consecutive looks: "
            "early curves can look wrong and recover. Default: 1, as the DPODoctorCallback. Either way nothing is "
            "announced before twice the warm-up steps the run's arguments state (a NaN excepted), and a finding "
            "that no longer holds is taken back with a 'no longer holds' line.",
        ),
    ] = 1,
    beta: BetaOption = None,
    select: SelectOption = None,
    ignore: IgnoreOption = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Read settings from this dpodoctor.toml or pyproject.toml.")
    ] = None,
    no_config: NoConfigOption = False,
    metric_map: Annotated[
        list[str] | None,
        typer.Option("--metric-map", help="Map a logged key onto a canonical metric, as key=canonical. Repeatable."),
    ] = None,
) -> None:
    """Follow a run while it trains: a live view of its curves and findings, each new finding printed once.

    Only what is new is read on each look (appended event records, new stdout lines). Ctrl-C stops with the last
    report and the usual exit code (0, or 1 for findings at or above --fail-on).
    """
    from dpodoctor import live  # the live view is only imported by this command

    _no_flag_values(paths)

    try:
        result = live.watch(
            paths or [Path(".")],
            interval=interval,
            fail_fast=fail_fast,
            fail_on=fail_on.value if fail_on is not None else None,
            beta=beta,
            select=_codes(select),
            ignore=_codes(ignore),
            config=config,
            use_config=not no_config,
            metric_map=_metric_map(metric_map),
            timeout=timeout,
            confirm=confirm,
        )
    except DpoDoctorError as exc:
        raise _fail(str(exc)) from None
    if not result.report.runs and not result.report.problems:
        where = ", ".join(str(p) for p in paths or [Path(".")])
        raise _fail(f"{where}: no training run found while watching (no DPO metrics were logged)")
    from rich.console import Console

    color = sys.stdout.isatty()
    _write_stdout(live.final_text(result, width=Console().width if color else 100, color=color))
    raise typer.Exit(result.report.exit_code)


@app.command("rules", cls=Command)
def list_rules() -> None:
    """List every rule: code, name, default severity and what it checks."""
    from rich.console import Console
    from rich.table import Table

    from dpodoctor.checks import RULES

    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    for column in ("code", "name", "severity", "what it checks"):
        table.add_column(column, no_wrap=column != "what it checks")
    for r in RULES.values():
        table.add_row(r.code, r.name, r.severity.value, r.summary)
    # Rule metadata is plain text, not markup: no emoji codes to look up (rich's table of them takes ~17 ms to load)
    Console(highlight=False, markup=False, emoji=False, width=max(Console().width, 120)).print(table)


@app.command(cls=Command)
def explain(
    code: Annotated[
        str,
        typer.Argument(help="A rule code or name, such as DPO103 or loss-collapse.", autocompletion=_complete_rules),
    ],
) -> None:
    """Show a rule's page: what it detects, why it matters, likely causes, what to try, an example."""
    from rich.console import Console
    from rich.text import Text

    from dpodoctor.rules import SECTIONS, parse_sections
    from dpodoctor.selectors import find_rule

    r = find_rule(code)
    if r is None:
        raise _fail(f"unknown rule code or name {code!r} (see `dpodoctor rules`)")
    console = Console(highlight=False)
    console.print(Text(f"{r.code} {r.name} ({r.severity.value})", style="bold"))
    console.print(Text(r.doc.splitlines()[0]))
    sections = parse_sections(r.doc)
    for heading in SECTIONS:
        if heading in sections:
            console.print(Text(f"\n{heading}", style="bold"))
            console.print(Text(sections[heading]))
    if r.params:
        console.print(Text("\nThresholds", style="bold"))
        for name, default in r.params.items():
            console.print(Text(f"{name} = {default:g}"))
        where = f"[tool.dpodoctor.rules.{r.code}] (pyproject.toml) or [rules.{r.code}] (dpodoctor.toml)"
        console.print(Text(f"Set them in {where}."))


def main() -> None:
    """Entry point of the ``dpodoctor`` command.

    Why a catch-all here: anything but a DpoDoctorError reaching this point is a bug in dpodoctor, and a crashed
    training run (with odd, half-written logs) is exactly when the tool is run, so a bug must not bury the output
    under a traceback. It prints one line naming the error and exits 2, like unreadable input, so a CI gate fails
    rather than passes. ``--debug`` (anywhere on the command line) prints the traceback as well.
    """
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    if len(sys.argv) < 2 or "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        _import_help_panels()  # a help page is coming (no arguments shows the help too)
    try:
        app()
    except Exception as exc:
        if debug:
            traceback.print_exc()
        # One line whatever the exception says: its text can hold log data (a key, a path) with line breaks.
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        detail = detail if len(detail) <= 500 else detail[:500] + "…"
        hint = "" if debug else " (run with --debug for the traceback)"
        print(f"dpodoctor: internal error: {detail}{hint}", file=sys.stderr)
        sys.exit(2)
