"""Differential tests of the stdout reader's bulk paths against plain record-by-record references.

Why: a dict-heavy console log is read in bulk (the main key layout's bodies found by one regex pass and their
numbers converted by pandas' CSV parser; every progress bar of a chunk found in one split and assigned to its gap
with numpy). These tests state what the bulk code must equal, written the slow and obvious way, and check it on
generated logs read in tiny chunks (so records, bars and the open record cross chunk boundaries) and on the fixtures.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpodoctor.readers.stdout as so
from dpodoctor.readers.stdout import grammar
from dpodoctor.readers.stdout import scan as scanning

FIXTURES = Path(__file__).parent / "fixtures"

# ---------------------------------------------------------------- number conversion


def _same(a: float, b: float) -> bool:
    """Bit for bit (every NaN is one NaN: float() and the CSV parser both give the canonical one)."""
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


_NUMBER_CHARS = "-+0123456789.eEaAnNiIfFtTyY"
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(width=32).map(lambda x: f"{x:.4g}"),
    st.from_regex(r"\A[-+]?[0-9]{1,25}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.sampled_from(["nan", "inf", "-inf", "+inf", "Infinity", "-Infinity", "iNf", "NaN", "-nan", "1e400", "4.9e-324"]),
    st.text(alphabet=_NUMBER_CHARS, min_size=1, max_size=40),
)


@pytest.mark.slow  # 400 hypothesis examples
@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(_numbers, min_size=1, max_size=4), min_size=1, max_size=5).filter(
        lambda rows: len({len(r) for r in rows}) == 1
    )
)
def test_csv_floats_give_exactly_what_float_gives(rows: list[list[str]]) -> None:
    width = len(rows[0])
    text = b"\n".join(b",".join(b"k," + v.encode() for v in row) for row in rows)
    got = grammar.csv_floats(text, len(rows), width)
    try:
        expected = [[float(v) for v in row] for row in rows]
    except ValueError:
        assert got is None  # a field float() refuses is never guessed
        return
    if got is None:  # allowed: a NaN spelled other than `nan` goes to the record-by-record path
        return
    assert got.shape == (len(rows), width)
    for got_row, want_row in zip(got.tolist(), expected, strict=True):
        assert all(_same(a, b) for a, b in zip(got_row, want_row, strict=True))


# ---------------------------------------------------------------- the references


def _reference_records(text: bytes) -> list[tuple[int, tuple[str, ...], list[float]]]:
    """Every dict candidate parsed on its own with the generic pair pattern: (kind, keys, values) of the records."""
    out = []
    for match in grammar.DICT_RE.finditer(text):
        parsed = grammar.parse_pairs(match.group())
        if parsed is None:
            continue
        info = grammar.key_info(parsed[0])
        if info.kind != grammar.NOT_METRICS:
            out.append((info.kind, info.keys, parsed[1]))
    return out


def _reference_bars(text: bytes) -> tuple[list[list[tuple[bytes, bytes]]], list[tuple[int, bytes]]]:
    """Per record, of the first description-less bars of the gap after it (a regex call per gap), the first of each
    total (all the scan keeps); per gap, the total of the bar at its last `%|` with the index of the record that
    follows the gap."""
    spans = []
    for match in grammar.DICT_RE.finditer(text):
        parsed = grammar.parse_pairs(match.group())
        if parsed is not None and grammar.key_info(parsed[0]).kind != grammar.NOT_METRICS:
            spans.append(match.span())
    candidates: list[list[tuple[bytes, bytes]]] = [[] for _ in spans]
    totals: list[tuple[int, bytes]] = []
    gaps = zip([-1, *range(len(spans))], [0] + [e for _, e in spans], [s for s, _ in spans] + [len(text)], strict=True)
    for owner, lo, hi in gaps:
        j = text.rfind(b"%|", lo, hi)
        if j >= 0 and (last := grammar.BAR_RE.match(text, j, hi)) is not None:
            totals.append((owner + 1, last.group(2)))
        if owner >= 0:
            first: dict[bytes, tuple[bytes, bytes]] = {}
            for n, total in grammar.BAR_RE.findall(text, lo, hi)[: grammar.BAR_CANDIDATES]:
                first.setdefault(total, (n, total))
            candidates[owner] = list(first.values())
    return candidates, totals


def _scan(path: Path, chunk: int) -> scanning.Scan:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanning, "CHUNK", chunk)
        return scanning.scan_file(path)


def _assert_scan_matches(scan: scanning.Scan, text: bytes) -> None:
    records = _reference_records(text)
    assert len(scan.kinds) == len(records)
    for i, (kind, keys, values) in enumerate(records):
        assert scan.kinds[i] == kind
        assert scan.infos[i].keys == keys
        got = scan.values.row(i)
        assert len(got) == len(values) and all(_same(a, b) for a, b in zip(got, values, strict=True))
    candidates, totals = _reference_bars(text)
    got_candidates: list[list[tuple[bytes, bytes]]] = [[] for _ in scan.kinds]
    for record, n, total in zip(scan.cand_rec, scan.cand_n, scan.cand_total, strict=True):
        got_candidates[record].append((b"%d" % n, total))  # counters are kept as integers
    assert got_candidates == [[(b"%d" % int(n), t) for n, t in c] for c in candidates]
    # The gap after the last record stays open (the file may grow): its bar is held apart until a record follows.
    pending = [(len(scan.kinds), scan._gap_end[1])] if scan._gap_end[1] is not None else []
    assert list(zip(scan.totals_at, scan.totals_of, strict=True)) + pending == totals
    assert scan.totals | {t for _, t in pending} == {t for _, t in totals}


# ---------------------------------------------------------------- generated logs

_KEYS = ["loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/margins", "epoch"]
_EVAL_KEYS = ["eval_loss", "eval_rewards/margins", "epoch"]


def _value(draw: st.DrawFn) -> str:
    number = draw(st.one_of(st.floats(width=32).map(lambda x: f"{x:.4g}"), st.sampled_from(["nan", "inf", "1e-05"])))
    style = draw(st.sampled_from(["plain", "quoted", "quoted", "np", "open", "close", "word"]))
    return {
        "plain": number,
        "quoted": f"'{number}'",
        "np": f"np.float64({number})",
        "open": f"'{number}",  # a torn quote: the generic pattern refuses the pair, so must the bulk path
        "close": f"{number}'",
        "word": "'tiny'",
    }[style]


@st.composite
def _logs(draw: st.DrawFn) -> bytes:
    total = draw(st.sampled_from([40, 400]))
    parts = ["***** Running training *****\n"]
    for step in range(1, draw(st.integers(1, 60)) + 1):
        for _ in range(draw(st.integers(0, 3))):
            bar = f"{step * 100 // total:3d}%|#         | {step}/{total} [00:01<00:10,  2.00it/s]"
            parts.append(draw(st.sampled_from(["\r", "\n", "\x1b[A", "\r Map: "])) + bar)
        kind = draw(st.sampled_from(["train"] * 6 + ["eval", "other", "junk", "none"]))
        if kind == "train":
            keys = _KEYS if draw(st.integers(0, 9)) else _KEYS[:-1]
            parts.append("\n{" + ", ".join(f"'{k}': {_value(draw)}" for k in keys) + "}\n")
        elif kind == "eval":
            parts.append("\n{" + ", ".join(f"'{k}': {_value(draw)}" for k in _EVAL_KEYS) + "}\n")
        elif kind == "other":
            parts.append("{'model': 'gpt2', 'lr': 0.1}\n")
        elif kind == "junk":
            parts.append(draw(st.sampled_from(["Traceback (most recent call last)\n", "100%|x| 3/3 [\n", "%|%|\n"])))
    if draw(st.booleans()):
        parts.append("\n{'train_runtime': 12.5, 'train_loss': 0.5, 'epoch': 1.0}\n")
    return "".join(parts).encode()


@pytest.mark.slow  # 150 generated logs, each read three ways
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=_logs(), chunk=st.sampled_from([97, 1024, 4 * 1024 * 1024]))
def test_bulk_scan_equals_record_by_record_reading(
    tmp_path_factory: pytest.TempPathFactory, log: bytes, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("bulk") / "train.log"
    path.write_bytes(log)
    _assert_scan_matches(_scan(path, chunk), log)


@pytest.mark.parametrize(
    "path",
    sorted(FIXTURES.glob("trl/*/train.log")) + sorted(FIXTURES.glob("swanlab/**/console/*.log")),
    ids=lambda p: "/".join(p.parts[-3:]),
)
@pytest.mark.parametrize("chunk", [4096, 4 * 1024 * 1024])
def test_bulk_scan_equals_record_by_record_reading_on_the_fixtures(path: Path, chunk: int) -> None:
    _assert_scan_matches(_scan(path, chunk), path.read_bytes())


def test_a_dict_every_step_goes_through_the_bulk_path(tmp_path: Path) -> None:
    """The shape the bulk path is for (transformers with logging_steps=1): the main layout's records are added in
    blocks, and the frame holds every value exactly."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3000, 2))
    lines = [
        f"{{'loss': {a!r}, 'rewards/margins': '{b:.4g}', 'epoch': {i / 3000!r}}}\n\r  1%|  | {i}/3000 [\n"
        for i, (a, b) in enumerate(values.tolist(), start=1)
    ]
    path = tmp_path / "train.log"
    path.write_text("".join(lines))
    calls: list[int] = []
    real = scanning.Scan._add_block

    def spy(self: scanning.Scan, info: grammar.KeyInfo, block: np.ndarray) -> None:
        calls.append(len(block))
        real(self, info, block)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanning.Scan, "_add_block", spy)
        result = so.StdoutReader().read([path])
    assert sum(calls) >= 2990  # all but the first records (before the layout was seen twice)
    frame = result.frame
    loss = frame[frame["metric"] == "loss"]
    assert loss["step"].tolist() == list(range(1, 3001))
    assert loss["value"].tolist() == values[:, 0].tolist()
    margins = frame[frame["metric"] == "margins"]["value"].to_numpy()
    assert np.array_equal(margins, np.array([float(f"{b:.4g}") for b in values[:, 1]]))
    assert re.search("progress bar", result.notes[0])
