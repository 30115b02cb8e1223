"""Reader for transformers' ``trainer_state.json`` (and JSON files that wrap a copy of its ``log_history``).

What it holds: ``Trainer.state`` serialised at every checkpoint and at the end of training. Its ``log_history`` is
the list of every ``logs`` dict the Trainer logged, each with the exact ``step`` (unlike the console, where the step
has to be derived), eval entries (``eval_loss``, ...) and, once training is over, a summary entry with
``train_runtime``. ``global_step`` and ``max_steps`` say how far the run got.

Why one run per output folder: the Trainer writes a copy into every ``checkpoint-N/`` folder and a final one into
``output_dir`` itself, and each copy holds the whole history up to its step. Reading the latest copy gives the run;
the older ones are only noted. Some projects save ``log_history`` in a JSON file of their own (a wrapper object
with ``log_history`` or ``raw_log_history``): each such file is read as a run of its own.

Why Python's :mod:`json` and nothing smarter: transformers writes ``NaN`` and ``Infinity`` as bare tokens, which
Python's parser accepts (strict parsers do not), and nothing in the file is ever evaluated.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import canonical, is_summary_key
from dpodoctor.model import Ended, empty_frame, frame_from_series
from dpodoctor.readers import ReadResult, register

if TYPE_CHECKING:  # pandas is imported when a frame is built, not when this module is (sniffing a file)
    import pandas as pd

__all__ = ["TrainerStateReader", "beta_beside", "history_of", "json_number"]

STATE_NAME: Final = "trainer_state.json"
# Keys that hold a log_history list: transformers' own, and the wrapper seen in the wild.
HISTORY_KEYS: Final = ("log_history", "raw_log_history")
# Bytes looked at by sniff for a history key in a JSON file of another name.
_SNIFF_BYTES: Final = 64 * 1024
_SNIFF_RE: Final = re.compile(rb'"(?:raw_)?log_history"\s{0,64}:\s{0,64}\[')
_CHECKPOINT_RE: Final = re.compile(r"checkpoint-(\d{1,12})")
# A trainer_state.json of a very long run is tens of MB; anything far beyond that is not one.
_MAX_BYTES: Final = 1024 * 1024 * 1024
_MAX_STEP: Final = 2**53

# Files beside trainer_state.json that may hold the training arguments, in the order they are trusted for β.
# JSON only: training_args.bin is a pickle, which must never be loaded from an untrusted log folder.
BETA_FILES: Final = (
    "training_args.json",
    "dpo_config.json",
    "train_config.json",
    "args.json",
    "config.json",
    "train_results.json",
    "all_results.json",
)
# β under the names trainers give it (TRL, OpenRLHF: beta; LLaMA-Factory: pref_beta).
_BETA_KEYS: Final = ("beta", "pref_beta")
# Nested objects of an arguments file or a wrapper that may hold β.
_NESTED_ARGS: Final = ("args", "config", "training_args", "train_args", "hyperparameters", "metadata")


def json_number(value: Any) -> float | None:
    """The float of a JSON number (NaN and ±Infinity included), or None for anything else (bool included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return None


def _step_of(value: Any) -> int | None:
    number = json_number(value)
    if number is None or not math.isfinite(number) or not number.is_integer() or not 0 <= number < _MAX_STEP:
        return None
    return int(number)


def history_of(data: Any) -> list[Any] | None:
    """The log_history list of a parsed trainer_state.json or wrapper object, or None."""
    if not isinstance(data, dict):
        return None
    for key in HISTORY_KEYS:
        history = data.get(key)
        if isinstance(history, list):
            return history
    return None


def _beta_in(data: Any) -> float | None:
    """A finite numeric β at the top of a JSON object or one level down in an arguments-like object."""
    if not isinstance(data, dict):
        return None
    for container in (data, *(data.get(k) for k in _NESTED_ARGS)):
        if not isinstance(container, dict):
            continue
        for key in _BETA_KEYS:
            number = json_number(container.get(key))
            if number is not None and math.isfinite(number):
                return number
    return None


def beta_beside(folders: list[Path], notes: list[str]) -> tuple[float, str, dict[str, Any]] | None:
    """β from the first JSON arguments file in ``folders`` that holds a numeric one: (β, file, its scalars).

    A file that cannot be parsed is a note, not an error: β is a convenience, the metrics are the point.
    """
    seen: set[Path] = set()
    for folder in folders:
        for name in BETA_FILES:
            path = folder / name
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            try:
                if path.stat().st_size > 16 * 1024 * 1024:
                    continue
                data = json.loads(path.read_bytes())
            except (OSError, ValueError, RecursionError) as exc:
                notes.append(f"{path.name}: not readable as JSON ({type(exc).__name__}); β not read from it")
                continue
            beta = _beta_in(data)
            if beta is not None:
                assert isinstance(data, dict)
                scalars = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool) or v is None}
                return beta, str(path), scalars
    return None


