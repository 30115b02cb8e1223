"""Reader for the console output of a training script (``python train.py > train.log 2>&1``).

What such a file holds: transformers' ``ProgressCallback`` prints every ``logs`` dict with
``tqdm.write(str(logs))``, so the metrics are Python dict reprs (``{'loss': 0.69, ...}``; transformers 5.x quotes
every value: ``{'loss': '0.6969'}``) buried in tqdm output: ``\\r`` redraws, ANSI cursor moves, dataset bars,
warnings, and sometimes the dict glued to the end of a bar on the same physical line. The dicts carry no step, so
the step is derived (see :func:`_derive_steps`). A second, rarer shape is the text step table of the seed chapter
and of transformers' notebook callback (``Step Training Loss Rewards/Margins ...`` then one row per step), which
does carry steps. A third is the ``name: value`` line of custom loops (MiniMind's
``Epoch:[1/1](20/4292), loss: 0.6605, ...``, torchtune's ``Step 1 | loss:0.69 ...``, verl's ``step:1 - ...``), read
only when the file has neither dicts nor a table, because such pairs also appear in ordinary log chatter.

One file can hold several runs (``python train.py >> train.log`` twice). A new run starts where a train dict follows
the end-of-training summary, where the epoch goes back, or where the step of ``name: value`` lines goes back;
:meth:`StdoutReader.read_runs` returns each run (labelled ``run1``, ``run2``, ...).

Why a hand-written scanner instead of ``ast.literal_eval`` per line: lines can be megabytes long (tqdm redraws
joined by ``\\r``) or hold deeply nested structures printed by user code, and a log is untrusted input. Every
regex here is bounded and has no nested quantifiers, so scanning is linear in the file size, and no text is ever
evaluated. The file is streamed in chunks of a few MB (the unfinished last line is carried over), so a multi-GB
log never sits in memory as one string.

Why bytes, not decoded text: every delimiter searched for is ASCII, and UTF-8 never uses ASCII bytes inside a
multi-byte character, so matching on the raw bytes finds exactly what matching on the decoded text would, while
skipping a decode of the whole file (tqdm's block characters make that slow). What is kept (keys, table lines) is
decoded as UTF-8 with ``errors="replace"``; ``\\r`` counts as a line break everywhere.
"""

from __future__ import annotations

import csv
import io
import math
import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from operator import itemgetter
from pathlib import Path
from statistics import median
from typing import ClassVar, Final

import numpy as np
import pandas as pd

from dpodoctor.errors import NoMetricsError, ReadError
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
from dpodoctor.model import Ended, empty_frame, frame_from_codes, make_frame
from dpodoctor.readers import ReadResult, register, wandb_run
from dpodoctor.readers.pasted import UnwrapReader, sniff_content
from dpodoctor.readers.stdout_config import apply_text_config
from dpodoctor.readers.textio import Utf8Reader

__all__ = ["StdoutReader", "StdoutTail", "parse_metric_dict"]

_SUFFIXES: Final = frozenset({".log", ".out", ".txt"})

# Bytes read per chunk: big enough that per-chunk overhead vanishes, small enough that a few copies are cheap.
_CHUNK: Final = 4 * 1024 * 1024
# Longest dict body looked at. Real metric dicts are < 2 KB; the bound keeps every regex linear.
_DICT_MAX: Final = 65536
# A last line longer than this (no \r or \n) is cut anyway, so a file without line breaks cannot grow the carry.
_MAX_CARRY: Final = 1024 * 1024
# Bars remembered after each dict. The main bar is redrawn right after the dict, so it is among the first few.
_BAR_CANDIDATES: Final = 6
# Compiled per-layout regexes kept (a log prints a handful of distinct key layouts).
_MAX_LAYOUTS: Final = 64

# A candidate dict: `{'` up to the first `}`. The body holds no brace and no line break, so every character is
# scanned by at most one candidate (linear time). Nested dicts are never metric dicts.
_DICT_RE: Final = re.compile(rb"\{'[^{}\r\n]{0,%d}\}" % _DICT_MAX)

# A numeric value: a bare or quoted number or nan/inf spelling, or a numpy 2 repr `np.float64(0.5)`. Strings,
# True/None and calls do not match, so they are skipped.
_NUMBER: Final = rb"([-+0-9.eEaAnNiIfFtTyY]{1,40})"
_NP: Final = rb"(?:np\.float(?:16|32|64)\()?"
# One `'key': value` pair (the backreference pairs the quotes). The value must end the entry (`,` `}` or
# space), so `'1 day'` is not read as 1.
_PAIR_RE: Final = re.compile(rb"'([^'\\\r\n{}]{1,200})': {0,4}" + _NP + rb"('?)" + _NUMBER + rb"\2\)?(?=[,}\s])")

# A tqdm bar `  5%|▌         | 20/400 [` WITHOUT a description: its 3-wide percentage field starts the line
# (after \r or \n) or follows an ANSI sequence such as ESC[A. transformers draws its training and eval bars so;
# dataset and download bars (`Tokenizing train dataset:  18%|...`) have a description and never match. The
# pattern starts with the literal `%|` (fast to search for) and checks what precedes it with a fixed lookbehind.
_BAR_RE: Final = re.compile(rb"%\|(?<=[\r\nA-Za-z][ \d]{3}%\|)[^|\r\n]{0,1200}\| {0,4}(\d{1,12})/(\d{1,12}) \[")

# What a dying process leaves after its last metric line, and how the note names it. Plain substrings, found
# with bytes.rfind: much faster than a regex alternation over a long tail of progress bars.
_CRASH_MARKERS: Final = {
    b"Traceback (most recent call last)": "a Python traceback",
    b"CANCELLED": "a CANCELLED message (the job was cancelled, e.g. by SLURM)",
    b"Killed": "'Killed' (the process was killed, often by the out-of-memory killer)",
    b"KeyboardInterrupt": "a KeyboardInterrupt",
    b"SIGINT": "a termination signal (SIGINT)",
    b"SIGTERM": "a termination signal (SIGTERM)",
    b"SIGKILL": "a termination signal (SIGKILL)",
}

# A step-table header somewhere in a chunk. Only run when a cheap byte search saw "Loss" (see _table_hint).
_TABLE_HINT_RE: Final = re.compile(rb"(?i)(?:training|validation)[ \t]{1,16}loss")
_LINE_BREAK_RE: Final = re.compile(rb"[\r\n]")
_NO_LOG_RE: Final = re.compile(r"(?i)\bno[ \t]{1,16}log\b")
_NO_LOG: Final = "\x00nolog"

# Step-table column headings (lowercased) -> raw key. Every KEY_MAP key is also known in the notebook spelling
# (`mean_token_accuracy` -> "Mean Token Accuracy").
_STEP_COL: Final = "\x00step"
_EPOCH_COL: Final = "\x00epoch"
_TABLE_COLUMNS: Final[dict[str, str]] = {
    **{k.replace("_", " "): k for k in KEY_MAP},
    **{k.replace("_", " "): k for k in SUMMARY_KEYS},
    "step": _STEP_COL,
    "epoch": _EPOCH_COL,
    "training loss": "loss",
    "train loss": "loss",
    "validation loss": "eval_loss",
    "eval loss": "eval_loss",
}
_MAX_COLUMN_WORDS: Final = max(len(name.split()) for name in _TABLE_COLUMNS)

_NOT_METRICS, _TRAIN, _EVAL, _SUMMARY = -1, 0, 1, 2
_TRL_KEYS: Final = frozenset(FRAMEWORK_KEYS["trl"])
# Steps must fit the frame's int64 step column; a derived "step" beyond this comes from garbage, not a run.
_MAX_STEP: Final = 2**53


def _is_metric_key(key: str) -> bool:
    """Whether a dict key shows the dict is a metrics log and not something user code printed.

    Any key of transformers/TRL counts; another framework's alias only when it names a training metric, so a
    config dict such as DeepSpeed's ``{'lr': 1e-05, 'weight_decay': 0.0}`` is not taken for a log line.
    """
    return key in _TRL_KEYS or key.startswith("eval_") or is_summary_key(key) or is_dpo_metric(key)


def _to_float(text: str | bytes) -> float | None:
    """float(), or None for the strings the value charset admits that are not numbers (`e`, `-`, `tiny`)."""
    try:
        return float(text)
    except ValueError:
        return None


def _parse_pairs(body: bytes) -> tuple[tuple[bytes, ...], list[float]] | None:
    """The numeric ``'key': value`` pairs of one dict body, or None when it has none."""
    pairs = _PAIR_RE.findall(body)
    if not pairs:
        return None
    keys, _, raw = zip(*pairs, strict=True)
    try:  # fast path, all in C: every value converts (true for every dict transformers prints)
        return keys, list(map(float, raw))
    except ValueError:
        pass
    kept = [(k, v) for k, v in zip(keys, map(_to_float, raw), strict=True) if v is not None]
    if not kept:
        return None
    return tuple(k for k, _ in kept), [v for _, v in kept]


