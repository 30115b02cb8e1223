"""One run's :class:`~dpodoctor.readers.ReadResult` from the decodes of its event files: the one assembler.

Why one: the whole-file read, the reference read (protobuf for every record) and live following all end here, so a
live view, a cached read and a fresh ``check`` of the same files say the same points, notes, β and ending. Files are
taken in read order; a (metric, step) logged again by a later file keeps the later value (the last point in arrival
order wins, and arrival order is file order), and the notes say which steps two files both logged.

β and the config come from the ``args`` text summaries the decode kept, in the same pass: nothing reads a file
again to find them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from dpodoctor.errors import ReadError
from dpodoctor.metrics import canonical, is_summary_key
from dpodoctor.model import Ended, Points, code_dtype
from dpodoctor.readers import LazyReadResult, ReadResult
from dpodoctor.readers.beta import beta_in
from dpodoctor.readers.overlap import repeated_steps_notes
from dpodoctor.readers.tensorboard.decode import FileDecode
from dpodoctor.readers.tensorboard.proto import SCALARS_PLUGIN

__all__ = ["EMPTY", "EMPTY_FILE_NOTE", "assemble", "beta_from", "parse_args_text"]

EMPTY: Final = "no scalar summaries found (empty file: 0 bytes, the writer never flushed a record)"
EMPTY_FILE_NOTE: Final = ": empty file (0 bytes), no records"


def _finite(number: float) -> bool:
    """math.isfinite, false for a JSON integer beyond float range (for which math.isfinite raises OverflowError)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def parse_args_text(text: str | None, label: str, notes: list[str]) -> dict[str, Any] | None:
    """The DPOConfig JSON of an ``args`` text summary (None: it holds no text); bad text is a note, not an error.

    Why json.loads and nothing smarter: the log is untrusted input, and transformers writes strict JSON.
    """
    if text is None:
        notes.append(f"{label}: args text summary holds no text")
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        notes.append(f"{label}: args text summary is not valid JSON ({exc}); config not read")
        return None
    if not isinstance(parsed, dict):
        notes.append(f"{label}: args text summary is JSON but not an object; config not read")
        return None
    return parsed


def beta_from(config: dict[str, Any], label: str, notes: list[str]) -> float | None:
    """β when the config holds a finite number for it (bool is an int in Python, so it is excluded)."""
    if "beta" not in config:
        return None
    raw = config["beta"]
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and _finite(raw):
        return float(raw)
    notes.append(f"{label}: args text summary has a non-numeric beta ({raw!r:.80}); ignored")
    return None


@functools.lru_cache(maxsize=4096)
def _tag_role(raw: str) -> str | tuple[str, str] | None:
    """What a tag is: an end-of-run summary key (its name, as a str), a (split, canonical metric), or None.

    Why cached: a sweep's runs log the same few dozen tags, and mapping one costs a few µs of string tests (a tenth of
    a small run's whole read when done afresh for every file); the mapping depends on the tag alone."""
    if is_summary_key(raw):
        return raw.split("/", 1)[1] if raw.startswith("train/") else raw
    return canonical(raw)  # None only for summary keys, handled above


def _places(offsets: list[int], sizes: list[int] | None = None, shown: int = 5) -> str:
    """``at byte 120, 4400 and 3 more`` (with ``(n bytes)`` after each when sizes are given): where damage is."""
    parts = [f"{o}" + (f" ({sizes[i]} bytes)" if sizes else "") for i, o in enumerate(offsets[:shown])]
    more = f" and {len(offsets) - shown} more" if len(offsets) > shown else ""
    return "at byte " + ", ".join(parts) + more


