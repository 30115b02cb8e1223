"""Odd text: non-UTF-8 bytes, UTF-16, ``\\r``-only line endings, 10 MB lines, huge logs, deep nesting, control
characters, and regexes that must stay linear on hostile lines.

Why: console captures are whatever the terminal, the scheduler and a dying process left behind, and their text is
untrusted. A reader must neither choke on such text nor take quadratic time (or memory proportional to the file) on
it: a check is run on exactly the logs of runs that went wrong.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import signal
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import dpodoctor
import dpodoctor.readers.stdout.scan as stdout_scan
from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers import ReadResult, get_reader
from dpodoctor.readers.jsonl import iter_lines
from tests.bad_inputs.builders import event_file, jsonl_log, tfrecord
from tests.bad_inputs.targets import replay
from tests.conftest import TRL

TRAIN_LOG = (TRL / "healthy" / "train.log").read_bytes()
STATE = (TRL / "healthy" / "trainer_state.json").read_bytes()


def _frame_rows(result: ReadResult) -> list[tuple[str, str, int, float]]:
    f = result.frame
    return list(zip(f["split"].astype(str), f["metric"].astype(str), f["step"], f["value"].round(9), strict=True))


def _read(tmp_path: Path, name: str, data: bytes, reader: str) -> ReadResult:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return get_reader(reader).read([path])


# ---------------------------------------------------------------- encodings and line endings


def test_non_utf8_bytes_cost_nothing(tmp_path: Path) -> None:
    latin = b"\nWarnung: \xe4\xf6\xfc Gr\xf6\xdfe \xff\xfe\xfd\n"
    noisy = TRAIN_LOG.replace(b"\n{'loss'", latin + b"{'loss'")
    assert _frame_rows(_read(tmp_path / "a", "train.log", noisy, "stdout")) == _frame_rows(
        _read(tmp_path / "b", "train.log", TRAIN_LOG, "stdout")
    )
    lines = jsonl_log(10).split(b"\n")
    lines.insert(3, b'{"step": 99, "loss": 0.5, "k\xff\xfe": "\xc3"}')  # invalid UTF-8: this line only is skipped
    result = _read(tmp_path / "c", "m.jsonl", b"\n".join(lines), "jsonl")
    assert sorted(set(result.frame["step"])) == list(range(1, 11))
    assert any("not JSON objects" in n for n in result.notes)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_console_capture_reads_like_utf8(tmp_path: Path, encoding: str) -> None:
    """PowerShell's ``>`` writes UTF-16 (LE with a BOM); without a BOM the NUL pattern gives it away."""
    text = TRAIN_LOG.decode("utf-8")
    wide = _read(tmp_path / "w", "train.log", text.encode(encoding), "stdout")
    narrow = _read(tmp_path / "n", "train.log", TRAIN_LOG, "stdout")
    assert _frame_rows(wide) == _frame_rows(narrow) and len(narrow.frame) > 100
    assert any("decoded from UTF-16" in n for n in wide.notes)


def test_utf16_jsonl_and_trainer_state(tmp_path: Path) -> None:
    data = jsonl_log(12)
    assert _frame_rows(_read(tmp_path / "a", "m.jsonl", data.decode().encode("utf-16"), "jsonl")) == _frame_rows(
        _read(tmp_path / "b", "m.jsonl", data, "jsonl")
    )
    assert get_reader("jsonl").sniff(tmp_path / "a" / "m.jsonl")
    state16 = STATE.decode().encode("utf-16")
    assert _frame_rows(_read(tmp_path / "c", "trainer_state.json", state16, "trainer_state")) == _frame_rows(
        _read(tmp_path / "d", "trainer_state.json", STATE, "trainer_state")
    )