@dataclass
class _KeyInfo:
    """What one key layout means, worked out once per distinct layout (a log repeats the same few)."""

    kind: int
    keys: tuple[str, ...] = ()
    epoch_index: int | None = None
    # Positions of the keys that become frame rows, and their (split, metric).
    rows: list[tuple[int, str, str]] = field(default_factory=list)
    # Positions of end-of-run summary keys, and the name used in Run.summary.
    summary: list[tuple[int, str]] = field(default_factory=list)
    # Compiled on the second sighting: matches exactly this layout, for a faster parse of the next ones.
    layout: re.Pattern[bytes] | None = None
    # The layout as one alternative of a pattern that also takes any other line (see _Scan._add_bulk): with the
    # values captured (probe), and without, giving only a mark per line (check).
    probe: re.Pattern[bytes] | None = None
    check: re.Pattern[bytes] | None = None
    plain_keys: bool = False  # no key holds a byte that would shift the columns of _TO_CSV's output
    seen: int = 0


def _key_info(raw_keys: tuple[bytes, ...]) -> _KeyInfo:
    keys = tuple(k.decode("utf-8", errors="replace") for k in raw_keys)
    if not any(_is_metric_key(k) for k in keys):
        return _KeyInfo(_NOT_METRICS, keys)
    is_summary = "train_runtime" in keys
    is_eval = not is_summary and all(k == "epoch" or split_key(k)[0] == "eval" for k in keys)
    kind = _SUMMARY if is_summary else _EVAL if is_eval else _TRAIN
    info = _KeyInfo(kind, keys, keys.index("epoch") if "epoch" in keys else None)
    for i, key in enumerate(keys):
        if is_summary_key(key):
            info.summary.append((i, key.split("/", 1)[1] if key.startswith("train/") else key))
        elif (mapped := canonical(key)) is not None:
            # An eval dict's `epoch` stays a train key, as transformers' TensorBoard callback logs it
            # (train/epoch), so both readers give the same (split, metric) set for one run.
            info.rows.append((i, mapped[0], mapped[1]))
    if kind == _SUMMARY and all(metric == "epoch" for _, _, metric in info.rows):
        info.rows = []  # a plain summary dict: its epoch only repeats the last train step's
    return info


def _layout_re(raw_keys: tuple[bytes, ...]) -> re.Pattern[bytes]:
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


