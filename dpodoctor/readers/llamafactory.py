"""Reader for LLaMA-Factory's ``trainer_log.jsonl``.

What it holds: LLaMA-Factory's ``LogCallback.on_log`` appends one JSON line per Trainer log, built from the last
``log_history`` entry under short names: ``current_steps`` (the global step), ``total_steps`` (max_steps),
``loss``, ``eval_loss``, ``predict_loss``, ``reward``, ``accuracy`` (= ``rewards/accuracies``), ``lr``
(= ``learning_rate``), ``epoch``, ``percentage``, ``elapsed_time`` and ``remaining_time`` (``"0:01:03"`` strings),
and sometimes ``throughput``/``total_tokens``. Keys whose value is None are left out, so an eval log is a line with
``eval_loss`` and no ``loss``, and the end-of-training summary is a line with neither.

Why its own reader and not the generic JSONL one: the step is ``current_steps``, ``total_steps`` says whether the
run reached its end, and ``percentage``/``total_steps`` are bookkeeping, not metrics. The short names are mapped
by the one key map (metrics.py, "llama-factory"); ``reward`` there is only logged by LLaMA-Factory's PPO trainer
(the mean reward-model score) and keeps its own name.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import canonical
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.jsonl import (
    MAX_LINE,
    cell_number,
    content_hint,
    first_object,
    iter_lines,
    parse_object,
    step_number,
)
from dpodoctor.readers.trainer_state import beta_beside

__all__ = ["LlamaFactoryReader"]

STEP_KEY: Final = "current_steps"
TOTAL_KEY: Final = "total_steps"
# Bookkeeping columns: derived from the step, or wall-clock strings.
_SKIP: Final = frozenset({STEP_KEY, TOTAL_KEY, "percentage", "elapsed_time", "remaining_time"})


@register
class LlamaFactoryReader:
    """Reads LLaMA-Factory's ``trainer_log.jsonl`` (any ``.jsonl`` whose lines carry current_steps/total_steps)."""

    name: ClassVar[str] = "llamafactory"
    # Above the generic JSONL reader (same file shape, less knowledge), below trainer_state.json, which the same
    # run writes with every key the Trainer logged (this log keeps only loss, accuracy and lr).
    priority: ClassVar[int] = 30
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """A ``.jsonl`` file whose first line is an object with ``current_steps`` and ``total_steps``."""
        if path.suffix.lower() != ".jsonl" or not path.is_file():
            return False
        obj = first_object(path)
        return obj is not None and STEP_KEY in obj and TOTAL_KEY in obj

    def run_root(self, path: Path) -> Path:
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        if not paths:
            raise ReadError("no files given to the LLaMA-Factory reader")
        path = Path(paths[0])
        builder = FrameBuilder()
        notes: list[str] = []
        bad = no_step = long = 0
        torn = False
        last: tuple[int, int | None] | None = None  # (current_steps, total_steps) of the last good line
        last_step: int | None = None
        went_back = 0
        for line in iter_lines(path):
            if line.too_long:
                long += 1
                continue
            if not line.data.strip():
                continue
            obj = parse_object(line.data)
            if obj is None:
                if line.complete:
                    bad += 1
                else:
                    torn = True
                continue
            step = step_number(obj.get(STEP_KEY))
            if step is None:
                no_step += 1
                continue
            last = (step, step_number(obj.get(TOTAL_KEY)))
            if last_step is not None and step < last_step:
                went_back += 1
            last_step = step
            items = [(k, v) for k, raw in obj.items() if k not in _SKIP and (v := cell_number(raw)) is not None]
            # The line after the end-of-training summary (and after a predict) carries only the epoch.
            if all(canonical(k) == ("train", "epoch") for k, _ in items):
                continue
            builder.add_many(items, step)
        if len(builder) == 0:
            raise NoMetricsError("no metric values found (not a LLaMA-Factory trainer log?)" + content_hint(path), path)

        if bad:
            notes.append(f"skipped {bad} line(s) that are not JSON objects")
        if long:
            notes.append(f"skipped {long} line(s) longer than {MAX_LINE} bytes")
        if no_step:
            notes.append(f"skipped {no_step} line(s) without a valid {STEP_KEY!r}")
        if went_back:
            notes.append(
                f"current_steps goes back {went_back} time(s) (a resumed run appends to the same file): a repeated "
                "step keeps the later value"
            )
        assert last is not None
        step, total = last
        if torn:
            notes.append("the last line is cut short (no line break, not valid JSON): skipped")
        if total is not None and step >= total and not torn:
            ended = Ended.FINISHED
        elif torn or (total is not None and step < total):
            # the log stops short of total_steps: whatever happened after, the log ended early
            ended = Ended.TRUNCATED
        else:
            ended = Ended.UNKNOWN
        if total is not None and step < total:
            notes.append(
                f"stopped at {step} of {total} steps (the log ends there: the run was stopped, crashed, or is "
                "still going)"
            )
        result = ReadResult(frame=builder.build(), ended=ended, steps_derived=False, notes=notes)
        if total is not None:
            result.config["max_steps"] = total
        found = beta_beside([path.parent], notes)
        if found is not None:
            result.beta, result.beta_source, config = found
            result.config = {**config, **result.config}
        return result