def test_carriage_return_only_line_endings(tmp_path: Path) -> None:
    """Old Mac tools and some loggers end lines with a lone ``\\r``."""
    assert _frame_rows(_read(tmp_path / "a", "train.log", TRAIN_LOG.replace(b"\n", b"\r"), "stdout")) == _frame_rows(
        _read(tmp_path / "b", "train.log", TRAIN_LOG, "stdout")
    )
    data = jsonl_log(12)
    cr = _read(tmp_path / "c", "m.jsonl", data.replace(b"\n", b"\r"), "jsonl")
    assert _frame_rows(cr) == _frame_rows(_read(tmp_path / "d", "m.jsonl", data, "jsonl"))
    assert not cr.notes  # no line was taken for an over-long one
    csv = b"step,train/loss,train/rewards/margins\r1,0.69,0.1\r2,0.68,0.2\r"
    assert len(_read(tmp_path / "e", "m.csv", csv, "csv").frame) == 4


# ---------------------------------------------------------------- long lines and huge files


def test_ten_megabyte_lines(tmp_path: Path) -> None:
    """A 10 MB line without a break (a redraw loop, a dumped tensor) costs that line; a dict glued to its end (as
    tqdm.write leaves it after a long redraw) is still read."""
    junk = b"x" * 10_000_000
    lines = TRAIN_LOG.split(b"\n")
    k = next(i for i in range(len(lines) // 2, len(lines)) if b"{'loss'" in lines[i])
    noisy = b"\n".join([*lines[:k], junk, junk + lines[k], *lines[k + 1 :]])
    started = time.perf_counter()
    result = _read(tmp_path / "a", "train.log", noisy, "stdout")
    assert time.perf_counter() - started < 20
    assert len(result.frame) == len(_read(tmp_path / "b", "train.log", TRAIN_LOG, "stdout").frame)

    data = jsonl_log(6).split(b"\n")
    data.insert(3, b'{"step": 50, "loss": "' + b"9" * 10_000_000 + b'"}')
    result = _read(tmp_path / "c", "m.jsonl", b"\n".join(data), "jsonl")
    assert sorted(set(result.frame["step"])) == list(range(1, 7))
    assert any("longer than" in n for n in result.notes)


def _big_console_log(path: Path, size: int) -> None:
    """``size`` bytes of tqdm redraws and warnings with the fixture's metric lines spread through them."""
    noise = b"  5%|#         | 20/400 [00:01<00:14, 26.32it/s]\r" * 200 + b"\nsome warning that is not a metric\n"
    lines = TRAIN_LOG.split(b"\n")
    with path.open("wb") as out:
        written = i = 0
        while written < size:
            chunk = noise + lines[i % len(lines)] + b"\n"
            out.write(chunk)
            written += len(chunk)
            i += 1


@pytest.mark.slow  # writes a 50 MB console log and reads it twice, once under tracemalloc
def test_huge_console_log_is_streamed_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50 MB log read with 256 KiB chunks peaks at a few MB (a 1 GB log would too: memory does not grow with the
    file), and gives the same result as the default 4 MB chunks (nothing is lost at chunk boundaries)."""
    path = tmp_path / "train.log"
    _big_console_log(path, 50_000_000)
    reader = get_reader("stdout")
    expected = _frame_rows(reader.read([path]))
    monkeypatch.setattr(stdout_scan, "CHUNK", 256 * 1024)
    tracemalloc.start()
    try:
        result = reader.read([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _frame_rows(result) == expected and len(expected) > 1000
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB for a 50 MB log"


def test_jsonl_lines_are_streamed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    filler = json.dumps({"note": "x" * 5000}).encode() + b"\n"
    with path.open("wb") as out:
        for step in range(500):
            out.write(filler * 20 + b'{"step": %d, "loss": 0.5}\n' % step)
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_lines(path, chunk=64 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 500 * 21 and peak < 4_000_000


# ---------------------------------------------------------------- deep nesting and control characters

_DEPTH = 10_000
_DEEP_JSON = b'{"a": ' * _DEPTH + b"1" + b"}" * _DEPTH


@pytest.mark.parametrize(
    ("target", "data"),
    [
        ("jsonl", b'{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4, "x": ' + _DEEP_JSON + b"}\n"),
        ("llamafactory", b'{"current_steps": 1, "total_steps": 2, "loss": 0.5}\n' + _DEEP_JSON + b"\n"),
        ("trainer_state", b'{"log_history": [{"step": 1, "loss": 0.5, "x": ' + _DEEP_JSON + b"}]}"),
        ("swanlab_logs", b'{"index": 1, "data": 0.5}\n' + _DEEP_JSON + b"\n"),
        ("swanlab_export_json", b'{"metricType": "SCALAR", "list": [' + _DEEP_JSON + b"]}"),
        ("stdout", b"{'loss': 0.5}\n" + b"{'a': " * _DEPTH + b"1" + b"}" * _DEPTH + b"\n{'loss': 0.4}\n"),
        ("swanlab_config", b"beta:\n" + b"".join(b" " * i + b"k:\n" for i in range(1, 3000)) + b"lr: 0.1\n"),
        ("csv", b"step,train/loss\n1," + b"[" * _DEPTH + b"\n2,0.5\n"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_metric_dict_nested_ten_thousand_levels(target: str, data: bytes) -> None:
    """Nesting beyond Python's recursion limit is a bad record (or a read error), never a RecursionError."""
    outcome = replay(target, data)
    assert isinstance(outcome, list | DpoDoctorError)


def test_tensorboard_args_nested_ten_thousand_levels(tmp_path: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2

    text = tensor_pb2.TensorProto(dtype=7, string_val=[_DEEP_JSON])
    args = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="args/text_summary", tensor=text)])
    record = tfrecord(event_pb2.Event(step=0, summary=args).SerializeToString())
    result = _read(tmp_path, "events.out.tfevents.1.h.1.0", record + event_file(4).data, "tensorboard")
    assert any("not valid JSON" in n for n in result.notes) and len(result.frame) == 8