def _probe_re(layout: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """``layout`` + line break, or else any line: over bodies joined by ``\n``, findall gives one row per body,
    the layout's groups where the body is that layout and empty strings where it is not (a number is never empty)."""
    return re.compile(rb"(?:" + layout.pattern + rb")\n|[^\n]*\n")


def _check_re(raw_keys: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The layout without value groups, marking each line: findall gives ``\n`` for a body of this layout and an
    empty string for any other. The same language as :func:`_layout_re` (``'N'|N`` is its balanced quote)."""
    number = _NUMBER[1:-1]  # the same characters, uncaptured
    values = (b"'" + re.escape(k) + b"': {0,4}" + _NP + b"(?:'" + number + b"'|" + number + b")\\)?" for k in raw_keys)
    return re.compile(rb"\{" + b", ".join(values) + rb"\}(\n)|[^\n]*\n")


# Dict bodies to CSV in one C call: `{'loss': '0.69', 'epoch': 1}` -> `loss,0.69,epoch,1` (key, number, ...).
_TO_CSV: Final = bytes.maketrans(b":", b",")
_CSV_DROP: Final = b"{}' )"
_PLAIN_KEY_RE: Final = re.compile(rb"[!-+\--9;-~ ]{1,200}")  # printable ASCII without `,` and `:`
# pandas < 3.1 parses floats exactly only with float_precision="round_trip"; 3.1 deprecated the option because its
# single converter is exact.
_EXACT_FLOATS: Final[dict[str, str]] = (
    {} if tuple(int(x) for x in re.findall(r"\d+", pd.__version__)[:2]) >= (3, 1) else {"float_precision": "round_trip"}
)


def _csv_floats(text: bytes, rows: int, width: int) -> np.ndarray | None:
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
        frame = pd.read_csv(
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
            **_EXACT_FLOATS,
        )
    except (ValueError, TypeError):
        return None
    if frame.shape != (rows, width):
        return None
    return frame.to_numpy(dtype=np.float64)


# The same patterns with the whole match captured, for re.split (below).
_DICT_SPLIT_RE: Final = re.compile(b"(" + _DICT_RE.pattern + b")")
_BAR_SPLIT_RE: Final = re.compile(b"(" + _BAR_RE.pattern + b")")


def _split(pattern: re.Pattern[bytes], text: bytes) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """``pattern.split(text)`` (pieces: the text before a match, then the match's groups, the first being the whole
    match, and so on), with the (start, end) offsets of the matches.

    Why re.split and not finditer: it returns plain bytes, no match object or tuple per match, so a chunk with
    hundreds of thousands of matches costs neither those objects nor the garbage-collector passes they trigger;
    the offsets follow from the lengths of the pieces.
    """
    pieces = pattern.split(text)
    step = pattern.groups + 1
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    for inner in range(2, step):
        lengths[inner::step] = 0  # a group inside the match: no text of its own
    offsets = np.cumsum(lengths) - lengths
    starts = offsets[1::step]
    return pieces, starts, starts + lengths[1::step]


def parse_metric_dict(text: str) -> dict[str, float] | None:
    """Parse the first printed metrics dict in ``text`` (``{'loss': 0.69}`` or ``{'loss': '0.69'}``), safely.

    Returns its numeric entries (``nan``/``inf`` included), or None when ``text`` holds no dict with at least one
    metric key. Non-numeric values are skipped and nothing is ever evaluated. Public for tests and other readers.
    """
    for match in _DICT_RE.finditer(text.encode("utf-8", errors="replace")):
        parsed = _parse_pairs(match.group())
        if parsed is None:
            continue
        info = _key_info(parsed[0])
        if info.kind != _NOT_METRICS:
            return dict(zip(info.keys, parsed[1], strict=True))
    return None


def _table_hint(raw: bytes) -> bool:
    """Cheap byte search for a step-table header, so the case-insensitive regex runs only when needed."""
    return b"Loss" in raw or b"LOSS" in raw or b" loss" in raw


def _last_crash(text: bytes, start: int, end: int) -> bytes | None:
    """The crash marker that occurs last in ``text[start:end]``, or None."""
    best, best_pos = None, -1
    for marker in _CRASH_MARKERS:
        pos = text.rfind(marker, start, end)
        if marker == b"Killed":  # the word, not part of "UnKilled" or "Killed_jobs"
            while pos >= 0 and (text[pos - 1 : pos].isalnum() or text[pos + 6 : pos + 7].isalnum()):
                pos = text.rfind(marker, start, pos)
        if pos > best_pos:
            best, best_pos = marker, pos
    return best


@dataclass
class _Table:
    """A step table being read: its columns and the rows so far."""

    columns: list[str] | None = None
    is_eval: bool = False
    has_step: bool = False
    rows: list[tuple[int | None, list[tuple[str, float]]]] = field(default_factory=list)


def _parse_table_header(line: str) -> list[str] | None:
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
    if not columns or columns[0] not in (_STEP_COL, _EPOCH_COL) or not {"loss", "eval_loss"} & set(columns):
        return None
    return columns


# ---------------------------------------------------------------- `name: value` lines of custom training loops

# One `name: number` pair, as custom loops print them (MiniMind's `loss: 0.6605`, torchtune's DiskLogger
# `loss:0.6931`, verl's console `actor/dpo_loss:0.693`). The name starts a word; the number must end the value, so
# a unit (`9.000min`), a clock time (`0:01:03`) or a fraction (`20/400`) is no number. Bounded, no nested quantifiers.
_KV_RE: Final = re.compile(
    rb"(?<![\w/.\-])([A-Za-z_][\w/.\-]{0,100}) {0,4}: {0,4}"
    rb"([-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,4})?|[-+]?(?i:nan|inf(?:inity)?))"
    rb"(?![\w.%:/])"
)
# A cheap first test for such a pair: a colon after a letter or space, then (after spaces) the start of a number.
_KV_HINT_RE: Final = re.compile(rb":(?<=[A-Za-z_ ]:) {0,4}[-+.\dnNiI]")
# Where the step of such a line comes from, first match wins: MiniMind's `(20/4292)` (step within the epoch of
# total), or `step 20`, `Step: 20`, `Step 20/4292`, `global_step=20`, `iter 20`.
_PAREN_STEP_RE: Final = re.compile(rb"\((\d{1,12}) {0,2}/ {0,2}(\d{1,12})\)")
_STEP_WORD_RE: Final = re.compile(
    rb"(?i)(?<![\w/.])(?:global[_ ]?)?(?:step|iter(?:ation)?)s? {0,4}[:=#]? {0,4}\[? {0,2}(\d{1,12})"
    rb"(?: {0,2}/ {0,2}(\d{1,12}))?(?![\d.])"
)
# `Epoch:[1/3]`, `Epoch 1/3`, `epoch: [2/3]`: the epoch and the number of epochs.
_EPOCH_RE: Final = re.compile(rb"(?i)(?<![\w/.])epoch {0,4}[:=]? {0,4}\[? {0,2}(\d{1,9}) {0,2}/ {0,2}(\d{1,9})")
# A line that names the eval split: its metrics are eval metrics (`Validation loss: 0.52, accuracy: 0.7`).
_EVAL_WORD_RE: Final = re.compile(rb"(?i)(?<![\w/])(?:eval|evaluation|val|valid|validation)(?![\w/])")
# Pair names that are the step, not a metric (compared lowercased, last path component).
_KV_STEP_NAMES: Final = frozenset({"step", "steps", "global_step", "iter", "iteration", "it", "current_step"})
_KV_LINE_MAX: Final = 65536


def _known(key: str) -> bool:
    mapped = canonical(key)
    return mapped is not None and mapped[1] in KNOWN_METRICS


@dataclass
class _KvLayout:
    """What a line's pair names mean, worked out once per distinct list of names."""

    keys: tuple[str, ...]  # the raw key of each metric pair (lowercased when only that spelling is known)
    index: tuple[int, ...]  # positions of the metric pairs among all pairs
    step_index: int | None  # position of a `step: N` pair
    useful: bool  # at least one name is a known training metric (not only epoch or lr)
    is_eval: bool = False  # the line names the eval split
    splits: tuple[str, ...] = ()  # (split, metric) of each metric pair, as columns
    metrics: tuple[str, ...] = ()


def _kv_layout(names: tuple[bytes, ...], is_eval: bool) -> _KvLayout:
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
    return _KvLayout(
        tuple(keys),
        tuple(index),
        step_index,
        useful,
        is_eval,
        tuple(m[0] for m in mapped),
        tuple(m[1] for m in mapped),
    )


@dataclass(slots=True)
class _KvLine:
    """One `name: value` line: its metric values and whatever step information the line carries."""

    layout: _KvLayout
    values: list[float]
    cur: int | None  # the step (within the epoch, when the line also shows the epoch)
    total: int | None  # steps per epoch (or in all) from a `cur/total` form
    epoch: int | None
    epochs: int | None


class _KvScan:
    """The `name: value` lines of a file, collected only while no metric dict has been seen."""

    def __init__(self, done: bool = False) -> None:
        self.done = done
        self.lines: list[_KvLine] = []
        self.crash: bytes | None = None  # the crash marker after the last line
        self.crash_after: dict[int, bytes] = {}  # line index -> the crash marker after it
        self._layouts: dict[tuple[tuple[bytes, ...], bool], _KvLayout] = {}

    def feed(self, text: bytes, end: int) -> None:
        """Find the lines of ``text[:end]`` with two or more pairs.

        Why a hint first: the pair regex cannot start with a literal, so running it over every byte is slow on
        megabytes of progress bars. The hint (a colon right after a letter or a space, then a number) starts with
        one, which the regex engine finds at memchr speed; only lines that hold a hint are parsed.
        """
        spans: list[tuple[int, int]] = []
        pos = 0
        while (hint := _KV_HINT_RE.search(text, pos, end)) is not None:
            at = hint.start()
            line_start = pos
            lo = max(line_start, at - _KV_LINE_MAX)
            before = max(text.rfind(b"\n", lo, at), text.rfind(b"\r", lo, at))
            brk = _LINE_BREAK_RE.search(text, at, min(end, at + _KV_LINE_MAX))
            stop = brk.start() if brk else min(end, at + _KV_LINE_MAX)
            pos = stop + 1
            if (brk is None and stop < end) or (before < 0 and lo > line_start):
                continue  # longer than _KV_LINE_MAX: not a metric line
            start = before + 1 if before >= 0 else line_start
            line = text[start:stop]
            pairs = _KV_RE.findall(line)
            if len(pairs) >= 2 and self._add(line, pairs):
                spans.append((start, stop))
        if not self.lines:
            return
        crash = _last_crash(text, spans[-1][1] if spans else 0, end)
        if spans or crash is not None:
            self.crash = crash
        if spans and _last_crash(text, 0, end) is not None:
            first = len(self.lines) - len(spans)
            if first > 0 and (marker := _last_crash(text, 0, spans[0][0])) is not None:
                self.crash_after[first - 1] = marker  # after the last line of the previous chunk
            for k, (_, stop) in enumerate(spans[:-1]):
                if (marker := _last_crash(text, stop, spans[k + 1][0])) is not None:
                    self.crash_after[first + k] = marker

    def _add(self, line: bytes, pairs: list[tuple[bytes, bytes]]) -> bool:
        # Plain substring tests first: they rule out most lines much faster than the case-insensitive regexes.
        is_eval = (b"val" in line or b"VAL" in line or b"Val" in line) and _EVAL_WORD_RE.search(line) is not None
        names = tuple(map(itemgetter(0), pairs))
        layout = self._layouts.get((names, is_eval))
        if layout is None:
            layout = _kv_layout(names, is_eval)
            if len(self._layouts) < _MAX_LAYOUTS:
                self._layouts[(names, is_eval)] = layout
        if not layout.useful:
            return False
        values = [float(pairs[i][1]) for i in layout.index]
        cur = total = epoch = epochs = None
        if (m := _PAREN_STEP_RE.search(line)) is not None or (
            (b"tep" in line or b"TEP" in line or b"ter" in line or b"TER" in line)
            and (m := _STEP_WORD_RE.search(line)) is not None
        ):
            cur = int(m.group(1))
            total = int(m.group(2)) if m.group(2) else None
        elif layout.step_index is not None:
            value = float(pairs[layout.step_index][1])
            cur = int(value) if value.is_integer() and 0 <= value < _MAX_STEP else None
        if (b"poch" in line or b"POCH" in line) and (m := _EPOCH_RE.search(line)) is not None:
            epoch, epochs = int(m.group(1)), int(m.group(2))
        self.lines.append(_KvLine(layout, values, cur, total, epoch, epochs))
        return True


class _Values:
    """The numeric values of every record: one flat float64 array and each record's offset into it.

    Why not a list per record: a dict-heavy log has hundreds of thousands of records, and as many small lists
    cost memory and garbage-collector passes; the bulk path adds whole blocks of records at once.
    """

    def __init__(self) -> None:
        self.offsets = array("q", [0])  # 8 bytes a record, not an int object each
        self._blocks: list[np.ndarray] = []
        self._tail: list[float] = []

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, row: list[float]) -> None:
        self._tail.extend(row)
        self.offsets.append(self.offsets[-1] + len(row))

    def add_block(self, block: np.ndarray) -> None:
        """Records of one layout at once: ``block`` holds one row per record."""
        n, width = block.shape
        self._flush()
        self._blocks.append(np.ascontiguousarray(block, dtype=np.float64).reshape(-1))
        last = self.offsets[-1]
        self.offsets.extend(range(last + width, last + width * n + 1, width))

    def _flush(self) -> None:
        if self._tail:
            self._blocks.append(np.array(self._tail, dtype=np.float64))
            self._tail = []

    def flat(self) -> np.ndarray:
        self._flush()
        if len(self._blocks) != 1:
            self._blocks = [np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.float64)]
        return self._blocks[0]

    def row(self, i: int) -> list[float]:
        return self.flat()[self.offsets[i] : self.offsets[i + 1]].tolist()

    def part(self, lo: int, hi: int) -> _Values:
        """The records ``lo:hi``."""
        sub = _Values()
        start = self.offsets[lo]
        sub._blocks = [self.flat()[start : self.offsets[hi]]]
        sub.offsets = array("q", [o - start for o in self.offsets[lo : hi + 1]])
        return sub


