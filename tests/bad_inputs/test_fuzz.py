"""Property tests over every reader: arbitrary bytes, and mutations of the real fixture files.

The one property: a reader raises only :class:`dpodoctor.errors.DpoDoctorError` (its documented error type), and
what it returns is a canonical run. Any other exception is a bug in the reader; its minimised input goes into
``test_regressions.py``. Example counts come from the profile in ``conftest.py`` (small in CI, 10,000 per test with
``DPODOCTOR_FUZZ=full``, which ``tools/fuzz`` sets).

Why mutations of real files as well as random bytes: random bytes almost never get past a format's first check
(a CRC, a magic number, a JSON brace), so the code behind it would go unfuzzed. Flipping bits, cutting, splicing
and inserting junk into real logs reaches every layer: framing, protobuf/JSON decoding, key mapping, step logic.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import api
from dpodoctor.errors import DpoDoctorError
from dpodoctor.reporters import FORMATS, render
from tests.bad_inputs.conftest import FUZZ_SETTINGS
from tests.bad_inputs.targets import TARGETS, Target, read_target

_SEEDS: dict[str, list[bytes]] = {}
_COUNTER = itertools.count()
# Bytes that mean something to one of the formats: delimiters, quotes, line breaks, varint/length edge values.
_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"{", b"}", b"'", b'"', b"\n", b"\r", b":", b",", b"\\", b"%|"]


def _seeds(target: Target) -> list[bytes]:
    if target.name not in _SEEDS:
        _SEEDS[target.name] = target.seed_bytes()
    return _SEEDS[target.name]


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(root: Path) -> Iterator[Path]:
    """A new empty folder per example (module-scoped fixtures cannot give one, and hypothesis reruns examples)."""
    folder = root / f"ex{next(_COUNTER)}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- mutations

_OPS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("byte"), st.integers(0, 2**31), st.sampled_from(_INTERESTING)),
    st.tuples(st.just("delete"), st.integers(0, 2**31), st.integers(1, 4096)),
    st.tuples(
        st.just("splice"), st.integers(0, 2**31), st.integers(0, 2**31), st.integers(1, 40_000), st.integers(0, 99)
    ),
    # Long runs: digits beyond float range, nesting beyond the recursion limit, huge varints and lengths.
    st.tuples(
        st.just("run"),
        st.integers(0, 2**31),
        st.sampled_from([b"9", b"[", b"{", b'{"a":', b"\xff", b"-"]),
        st.integers(1, 20_000),
    ),
)


def mutate(data: bytes, ops: list[tuple[Any, ...]], seeds: list[bytes]) -> bytes:
    """Apply bit flips, cuts, inserted junk, deletions and splices (a slice of some seed copied in) to ``data``.

    Positions are taken modulo the current length, so any integer is a valid position and shrinking stays simple.
    """
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        at = op[1] % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[at % len(buf)] ^= 1 << op[2]
        elif kind == "truncate":
            del buf[at:]
        elif kind in ("insert", "byte"):
            buf[at:at] = op[2]
        elif kind == "run":
            buf[at:at] = op[2] * op[3]
        elif kind == "delete":
            del buf[at : at + op[2]]
        elif kind == "splice":
            donor = seeds[op[4] % len(seeds)]
            start = op[2] % (len(donor) + 1)
            buf[at:at] = donor[start : start + op[3]]
    return bytes(buf)


def _arbitrary(target: Target) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=4096)
    texty = st.text(max_size=2048).map(lambda s: s.encode("utf-8", errors="surrogatepass"))
    strategies = [raw, texty]
    if target.magic:
        strategies.append(raw.map(lambda b: target.magic + b))
    return st.one_of(*strategies)


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", sorted(TARGETS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_arbitrary_bytes(name: str, data: st.DataObject, fuzz_root: Path) -> None:
    target = TARGETS[name]
    blob = data.draw(_arbitrary(target), label="bytes")
    for folder in _fresh(fuzz_root):
        read_target(target, blob, folder)


@pytest.mark.parametrize("name", sorted(TARGETS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_mutated_fixtures(name: str, data: st.DataObject, fuzz_root: Path) -> None:
    target = TARGETS[name]
    seeds = _seeds(target)
    assert seeds, f"no seed files for {name}"
    index = data.draw(st.integers(0, len(seeds) - 1), label="seed")
    ops = data.draw(st.lists(_OPS, min_size=1, max_size=6), label="ops")
    blob = mutate(seeds[index], ops, seeds)
    for folder in _fresh(fuzz_root):
        read_target(target, blob, folder)


# Discovery, every rule and every report per example cost ~0.1 s: a tenth of the reader tests' examples.
_E2E_SETTINGS = settings(FUZZ_SETTINGS, max_examples=max(5, FUZZ_SETTINGS.max_examples // 10))


@pytest.mark.parametrize("name", ["tensorboard", "stdout", "trainer_state", "swanlab_record"])
@_E2E_SETTINGS
@given(data=st.data())
def test_fuzz_end_to_end_every_format(name: str, data: st.DataObject, fuzz_root: Path) -> None:
    """A mutated log through discovery, the rules and every report format: DpoDoctorError or a report, nothing
    else (the rules and reporters see whatever odd values a damaged file still yields)."""
    target = TARGETS[name]
    seeds = _seeds(target)
    index = data.draw(st.integers(0, len(seeds) - 1), label="seed")
    ops = data.draw(st.lists(_OPS, min_size=1, max_size=4), label="ops")
    blob = mutate(seeds[index], ops, seeds)
    for folder in _fresh(fuzz_root):
        path = folder / target.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        try:
            report = api.check([folder], use_config=False)
        except DpoDoctorError:
            continue
        for fmt in FORMATS:
            assert isinstance(render(report, fmt), str)