def test_control_characters_in_keys_and_values_are_data(tmp_path: Path) -> None:
    hostile = "lo\x1b[31mss\x00\x07\u202e\r\n[red]x[/red]"
    lines = [json.dumps({"step": s, "loss": 0.6, f"train/{hostile}": 1.0, "note": hostile}) for s in range(1, 6)]
    result = _read(tmp_path, "m.jsonl", "\n".join(lines).encode(), "jsonl")
    assert f"{hostile}" in set(result.frame["metric"].astype(str))  # kept verbatim; reporters escape it
    log = f"{{'loss': 0.5, '{hostile.replace(chr(13), '').replace(chr(10), '')}': 1.0}}\n".encode()
    assert _read(tmp_path / "s", "train.log", log, "stdout").frame["metric"].astype(str).tolist()


# ---------------------------------------------------------------- extreme (finite) values in every output

_EXTREME = b"".join(
    json.dumps({"step": s, "loss": v, "rewards/margins": 1e308, "rewards/accuracies": 0.5}).encode() + b"\n"
    for s, v in [(0, float("inf")), (1, -1e308), (2, float("nan")), (3, 1e308), (2**53 - 1, 1e-320)]
)


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "text"],
        ["-f", "json"],
        ["-f", "github"],
        ["-f", "junit"],
        ["-f", "markdown"],
        pytest.param(["-f", "html"]),
        pytest.param(["-f", "text", "--plots"]),
    ],
    ids=lambda a: " ".join(a),
)
def test_extreme_values_in_every_output(tmp_path: Path, args: list[str]) -> None:
    """±inf, NaN, ±1e308, a subnormal and the largest step a frame holds: every report is still written."""
    from typer.testing import CliRunner

    from dpodoctor.cli import app

    (tmp_path / "m.jsonl").write_bytes(_EXTREME)
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--no-config", "--no-cache", *args])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# ---------------------------------------------------------------- regexes stay linear on hostile lines

_SIZE = 1_000_000
_LIMIT_S = 2.0