class _Scan:
    """Everything one pass over a file collects. Fed chunk by chunk; keeps parsed records, never the text."""

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.infos: list[_KeyInfo] = []
        self.values = _Values()
        self.epochs: list[float | None] = []
        # The first description-less bars after each record (before the next one), flat: the record's index (never
        # decreasing), the bar's counter and its total.
        # Why arrays and interned totals: a long log has millions of candidate bars, and an int and a bytes object
        # per bar cost ~130 bytes where these cost ~24 (the totals are a handful of values, shared).
        self.cand_rec = array("q")
        self.cand_n = array("q")  # the bar's counter (at most 12 digits: it fits)
        self.cand_total: list[bytes] = []
        self._interned: dict[bytes, bytes] = {}
        self.bar_last: dict[bytes, bytes] = {}  # after the last record: bar total -> the last counter
        self.totals: set[bytes] = set()  # totals of the last bar before each record
        # The gap after the last record so far: whether it holds a `%|`, and the total of the bar at its last one.
        self._gap_end: tuple[bool, bytes | None] = (False, None)
        # The same, per record: the index of the record the bar precedes (and in totals_of, the total), to split a
        # file into runs.
        self.totals_at = array("q")
        self.totals_of: list[bytes] = []  # parallel to totals_at: two flat lists, not a tuple per record
        self.crash: bytes | None = None  # the crash marker seen after the last record
        # Record index -> the crash marker seen after it, before the next record (to end a run inside a file).
        self.crash_after: dict[int, bytes] = {}
        self.crash_after_finish = False
        self.table = _Table()
        self.kv = _KvScan()
        # What the whole-file read saw of the file itself (a live tail leaves them unset: its file is still growing).
        self.complete = False  # the whole file was scanned (StdoutReader), not a live tail
        self.size = 0  # bytes of text scanned
        self.encoding: str | None = None  # the UTF-16/32 codec the file was decoded from, if any
        self.nul_at: int | None = None  # offset of the first NUL byte: binary data, not console text
        self.torn_at: int | None = None  # offset of a last line that has no line break (the file was cut there)
        self._infos: dict[tuple[bytes, ...], _KeyInfo] = {}
        self._layouts = 0
        self._last: _KeyInfo | None = None  # the layout of the previous record: usually the next one's too
        self._main: _KeyInfo | None = None  # the most frequent metric layout with a compiled pattern
        self._open = False  # the last record still collects bars

    def part(self, lo: int, hi: int, last: bool) -> _Scan:
        """The records ``lo:hi`` as a scan of their own (one run of a file that holds several)."""
        sub = _Scan()
        sub.kinds = self.kinds[lo:hi]
        sub.infos = self.infos[lo:hi]
        sub.values = self.values.part(lo, hi)
        sub.epochs = self.epochs[lo:hi]
        a, b = bisect_left(self.cand_rec, lo), bisect_left(self.cand_rec, hi)
        sub.cand_rec = array("q", [r - lo for r in self.cand_rec[a:b]])
        sub.cand_n = self.cand_n[a:b]
        sub.cand_total = self.cand_total[a:b]
        first = bisect_left(self.totals_at, lo)
        stop = len(self.totals_at) if last else bisect_left(self.totals_at, hi)
        sub.totals = set(self.totals_of[first:stop])
        sub._gap_end = self._gap_end if last else (False, None)
        if not last:
            # The bars after a run's last record are the next run's: keep those of a total this run used.
            k = bisect_left(sub.cand_rec, hi - 1 - lo)
            own = sub.totals | set(sub.cand_total[:k])
            if own:
                keep = [j for j in range(k, len(sub.cand_rec)) if sub.cand_total[j] in own]
                sub.cand_rec = sub.cand_rec[:k] + array("q", [sub.cand_rec[j] for j in keep])
                sub.cand_n = sub.cand_n[:k] + array("q", [sub.cand_n[j] for j in keep])
                sub.cand_total = sub.cand_total[:k] + [sub.cand_total[j] for j in keep]
        sub.bar_last = self.bar_last if last else {}
        sub.crash = self.crash if last else self.crash_after.get(hi - 1)
        sub.crash_after_finish = self.crash_after_finish if last else sub.crash is not None and _SUMMARY in sub.kinds
        return sub

    def feed(self, text: bytes, end: int, maybe_table: bool) -> None:
        """Scan ``text[:end]`` (complete lines only)."""
        starts: list[int] = []
        ends: list[int] = []
        chunk = text if end == len(text) else text[:end]
        pieces, body_start, body_end = _split(_DICT_SPLIT_RE, chunk)
        bodies = pieces[1::2]
        body_starts, body_ends = body_start.tolist(), body_end.tolist()
        i = 0
        # Record by record until one metric layout has been seen twice (and so has a compiled pattern) ...
        while i < len(bodies) and self._main is None:
            if self._add_record(bodies[i]):
                starts.append(body_starts[i])
                ends.append(body_ends[i])
            i += 1
        # ... then the rest in bulk.
        if i < len(bodies):
            self._add_bulk(bodies[i:], body_starts[i:], body_ends[i:], starts, ends)
        self._add_bars(chunk, starts, ends)
        # The state of the bars where the chunk ends: after the last record, this is how the log leaves them.
        tail = _BAR_RE.findall(chunk, ends[-1] if ends else 0)
        if tail:
            self.bar_last.update({total: n for n, total in tail})
        was_open = self._open
        self._open = self._open or bool(starts)

        crash = _last_crash(text, ends[-1] if ends else 0, end)
        if starts or crash is not None:
            self.crash = crash
        if crash is not None and _SUMMARY in self.kinds:
            self.crash_after_finish = True
        if self.kinds and _last_crash(text, 0, end) is not None:
            # Rare (a marker in this chunk), so worth the search per gap: which record each marker follows.
            first = len(self.kinds) - len(starts)
            owners = [first - 1 if was_open else -1, *range(first, len(self.kinds))]
            for owner, lo, hi in zip(owners, [0, *ends], [*starts, end], strict=True):
                if owner >= 0 and (marker := _last_crash(text, lo, hi)) is not None:
                    self.crash_after[owner] = marker

        # `name: value` lines are only wanted while the file has shown no metric dict.
        if self.kinds:
            if not self.kv.done:
                self.kv = _KvScan(done=True)
        else:
            self.kv.feed(text, end)

        # A table is only read when the log has no metric dicts, so stop looking once one was found.
        if self.table.columns is not None or (not self.kinds and maybe_table and _TABLE_HINT_RE.search(text, 0, end)):
            self._scan_table(text, end)

    def _add_bars(self, text: bytes, starts: list[int], ends: list[int]) -> None:
        """Give each record its candidate bars, and note the bar each record follows.

        The gaps are the stretches between records (the first belongs to the record left open by the previous
        chunk). A record's candidates are the first description-less bars of the gap after it; the total of the
        bar at the last ``%|`` of a gap is noted (usually the training bar, which proves the bar's total even
        where buffering put a run of eval bars right after a record).

        Why one pass over the chunk: a log that prints a dict every step has as many gaps as records, and a regex
        call per gap cost more than the bars themselves. One split finds every bar, numpy assigns each to its gap
        by position, and only the few per record that are kept reach Python.
        """
        end = len(text)
        pieces, bar_start, bar_end = _split(_BAR_SPLIT_RE, text)
        counters, totals = pieces[2::4], pieces[3::4]
        first = len(self.kinds) - len(starts)
        gap_lo = np.array([0, *ends], dtype=np.int64)
        gap_hi = np.array([*starts, end], dtype=np.int64)
        last_pct = np.fromiter(map(text.rfind, repeat(b"%|"), gap_lo.tolist(), gap_hi.tolist()), np.int64, len(gap_lo))
        gap = np.searchsorted(gap_lo, bar_start, side="right") - 1
        inside = np.flatnonzero(bar_end <= gap_hi[gap])  # a bar never reaches into a record
        gap_in = gap[inside]
        # The bar at the last `%|` of each gap, if it is one.
        last = np.searchsorted(gap_in, np.arange(len(gap_lo)), side="right") - 1
        has = (last >= 0) & (last_pct >= 0)
        has[has] &= (gap_in[last[has]] == np.flatnonzero(has)) & (bar_start[inside[last[has]]] == last_pct[has])
        # The gap still open at the chunk's start continues the previous chunk's last gap, and the gap at its end
        # may continue into the next: their last `%|` is known only once a record closes them (or the file ends).
        head = (True, totals[int(inside[last[0]])] if has[0] else None) if last_pct[0] >= 0 else self._gap_end
        if len(gap_lo) == 1:
            self._gap_end = head
            self._add_candidates(gap, inside, gap_in, len(gap_lo), counters, totals, first)
            return
        if head[1] is not None:
            self.totals_at.append(first)
            self.totals_of.append(self._intern(head[1]))
            self.totals.add(head[1])
        middle = np.flatnonzero(has[1:-1]) + 1
        ending = [self._intern(totals[k]) for k in inside[last[middle]].tolist()]
        self.totals_at.extend((middle + first).tolist())
        self.totals_of.extend(ending)
        self.totals.update(ending)
        tail = len(gap_lo) - 1
        self._gap_end = (bool(last_pct[tail] >= 0), totals[int(inside[last[tail]])] if has[tail] else None)
        self._add_candidates(gap, inside, gap_in, len(gap_lo), counters, totals, first)

    def _add_candidates(
        self,
        gap: np.ndarray,
        inside: np.ndarray,
        gap_in: np.ndarray,
        gaps: int,
        counters: list[bytes],
        totals: list[bytes],
        first: int,
    ) -> None:
        """The first description-less bars of each gap become the candidates of the record before it (the open
        record of the previous chunk gets only as many as it still lacks)."""
        rank = np.arange(len(gap_in)) - np.searchsorted(gap_in, gap_in, side="left")
        room = np.full(gaps, _BAR_CANDIDATES, dtype=np.int64)
        if self._open and first > 0:
            room[0] = _BAR_CANDIDATES - (len(self.cand_rec) - bisect_left(self.cand_rec, first - 1))
        else:
            room[0] = 0  # no record before the first gap
        keep = inside[rank < room[gap_in]].tolist()
        self.cand_rec.extend((gap[keep] + (first - 1)).tolist())
        self.cand_n.extend([int(counters[k]) for k in keep])
        self.cand_total.extend([self._intern(totals[k]) for k in keep])

    def _intern(self, total: bytes) -> bytes:
        """One shared object per distinct bar total (a log has a handful: the training bar's, the eval bar's)."""
        return self._interned.setdefault(total, total)

    def _add_bulk(
        self, bodies: list[bytes], body_starts: list[int], body_ends: list[int], starts: list[int], ends: list[int]
    ) -> None:
        """Add the records among ``bodies`` (dict candidates, in order), parsing those of the main layout at once.

        Why: a log that prints a dict every step holds hundreds of thousands of them, nearly all of one layout, and
        per-record Python work dominated its reading. One findall over the joined bodies picks out the bodies of the
        main layout with their value strings, and the CSV parser converts those values in bulk; any other body (an
        eval or summary dict, a dict some code printed, a value that is no number) goes through :meth:`_add_record`,
        as before. The records, their values and their order are exactly what record-by-record parsing gives.
        """
        main = self._main
        assert main is not None and main.probe is not None
        joined = b"\n".join(bodies) + b"\n"
        width = len(main.keys)
        fast: list[int] = []
        block = None
        if main.plain_keys and main.check is not None:
            # Fastest: mark the bodies of the main layout, then turn them into CSV lines in one translate.
            marks = main.check.findall(joined)
            if len(marks) == len(bodies):
                fast = [i for i, mark in enumerate(marks) if mark]
                if fast:
                    text = b"\n".join([bodies[i] for i in fast]).translate(_TO_CSV, _CSV_DROP)
                    block = _csv_floats(text, len(fast), width)
        if block is None:
            # Values the translation cannot carry (np.float64(...) wrappers): capture them with the layout's groups.
            rows = main.probe.findall(joined)
            # (quote, number) per value; a number is never empty, so an empty first one means "not this layout".
            fast = [i for i, row in enumerate(rows) if row[1]] if len(rows) == len(bodies) else []
            if fast:
                text = b"\n".join([b",".join(rows[i]) for i in fast])
                block = _csv_floats(text, len(fast), width)
        if block is None:
            for body, start, stop in zip(bodies, body_starts, body_ends, strict=True):
                if self._add_record(body):
                    starts.append(start)
                    ends.append(stop)
            return
        is_record = np.zeros(len(bodies), dtype=bool)
        is_record[fast] = True
        slow = np.flatnonzero(~is_record).tolist()
        done = taken = 0
        # Runs of main-layout records are added as blocks; each other dict between them goes record by record.
        for stop in [*slow, len(bodies)]:
            if stop > done:
                self._add_block(main, block[taken : taken + stop - done])
                taken += stop - done
            if stop < len(bodies):
                is_record[stop] = self._add_record(bodies[stop])
            done = stop + 1
        main.seen += len(fast)
        chosen = np.flatnonzero(is_record)
        starts.extend(np.array(body_starts, dtype=np.int64)[chosen].tolist())
        ends.extend(np.array(body_ends, dtype=np.int64)[chosen].tolist())

    def _add_block(self, info: _KeyInfo, block: np.ndarray) -> None:
        n = len(block)
        self.kinds.extend(repeat(info.kind, n))
        self.infos.extend(repeat(info, n))
        self.values.add_block(block)
        self.epochs.extend(block[:, info.epoch_index].tolist() if info.epoch_index is not None else repeat(None, n))
        self._last = info

    def _add_record(self, body: bytes) -> bool:
        info, values = self._parse(body)
        if info is None or info.kind == _NOT_METRICS:
            return False
        self._last = info
        self.kinds.append(info.kind)
        self.infos.append(info)
        self.values.add(values)
        self.epochs.append(values[info.epoch_index] if info.epoch_index is not None else None)
        return True

    def _parse(self, body: bytes) -> tuple[_KeyInfo | None, list[float]]:
        last = self._last
        if last is not None and last.layout is not None and (m := last.layout.fullmatch(body)) is not None:
            try:
                return last, list(map(float, m.groups()[1::2]))
            except ValueError:
                pass
        parsed = _parse_pairs(body)
        if parsed is None:
            return None, []
        keys, values = parsed
        info = self._infos.get(keys)
        if info is None:
            info = self._infos[keys] = _key_info(keys)
        info.seen += 1
        if info.seen == 2 and info.kind != _NOT_METRICS and self._layouts < _MAX_LAYOUTS:
            info.layout = _layout_re(keys)
            info.probe = _probe_re(info.layout)
            info.check = _check_re(keys)
            info.plain_keys = all(_PLAIN_KEY_RE.fullmatch(k) for k in keys)
            self._layouts += 1
        if info.probe is not None and (self._main is None or info.seen > self._main.seen):
            self._main = info
        return info, values

    def _scan_table(self, text: bytes, end: int) -> None:
        table = self.table
        pos = 0
        while pos < end:
            if table.columns is None:
                hint = _TABLE_HINT_RE.search(text, pos, end)
                if hint is None:
                    return
                start = max(text.rfind(b"\n", 0, hint.start()), text.rfind(b"\r", 0, hint.start())) + 1
                brk = _LINE_BREAK_RE.search(text, hint.end(), end)
                line_end = brk.start() if brk else end
                columns = _parse_table_header(text[start:line_end].decode("utf-8", errors="replace"))
                if columns is not None:
                    table.columns = columns
                    table.has_step = _STEP_COL in columns
                    table.is_eval = "eval_loss" in columns
                pos = line_end + 1
                continue
            brk = _LINE_BREAK_RE.search(text, pos, end)
            line_end = brk.start() if brk else end
            line = text[pos:line_end].decode("utf-8", errors="replace")
            if not line.strip() or "%|" in line:
                pos = line_end + 1  # blank lines and progress bars between rows do not end the table
            elif self._add_table_row(line):
                pos = line_end + 1
            else:
                table.columns = None  # the table ended; this line may be the next table's header

    def _add_table_row(self, line: str) -> bool:
        table = self.table
        assert table.columns is not None
        cells = _NO_LOG_RE.sub(_NO_LOG, line).split()
        if len(cells) != len(table.columns):
            return False
        step: int | None = None
        items: list[tuple[str, float]] = []
        for column, cell in zip(table.columns, cells, strict=True):
            if cell == _NO_LOG:
                continue
            value = _to_float(cell)
            if value is None:
                return False
            if column == _STEP_COL:
                if not value.is_integer() or not 0 <= value < _MAX_STEP:
                    return False
                step = int(value)
                continue
            key = "epoch" if column == _EPOCH_COL else column
            if table.is_eval and key not in ("loss", "eval_loss", "epoch") and not key.startswith("eval_"):
                key = "eval_" + key  # the notebook table shows eval metrics beside "Validation Loss"
            items.append((key, value))
        table.rows.append((step, items))
        return True


