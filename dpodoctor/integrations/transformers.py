"""``DPODoctorCallback``: live diagnosis inside a transformers ``Trainer`` (TRL's ``DPOTrainer`` and any trainer that
logs the DPO metrics).

Why inside the trainer: that is where users already are, and it can act. Each ``on_log`` dict goes into the same
run table the CLI builds (:class:`dpodoctor.live.MetricBuffer`) and through the same rules, so the callback and a
later ``dpodoctor check`` of the run's logs agree. A new finding is logged once (logger ``"dpodoctor"``), and a
finding that stops holding is taken back with a line of its own ("step 125: DPO203 margin-slow no longer holds"), as
``dpodoctor watch`` does, so what the log leaves standing is what the final report says; with
``stop_on="error"`` the callback ends training when one appears, and says why. When training ends it writes
``dpodoctor-report.json`` and ``dpodoctor-report.md`` into ``args.output_dir``.

The contract: the callback never raises into the training loop. Whatever the trainer or the user logs (huge
integers, non-string keys, tensors that fail to convert), and whatever goes wrong inside dpodoctor, each event
handler catches it: the first internal error is logged with its traceback, and after :data:`MAX_INTERNAL_ERRORS`
of them the callback disables itself (said once) and training goes on unwatched. Training is stopped only by the
configured gate (``stop_on``), never by an error.

Usage::

    from dpodoctor.integrations.transformers import DPODoctorCallback

    trainer = DPOTrainer(model=model, args=DPOConfig(...), train_dataset=ds, processing_class=tok,
                         callbacks=[DPODoctorCallback(stop_on="error")])

transformers is an optional extra (``pip install 'dpodoctor[trl]'``): it is imported by this module only, never by
``import dpodoctor``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("dpodoctor.integrations.transformers needs transformers: pip install 'dpodoctor[trl]'") from exc

from dpodoctor.live import LiveDiagnosis, MetricBuffer, announce, fails_gate, retract
from dpodoctor.model import Ended, Run
from dpodoctor.report import Report
from dpodoctor.reporters import render
from dpodoctor.results import FAIL_ON_CHOICES, RunReport, Severity

__all__ = ["MAX_INTERNAL_ERRORS", "REPORT_JSON", "REPORT_MARKDOWN", "DPODoctorCallback"]

logger = logging.getLogger("dpodoctor")

REPORT_JSON = "dpodoctor-report.json"
REPORT_MARKDOWN = "dpodoctor-report.md"
# Internal errors after which the callback stops watching (a bug that repeats on every log would otherwise cost
# time and log noise on every step of a long run).
MAX_INTERNAL_ERRORS = 3

_LEVEL = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING, Severity.INFO: logging.INFO}


class DPODoctorCallback(TrainerCallback):
    """Diagnoses the run while it trains; optionally stops it; writes the reports at the end.

    Arguments:
        stop_on: ``"error"``, ``"warning"`` or ``"info"``: stop training when a finding at or above it appears.
            None (default) only reports. Stopping waits until twice the warmup steps have passed: while the learning
            rate is still ramping up, a healthy loss cannot have left ln 2 yet.
        check_every: diagnose every N logs. None (default) adapts: a diagnosis runs when the time budget it has
            earned covers its cost, the budget growing by ``max(min_budget, max_overhead × training time since the
            previous log)`` per log. In real training (seconds per step) that is every log for the first thousands
            of points; on a long or fast-logging run it spaces out, so a log step stays cheap (the rules' cost
            grows with the run: ~40 ms at 400 points, over a second at 10k).
        beta: DPO β; default ``args.beta`` (DPOConfig has it), else the rules' default (0.1, and they say so).
        select, ignore: rule codes or prefixes, as ``--select``/``--ignore``.
        params: per-rule thresholds, as ``[tool.dpodoctor.rules.DPO101]`` (``{"DPO101": {"tolerance": 0.03}}``).
        write_reports: write the JSON and Markdown reports into ``args.output_dir`` at the end of training.
        max_overhead, min_budget: the adaptive schedule's share of training time and floor per log (seconds).
    """

    def __init__(
        self,
        *,
        stop_on: str | None = None,
        check_every: int | None = None,
        beta: float | None = None,
        select: Iterable[str] | None = None,
        ignore: Iterable[str] | None = None,
        params: dict[str, dict[str, float]] | None = None,
        write_reports: bool = True,
        max_overhead: float = 0.02,
        min_budget: float = 0.001,
        confirm: int = 1,
    ) -> None:
        if stop_on is not None and stop_on not in FAIL_ON_CHOICES:
            raise ValueError(f"stop_on must be one of {', '.join(FAIL_ON_CHOICES)} or None, not {stop_on!r}")
        if check_every is not None and check_every < 1:
            raise ValueError(f"check_every must be a positive number of logs, not {check_every}")
        self.stop_on = stop_on
        self.check_every = check_every
        self.write_reports = write_reports
        self.max_overhead = max_overhead
        self.min_budget = min_budget
        self.buffer = MetricBuffer()
        self._engine = LiveDiagnosis(
            beta=beta,
            select=list(select) if select is not None else None,
            ignore=list(ignore) if ignore is not None else None,
            params=params or {},
            confirm=confirm,
        )
        self._user_beta = beta
        self._run_report: RunReport | None = None
        self._diagnosed_points = -1  # buffer length at the last diagnosis
        self._logs_since = 0
        self._credit = 0.0  # seconds of diagnosis the adaptive schedule has earned
        self._cost = 0.0  # what the last diagnosis took
        self._last_log_end: float | None = None
        self._name = "run"
        self._path = Path(".")
        self._beta: float | None = None
        self._beta_source: str | None = None
        self._ended = Ended.UNKNOWN
        self._notes: list[str] = []
        self.evaluations = 0  # diagnoses run so far (for tests and the curious)
        self.stopped_by: str | None = None  # "DPO101 loss-stuck-ln2" once the callback stopped training
        self.reports_written: list[Path] = []
        self.retractions: list[str] = []  # "step 125: DPO203 margin-slow no longer holds", as logged
        self.internal_errors: list[str] = []  # "on_log: OverflowError: ..." per internal error caught
        self.disabled = False  # True after MAX_INTERNAL_ERRORS: the callback no longer watches

    # ---------------------------------------------------------------------------------------------- trainer events

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        return self._guard("on_train_begin", control, lambda: self._train_begin(args))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        return self._guard("on_log", control, lambda: self._log(args, state, control, logs))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        return self._guard("on_train_end", control, lambda: self._train_end(args, state, control))

    def _guard(self, event: str, control: TrainerControl, handle: Callable[[], None]) -> TrainerControl:
        """Run one event's work; an exception is dpodoctor's problem, never the training's.

        Why ``Exception`` and not ``BaseException``: Ctrl-C and ``SystemExit`` belong to the user and pass through.
        """
        if self.disabled:
            return control
        try:
            handle()
        except Exception as exc:  # the contract: nothing raised here reaches the trainer
            self._internal_error(event, exc)
        return control

    def _internal_error(self, event: str, exc: Exception) -> None:
        try:
            detail = f"{type(exc).__name__}: {exc}"
        except Exception:  # an exception whose __str__ fails
            detail = type(exc).__name__
        self.internal_errors.append(f"{event}: {detail}")
        count = len(self.internal_errors)
        if count == 1:
            logger.warning(
                "dpodoctor: internal error in %s, training goes on (%s); please report it", event, detail, exc_info=exc
            )
        else:
            logger.debug("dpodoctor: internal error %d in %s: %s", count, event, detail)
        if count >= MAX_INTERNAL_ERRORS:
            self.disabled = True
            logger.error(
                "dpodoctor: %d internal errors; the callback is disabled and training goes on without it", count
            )

    def _train_begin(self, args: TrainingArguments) -> None:
        self._identify(args)
        self._last_log_end = time.perf_counter()

    def _log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None
    ) -> None:
        now = time.perf_counter()
        if self._last_log_end is None:
            self._identify(args)
        elif self.check_every is None:
            self._credit += max(self.min_budget, self.max_overhead * (now - self._last_log_end))
        if logs:
            self.buffer.add_logs(logs, int(state.global_step), time.time())
        self._logs_since += 1
        if self._due():
            self._diagnose(args, state, control)
        self._last_log_end = time.perf_counter()

    def _train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        if "train_runtime" in self.buffer.summary:  # the trainer's closing summary, as the log readers judge it
            self._ended = Ended.FINISHED
        self._diagnose(args, state, control, final=True)
        if self.write_reports and state.is_world_process_zero and self._run_report is not None:
            self._write(Path(args.output_dir))  # type: ignore[arg-type]  # the Trainer always sets it

    # ---------------------------------------------------------------------------------------------- the diagnosis

    @property
    def report(self) -> Report:
        """The report as of now (diagnosing first if points arrived since the last diagnosis)."""
        if self._run_report is None or self._diagnosed_points != len(self.buffer):
            self._run_report, _ = self._engine.diagnose(self._run())
            self._diagnosed_points = len(self.buffer)
        return Report(runs=[self._run_report], fail_on=self.stop_on or "error")

    def _due(self) -> bool:
        if len(self.buffer) == self._diagnosed_points:
            return False
        if self.check_every is not None:
            return self._logs_since >= self.check_every
        return self._credit >= self._cost

    def _identify(self, args: TrainingArguments) -> None:
        """Name, folder and β of the run, from the trainer's arguments."""
        output_dir = getattr(args, "output_dir", None) or "."
        self._path = Path(output_dir)
        self._name = getattr(args, "run_name", None) or self._path.name or "run"
        raw = getattr(args, "beta", None)
        numeric = isinstance(raw, int | float) and not isinstance(raw, bool)
        if self._user_beta is None and numeric and math.isfinite(raw) and raw > 0:  # type: ignore[arg-type,operator]
            self._beta, self._beta_source = float(raw), "args.beta (DPOConfig)"  # type: ignore[arg-type]

    def _run(self) -> Run:
        return Run(
            name=self._name,
            path=self._path,
            source="transformers-callback",
            frame=self.buffer.frame(),
            beta=self._beta,
            beta_source=self._beta_source,
            ended=self._ended,
            summary=dict(self.buffer.summary),
            notes=list(self._notes),
        )

    def _diagnose(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *, final: bool = False
    ) -> None:
        if len(self.buffer) == 0:
            return
        started = time.perf_counter()
        run = self._run()
        self._run_report, new = self._engine.diagnose(run)
        self._diagnosed_points = len(self.buffer)
        self.evaluations += 1
        speak = state.is_world_process_zero
        step = int(state.global_step)
        # a finding announced earlier that the curves no longer show is taken back where it was said, as `watch`
        # does: otherwise the training log and the final report contradict each other
        for code in self._engine.retracted(run.name, self._run_report):
            line = retract(code, step)
            self.retractions.append(line)
            if speak:
                logger.info("dpodoctor: %s", line)
        if speak:
            for finding in new:
                logger.log(_LEVEL[finding.severity], "dpodoctor: %s", announce(finding, step))
        if not final and self.stop_on is not None and self.stopped_by is None:
            self._maybe_stop(args, state, control, speak)
        self._cost = time.perf_counter() - started
        self._credit = 0.0
        self._logs_since = 0

    def _maybe_stop(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, speak: bool) -> None:
        assert self._run_report is not None and self.stop_on is not None
        finding = fails_gate(self._engine.confirmed(self._run_report.run.name, self._run_report), self.stop_on)
        if finding is None:
            return
        step = int(state.global_step)
        warmup = _warmup_steps(args, state)
        if step < 2 * warmup:
            return  # the learning rate is still ramping up: judge again once it has had time to act
        control.should_training_stop = True
        self.stopped_by = f"{finding.code} {finding.name}"
        self._notes.append(f"training stopped by dpodoctor at step {step}: {finding.code} {finding.name}")
        if speak:
            logger.error(
                "dpodoctor: stopping training at step %d: %s %s [%s] is at or above stop_on=%r: %s",
                step,
                finding.code,
                finding.name,
                finding.severity.value,
                self.stop_on,
                finding.message,
            )

    def _write(self, folder: Path) -> None:
        report = self.report
        try:
            folder.mkdir(parents=True, exist_ok=True)
            written = []
            for name, fmt in ((REPORT_JSON, "json"), (REPORT_MARKDOWN, "markdown")):
                path = folder / name
                path.write_text(render(report, fmt), encoding="utf-8")
                written.append(path)
        except OSError as exc:  # a full disk must not turn a finished training run into a crash
            logger.warning("dpodoctor: cannot write the reports into %s (%s)", folder, exc)
            return
        self.reports_written = written
        logger.info("dpodoctor: wrote %s", ", ".join(str(p) for p in written))


def _warmup_steps(args: TrainingArguments, state: TrainerState) -> int:
    get = getattr(args, "get_warmup_steps", None)
    max_steps = int(getattr(state, "max_steps", 0) or 0)
    if get is None or max_steps <= 0:
        return 0
    try:
        return int(get(max_steps))
    except (TypeError, ValueError):
        return 0
