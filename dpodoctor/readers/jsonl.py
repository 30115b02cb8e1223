"""Reader for generic JSON-lines metric logs: one object per line with a step and metric keys.

What such a file holds: whatever a custom callback or script appended per logging step, for instance
``{"step": 10, "loss": 0.69, "rewards/margins": 0.01}``, or wandb's ``wandb-history.jsonl`` (``_step``,
``train/global_step``, ``train/loss``, ...). Keys go through the one key map (metrics.py), so any framework's names
work; nested objects are flattened with ``/`` (``{"train": {"loss": 0.5}}`` is ``train/loss``).

Why line by line with :mod:`json`: a line is one record, so a torn last line (the writer was killed mid-write) costs
that line only, and nothing is ever evaluated. Lines are read with a length cap, so a file without line breaks
cannot fill memory. The helpers here (:func:`iter_lines`, :func:`cell_number`, :func:`step_number`) are shared with
the LLaMA-Factory and CSV readers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import is_dpo_metric
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.textio import Utf8Reader, detect_wide_encoding

__all__ = ["STEP_KEYS", "JsonlReader", "Line", "cell_number", "content_hint", "flatten", "iter_lines", "step_number"]

_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})
# Bytes looked at by sniff.
SNIFF_BYTES: Final = 64 * 1024
# Longest line parsed. Real metric lines are < 10 KB; a longer one is skipped (and the note says so).
MAX_LINE: Final = 1024 * 1024
# Longest text cell converted to a number ("0.693", "nan"); a longer one is not a number.
_MAX_NUMBER_TEXT: Final = 64
_MAX_STEP: Final = 2**53
_MAX_DEPTH: Final = 4
# Bytes read per chunk by iter_lines.
_CHUNK: Final = 1024 * 1024

# Columns that hold the training step, most specific first: wandb's own `_step` counts its log calls, so the
# trainer's global step wins when both are present.
STEP_KEYS: Final = ("step", "global_step", "train/global_step", "trainer/global_step", "Step", "_step")
# Columns that hold the wall-clock time of the point (seconds since the epoch).
WALL_KEYS: Final = ("wall_time", "_timestamp", "timestamp")


def cell_number(value: Any) -> float | None:
    """A JSON number, or a short text that is one ("0.69", "nan", "-inf"); None for anything else (bool too).

    Why accept text: transformers 5.x and some loggers write every value as a string.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and 0 < len(value) <= _MAX_NUMBER_TEXT and "_" not in value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def step_number(value: Any) -> int | None:
    """A step: a non-negative integral number that fits the frame's int64 step column, else None."""
    number = cell_number(value)
    if number is None or not math.isfinite(number) or not number.is_integer() or not 0 <= number < _MAX_STEP:
        return None
    return int(number)


def flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """The (key, value) leaves of a JSON object, nested keys joined with ``/`` (bounded depth)."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < _MAX_DEPTH:
                yield from flatten(value, name + "/", depth + 1)
        else:
            yield name, value


@dataclass
class Line:
    """One line of a text file: its number, bytes (without the line break), and whether a line break ended it."""

    number: int
    data: bytes
    complete: bool
    too_long: bool = False


def iter_lines(path: Path, max_line: int = MAX_LINE, chunk: int = _CHUNK) -> Iterator[Line]:
    """The lines of a file, each cut at ``max_line`` bytes (the rest of an over-long line is skipped).

    ``\n``, ``\r\n`` and a lone ``\r`` (old Mac tools, some loggers) each end a line. The file is read in chunks
    of ``chunk`` bytes, so memory stays bounded by ``max_line + chunk`` whatever the file holds; a UTF-16/32 file is
    transcoded to UTF-8 on the way (see :mod:`.textio`).
    """
    try:
        with path.open("rb") as handle:
            stream = Utf8Reader(handle)
            number = 0
            buf = b""
            skipping = False  # inside an over-long line: drop bytes up to its line break
            while True:
                data = stream.read(chunk)
                final = not data
                pieces = (buf + data).splitlines(keepends=True)  # splits at \n, \r\n and \r, in C
                # The last piece is unfinished unless a \n ends it: no break yet, or a \r whose \n may come next.
                buf = pieces.pop() if pieces and not final and not pieces[-1].endswith(b"\n") else b""
                for piece in pieces:
                    number += 1
                    line = piece.rstrip(b"\r\n")
                    complete = len(line) < len(piece)
                    if skipping or len(line) > max_line:
                        skipping = False
                        yield Line(number, b"", complete, too_long=True)
                    else:
                        yield Line(number, line, complete)
                if final:
                    if skipping:  # the file ends inside an over-long line
                        yield Line(number + 1, b"", False, too_long=True)
                    return
                if len(buf) > max_line:  # no line break within max_line bytes: an over-long line
                    skipping, buf = True, b""
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}", path) from exc


def parse_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object from one line, or None (not JSON, not an object, too deep)."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def first_object(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of a file, parsed as a JSON object (sniffing: the first 64 KB only)."""
    try:
        with path.open("rb") as handle:
            head = Utf8Reader(handle).read(SNIFF_BYTES)  # a UTF-16 file is sniffed as the text it holds
    except OSError:
        return None
    for raw in head.splitlines():
        if raw.strip():
            return parse_object(raw) if len(raw) < SNIFF_BYTES else None
    return None