def _file_notes(label: str, decode: FileDecode, notes: list[str]) -> None:
    """What went wrong in one file, where: records that are not Events, corrupt stretches, a cut end."""
    if decode.bad_records:
        where = f" ({_places(decode.bad_at)})" if decode.bad_at else ""
        notes.append(f"{label}: skipped {decode.bad_records} record(s) whose data is not a valid Event protobuf{where}")
    if decode.skipped:
        where = _places([offset for offset, _ in decode.skipped], [n for _, n in decode.skipped])
        notes.append(
            f"{label}: corrupt data: skipped {sum(n for _, n in decode.skipped)} byte(s) to the next valid "
            f"record header ({where}); the records after it were read"
        )
    if decode.stop_at is not None:
        notes.append(
            f"{label}: truncated at byte {decode.size} ({decode.stop_reason} at byte {decode.stop_at}); "
            f"read the {decode.records} records before it"
        )


def _keep_conditional(decode: FileDecode, plugins: dict[str, str]) -> np.ndarray | None:
    """Which points of a file stay, once each tensor value without its own plugin is resolved against the plugin its
    tag has by then (``plugins``, carried across files and updated here); None: all of them."""
    if not (decode.plugin_events or decode.cond.any()):
        return None
    events = decode.plugin_events
    e = 0
    keep = np.ones(len(decode), dtype=bool)
    for i, row in enumerate(np.flatnonzero(decode.cond).tolist()):
        while e < len(events) and events[e][0] <= i:
            plugins[events[e][1]] = events[e][2]
            e += 1
        if plugins.get(decode.tags[decode.tag[row]], "") != SCALARS_PLUGIN:
            keep[row] = False
    for _, tag, plugin in events[e:]:
        plugins[tag] = plugin
    return keep


def _fallback_beta(labels: Sequence[str], decodes: Sequence[FileDecode]) -> tuple[float, str] | None:
    """β from the first ``args`` summary of each file under the other usual keys (``pref_beta``, one level down), as
    :func:`dpodoctor.readers.hparams.find_beta` would look it up beside a log: the run folder's own files first,
    then those under ``runs/``, each in name order."""
    order = sorted(range(len(labels)), key=lambda i: (labels[i].count("/"), labels[i].split("/")))
    for i in order:
        if decodes[i].args:
            config = parse_args_text(decodes[i].args[0], labels[i], [])
            beta = beta_in(config) if config else None
            if beta is not None:
                return beta, f"{labels[i]}: args text summary"
    return None