def _cut_point(text: bytes) -> int:
    """Where to stop scanning this chunk: at the last line break (the unfinished line is carried over).

    With no line break in the last ``_MAX_CARRY`` characters, cut at the last ``{`` before the end instead: a dict
    holds no brace, so a dict that crosses the cut starts at that ``{`` and stays whole for the next chunk.
    """
    cut = max(text.rfind(b"\n"), text.rfind(b"\r"))
    if cut > 0 and len(text) - cut <= _MAX_CARRY:
        return cut
    if len(text) <= _MAX_CARRY:
        return max(cut, 0)
    cut = len(text) - _DICT_MAX - 2
    brace = text.rfind(b"{", max(0, cut - _DICT_MAX - 2), cut)
    return brace if brace > 0 else cut


def _scan_file(path: Path) -> _Scan:
    scan = _Scan()
    carry = b"\n"  # a virtual line start, so a bar on the very first line counts as description-less
    hint_before = False  # the carried-over text came from a chunk that may hold a table header
    try:
        with path.open("rb") as handle:
            stream = UnwrapReader(Utf8Reader(handle))  # UTF-16/32 transcoded; dicts wrapped over lines joined
            while True:
                raw = stream.read(_CHUNK)
                final = not raw
                if scan.nul_at is None and (nul := raw.find(b"\x00")) >= 0:
                    scan.nul_at = scan.size + nul
                scan.size += len(raw)
                text = carry + raw
                cut = len(text) if final else _cut_point(text)
                if final:
                    # A last line without a line break: the writer was stopped mid-line (or the copy was cut).
                    last_break = max(text.rfind(b"\n"), text.rfind(b"\r"))
                    if text[last_break + 1 :].strip():
                        scan.torn_at = scan.size - (len(text) - last_break - 1)
                hint = not scan.kinds and _table_hint(raw)
                if cut > 0:
                    scan.feed(text, cut, hint or hint_before)
                carry = text[cut:]
                hint_before = hint
                if final:
                    break
            scan.encoding = stream.encoding
            scan.complete = True
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    return scan