@dataclass
class _State:
    """One parsed file: its log_history and what its header says."""

    path: Path
    history: list[Any]
    global_step: int | None
    max_steps: int | None
    header: dict[str, Any] = field(default_factory=dict)
    is_state: bool = True  # a trainer_state.json, not a wrapper of another name
    beta: float | None = None  # a β the file itself carries (wrappers sometimes do; trainer states never)
    cut: str | None = None  # where a file cut short was cut (its complete entries were kept), None when whole

    @property
    def last_step(self) -> int:
        """How far this copy got: global_step, else the largest step in its history. A cut copy got as far as its
        last complete entry, whatever its header says (the header was written before the entries were lost)."""
        if self.global_step is not None and self.cut is None:
            return self.global_step
        steps = [s for e in self.history if isinstance(e, dict) and (s := _step_of(e.get("step"))) is not None]
        return max(steps, default=-1)

    @property
    def checkpoint(self) -> int | None:
        match = _CHECKPOINT_RE.fullmatch(self.path.parent.name)
        return int(match.group(1)) if match else None


def _load(path: Path) -> _State:
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise ReadError(f"too large for a trainer state ({size} bytes)", path)
        raw = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    if not raw:
        raise ReadError("empty file (0 bytes): killed before the trainer state was written", path)
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise ReadError("JSON nested too deeply to read", path) from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        if isinstance(exc, json.JSONDecodeError):  # exc.pos counts characters; the file's reader wants bytes
            reason = f"at byte {len(exc.doc[: exc.pos].encode('utf-8', 'surrogatepass'))}, line {exc.lineno}"
        elif isinstance(exc, UnicodeDecodeError):
            reason = f"not UTF-8 at byte {exc.start}"
        else:  # pragma: no cover - json.loads raises only the two above as ValueError
            reason = str(exc)
        salvaged = _salvage(raw, path)
        if salvaged is not None:
            return salvaged
        raise ReadError(f"not valid JSON ({reason}): a file cut short, or not a trainer state", path) from exc
    history = history_of(data)
    if history is None:
        raise NoMetricsError("a JSON file without a log_history list (not a trainer state)", path)
    assert isinstance(data, dict)
    header = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool) or v is None}
    return _State(
        path=path,
        history=history,
        global_step=_step_of(data.get("global_step")),
        max_steps=_step_of(data.get("max_steps")),
        header=header,
        is_state=path.name == STATE_NAME,
        beta=_beta_in(data),
    )


_HISTORY_START_RE: Final = re.compile(r'"(?:raw_)?log_history"\s*:\s*\[')
_SPACE_RE: Final = re.compile(r"\s*")


def _salvage(raw: bytes, path: Path) -> _State | None:
    """The complete ``log_history`` entries of a file cut short (a trainer killed while saving, a copy cut off),
    or None when it holds none.

    Why: every entry before the cut is as good as in a whole file; losing them all for one torn entry is what the
    TensorBoard reader avoids too (it keeps the records before a torn one). The header keys written before
    ``log_history`` (transformers sorts the keys: ``global_step`` comes before it, ``max_steps`` after) are kept
    when they parse. Entries are decoded one at a time with :meth:`json.JSONDecoder.raw_decode`; nothing is guessed.
    """
    text = raw.decode("utf-8", errors="replace")
    match = _HISTORY_START_RE.search(text)
    if match is None:
        return None
    decoder = json.JSONDecoder()
    entries: list[Any] = []
    pos = last_end = match.end()
    closed = False
    try:
        while True:
            pos = _SPACE_RE.match(text, pos).end()  # type: ignore[union-attr]  # \s* always matches
            if text.startswith("]", pos):
                closed = True
                break
            entry, pos = decoder.raw_decode(text, pos)
            entries.append(entry)
            last_end = pos
            pos = _SPACE_RE.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos += 1
            elif text.startswith("]", pos):
                closed = True
                break
            else:
                break
    except (ValueError, RecursionError):
        pass
    if not entries:
        return None
    header: dict[str, Any] = {}
    prefix = text[: match.start()].rstrip().rstrip(",")
    try:
        parsed = json.loads(prefix + "}") if prefix.lstrip().startswith("{") else None
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        header = {k: v for k, v in parsed.items() if isinstance(v, str | int | float | bool) or v is None}
    size = len(raw)
    steps = [s for e in entries if isinstance(e, dict) and (s := _step_of(e.get("step"))) is not None]
    last = f", the last at step {max(steps)}" if steps else ""
    if closed:
        cut = f"cut at byte {size}, after log_history: all {len(entries)} entries kept"
    else:
        at = len(text[:last_end].encode("utf-8", "surrogatepass"))
        cut = (
            f"cut at byte {size}, inside log_history: kept the {len(entries)} complete entr"
            f"{'y' if len(entries) == 1 else 'ies'} before byte {at}{last}"
        )
    return _State(
        path=path,
        history=entries,
        global_step=_step_of(header.get("global_step")),
        max_steps=_step_of(header.get("max_steps")),
        header=header,
        is_state=path.name == STATE_NAME,
        beta=_beta_in(header),
        cut=cut,
    )


