"""The three shapes of metrics a console log holds, as bounded byte regexes and the parsers of one item each.

* Python dict reprs that transformers' ``ProgressCallback`` prints (``{'loss': 0.69, ...}``; transformers 5.x quotes
  every value), found amid tqdm bars (:data:`DICT_RE`, :data:`BAR_RE`), parsed pair by pair (:func:`parse_pairs`) or,
  for a layout seen before, by a regex of exactly that layout (:func:`layout_re`);
* the text step table of the seed chapter and of transformers' notebook callback (:func:`parse_table_header`);
* the ``name: value`` lines of custom loops (:data:`KV_RE`, :func:`kv_layout`).

Why regexes over bytes and no evaluation: a log is untrusted input, and every pattern here is bounded with no nested
quantifiers, so matching is linear in the text; UTF-8 never uses ASCII bytes inside a multi-byte character, so
matching the raw bytes finds exactly what matching the decoded text would. Nothing is ever evaluated.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np

from dpodoctor.metrics import (
    FRAMEWORK_KEYS,
    KEY_MAP,
    KNOWN_METRICS,
    SUMMARY_KEYS,
    canonical,
    is_dpo_metric,
    is_summary_key,
    split_key,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BAR_CANDIDATES",
    "BAR_RE",
    "CRASH_MARKERS",
    "CSV_DROP",
    "DICT_MAX",
    "DICT_RE",
    "EPOCH_COL",
    "EPOCH_RE",
    "EVAL",
    "EVAL_WORD_RE",
    "KV_HINT_RE",
    "KV_LINE_MAX",
    "KV_RE",
    "LINE_BREAK_RE",
    "MAX_LAYOUTS",
    "MAX_STEP",
    "NOT_METRICS",
    "NO_LOG",
    "NO_LOG_RE",
    "PAREN_STEP_RE",
    "PLAIN_KEY_RE",
    "STEP_COL",
    "STEP_WORD_RE",
    "SUMMARY",
    "TABLE_HINT_RE",
    "TO_CSV",
    "TRAIN",
    "KeyInfo",
    "KvLayout",
    "KvLine",
    "Table",
    "check_re",
    "csv_floats",
    "key_info",
    "kv_layout",
    "last_crash",
    "layout_re",
    "parse_pairs",
    "parse_table_header",
    "probe_re",
    "table_hint",
    "to_float",
]

DICT_MAX: Final = 65536


BAR_CANDIDATES: Final = 6


MAX_LAYOUTS: Final = 64


DICT_RE: Final = re.compile(rb"\{'[^{}\r\n]{0,%d}\}" % DICT_MAX)


_NUMBER: Final = rb"([-+0-9.eEaAnNiIfFtTyY]{1,40})"


_NP: Final = rb"(?:np\.float(?:16|32|64)\()?"


_PAIR_RE: Final = re.compile(rb"'([^'\\\r\n{}]{1,200})': {0,4}" + _NP + rb"('?)" + _NUMBER + rb"\2\)?(?=[,}\s])")


BAR_RE: Final = re.compile(rb"%\|(?<=[\r\nA-Za-z][ \d]{3}%\|)[^|\r\n]{0,1200}\| {0,4}(\d{1,12})/(\d{1,12}) \[")


CRASH_MARKERS: Final = {
    b"Traceback (most recent call last)": "a Python traceback",
    b"CANCELLED": "a CANCELLED message (the job was cancelled, e.g. by SLURM)",
    b"Killed": "'Killed' (the process was killed, often by the out-of-memory killer)",
    b"KeyboardInterrupt": "a KeyboardInterrupt",
    b"SIGINT": "a termination signal (SIGINT)",
    b"SIGTERM": "a termination signal (SIGTERM)",
    b"SIGKILL": "a termination signal (SIGKILL)",
}


TABLE_HINT_RE: Final = re.compile(rb"(?i)(?:training|validation)[ \t]{1,16}loss")


LINE_BREAK_RE: Final = re.compile(rb"[\r\n]")


NO_LOG_RE: Final = re.compile(r"(?i)\bno[ \t]{1,16}log\b")


NO_LOG: Final = "\x00nolog"


STEP_COL: Final = "\x00step"


EPOCH_COL: Final = "\x00epoch"


_TABLE_COLUMNS: Final[dict[str, str]] = {
    **{k.replace("_", " "): k for k in KEY_MAP},
    **{k.replace("_", " "): k for k in SUMMARY_KEYS},
    "step": STEP_COL,
    "epoch": EPOCH_COL,
    "training loss": "loss",
    "train loss": "loss",
    "validation loss": "eval_loss",
    "eval loss": "eval_loss",
}


_MAX_COLUMN_WORDS: Final = max(len(name.split()) for name in _TABLE_COLUMNS)


NOT_METRICS, TRAIN, EVAL, SUMMARY = -1, 0, 1, 2


_TRL_KEYS: Final = frozenset(FRAMEWORK_KEYS["trl"])


MAX_STEP: Final = 2**53


def _is_metric_key(key: str) -> bool:
    """Whether a dict key shows the dict is a metrics log and not something user code printed.

    Any key of transformers/TRL counts; another framework's alias only when it names a training metric, so a
    config dict such as DeepSpeed's ``{'lr': 1e-05, 'weight_decay': 0.0}`` is not taken for a log line.
    """
    return key in _TRL_KEYS or key.startswith("eval_") or is_summary_key(key) or is_dpo_metric(key)


def to_float(text: str | bytes) -> float | None:
    """float(), or None for the strings the value charset admits that are not numbers (`e`, `-`, `tiny`)."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_pairs(body: bytes) -> tuple[tuple[bytes, ...], list[float]] | None:
    """The numeric ``'key': value`` pairs of one dict body, or None when it has none."""
    pairs = _PAIR_RE.findall(body)
    if not pairs:
        return None
    keys, _, raw = zip(*pairs, strict=True)
    try:  # fast path, all in C: every value converts (true for every dict transformers prints)
        return keys, list(map(float, raw))
    except ValueError:
        pass
    kept = [(k, v) for k, v in zip(keys, map(to_float, raw), strict=True) if v is not None]
    if not kept:
        return None
    return tuple(k for k, _ in kept), [v for _, v in kept]