@dataclass
class _Steps:
    steps: list[int | None]
    note: str


def _main_total(scan: _Scan) -> bytes | None:
    """The training bar's total: the largest total among the description-less bars seen right before and after
    the dicts and at the end of the log (eval bars are shorter)."""
    totals = set(scan.bar_last) | scan.totals | ({scan._gap_end[1]} if scan._gap_end[1] is not None else set())
    totals.update(scan.cand_total)
    return max(totals, key=int, default=None)


def _check_increasing(scan: _Scan, steps: list[int | None]) -> list[int | None] | None:
    """Strictly increasing train steps, eval records without a step given the preceding train step; else None."""
    last_train: int | None = None
    out = list(steps)
    for i, kind in enumerate(scan.kinds):
        step = out[i]
        if kind == _TRAIN:
            if step is None or (last_train is not None and step <= last_train):
                return None
            last_train = step
        elif kind == _EVAL and step is None:
            if last_train is None:
                return None
            out[i] = last_train
    return out


def _steps_from_bars(scan: _Scan) -> _Steps | None:
    """(a) The counter of the first training-bar redraw after each dict.

    Why this is the step: ``ProgressCallback.on_log`` runs after ``on_step_end`` has moved the bar to
    ``global_step``, and ``tqdm.write`` redraws the bars right after printing the dict.
    """
    wanted = _main_total(scan)
    if wanted is None:
        return None
    # The first candidate of that total of each record (a record's candidates are in order).
    hits = np.flatnonzero(np.array(scan.cand_total, dtype=bytes) == wanted) if scan.cand_total else np.zeros(0, int)
    records, first = np.unique(np.array(scan.cand_rec, dtype=np.int64)[hits], return_index=True)
    counters = np.asarray(scan.cand_n, dtype=np.int64)[hits[first]] if len(hits) else np.zeros(0, int)
    found_at = np.full(len(scan.kinds), -1, dtype=np.int64)
    found_at[records] = counters
    found: list[int | None] = [None if n < 0 else n for n in found_at.tolist()]
    steps = _check_increasing(scan, found)
    if steps is None:
        return None
    return _Steps(steps, "steps derived from the tqdm progress bar (dict lines carry no step)")


def _epoch_resolution(epochs: list[float]) -> float:
    """How finely epochs were printed (transformers <= 4.x rounds to 0.01; 5.x prints 4 significant digits)."""
    decimals = 0
    for epoch in epochs:
        while decimals < 7:
            scaled = epoch * 10**decimals
            if not math.isfinite(scaled) or abs(scaled - round(scaled)) < 1e-6:
                break
            decimals += 1
    return 10.0**-decimals


def _steps_from_epochs(scan: _Scan) -> _Steps | None:
    """(b) ``epoch`` × steps per epoch, where steps per epoch = the training bar's total / the final epoch.

    Only when the run visibly reached its end (a summary dict, or the bar at its total): before that, the last
    epoch seen is not the one the bar's total belongs to. Epochs printed rounded (0.06, 0.12, ...) are snapped to
    the logging interval when the rounding alone can explain the distance to it.
    """
    total_key = _main_total(scan)
    if total_key is None:
        return None
    total = int(total_key)
    finite = [e for e in scan.epochs if e is not None and math.isfinite(e)]
    summary_epochs = [e for k, e in zip(scan.kinds, scan.epochs, strict=True) if k == _SUMMARY and e is not None]
    if summary_epochs:
        final_epoch = summary_epochs[-1]
    elif int(scan.bar_last.get(total_key, b"0")) >= total and finite:
        final_epoch = max(finite)
    else:
        return None
    if not math.isfinite(final_epoch) or final_epoch <= 0:
        return None
    per_epoch = total / final_epoch
    raw = [e * per_epoch if e is not None and 0 <= e * per_epoch < _MAX_STEP else None for e in scan.epochs]
    steps: list[int | None] = [round(r) if r is not None else None for r in raw]
    note = f"steps derived from epoch × {per_epoch:g} steps per epoch (dict lines carry no step)"

    tolerance = per_epoch * _epoch_resolution(finite) / 2
    train_raw = [r for k, r in zip(scan.kinds, raw, strict=True) if k == _TRAIN and r is not None]
    diffs = [b - a for a, b in pairwise(train_raw) if b > a]
    if tolerance >= 0.5 and diffs:
        interval = round(median(diffs))
        if interval >= 2 and tolerance < interval / 2:
            for i, r in enumerate(raw):
                grid = interval * round(r / interval) if r is not None else None
                # 1e-6: a boundary epoch (step 20 of 160 = 0.125, printed 0.12) is exactly `tolerance` away.
                if r is not None and grid is not None and abs(r - grid) <= tolerance + 1e-6:
                    steps[i] = grid
            note += f", snapped to the logging interval of {interval} steps (the epochs are printed rounded)"
    checked = _check_increasing(scan, steps)
    return _Steps(checked, note) if checked is not None else None


def _steps_from_order(scan: _Scan, why: str) -> _Steps:
    """(c) The ordinal of each train dict; an eval dict takes the step of the train dict before it."""
    steps: list[int | None] = []
    count = 0
    for kind, info in zip(scan.kinds, scan.infos, strict=True):
        if kind == _TRAIN or (kind == _SUMMARY and info.rows):
            count += 1  # a summary line that carries per-step keys is one more log line
        steps.append(count)
    return _Steps(steps, f"steps derived from the order of the log lines (1, 2, 3, ...): {why}")


def _derive_steps(scan: _Scan) -> _Steps:
    """The first step source that gives strictly increasing train steps, used for the whole file.

    Why all or nothing: mixing sources inside one file could merge or reorder points silently. A file whose bar
    or epoch steps repeat or go back gets plain ordinals, which at least keep every point and its order.
    """
    found = _steps_from_bars(scan) or _steps_from_epochs(scan)
    if found is not None:
        return found
    if not scan.bar_last:
        return _steps_from_order(scan, "there is no training progress bar to take the step from")
    return _steps_from_order(scan, "the progress bar and the epochs do not give increasing steps")