def content_hint(path: Path) -> str:
    """`` (empty file: 0 bytes)`` or `` (binary data: a NUL byte at byte N)`` for a file that is no text at all, else
    "". Why: "no step on the first line" says little about a file a crash left empty or filled with NULs."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return ""
    if not head:
        return " (empty file: 0 bytes)"
    nul = head.find(b"\x00")
    return f" (binary data: a NUL byte at byte {nul})" if nul >= 0 and detect_wide_encoding(head) is None else ""


def _step_key(obj: dict[str, Any]) -> str | None:
    return next((k for k in STEP_KEYS if step_number(obj.get(k)) is not None), None)


def _is_metrics_object(obj: dict[str, Any]) -> bool:
    return _step_key(obj) is not None and any(is_dpo_metric(k) for k, _ in flatten(obj))


@register
class JsonlReader:
    """Reads a JSON-lines file whose objects carry a step and metric keys."""

    name: ClassVar[str] = "jsonl"
    # Below the formats that know their trainer (trainer_state, LLaMA-Factory's log): a generic log is the
    # fallback, but richer than a console capture.
    priority: ClassVar[int] = 20
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """A ``.jsonl``/``.ndjson``/``.json`` file whose first line is an object with a step and a known metric."""
        if path.suffix.lower() not in _SUFFIXES or not path.is_file():
            return False
        obj = first_object(path)
        return obj is not None and _is_metrics_object(obj)

    def run_root(self, path: Path) -> Path:
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        """Read the first file given (discovery gives one; the others are copies or other runs)."""
        if not paths:
            raise ReadError("no files given to the jsonl reader")
        path = Path(paths[0])
        first = first_object(path)
        step_key = _step_key(first) if first is not None else None
        if step_key is None:
            raise NoMetricsError("the first line is not a JSON object with a step" + content_hint(path), path)
        ignored = {*STEP_KEYS, *WALL_KEYS}
        builder = FrameBuilder()
        notes: list[str] = []
        bad = no_step = long = 0
        torn = False
        last_step: int | None = None
        went_back: list[int] = []
        for line in iter_lines(path):
            if line.too_long:
                long += 1
                continue
            if not line.data.strip():
                continue
            obj = parse_object(line.data)
            if obj is None:
                if not line.complete:
                    torn = True
                else:
                    bad += 1
                continue
            step = step_number(obj.get(step_key))
            if step is None:
                no_step += 1
                continue
            if last_step is not None and step < last_step:
                went_back.append(line.number)
            last_step = step
            wall = next((w for k in WALL_KEYS if (w := cell_number(obj.get(k))) is not None), None)
            for key, raw in flatten(obj):
                if key in ignored or key.startswith("_"):
                    continue
                value = cell_number(raw)
                if value is not None:
                    builder.add(key, step, value, wall)
        if len(builder) == 0 and not builder.summary:
            raise NoMetricsError("no metric values found", path)
        if bad:
            notes.append(f"skipped {bad} line(s) that are not JSON objects")
        if long:
            notes.append(f"skipped {long} line(s) longer than {MAX_LINE} bytes")
        if no_step:
            notes.append(f"skipped {no_step} line(s) without a valid {step_key!r}")
        if went_back:
            notes.append(
                f"the step goes back at line {went_back[0]}"
                + (f" and {len(went_back) - 1} more place(s)" if len(went_back) > 1 else "")
                + " (a resumed or restarted run appended to the file): a repeated step keeps the later value"
            )
        if "train_runtime" in builder.summary:
            ended = Ended.FINISHED
        elif torn:
            ended = Ended.TRUNCATED
        else:
            ended = Ended.UNKNOWN
        if torn:
            notes.append("the last line is cut short (no line break, not valid JSON): skipped")
        return ReadResult(
            frame=builder.build(),
            ended=ended,
            steps_derived=False,
            summary=dict(builder.summary),
            notes=notes,
        )