def assemble(files: Sequence[Path], labels: Sequence[str], decodes: Sequence[FileDecode]) -> ReadResult:
    """The run of these files (read order), their labels (for notes) and their decodes.

    Raises :class:`ReadError` when no file holds a scalar (naming the file, or the folder of several).
    """
    notes: list[str] = []
    config: dict[str, Any] = {}
    beta: float | None = None
    beta_source: str | None = None
    cut = False
    plugins: dict[str, str] = {}
    tags: list[str] = []
    tag_index: dict[str, int] = {}
    parts: list[tuple[np.ndarray, FileDecode, np.ndarray | None]] = []
    part_labels: list[str] = []
    for label, decode in zip(labels, decodes, strict=True):
        if decode.size == 0:
            notes.append(f"{label}{EMPTY_FILE_NOTE}")
            continue
        file_config: dict[str, Any] | None = None
        file_beta: float | None = None
        for text in decode.args:
            parsed = parse_args_text(text, label, notes)
            if parsed is not None:
                file_config = parsed
                found = beta_from(parsed, label, notes)
                if found is not None:
                    file_beta = found
        if file_config is not None:
            config = file_config
        if file_beta is not None:
            beta, beta_source = file_beta, f"{label}: args text summary"
        _file_notes(label, decode, notes)
        cut |= decode.stop_at is not None
        keep = _keep_conditional(decode, plugins)
        codes = np.empty(len(decode.tags), dtype=np.int32)
        for i, name in enumerate(decode.tags):
            code = tag_index.get(name)
            if code is None:
                code = tag_index[name] = len(tags)
                tags.append(name)
            codes[i] = code
        parts.append((codes, decode, keep))
        part_labels.append(label)
    if beta is None and (fallback := _fallback_beta(labels, decodes)) is not None:
        beta, beta_source = fallback

    def column(name: str, dtype: Any) -> np.ndarray:
        arrays = []
        for codes, decode, keep in parts:
            if name != "tag":
                arr = getattr(decode, name)
            elif np.array_equal(codes, np.arange(len(codes))):  # the first file's tags: their own numbers
                arr = decode.tag
            else:
                arr = codes[decode.tag]
            arrays.append(arr if keep is None else arr[keep])
        if len(arrays) == 1:
            return arrays[0].astype(dtype, copy=False)
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype=dtype)

    tag = column("tag", np.int32)
    step = column("step", np.int64)
    value = column("value", np.float64)
    wall = column("wall", np.float64)

    # Each distinct tag is mapped once: a summary key, a (split, metric), or dropped.
    summary_name: dict[int, str] = {}
    splits: list[str] = []
    metrics: list[str] = []
    split_of = np.full(len(tags), -1, dtype=np.int64)
    metric_of = np.full(len(tags), -1, dtype=np.int64)
    for i, raw in enumerate(tags):
        role = _tag_role(raw)
        if role is None:
            continue
        if isinstance(role, str):
            summary_name[i] = role
            continue
        split, metric = role
        if split not in splits:
            splits.append(split)
        if metric not in metrics:
            metrics.append(metric)
        split_of[i] = splits.index(split)
        metric_of[i] = metrics.index(metric)

    summary: dict[str, float] = {}
    if summary_name:
        is_summary = np.zeros(len(tags), dtype=bool)
        is_summary[list(summary_name)] = True
        for row in np.flatnonzero(is_summary[tag]).tolist():  # arrival order: first seen sets the key's place
            summary[summary_name[int(tag[row])]] = float(value[row])
    if len(parts) > 1:  # a resumed run: say which steps two files both logged (the later file's values win)
        series_of = np.where(split_of >= 0, split_of * max(1, len(metrics)) + metric_of, -1)
        per_file = []
        for label, (codes, decode, keep) in zip(part_labels, parts, strict=True):
            file_series = series_of[codes[decode.tag]]
            file_steps = decode.step
            if keep is not None:
                file_series, file_steps = file_series[keep], file_steps[keep]
            mapped_rows = file_series >= 0
            per_file.append((label, file_series[mapped_rows], file_steps[mapped_rows]))
        notes.extend(repeated_steps_notes(per_file))
    in_frame = (split_of >= 0)[tag]  # a gather of bools: no per-point int64 temporary
    if not in_frame.any():
        where = files[0] if len(files) == 1 else files[0].parent
        if notes and all(note.endswith(EMPTY_FILE_NOTE) for note in notes):
            raise ReadError(EMPTY, where)
        raise ReadError("no scalar summaries found", where)
    if not in_frame.all():
        kept = int(in_frame.sum())
        if in_frame[:kept].all():  # the usual case: the summary keys come last (slices: no copy of the columns)
            tag, step, value, wall = tag[:kept], step[:kept], value[:kept], wall[:kept]
        else:
            tag, step, value, wall = tag[in_frame], step[in_frame], value[in_frame], wall[in_frame]
    # Per-point codes in the smallest integer type (a long run has millions of points: int64 would be 8 bytes each).
    split_codes = split_of.astype(code_dtype(len(splits)))[tag]
    metric_codes = metric_of.astype(code_dtype(len(metrics)))[tag]
    # The points, sorted as make_frame sorts them, and no frame: a check reads the run curve by curve, and the frame
    # (pandas) is built only when something reads it (see LazyReadResult).
    points = Points.from_codes(split_codes, splits, metric_codes, metrics, step, value, wall)
    if "train_runtime" in summary:
        # Written only once training is over, so the run finished even if the file was cut after it.
        ended = Ended.FINISHED
    elif cut:
        ended = Ended.TRUNCATED
    else:
        ended = Ended.UNKNOWN
    return LazyReadResult.from_points(
        points,
        beta=beta,
        beta_source=beta_source,
        ended=ended,
        steps_derived=False,
        summary=summary,
        config=config,
        notes=notes,
    )