def _result_from_dicts(scan: _Scan) -> ReadResult:
    derived = _derive_steps(scan)
    notes = [derived.note]
    steps = derived.steps
    summary: dict[str, float] = {}
    dropped: set[int] = set()
    # End-of-run summary dicts (a few at most): their summary keys, and whether their per-step keys become a point.
    summaries = [i for i, kind in enumerate(scan.kinds) if kind == _SUMMARY]
    if summaries:
        trains = [i for i, kind in enumerate(scan.kinds) if kind == _TRAIN]
        for i in summaries:
            info, vals, step = scan.infos[i], scan.values.row(i), steps[i]
            for j, name in info.summary:
                summary[name] = vals[j]
            if not info.rows:
                dropped.add(i)
                continue
            before = bisect_left(trains, i)
            last_train = steps[trains[before - 1]] if before else None
            extra = sorted({m for _, _, m in info.rows} - {"epoch"})
            shown = ", ".join(extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
            if step is None or (last_train is not None and step <= last_train):
                notes.append(f"the final train_runtime line also carried {shown}: ignored (no step for it)")
                dropped.add(i)
                continue
            notes.append(
                f"the final train_runtime line also carried {shown}: stored as a train point at step {step} "
                "(the average over the steps after the last logging step)"
            )
    kept = [i for i, step in enumerate(steps) if step is not None and i not in dropped]
    frame = _frame_from_records(scan, kept, steps) if kept else empty_frame()
    return ReadResult(frame=frame, steps_derived=True, summary=summary, notes=notes)


def _frame_from_records(scan: _Scan, kept: list[int], steps: list[int | None]) -> pd.DataFrame:
    """The frame of the records ``kept`` (in file order), built from integer codes per layout, never per-point
    strings: each distinct layout maps its row keys to codes once, and numpy places them for all its records."""
    infos = scan.infos
    split_labels: list[str] = []
    metric_labels: list[str] = []
    label_codes: dict[str, int] = {}
    group_of: dict[int, int] = {}  # id of a layout -> its number
    layouts: list[_KeyInfo] = []
    record_group: list[int] = []
    for i in kept:
        info = infos[i]
        g = group_of.get(id(info))
        if g is None:
            g = group_of[id(info)] = len(layouts)
            layouts.append(info)
        record_group.append(g)
    codes: list[tuple[np.ndarray, np.ndarray]] = []
    for info in layouts:
        s_codes, m_codes = [], []
        for _, split, metric in info.rows:
            if split not in split_labels:
                split_labels.append(split)
            s_codes.append(split_labels.index(split))
            m_codes.append(label_codes.setdefault(metric, len(label_codes)))
        codes.append((np.array(s_codes, dtype=np.int64), np.array(m_codes, dtype=np.int64)))
    metric_labels = list(label_codes)
    group = np.array(record_group, dtype=np.int64)
    counts = np.array([len(info.rows) for info in layouts], dtype=np.int64)[group]
    total = int(counts.sum())
    offsets = np.zeros(len(kept), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    split_col = np.empty(total, dtype=np.int64)
    metric_col = np.empty(total, dtype=np.int64)
    value_col = np.empty(total, dtype=np.float64)
    source = scan.values.flat()
    record_at = np.array(scan.values.offsets, dtype=np.int64)[np.array(kept, dtype=np.int64)]
    for g, (info, (s_codes, m_codes)) in enumerate(zip(layouts, codes, strict=True)):
        if info.rows:
            positions = np.array([i for i, _, _ in info.rows], dtype=np.int64)  # of the values that become rows
            mine = group == g
            at = offsets[mine][:, None] + np.arange(len(positions))
            split_col[at] = s_codes
            metric_col[at] = m_codes
            value_col[at] = source[record_at[mine][:, None] + positions]
    step_col = np.repeat(np.array([steps[i] for i in kept], dtype=np.int64), counts)
    return frame_from_codes(
        split_col, split_labels, metric_col, metric_labels, step_col, value_col, np.full(total, np.nan)
    )


def _table_runs(table: _Table) -> list[list[tuple[int | None, list[tuple[str, float]]]]]:
    """The table's rows, cut where the Step column goes back (a second run printed its own table)."""
    runs: list[list[tuple[int | None, list[tuple[str, float]]]]] = [[]]
    last: int | None = None
    for step, items in table.rows:
        if step is not None and last is not None and step < last and runs[-1]:
            runs.append([])
        runs[-1].append((step, items))
        last = step if step is not None else last
    return runs


def _result_from_table(table: _Table, rows: list[tuple[int | None, list[tuple[str, float]]]]) -> ReadResult:
    split: list[str] = []
    metric: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    for ordinal, (step, items) in enumerate(rows, start=1):
        for key, value in items:
            mapped = canonical(key)
            if mapped is None:
                continue
            split.append(mapped[0])
            metric.append(mapped[1])
            steps.append(step if step is not None else ordinal)
            values.append(value)
    notes = ["read from the step table printed in the log"]
    if not table.has_step:
        notes.append("steps derived from the order of the table rows (1, 2, 3, ...): the table has no Step column")
    frame = make_frame(split, metric, steps, values) if split else empty_frame()
    return ReadResult(frame=frame, steps_derived=not table.has_step, notes=notes)


def _one_run(scan: _Scan) -> bool:
    """Whether :func:`_run_bounds` can only find one run, tested with numpy: no train dict after a summary dict,
    and finite epochs that never go back (the usual file: one run). Why: the loop there costs a second per
    million records."""
    kinds = np.array(scan.kinds, dtype=np.int64)
    summaries = np.flatnonzero(kinds == _SUMMARY)
    if len(summaries) and (kinds[summaries[0] :] == _TRAIN).any():
        return False
    epochs = np.array([np.nan if e is None else e for e in scan.epochs], dtype=np.float64)
    epochs = epochs[np.isfinite(epochs)]
    return bool((epochs[1:] >= epochs[:-1]).all()) if len(epochs) > 1 else True


def _run_bounds(scan: _Scan) -> list[tuple[int, int, str]]:
    """Where the runs of a file start: (first record, end, why a new run starts there).

    Why these signs: transformers prints a train dict only while training, and the epoch only grows within a run
    (eval dicts repeat the current epoch). So a train dict after the end-of-training summary, or any dict whose
    epoch is smaller than one already seen, belongs to a run started after the previous one, such as a second
    ``python train.py >> train.log``. The bars are not used: buffering can print them out of order with the dicts.
    """
    if _one_run(scan):
        return [(0, len(scan.kinds), "")]
    starts: list[tuple[int, str]] = [(0, "")]
    finished = False
    top: float | None = None
    for i, (kind, epoch) in enumerate(zip(scan.kinds, scan.epochs, strict=True)):
        finite = epoch is not None and math.isfinite(epoch)
        if kind != _SUMMARY and i > starts[-1][0]:
            why = ""
            if finished and kind == _TRAIN:
                why = "a new training log follows the end-of-training summary (train_runtime) of the run before"
            elif finite and top is not None and epoch is not None and epoch < top:
                why = f"the epoch goes back from {top:g} to {epoch:g}"
            if why:
                starts.append((i, why))
                finished, top = False, None
        if kind == _SUMMARY:
            finished = True
        if finite and epoch is not None:
            top = epoch if top is None else max(top, epoch)
    ends = [lo for lo, _ in starts[1:]] + [len(scan.kinds)]
    return [(lo, hi, why) for (lo, why), hi in zip(starts, ends, strict=True)]


def _set_ending(result: ReadResult, kinds: list[int], crash: bytes | None, crash_after_finish: bool) -> None:
    if _SUMMARY in kinds:
        result.ended = Ended.FINISHED
        if crash_after_finish:
            result.notes.append("the log shows an error after the end-of-training summary (training had ended)")
    elif crash is not None:
        result.ended = Ended.CRASHED
        result.notes.append(f"the log shows {_CRASH_MARKERS[crash]} after the last metric line of this run")


def _dict_runs(scan: _Scan) -> list[ReadResult]:
    bounds = _run_bounds(scan)
    if len(bounds) == 1:
        result = _result_from_dicts(scan)
        _set_ending(result, scan.kinds, scan.crash, scan.crash_after_finish)
        if scan.crash is not None and _SUMMARY not in scan.kinds:
            result.notes[-1] = f"the log ends with {_CRASH_MARKERS[scan.crash]} after the last metric line"
        return [result]
    results = []
    for k, (lo, hi, why) in enumerate(bounds):
        last = k == len(bounds) - 1
        part = scan.part(lo, hi, last)
        result = _result_from_dicts(part)
        crash = part.crash
        _set_ending(result, part.kinds, crash, crash is not None and _SUMMARY in part.kinds)
        if why:
            result.notes.append(f"a new run starts here in the same file: {why}")
        if not last and result.ended is Ended.UNKNOWN:
            result.notes.append(
                "another run follows this one in the same file; this one has no end-of-training summary"
            )
        results.append(result)
    return results


def _kv_steps(lines: list[_KvLine]) -> tuple[list[int], str, bool]:
    """The step of each `name: value` line, how it was found, and whether it was derived (line order).

    MiniMind prints the step within the epoch, ``Epoch:[e/E](cur/total)``: when that counter restarts at each epoch
    the global step is ``(e - first epoch) * total + cur``. A counter that keeps growing across epochs is used as
    it is. Without a step on every line, the line order is the step.
    """
    # An eval line without a step of its own (`Validation loss: 0.52, ...`) belongs to the step before it.
    previous: _KvLine | None = None
    for line in lines:
        if line.cur is None and line.layout.is_eval and previous is not None:
            line.cur, line.total = previous.cur, previous.total
            line.epoch, line.epochs = previous.epoch, previous.epochs
        previous = line if line.cur is not None else previous
    if any(line.cur is None for line in lines):
        return list(range(1, len(lines) + 1)), "steps derived from the order of the `name: value` lines", True
    raw = [line.cur for line in lines if line.cur is not None]

    def drops(seq: list[int]) -> int:
        return sum(b < a for a, b in pairwise(seq))

    if all(line.epoch is not None and line.total is not None for line in lines):
        base = 0 if min(line.epoch or 0 for line in lines) == 0 else 1
        combined = [((line.epoch or 0) - base) * (line.total or 0) + (line.cur or 0) for line in lines]
        if max(combined) < _MAX_STEP and drops(combined) < drops(raw):
            return combined, "steps from the log: (epoch - 1) × steps per epoch + the step within the epoch", False
    return raw, "steps from the log lines (their `cur/total` or `step N`)", False


def _kv_runs(kv: _KvScan) -> list[ReadResult]:
    """Results from `name: value` lines: one per run, a run ending where the step goes back."""
    lines = kv.lines
    steps, how, derived = _kv_steps(lines)
    combined = "epoch" in how
    starts = [0] + [i for i in range(1, len(lines)) if steps[i] < steps[i - 1]]
    ends = [*starts[1:], len(lines)]
    results: list[ReadResult] = []
    for k, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        split: list[str] = []
        metric: list[str] = []
        points: list[int] = []
        values: list[float] = []
        for line, step in zip(lines[lo:hi], steps[lo:hi], strict=True):
            split.extend(line.layout.splits)
            metric.extend(line.layout.metrics)
            points.extend(repeat(step, len(line.values)))
            values.extend(line.values)
        notes = [f"read {hi - lo} `name: value` line(s) (no metric dicts or step table in the log)", how]
        if k > 0:
            notes.append(f"a new run starts here in the same file: the step goes back to {steps[lo]}")
        frame = make_frame(split, metric, points, values) if split else empty_frame()
        result = ReadResult(frame=frame, steps_derived=derived, notes=notes)
        last = lines[hi - 1]
        total = last.total
        if total is not None and combined and last.epochs is not None:
            done, planned = steps[hi - 1], last.epochs * total
        else:
            done, planned = (last.cur or 0), total
        epochs_done = last.epoch is None or last.epochs is None or last.epoch >= last.epochs
        crash = kv.crash if k == len(starts) - 1 else kv.crash_after.get(hi - 1)
        if planned is not None and done >= planned and epochs_done and not derived:
            result.ended = Ended.FINISHED
        elif crash is not None:
            result.ended = Ended.CRASHED
            result.notes.append(f"the log shows {_CRASH_MARKERS[crash]} after the last metric line of this run")
        if planned is not None and result.ended is not Ended.FINISHED and not derived:
            result.notes.append(f"stopped at step {done} of {planned}")
        results.append(result)
    return results


def _read_file_runs(path: Path) -> list[ReadResult]:
    """Every run in one file: dict lines first, else a step table, else `name: value` lines; with the settings
    (β, loss type) the text states."""
    results = _results_from_scan(_scan_file(path), path)
    apply_text_config(results, path)
    return results


def _results_from_scan(scan: _Scan, path: Path) -> list[ReadResult]:
    """The runs a scan of ``path`` found (see _read_file_runs); :class:`StdoutTail` feeds its scan live."""
    if scan.kinds:
        results = _dict_runs(scan)
        if scan.table.rows:
            results[0].notes.append("the log also holds a step table; the dict lines were read instead")
    elif scan.table.rows:
        results = [_result_from_table(scan.table, rows) for rows in _table_runs(scan.table)]
        if scan.crash is not None:
            results[-1].ended = Ended.CRASHED
            results[-1].notes.append(f"the log ends with {_CRASH_MARKERS[scan.crash]} after the last metric line")
    elif scan.kv.lines:
        results = _kv_runs(scan.kv)
    elif scan.complete and scan.size == 0:
        raise NoMetricsError("empty file (0 bytes): no DPO metrics", path)
    else:
        binary = "" if scan.nul_at is None else f"; it holds binary data (a NUL byte at byte {scan.nul_at}), not text"
        raise NoMetricsError(
            f"no DPO metrics found (no metric dict lines, step table or `name: value` lines){binary}", path
        )
    if scan.encoding is not None:
        results[0].notes.append(f"decoded from {scan.encoding.upper()} (the capture was not UTF-8)")
    if scan.torn_at is not None and results[-1].ended is Ended.UNKNOWN:
        where = "" if scan.encoding else f" at byte {scan.torn_at}"
        results[-1].ended = Ended.TRUNCATED
        results[-1].notes.append(
            f"the log ends mid-line{where} (its last line has no line break): truncated, cut while it was written"
        )
    if len(results) > 1:
        for k, result in enumerate(results, start=1):
            result.label = f"run{k}"
            result.notes.insert(0, f"run {k} of {len(results)} appended to this file")
    return results


@register
class StdoutReader:
    """Reads captured stdout/stderr: metric dicts printed amid tqdm output, a printed step table, or the
    `name: value` lines of a custom training loop."""

    name: ClassVar[str] = "stdout"
    priority: ClassVar[int] = 10

    def sniff(self, path: Path) -> bool:
        """By name for ``*.log``/``*.out``/``*.txt``/``stdout*`` (console captures have no magic bytes); any other
        file by a bounded look at its first bytes (:func:`~dpodoctor.readers.pasted.sniff_content`: a log pasted
        into a ``.md`` or the comments of a ``.py``).

        SwanLab's own files under ``swanlog/`` (metric logs ``logs/*/*.log``, ``debug.log``) and W&B's
        (``debug*.log``, ``files/requirements.txt``) are not console output and are refused; only their console
        captures are read.
        """
        parts = path.parts
        if "swanlog" in parts and "console" not in parts[parts.index("swanlog") :]:
            return False
        if wandb_run.is_wandb_internal_log(path):
            return False
        if path.suffix.lower() not in _SUFFIXES and not path.name.lower().startswith("stdout"):
            return sniff_content(path)
        return path.is_file()

    def run_root(self, path: Path) -> Path:
        """The file's folder, except that SwanLab's console capture (``<run>/swanlog/run-*/console/*.log``)
        belongs to ``<run>``: it duplicates the train.log written there. W&B's (``files/output.log``) belongs to
        the run of its record file.

        A SwanLab run folder copied or renamed away from ``swanlog/`` (``<any>/run-*/console/*.log``, known by its
        ``files/swanlab-metadata.json``) keeps its console capture, debug log and files with that run folder, which
        is the SwanLab reader's run too: one run, not a second, stdout one.
        """
        if (root := wandb_run.console_root(path)) is not None:
            return root
        for parent in path.parents:
            if parent.name == "swanlog":
                return parent.parent
        run = path.parent.parent
        if run.name.startswith("run-") and (run / "files" / "swanlab-metadata.json").is_file():
            return run
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        """The first run of the richest log (see read_runs); when the file holds several runs, a note says so.

        Why the first and not an error: a caller that wants one run still gets a correct one, and discovery calls
        read_runs, which returns them all.
        """
        runs = self.read_runs(paths)
        first = runs[0]
        if len(runs) > 1:
            first.notes.append(
                f"the file holds {len(runs)} runs appended one after another; this is the first "
                "(read_runs returns each)"
            )
        return first

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """Every run of the log; given several logs (a train.log and its SwanLab console copy), the one with most
        rows, its runs labelled ``run1``, ``run2``, ... when it holds more than one.

        Why not concatenate: the stdout files of one run folder are copies of each other far more often than
        consecutive pieces, and merging copies would only duplicate points.
        """
        if not paths:
            raise ReadError("no files given to the stdout reader")
        found: list[tuple[Path, list[ReadResult]]] = []
        first_error: ReadError | None = None
        for path in map(Path, paths):
            try:
                found.append((path, _read_file_runs(path)))
            except ReadError as exc:
                first_error = first_error or exc
        if not found:
            assert first_error is not None
            raise first_error
        found.sort(key=lambda item: (-sum(len(r.frame) for r in item[1]), "swanlog" in item[0].parts))
        best_path, best = found[0]
        if len(found) > 1:
            skipped = ", ".join(str(p) for p, _ in found[1:])
            for result in best:
                result.notes.append(f"read {best_path}; also found {skipped} (same run, not read)")
        return best


class StdoutTail:
    """Follows one console log that a running trainer is still writing: each :meth:`poll` scans only the bytes
    appended since the last one.

    Why it can: the scan behind :class:`StdoutReader` is fed chunk by chunk and keeps parsed records, never text, so
    it can simply be fed more later. Only complete lines are fed; the unfinished last line (a dict half flushed, a
    tqdm bar mid-redraw) is carried until its line break arrives, so a record is never parsed from half a line.
    Steps are derived again from the records (cheap: no text is re-read), since a later progress bar can settle
    the step of an earlier dict.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self._scan = _Scan()
        self._carry = b"\n"  # a virtual line start, as in _scan_file
        self._hint_before = False

    def poll(self) -> int:
        """Scan the complete lines appended since the last poll; returns the number of bytes read.

        A file that became shorter than what was read (rewritten, or a new run started with ``>``) is scanned again
        from the start. Raises :class:`ReadError` when it cannot be read.
        """
        try:
            if self.path.stat().st_size < self.offset:
                self._reset()
            read = 0
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                while raw := handle.read(_CHUNK):
                    read += len(raw)
                    text = self._carry + raw
                    cut = _cut_point(text)
                    hint = not self._scan.kinds and _table_hint(raw)
                    if cut > 0:
                        self._scan.feed(text, cut, hint or self._hint_before)
                    self._carry = text[cut:]
                    self._hint_before = hint
        except OSError as exc:
            raise ReadError(f"cannot read the file: {exc.strerror or exc}", self.path) from exc
        self.offset += read
        return read

    def results(self) -> list[ReadResult]:
        """Every run in the lines scanned so far, as ``StdoutReader.read_runs`` would give them for this file.

        Raises :class:`NoMetricsError` while no metric line has arrived yet.
        """
        results = _results_from_scan(self._scan, self.path)
        apply_text_config(results, self.path)
        return results