@dataclass
class _Layout:
    """The entries of a log_history that share one key list (a history repeats a handful): their values by row."""

    keys: tuple[str, ...]
    entries: list[dict[str, Any]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # each entry's position in the history

    def columns(self) -> list[tuple[Any, ...]]:
        """The values of each key, one tuple per key (each gathered in C by map)."""
        return [tuple(map(itemgetter(key), self.entries)) for key in self.keys]


def _steps_column(values: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The steps of one column and which are valid (:func:`_step_of`), vectorised when they are all plain ints."""
    if set(map(type, values)) <= {int}:
        try:
            steps = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            return steps, (steps >= 0) & (steps < _MAX_STEP)
    parsed = [_step_of(v) for v in values]
    valid = np.array([s is not None for s in parsed], dtype=bool)
    return np.array([s if s is not None else -1 for s in parsed], dtype=np.int64), valid


def _numbers_column(values: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The floats of one column and which are numbers (:func:`json_number`), vectorised when all are floats/ints."""
    if set(map(type, values)) <= {float, int}:
        try:  # numpy converts a Python int as float() does, and raises the same OverflowError beyond range
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:
            pass
        else:
            return numbers, np.ones(len(values), dtype=bool)
    parsed = [json_number(v) for v in values]
    valid = np.array([v is not None for v in parsed], dtype=bool)
    return np.array([v if v is not None else math.nan for v in parsed], dtype=np.float64), valid


def _read_state(state: _State) -> ReadResult:
    """The frame, summary and ending of one log_history.

    Why by key layout and not entry by entry: a history of 100k entries is over a million numbers, and a few Python
    calls per number cost several times the ``json.load`` itself. The entries are grouped by their key list (a
    history repeats a handful), each key is looked up once per layout, and each column is converted at once. What
    comes out equals reading the entries one by one in order: points in arrival order (a repeated step keeps the
    last value), the summary in first-written order with the last value written, the end-of-training entries
    handled one by one where they stand.
    """
    notes: list[str] = [f"{state.path.name}: not valid JSON, {state.cut}"] if state.cut is not None else []
    layouts: dict[tuple[str, ...], _Layout] = {}
    no_step = 0
    for idx, entry in enumerate(state.history):
        if not isinstance(entry, dict):
            no_step += 1
            continue
        keys = tuple(entry)
        layout = layouts.get(keys)
        if layout is None:
            layout = layouts[keys] = _Layout(keys)
        layout.entries.append(entry)
        layout.index.append(idx)

    width = max((len(keys) for keys in layouts), default=0) + 1
    # Points, as parallel pieces: arrival key (entry index * width + key position), series, step, value.
    arrival: list[np.ndarray] = []
    series_of: list[tuple[str, str]] = []
    step_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    # Summary keys: name -> (first write position, last write position, last value).
    written: dict[str, tuple[int, int, float]] = {}
    train_index: list[np.ndarray] = []  # entries that logged a train metric, and their steps (for last_train)
    train_steps: list[np.ndarray] = []
    summary_entries: list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]] = []  # (index, step, keys, values)

    def write_summary(key: str, at: int, value: float) -> None:
        name = key.split("/", 1)[1] if key.startswith("train/") else key
        first, last, kept = written.get(name, (at, at, value))
        written[name] = (min(first, at), max(last, at), value if at >= last else kept)

    for keys, layout in layouts.items():
        index = np.array(layout.index, dtype=np.int64)
        if "step" not in keys:
            no_step += len(index)
            continue
        columns = layout.columns()
        steps, ok = _steps_column(columns[keys.index("step")])
        no_step += int(len(ok) - np.count_nonzero(ok))
        if not ok.any():
            continue
        if "train_runtime" in keys:  # end-of-training entries: few, read one by one below, in history order
            for j in np.flatnonzero(ok).tolist():
                summary_entries.append((layout.index[j], int(steps[j]), keys, tuple(layout.entries[j].values())))
            continue
        is_train = np.zeros(len(index), dtype=bool)
        for pos, key in enumerate(keys):
            if key == "step":
                continue
            numbers, valid = _numbers_column(columns[pos])
            valid &= ok
            if not valid.any():
                continue
            mapped = canonical(key)
            if mapped is not None and mapped[0] == "train" and key != "epoch":
                is_train |= valid
            if is_summary_key(key):
                hits = np.flatnonzero(valid)
                first_at = int(index[hits[0]]) * width + pos
                last_at = int(index[hits[-1]]) * width + pos
                write_summary(key, first_at, float(numbers[hits[0]]))
                write_summary(key, last_at, float(numbers[hits[-1]]))
                continue
            if mapped is None:
                continue
            arrival.append(index[valid] * width + pos)
            series_of.append(mapped)
            step_parts.append(steps[valid])
            value_parts.append(numbers[valid])
        train_index.append(index[is_train])
        train_steps.append(steps[is_train])

    if summary_entries:
        summary_entries.sort(key=lambda item: item[0])
        t_index = np.concatenate(train_index) if train_index else np.zeros(0, dtype=np.int64)
        t_steps = np.concatenate(train_steps) if train_steps else np.zeros(0, dtype=np.int64)
        order = np.argsort(t_index, kind="stable")
        t_index, best = t_index[order], np.maximum.accumulate(t_steps[order]) if len(order) else t_steps
        for idx, step, keys, values in summary_entries:
            before = int(np.searchsorted(t_index, idx))
            last_train = int(best[before - 1]) if before else None
            entry_numbers = [
                (pos, k, v)
                for pos, (k, raw) in enumerate(zip(keys, values, strict=True))
                if k != "step" and (v := json_number(raw)) is not None
            ]
            for pos, key, value in entry_numbers:
                if is_summary_key(key):
                    write_summary(key, idx * width + pos, value)
            extra = [(k, v) for _, k, v in entry_numbers if not is_summary_key(k) and k != "epoch"]
            if not extra:
                continue  # a plain summary entry: its epoch only repeats the last train step's
            shown = ", ".join(sorted(k for k, _ in extra)[:6])
            if last_train is not None and step <= last_train:
                notes.append(f"the final train_runtime entry also carried {shown}: ignored (step {step} was logged)")
                continue
            notes.append(f"the final train_runtime entry also carried {shown}: stored as a train point at step {step}")
            for pos, key, value in entry_numbers:
                if not is_summary_key(key) and (mapped := canonical(key)) is not None:
                    arrival.append(np.array([idx * width + pos], dtype=np.int64))
                    series_of.append(mapped)
                    step_parts.append(np.array([step], dtype=np.int64))
                    value_parts.append(np.array([value], dtype=np.float64))

    if no_step:
        notes.append(f"skipped {no_step} log_history entr{'y' if no_step == 1 else 'ies'} without a valid step")
    summary = {name: value for name, (_, _, value) in sorted(written.items(), key=lambda item: item[1][0])}
    if not arrival and not summary:
        raise NoMetricsError("log_history holds no metrics", state.path)
    frame = _frame(arrival, series_of, step_parts, value_parts)

    if summary_entries:
        ended = Ended.FINISHED
    elif state.cut is not None:
        ended = Ended.TRUNCATED  # the file ends where it was cut: what came after is not in it
    else:
        ended = Ended.UNKNOWN
        notes.append(
            "log_history has no end-of-training entry (train_runtime): the run was stopped, crashed or was still "
            "going when this copy was written"
        )
    if state.max_steps and state.global_step is not None and state.max_steps > state.global_step:
        notes.append(f"stopped at step {state.global_step} of max_steps {state.max_steps}")
        if ended is Ended.UNKNOWN:
            # the log itself shows the run short of its planned end: whatever happened after, it ended early here
            ended = Ended.TRUNCATED
    config: dict[str, Any] = {
        k: state.header[k]
        for k in ("global_step", "max_steps", "logging_steps", "eval_steps", "save_steps", "num_train_epochs")
        if k in state.header
    }
    return ReadResult(
        frame=frame,
        ended=ended,
        steps_derived=False,
        summary=summary,
        config=config,
        notes=notes,
    )