@dataclass
class KeyInfo:
    """What one key layout means, worked out once per distinct layout (a log repeats the same few)."""

    kind: int
    keys: tuple[str, ...] = ()
    epoch_index: int | None = None
    epoch_at: int = -1  # epoch_index, -1 for none (read by numpy for every record)
    # Positions of the keys that become frame rows, and their (split, metric).
    rows: list[tuple[int, str, str]] = field(default_factory=list)
    # Positions of end-of-run summary keys, and the name used in Run.summary.
    summary: list[tuple[int, str]] = field(default_factory=list)
    # Compiled on the second sighting: matches exactly this layout, for a faster parse of the next ones.
    layout: re.Pattern[bytes] | None = None
    # The layout as one alternative of a pattern that also takes any other line (see Scan._add_bulk): with the
    # values captured (probe), and without, giving only a mark per line (check).
    probe: re.Pattern[bytes] | None = None
    check: re.Pattern[bytes] | None = None
    plain_keys: bool = False  # no key holds a byte that would shift the columns of TO_CSV's output
    seen: int = 0


def key_info(raw_keys: tuple[bytes, ...]) -> KeyInfo:
    keys = tuple(k.decode("utf-8", errors="replace") for k in raw_keys)
    if not any(_is_metric_key(k) for k in keys):
        return KeyInfo(NOT_METRICS, keys)
    is_summary = "train_runtime" in keys
    is_eval = not is_summary and all(k == "epoch" or split_key(k)[0] == "eval" for k in keys)
    kind = SUMMARY if is_summary else EVAL if is_eval else TRAIN
    info = KeyInfo(kind, keys, keys.index("epoch") if "epoch" in keys else None)
    info.epoch_at = -1 if info.epoch_index is None else info.epoch_index
    for i, key in enumerate(keys):
        if is_summary_key(key):
            info.summary.append((i, key.split("/", 1)[1] if key.startswith("train/") else key))
        elif (mapped := canonical(key)) is not None:
            # An eval dict's `epoch` stays a train key, as transformers' TensorBoard callback logs it
            # (train/epoch), so both readers give the same (split, metric) set for one run.
            info.rows.append((i, mapped[0], mapped[1]))
    if kind == SUMMARY and all(metric == "epoch" for _, _, metric in info.rows):
        info.rows = []  # a plain summary dict: its epoch only repeats the last train step's
    return info