def _patterns() -> Iterator[tuple[str, re.Pattern[Any]]]:
    """Every compiled pattern at module level in dpodoctor (also inside dicts, lists and tuples), found by walking
    the package, so a pattern added later is tested without anyone listing it here."""
    seen: set[int] = set()
    for info in pkgutil.walk_packages(dpodoctor.__path__, "dpodoctor."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            # An integration whose optional dependency is not installed (the [test] extra alone has no transformers).
            if info.name.startswith("dpodoctor.integrations."):
                continue
            raise
        for attr, value in vars(module).items():
            items = (
                value.items()
                if isinstance(value, dict)
                else enumerate(value)
                if isinstance(value, list | tuple)
                else [("", value)]
            )
            for key, item in items:
                if isinstance(item, re.Pattern) and id(item) not in seen:
                    seen.add(id(item))
                    yield f"{info.name}.{attr}{f'[{key!r}]' if key != '' else ''}", item


PATTERNS = sorted(_patterns(), key=lambda p: p[0])


def _literals(pattern: re.Pattern[Any]) -> list[str]:
    """The literal runs of a pattern and one member of each character class, in pattern order: the pieces that get
    a regex engine furthest before it has to backtrack."""
    from re import _parser as parser  # type: ignore[attr-defined]

    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    found: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            found.append("".join(current))
            current.clear()

    def walk(parsed: Any) -> None:
        for op, arg in parsed:
            if op is parser.LITERAL:
                current.append(chr(arg))
                continue
            flush()
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT, getattr(parser, "POSSESSIVE_REPEAT", None)):
                walk(arg[2])
            elif op is parser.SUBPATTERN:
                walk(arg[-1])
            elif op is parser.BRANCH:
                for branch in arg[1]:
                    walk(branch)
            elif op in (parser.ASSERT, parser.ASSERT_NOT):
                walk(arg[1])
            elif op is parser.IN:
                for kind, value in arg:
                    if kind is parser.LITERAL:
                        found.append(chr(value))
                        break
                    if kind is parser.RANGE:
                        found.append(chr(value[0]))
                        break
        flush()

    walk(parser.parse(source, pattern.flags))
    return [t for t in dict.fromkeys(found) if t]


def _adversarial(pattern: re.Pattern[Any]) -> list[str]:
    """Several 1 MB strings: long runs of generic troublemakers and of the pattern's own pieces, each piece repeated
    and each piece followed by a long run that almost, but not quite, completes a match."""
    pieces = _literals(pattern)
    generic = ["a", "1", " ", "\x00", "{'a': ", "'", "1.", "\x1b[", "\x1b]", "\x90", "-", "\r", "\n", "a:", "%|"]
    out = [(p * (_SIZE // len(p) + 1))[:_SIZE] for p in generic + pieces[:10]]
    joined = "".join(pieces)
    if joined:
        out.append((joined * (_SIZE // len(joined) + 1))[:_SIZE])
    out += [p + filler * _SIZE for p in pieces[:6] for filler in ("a", "1", " ")]
    return out


class _Timeout(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Timeout


def test_patterns_were_found() -> None:
    names = {name for name, _ in PATTERNS}
    assert "dpodoctor.readers.stdout.grammar.DICT_RE" in names and "dpodoctor.cleaning._ANSI" in names
    assert len(PATTERNS) >= 20


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[name for name, _ in PATTERNS])
def test_pattern_is_linear_on_adversarial_megabyte_lines(name: str, pattern: re.Pattern[Any]) -> None:
    """Each search and match over 1 MB finishes within 2 s (a catastrophic pattern takes minutes to hours).

    The time limit is a real interrupt (SIGALRM, which the regex engine checks), so a hang fails instead of
    stalling the suite.
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for subject in _adversarial(pattern):
            text: str | bytes = subject if isinstance(pattern.pattern, str) else subject.encode("latin-1", "replace")
            for op in (pattern.search, pattern.match):
                started = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, _LIMIT_S)
                try:
                    op(text)  # type: ignore[arg-type]
                except _Timeout:
                    pytest.fail(f"{name}.{op.__name__} took over {_LIMIT_S} s on {subject[:40]!r}...")
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                assert time.perf_counter() - started < _LIMIT_S
    finally:
        signal.signal(signal.SIGALRM, previous)