def _frame(
    arrival: list[np.ndarray],
    series_of: list[tuple[str, str]],
    step_parts: list[np.ndarray],
    value_parts: list[np.ndarray],
) -> pd.DataFrame:
    """The tidy frame of the points, series by series (:func:`~dpodoctor.model.frame_from_series`)."""
    if not arrival:
        return empty_frame()
    series: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for key, order, steps, values in zip(series_of, arrival, step_parts, value_parts, strict=True):
        series.setdefault(key, []).append((order, steps, values))
    return frame_from_series(series)


def _latest(states: list[_State]) -> _State:
    """The copy that got furthest; on a tie the one in the output folder itself (written last), then by name."""
    return max(states, key=lambda s: (s.last_step, s.checkpoint is None, s.checkpoint or 0, str(s.path)))


@register
class TrainerStateReader:
    """Reads ``trainer_state.json`` (all checkpoint copies of one run) and JSON wrappers of a log_history."""

    name: ClassVar[str] = "trainer_state"
    # Below TensorBoard (100, wall times and every tag) and SwanLab (50); above the JSONL/CSV readers and stdout:
    # exact steps and every logged key.
    priority: ClassVar[int] = 40
    # The copies in checkpoint-N/ and in the output folder are one run.
    multi_file: ClassVar[bool] = True

    def sniff(self, path: Path) -> bool:
        """``trainer_state.json`` by name; another ``.json`` when its first 64 KB hold a log_history list."""
        if path.suffix.lower() != ".json" or not path.is_file():
            return False
        if path.name == STATE_NAME:
            return True
        try:
            with path.open("rb") as handle:
                head = handle.read(_SNIFF_BYTES)
        except OSError:
            return False
        return _SNIFF_RE.search(head) is not None

    def run_root(self, path: Path) -> Path:
        """``<out>`` for ``<out>/checkpoint-N/trainer_state.json`` (the run, not the checkpoint), else the folder."""
        folder = path.parent
        if path.name == STATE_NAME and _CHECKPOINT_RE.fullmatch(folder.name):
            return folder.parent
        return folder

    def read(self, paths: list[Path]) -> ReadResult:
        """The run of these files: the latest trainer_state.json copy (a wrapper file when there is none).

        When the files also hold other runs (wrapper files of other names), the note says so; see read_runs.
        """
        runs = self.read_runs(paths)
        first = next((r for r in runs if r.label is None or r.label == STATE_NAME), runs[0])
        if len(runs) > 1:
            others = ", ".join(str(r.label) for r in runs if r is not first)
            first.notes.append(f"the folder also holds other logged runs ({others}), read separately by discovery")
        return first

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """One result for the trainer_state.json copies together, and one per wrapper file of another name.

        Labels are only given when there is more than one run, so the usual case keeps the folder's name.
        """
        if not paths:
            raise ReadError("no files given to the trainer_state reader")
        states: list[_State] = []
        first_error: ReadError | None = None
        problems: list[str] = []
        for path in sorted(map(Path, paths), key=str):
            try:
                states.append(_load(path))
            except ReadError as exc:
                first_error = first_error or exc
                problems.append(f"{path}: {exc.reason}")
        if not states:
            assert first_error is not None
            raise first_error

        groups: list[tuple[str, list[_State]]] = []
        copies = [s for s in states if s.is_state]
        if copies:
            groups.append((STATE_NAME, copies))
        groups.extend((s.path.name, [s]) for s in states if not s.is_state)

        results: list[ReadResult] = []
        for label, group in groups:
            try:
                results.append(self._read_group(group, problems))
            except ReadError as exc:
                first_error = first_error or exc
                continue
            if len(groups) > 1:
                results[-1].label = label
        if not results:
            assert first_error is not None
            raise first_error
        return results

    def _read_group(self, group: list[_State], problems: list[str]) -> ReadResult:
        latest = _latest(group)
        result = _read_state(latest)
        if len(group) > 1:
            older = ", ".join(str(s.path) for s in group if s is not latest)
            result.notes.insert(0, f"read {latest.path} (step {latest.last_step}); earlier copies not read: {older}")
        result.notes.extend(f"could not read {p}" for p in problems)
        found = beta_beside([latest.path.parent, self.run_root(latest.path)], result.notes)
        if found is not None:
            result.beta, result.beta_source, config = found
            result.config = {**config, **result.config}
        elif latest.beta is not None:
            result.beta, result.beta_source = latest.beta, str(latest.path)
        return result