def layout_re(raw_keys: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """A regex for exactly ``{'k1': v1, 'k2': v2, ...}`` as str(dict) prints it: two groups per value, its opening
    quote (empty when unquoted) and the number.

    Why: with the keys as literals matching is several times faster than the generic pair regex, and it accepts
    exactly what that one accepts for these keys (a quote that opens a value must close it), so the records and
    values never depend on which of the two parsed a dict; any other spelling falls back to the generic parse.
    """
    values = (
        b"'" + re.escape(k) + b"': {0,4}" + _NP + b"(')?" + _NUMBER + b"(?(%d)')\\)?" % (2 * i + 1)
        for i, k in enumerate(raw_keys)
    )
    return re.compile(rb"\{" + b", ".join(values) + rb"\}")


def probe_re(layout: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """``layout`` + line break, or else any line: over bodies joined by ``\n``, findall gives one row per body,
    the layout's groups where the body is that layout and empty strings where it is not (a number is never empty)."""
    return re.compile(rb"(?:" + layout.pattern + rb")\n|[^\n]*\n")


def check_re(raw_keys: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The layout without value groups, marking each line: findall gives ``\n`` for a body of this layout and an
    empty string for any other. The same language as :func:`layout_re` (``'N'|N`` is its balanced quote)."""
    number = _NUMBER[1:-1]  # the same characters, uncaptured
    values = (b"'" + re.escape(k) + b"': {0,4}" + _NP + b"(?:'" + number + b"'|" + number + b")\\)?" for k in raw_keys)
    return re.compile(rb"\{" + b", ".join(values) + rb"\}(\n)|[^\n]*\n")


TO_CSV: Final = bytes.maketrans(b":", b",")


CSV_DROP: Final = b"{}' )"


PLAIN_KEY_RE: Final = re.compile(rb"[!-+\--9;-~ ]{1,200}")  # printable ASCII without `,` and `:`


@functools.cache
def _csv_reader() -> tuple[Callable[..., pd.DataFrame], dict[str, str]]:
    """pandas' read_csv and the options that make its floats exact (see :func:`csv_floats`), looked up on first use:
    pandas is imported when a log's numbers are converted, not when this package is imported to sniff a file.
    Typed loosely: the options are passed through a dict, which the stubs' overloads cannot see."""
    import pandas as pd

    exact = (
        {}
        if tuple(int(x) for x in re.findall(r"\d+", pd.__version__)[:2]) >= (3, 1)
        else {"float_precision": "round_trip"}
    )
    return pd.read_csv, exact


def csv_floats(text: bytes, rows: int, width: int) -> np.ndarray | None:
    """The numbers of ``rows`` CSV lines of ``2 * width`` fields, (anything, number) per value: the odd fields,
    as a (rows, width) float64 array. None when a field is no number (or a NaN spelled other than ``nan``, or
    wrapped as ``np.float64(...)``: the slower paths handle those).

    Why pandas' CSV parser: converting a few million number strings is most of the cost of reading a dict-heavy
    log, and its C tokenizer converts them in bulk. Its float converter must give bit for bit what ``float()``
    gives: pandas >= 3.1 has one converter for every precision setting, and before that ``round_trip`` is the one
    that calls CPython's own (a property test checks this). NA detection knows only ``nan``, so a field is a number
    or an error, never a guessed missing value.
    """
    try:
        read_csv, exact_floats = _csv_reader()
        frame = read_csv(
            io.BytesIO(text),
            header=None,
            names=list(range(2 * width)),
            usecols=list(range(1, 2 * width, 2)),
            dtype=np.float64,
            engine="c",
            na_filter=True,
            keep_default_na=False,
            na_values=["nan"],
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            **exact_floats,
        )
    except (ValueError, TypeError):
        return None
    if frame.shape != (rows, width):
        return None
    return frame.to_numpy(dtype=np.float64)


def parse_metric_dict(text: str) -> dict[str, float] | None:
    """Parse the first printed metrics dict in ``text`` (``{'loss': 0.69}`` or ``{'loss': '0.69'}``), safely.

    Returns its numeric entries (``nan``/``inf`` included), or None when ``text`` holds no dict with at least one
    metric key. Non-numeric values are skipped and nothing is ever evaluated. Public for tests and other readers.
    """
    for match in DICT_RE.finditer(text.encode("utf-8", errors="replace")):
        parsed = parse_pairs(match.group())
        if parsed is None:
            continue
        info = key_info(parsed[0])
        if info.kind != NOT_METRICS:
            return dict(zip(info.keys, parsed[1], strict=True))
    return None


def table_hint(raw: bytes) -> bool:
    """Cheap byte search for a step-table header, so the case-insensitive regex runs only when needed."""
    return b"Loss" in raw or b"LOSS" in raw or b" loss" in raw


def last_crash(text: bytes, start: int, end: int) -> bytes | None:
    """The crash marker that occurs last in ``text[start:end]``, or None."""
    best, best_pos = None, -1
    for marker in CRASH_MARKERS:
        pos = text.rfind(marker, start, end)
        if marker == b"Killed":  # the word, not part of "UnKilled" or "Killed_jobs"
            while pos >= 0 and (text[pos - 1 : pos].isalnum() or text[pos + 6 : pos + 7].isalnum()):
                pos = text.rfind(marker, start, pos)
        if pos > best_pos:
            best, best_pos = marker, pos
    return best


@dataclass
class Table:
    """A step table being read: its columns and the rows so far."""

    columns: list[str] | None = None
    is_eval: bool = False
    has_step: bool = False
    rows: list[tuple[int | None, list[tuple[str, float]]]] = field(default_factory=list)


def parse_table_header(line: str) -> list[str] | None:
    """Column keys of a step-table header, or None when the line is not one.

    Why match known names: the seed's table separates multi-word names (``Training Loss``) by single spaces, so
    splitting on spaces is ambiguous; known names are matched longest first and unknown words are one column.
    """
    words = [w.strip() for w in (line.split("\t") if "\t" in line else line.split()) if w.strip()]
    columns: list[str] = []
    i = 0
    while i < len(words):
        for width in range(min(_MAX_COLUMN_WORDS, len(words) - i), 0, -1):
            name = " ".join(words[i : i + width]).lower()
            if name in _TABLE_COLUMNS:
                columns.append(_TABLE_COLUMNS[name])
                i += width
                break
        else:
            columns.append(words[i].lower())
            i += 1
    if not columns or columns[0] not in (STEP_COL, EPOCH_COL) or not {"loss", "eval_loss"} & set(columns):
        return None
    return columns


KV_RE: Final = re.compile(
    rb"(?<![\w/.\-])([A-Za-z_][\w/.\-]{0,100}) {0,4}: {0,4}"
    rb"([-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,4})?|[-+]?(?i:nan|inf(?:inity)?))"
    rb"(?![\w.%:/])"
)


KV_HINT_RE: Final = re.compile(rb":(?<=[A-Za-z_ ]:) {0,4}[-+.\dnNiI]")


PAREN_STEP_RE: Final = re.compile(rb"\((\d{1,12}) {0,2}/ {0,2}(\d{1,12})\)")


STEP_WORD_RE: Final = re.compile(
    rb"(?i)(?<![\w/.])(?:global[_ ]?)?(?:step|iter(?:ation)?)s? {0,4}[:=#]? {0,4}\[? {0,2}(\d{1,12})"
    rb"(?: {0,2}/ {0,2}(\d{1,12}))?(?![\d.])"
)


EPOCH_RE: Final = re.compile(rb"(?i)(?<![\w/.])epoch {0,4}[:=]? {0,4}\[? {0,2}(\d{1,9}) {0,2}/ {0,2}(\d{1,9})")


EVAL_WORD_RE: Final = re.compile(rb"(?i)(?<![\w/])(?:eval|evaluation|val|valid|validation)(?![\w/])")


_KV_STEP_NAMES: Final = frozenset({"step", "steps", "global_step", "iter", "iteration", "it", "current_step"})


KV_LINE_MAX: Final = 65536


def _known(key: str) -> bool:
    mapped = canonical(key)
    return mapped is not None and mapped[1] in KNOWN_METRICS


@dataclass
class KvLayout:
    """What a line's pair names mean, worked out once per distinct list of names."""

    keys: tuple[str, ...]  # the raw key of each metric pair (lowercased when only that spelling is known)
    index: tuple[int, ...]  # positions of the metric pairs among all pairs
    step_index: int | None  # position of a `step: N` pair
    useful: bool  # at least one name is a known training metric (not only epoch or lr)
    is_eval: bool = False  # the line names the eval split
    splits: tuple[str, ...] = ()  # (split, metric) of each metric pair, as columns
    metrics: tuple[str, ...] = ()


def kv_layout(names: tuple[bytes, ...], is_eval: bool) -> KvLayout:
    keys: list[str] = []
    index: list[int] = []
    step_index: int | None = None
    for i, raw in enumerate(names):
        name = raw.decode("utf-8", errors="replace")
        lower = name.lower()
        if lower.rsplit("/", 1)[-1] in _KV_STEP_NAMES:
            step_index = i if step_index is None else step_index
            continue
        key = name if _known(name) or not _known(lower) else lower
        if is_eval and key != "epoch" and split_key(key)[0] == "train":
            key = "eval_" + key
        if canonical(key) is None:
            continue  # an end-of-run summary value (`train_loss: 0.5`) is not a point
        keys.append(key)
        index.append(i)
    useful = any(is_dpo_metric(k) for k in keys)
    mapped = [canonical(k) or ("train", k) for k in keys]
    return KvLayout(
        tuple(keys),
        tuple(index),
        step_index,
        useful,
        is_eval,
        tuple(m[0] for m in mapped),
        tuple(m[1] for m in mapped),
    )


@dataclass(slots=True)
class KvLine:
    """One `name: value` line: its metric values and whatever step information the line carries."""

    layout: KvLayout
    values: list[float]
    cur: int | None  # the step (within the epoch, when the line also shows the epoch)
    total: int | None  # steps per epoch (or in all) from a `cur/total` form
    epoch: int | None
    epochs: int | None
