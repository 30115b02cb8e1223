"""Live diagnosis: follow a run while it trains, and say what goes wrong as soon as the logs show it.

Why: catching a failing DPO run at step 200 instead of after 10 GPU-hours is the biggest saving the tool can give.
Two ways in, one engine:

* ``dpodoctor watch PATH`` (:func:`watch`) follows the log files a trainer writes. :class:`Tailer` re-reads only
  what is new: TensorBoard event files and stdout logs are followed from a byte offset (records and lines appended
  since the last poll); any other format is read again whole, and only when its files changed size or time.
* :class:`dpodoctor.integrations.transformers.DPODoctorCallback` gets each logged dict inside the trainer and keeps
  it in a :class:`MetricBuffer`.

Either way the run becomes the same :class:`~dpodoctor.model.Run` the CLI builds and goes through the same
:func:`~dpodoctor.rules.diagnose_run`, so a live verdict and a later ``dpodoctor check`` of the same log agree.
:class:`LiveDiagnosis` remembers which findings were already announced, so each is said once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from dpodoctor.api import CheckSettings
from dpodoctor.checks import RULES, diagnose_run
from dpodoctor.discovery import RunSource, discover
from dpodoctor.errors import DpoDoctorError, NoMetricsError, ReadError
from dpodoctor.loading import Paths, as_paths, run_from_result
from dpodoctor.metrics import canonical, is_summary_key
from dpodoctor.model import Run, make_frame
from dpodoctor.readers import Follower, Reader, ReadResult, follower_for
from dpodoctor.readers.hparams import find_beta
from dpodoctor.report import Report
from dpodoctor.reporters.common import clean
from dpodoctor.reporters.text import STYLE, RunView, render_text
from dpodoctor.results import Finding, RunReport, trips_gate
from dpodoctor.settings import DiagnoseSettings

__all__ = [
    "QUIET_WHILE_LIVE",
    "LiveDiagnosis",
    "MetricBuffer",
    "Tailer",
    "WatchSettings",
    "announce",
    "retract",
    "warmup_steps",
    "watch",
]

# Findings about the log being incomplete rather than about training: a run in progress starts with too few points
# (DPO003), and a TensorBoard writer flushes one tag at a time, so the newest step often shows the loss before its
# margins (DPO002). Announcing or stopping on them while the run goes on would be noise; the final report keeps them.
QUIET_WHILE_LIVE = frozenset({"DPO002", "DPO003"})

# The live defaults `watch` and DPODoctorCallback share. A verdict acts (is announced, can stop a run) only once it
# has held in DEFAULT_CONFIRM consecutive diagnoses and the run is past WARMUP_FACTOR x its warm-up steps: while the
# learning rate still ramps up, a healthy loss cannot have left ln 2 yet (the callback's stop waits the same way).
DEFAULT_CONFIRM = 1
WARMUP_FACTOR = 2
# Not a judgement of a curve's shape, so no warm-up excuses it: a NaN loss is broken at any learning rate.
ACTS_DURING_WARMUP = frozenset({"DPO001"})


# --------------------------------------------------------------------------------------------------------------
# The run table, fed one logged dict at a time (the trainer callback)
# --------------------------------------------------------------------------------------------------------------


class MetricBuffer:
    """The run table as growable numpy columns, fed one logged dict at a time.

    Why not a list of dicts or a DataFrame per log: a trainer may log every step for 100k steps; appending to
    preallocated arrays (doubled when full) costs a few microseconds per value and keeps one float64 per point,
    and the tidy frame the rules read is built only when a diagnosis asks for it (:meth:`frame`, cached until the
    next point). Each raw key is mapped through :func:`~dpodoctor.metrics.canonical` once, not once per log.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._pair = np.empty(capacity, dtype=np.int32)  # index into self._pairs
        self._step = np.empty(capacity, dtype=np.int64)
        self._value = np.empty(capacity, dtype=np.float64)
        self._wall = np.empty(capacity, dtype=np.float64)
        self._n = 0
        self._pairs: list[tuple[str, str]] = []  # (split, metric) per code
        self._codes: dict[str, int | None] = {}  # raw key -> pair code; None for end-of-run summary keys
        self.summary: dict[str, float] = {}
        self.logs = 0  # dicts fed (each log step is one, whatever it holds)
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._n

    def _code(self, key: str) -> int | None:
        if is_summary_key(key):
            return None
        mapped = canonical(key)
        if mapped is None:  # pragma: no cover - summary keys are caught above
            return None
        self._pairs.append(mapped)
        return len(self._pairs) - 1

    def _grow(self) -> None:
        size = max(2 * len(self._value), 16)
        for name in ("_pair", "_step", "_value", "_wall"):
            old = getattr(self, name)
            new = np.empty(size, dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add_logs(self, logs: Mapping[str, Any], step: int, wall_time: float | None = None) -> int:
        """Append the numeric values of one logged dict at ``step``; returns how many became points.

        Strings that hold a number count (some loggers format values); booleans, text and nested values do not.
        """
        self.logs += 1
        wall = math.nan if wall_time is None else float(wall_time)
        added = 0
        for raw_key, raw in logs.items():
            value = _number(raw)
            if value is None:
                continue
            key = _key(raw_key)
            if key is None:
                continue
            code = self._codes.get(key, -1)
            if code == -1:
                code = self._codes[key] = self._code(key)
            if code is None:
                self.summary[key.split("/", 1)[1] if key.startswith("train/") else key] = value
                continue
            if self._n == len(self._value):
                self._grow()
            i = self._n
            self._pair[i], self._step[i], self._value[i], self._wall[i] = code, step, value, wall
            self._n += 1
            added += 1
        if added:
            self._frame = None
        return added

    def frame(self) -> pd.DataFrame:
        """The canonical tidy frame of every point so far (built once per change)."""
        if self._frame is None:
            n = self._n
            codes = self._pair[:n]
            splits = np.array([s for s, _ in self._pairs] or [""], dtype=object)[codes]
            metrics = np.array([m for _, m in self._pairs] or [""], dtype=object)[codes]
            self._frame = make_frame(splits, metrics, self._step[:n], self._value[:n], self._wall[:n])
        return self._frame


def _key(raw: Any) -> str | None:
    """A logged dict's key as text: a trainer's keys are strings, but a user's ``log()`` call can pass anything
    hashable (``{1: 0.5}``, ``{b"loss": 0.5}``, ``{(1, 2): 3.0}``). Bytes are decoded, anything else is shown as
    ``str()`` would; a key whose ``str()`` itself fails is left out (there is no name to give its value)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("utf-8", errors="replace")
    try:
        text = str(raw)
    except Exception:  # a user object whose __str__ raises: nothing to call the metric
        return None
    return text if isinstance(text, str) else None


def _number(raw: Any) -> float | None:
    """The float of a logged value, or None when it is not a number.

    Never raises: it runs inside the user's training loop. An integer beyond float range (``10**400``) is ±inf, as
    the string ``"1e400"`` is; anything whose conversion fails is not a number.
    """
    try:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int):
            try:
                return float(raw)
            except OverflowError:
                return math.inf if raw > 0 else -math.inf
        if isinstance(raw, float | np.integer | np.floating):
            return float(raw)
        if isinstance(raw, str):
            return float(raw)
        item = getattr(raw, "item", None)  # a 0-d tensor or array
        if callable(item) and getattr(raw, "ndim", 1) == 0:
            value = item()
            return None if value is raw else _number(value)
    except Exception:  # whatever a user's tensor or number type raises while converting: not a number
        return None
    return None


# --------------------------------------------------------------------------------------------------------------
# The diagnosis of a run in progress, and what is new in it
# --------------------------------------------------------------------------------------------------------------


def _positive(value: Any) -> float:
    """A config value as a positive finite number, else 0 (configs are untrusted text: bools and strings are 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return 0.0
    return float(value)


def warmup_steps(run: Run) -> int:
    """The run's learning-rate warm-up in steps, from the trainer arguments its log states (0 when unknown).

    As ``TrainingArguments.get_warmup_steps`` computes it: ``warmup_steps`` when at least 1, else a ratio
    (``warmup_ratio``, or transformers 5's ``warmup_steps`` below 1) of the planned steps: ``max_steps``, else
    ``num_train_epochs`` times the steps per epoch the logged ``epoch`` metric shows.
    """
    config = run.config or {}
    steps = _positive(config.get("warmup_steps"))
    if steps >= 1:
        return int(steps)
    ratio = steps or _positive(config.get("warmup_ratio"))
    if not ratio:
        return 0
    planned = _positive(config.get("max_steps"))
    if not planned and (epochs := _positive(config.get("num_train_epochs"))):
        epoch = run.series("epoch", "train") if run.has("epoch", "train") else pd.Series(dtype=float)
        epoch = epoch[np.isfinite(epoch.to_numpy(dtype=float))]
        if len(epoch) and epoch.iloc[-1] > 0:
            planned = epochs * float(epoch.index[-1]) / float(epoch.iloc[-1])
    return math.ceil(ratio * planned) if planned else 0


@dataclass
class LiveDiagnosis:
    """Diagnoses runs as they grow and tells which findings are new since the last time.

    Why a class: "each finding is announced once" needs memory across diagnoses: a finding that holds is not said
    again at every look.

    Why ``confirm``: a run in progress is judged on a prefix of its curves, and a prefix can look wrong for a while
    and then recover (a DPO+SFT run's accuracy sits at chance before the SFT term settles). A finding is announced,
    and can stop a run, only once it has held in ``confirm`` consecutive diagnoses; a poll that brings no new data
    counts as holding, because the verdict on unchanged data stands.

    Why the warm-up: before ``WARMUP_FACTOR`` x the warm-up steps the run's log states (:func:`warmup_steps`), a
    finding is not confirmed (except ``ACTS_DURING_WARMUP``): the learning rate has not had time to act.

    Why :meth:`retracted`: an announced finding that no longer holds (a slow start that caught up) must be taken
    back in the same place it was said, or the log and the final report contradict each other. Once retracted, a
    finding that comes back is announced again.
    """

    beta: float | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    params: dict[str, dict[str, float]] = field(default_factory=dict)
    confirm: int = DEFAULT_CONFIRM
    announced: set[tuple[str, str]] = field(default_factory=set)  # (run name, code)
    streaks: dict[tuple[str, str], int] = field(default_factory=dict)  # (run name, code) -> consecutive diagnoses

    @classmethod
    def from_settings(cls, settings: DiagnoseSettings, confirm: int = DEFAULT_CONFIRM) -> LiveDiagnosis:
        """The engine of a watch whose settings were resolved as a check resolves them."""
        select = None if settings.select is None else list(settings.select)
        ignore = None if settings.ignore is None else list(settings.ignore)
        return cls(settings.beta, select, ignore, settings.rule_params(), confirm=confirm)

    @property
    def settings(self) -> DiagnoseSettings:
        """The diagnosis settings of this engine, as the rules receive them."""
        return DiagnoseSettings(beta=self.beta, select=self.select, ignore=self.ignore, params=self.params)

    def diagnose(self, run: Run) -> tuple[RunReport, list[Finding]]:
        """The run's report and its confirmed findings not announced before (QUIET_WHILE_LIVE ones never are)."""
        report = diagnose_run(run, settings=self.settings, live=True)
        present = {(run.name, f.code) for f in report.findings}
        for key in [k for k in self.streaks if k[0] == run.name and k not in present]:
            del self.streaks[key]
        for key in present:
            self.streaks[key] = self.streaks.get(key, 0) + 1
        return report, self._new(run.name, report)

    def hold(self, name: str, report: RunReport) -> list[Finding]:
        """No new data for this run: its findings hold one more time. Returns those newly confirmed."""
        for f in report.findings:
            key = (name, f.code)
            self.streaks[key] = self.streaks.get(key, 0) + 1
        return self._new(name, report)

    def confirmed(self, name: str, report: RunReport) -> list[Finding]:
        """The findings of this report that have held long enough to act on (and the run is past its warm-up)."""
        warm = report.run.steps >= WARMUP_FACTOR * warmup_steps(report.run)
        return [
            f
            for f in report.findings
            if self.streaks.get((name, f.code), 0) >= self.confirm and (warm or f.code in ACTS_DURING_WARMUP)
        ]

    def retracted(self, name: str, report: RunReport) -> list[str]:
        """Codes announced for this run that its latest report no longer holds; they are forgotten, so one that
        comes back is announced again."""
        present = {f.code for f in report.findings}
        gone = sorted(code for run, code in self.announced if run == name and code not in present)
        self.announced.difference_update((name, code) for code in gone)
        return gone

    def _new(self, name: str, report: RunReport) -> list[Finding]:
        new = []
        for finding in self.confirmed(name, report):
            key = (name, finding.code)
            if finding.code in QUIET_WHILE_LIVE or key in self.announced:
                continue
            self.announced.add(key)
            new.append(finding)
        return new


def fails_gate(findings: Iterable[Finding], fail_on: str) -> Finding | None:
    """The most severe finding at or above ``fail_on`` (ignoring QUIET_WHILE_LIVE), or None."""
    hits = [f for f in findings if trips_gate(f.severity, fail_on) and f.code not in QUIET_WHILE_LIVE]
    return max(hits, key=lambda f: f.severity.rank, default=None)


def announce(finding: Finding, step: int, run: str | None = None) -> str:
    """The one line that announces a new finding: where it was seen, the code, and the message."""
    where = f" in {run}" if run else ""
    return f"step {step}: {finding.code} {finding.name} [{finding.severity.value}]{where}: {finding.message}"


def retract(code: str, step: int, run: str | None = None) -> str:
    """The one line that takes an announced finding back: the run's curves no longer show it."""
    where = f" in {run}" if run else ""
    name = f" {RULES[code].name}" if code in RULES else ""
    return f"step {step}: {code}{name} no longer holds{where}"


# --------------------------------------------------------------------------------------------------------------
# Following log files
# --------------------------------------------------------------------------------------------------------------


def _follower(reader: Reader) -> Follower:
    """The reader's own follower (``follow()``: reads only what is new), else one that re-reads the whole run when
    one of its files changes."""
    return follower_for(reader)


@dataclass
class Poll:
    """What one look at the files found: the runs so far, the names of those that changed, and what failed."""

    runs: list[Run]
    changed: set[str]
    problems: list[str]
    warnings: list[str]
    waiting: list[str]  # paths that do not exist yet, or hold no metrics yet


class Tailer:
    """Follows every run under some paths and keeps their :class:`Run` up to date, reading only what is new.

    Discovery runs on every poll (cheap: names and sizes), so a log that appears after the watch started (the
    trainer creates its output folder late, a resumed run adds an event file) is picked up.
    """

    def __init__(self, paths: Paths, metric_map: dict[str, str] | None = None) -> None:
        self.paths = as_paths(paths)
        self.metric_map = metric_map
        self._followers: dict[tuple[Path, str], Follower] = {}
        self._runs: dict[tuple[Path, str], list[Run]] = {}
        self._beta: dict[Path, tuple[float, str] | None] = {}

    def poll(self) -> Poll:
        warnings: list[str] = []
        problems: list[str] = []
        waiting = [str(p) for p in self.paths if not p.exists()]
        sources: list[RunSource] = []
        present = [p for p in self.paths if p.exists()]
        if present:
            try:
                sources = discover(present, warnings)
            except DpoDoctorError as exc:  # a path vanished between the check and the walk, or is unreadable
                problems.append(str(exc))
        changed: set[str] = set()
        seen: set[tuple[Path, str]] = set()
        for source in sources:
            key = (source.root, source.reader.name)
            seen.add(key)
            follower = self._followers.get(key)
            if follower is None:
                follower = self._followers[key] = _follower(source.reader)
            try:
                if not follower.update(source.files) and key in self._runs:
                    continue
                results = follower.results()
            except NoMetricsError:
                waiting.append(str(source.root))
                self._runs.pop(key, None)
                continue
            except ReadError as exc:
                problems.append(str(exc))
                self._runs.pop(key, None)
                continue
            runs = [self._run(source, result) for result in results]
            self._runs[key] = runs
            changed.update(run.name for run in runs)
        for key in list(self._runs):
            if key not in seen:  # its files are gone
                del self._runs[key]
        runs = [run for key in sorted(self._runs, key=lambda k: (str(k[0]), k[1])) for run in self._runs[key]]
        return Poll(runs, changed, problems, warnings, waiting)

    def _run(self, source: RunSource, result: ReadResult) -> Run:
        """The Run that ``dpodoctor check`` would build from this result (:func:`dpodoctor.loading.run_from_result`)."""
        return run_from_result(source, result, self.metric_map, self._find_beta)

    def _find_beta(self, source: RunSource) -> tuple[float, str] | None:
        # Looked up again until found: the file that states β may be written after the first metrics.
        found = self._beta.get(source.root)
        if found is None:
            found = self._beta[source.root] = find_beta(source.root, source.others, source.files)
        return found


# --------------------------------------------------------------------------------------------------------------
# dpodoctor watch
# --------------------------------------------------------------------------------------------------------------


# Resolved exactly as `check` resolves them (one place: dpodoctor.api.CheckSettings), so a watch gates like a check.
WatchSettings = CheckSettings


@dataclass
class WatchResult:
    """How a watch ended: the last report, and why it stopped."""

    report: Report
    reason: str  # "fail-fast", "interrupted", "timeout"
    stopped_by: Finding | None = None


def _status(poll: Poll | None, paths: list[Path], interval: float, ticks: int) -> Text:
    text = Text(style="dim")
    where = ", ".join(str(p) for p in paths)
    text.append(f"watching {where} every {interval:g}s · update {ticks} at {time.strftime('%H:%M:%S')}")
    if poll is not None:
        for path in poll.waiting:
            text.append(f"\nwaiting for metrics under {path}")
    text.append(" · Ctrl-C stops with the report")
    return text


def _view(reports: list[RunReport], poll: Poll | None, status: Text) -> RenderableType:
    parts: list[RenderableType] = [RunView(r) for r in reports]
    for problem in poll.problems if poll is not None else ():
        parts.append(Text(f"error: {clean(problem)}", style="bold red"))
    parts.append(status)
    return Group(*parts)


def watch(
    paths: Paths,
    *,
    interval: float = 10.0,
    fail_fast: bool = False,
    fail_on: str | None = None,
    beta: float | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    config: Path | str | None = None,
    use_config: bool = True,
    metric_map: dict[str, str] | None = None,
    timeout: float | None = None,
    confirm: int = DEFAULT_CONFIRM,
    console: Console | None = None,
    live: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Follow the runs under ``paths`` until Ctrl-C, ``timeout`` seconds, or (with ``fail_fast``) the first finding
    at or above ``fail_on``; print each new finding once with its step, and return the last report.

    ``live``: draw the refreshing rich view (default: when ``console`` is a terminal). Without it only the finding
    lines are printed, which is what a CI log or a job script's output wants.
    """
    paths = as_paths(paths)
    if not interval > 0:
        raise DpoDoctorError(f"--interval must be a positive number of seconds, not {interval}")
    settings = WatchSettings.resolve(
        paths, fail_on=fail_on, beta=beta, select=select, ignore=ignore, config=config, use_config=use_config
    )
    console = console or Console(highlight=False)
    use_live = console.is_terminal if live is None else live
    tailer = Tailer(paths, metric_map)
    engine = LiveDiagnosis.from_settings(settings.diagnosis, confirm=confirm)
    reports: dict[str, RunReport] = {}
    poll: Poll | None = None
    ticks = 0
    started = time.monotonic()
    reason = "interrupted"
    stopped_by: Finding | None = None
    display = Live(console=console, auto_refresh=False, transient=True) if use_live else None

    def emit(line: Text) -> None:
        # soft_wrap: a finding stays one line whatever the width, so a job log and grep see all of it
        (display.console if display is not None else console).print(line, soft_wrap=True)

    try:
        if display is not None:
            display.start()
        while True:
            poll = tailer.poll()
            ticks += 1
            for run in poll.runs:
                if run.name not in poll.changed and run.name in reports:
                    report, new = reports[run.name], engine.hold(run.name, reports[run.name])
                else:
                    report, new = engine.diagnose(run)
                    for code in engine.retracted(run.name, report):
                        emit(Text(retract(code, run.steps, run.name if len(poll.runs) > 1 else None), style="green"))
                reports[run.name] = report
                for finding in new:
                    line = Text(announce(finding, run.steps, run.name if len(poll.runs) > 1 else None))
                    line.stylize(STYLE[finding.severity], 0, len(line.plain.split(":", 1)[0]) + 1)
                    emit(line)
            names = {run.name for run in poll.runs}
            for name in list(reports):
                if name not in names:
                    del reports[name]
            current = [reports[run.name] for run in poll.runs]
            if display is not None:
                display.update(_view(current, poll, _status(poll, paths, interval, ticks)), refresh=True)
            if fail_fast:
                stopped_by = fails_gate(
                    (f for run, r in zip(poll.runs, current, strict=True) for f in engine.confirmed(run.name, r)),
                    settings.fail_on,
                )
                if stopped_by is not None:
                    reason = "fail-fast"
                    break
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                reason = "timeout"
                break
            sleep(interval if left is None else min(interval, left))
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        if display is not None:
            display.stop()
    final = Report(
        runs=[reports[run.name] for run in poll.runs if run.name in reports] if poll is not None else [],
        fail_on=settings.fail_on,
        problems=list(poll.problems) if poll is not None else [],
        warnings=list(poll.warnings) if poll is not None else [],
    )
    return WatchResult(final, reason, stopped_by)


def final_text(result: WatchResult, *, width: int = 100, color: bool = False) -> str:
    """The report a watch ends with (the text report of ``check``), and why it stopped."""
    why = {
        "fail-fast": "stopped: --fail-fast",
        "interrupted": "stopped: interrupted",
        "timeout": "stopped: --timeout reached",
    }[result.reason]
    if result.stopped_by is not None:
        why += f" ({result.stopped_by.code} {result.stopped_by.name} is at or above --fail-on {result.report.fail_on})"
    return render_text(result.report, width=width, color=color) + why + "\n"
