"""Regression tests: the minimised inputs of bugs the fuzzing and the bad-input tests found, one test per bug.

Each input is inline, so the test replays exactly what broke, whatever happens to the fixtures. The docstring
says what the bug was; the reader module named there holds the fix.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers import get_reader
from dpodoctor.readers.hparams import find_beta
from dpodoctor.readers.swanlab.rundir import _RECORD_NAME_RE
from dpodoctor.reporters.common import clean
from tests.bad_inputs.builders import event_file, scalar_event, swanlab_file, tfrecord
from tests.bad_inputs.targets import replay

# An integer beyond float range, as json.loads returns it (10**309): float() of it raises OverflowError.
BIG_INT = b"1" + b"0" * 309


def test_swanlab_logs_slice_with_an_integer_beyond_float_range() -> None:
    """swanlab/rundir.py json_number: ``float(10**309)`` raised OverflowError out of the reader (fuzz, swanlab_logs).
    Now the value is not a number, like a media entry, and the slice's other points are read."""
    outcome = replay("swanlab_logs", b'{"index": 1, "data": ' + BIG_INT + b'}\n{"index": 2, "data": 0.5}\n')
    assert isinstance(outcome, DpoDoctorError | list)  # no OverflowError: the slice has no names, so no run


def test_swanlab_export_json_with_an_integer_beyond_float_range() -> None:
    """swanlab/rundir.py json_number, reached from the export reader: the same OverflowError."""
    data = b'{"metricType": "SCALAR", "list": [{"key": "train/loss", "metrics": [{"step": 1, "value": '
    outcome = replay("swanlab_export_json", data + BIG_INT + b'}, {"step": 2, "value": 0.5}]}]}')
    assert isinstance(outcome, list)
    (result,) = outcome
    assert result.frame["step"].tolist() == [2]
    assert any("malformed" in n for n in result.notes)


def test_swanlab_backup_record_with_an_integer_beyond_float_range() -> None:
    """swanlab/rundir.py json_number, reached from a layout-B (0.6/0.7) JSON record: the same OverflowError."""
    scalar = b'{"model_type": "Scalar", "data": {"key": "train/loss", "step": %d, "metric": {"data": %s}}}'
    payloads = [
        (scalar % (1, BIG_INT), None),
        (scalar % (2, b"0.5"), None),
        (b'{"model_type": "Footer", "data": {"success": true}}', None),
    ]
    data = bytearray(swanlab_file(payloads).data)
    data[6] = 1  # version 1: JSON payloads
    outcome = replay("swanlab_backup", bytes(data))
    assert isinstance(outcome, list)
    assert outcome[0].frame["step"].tolist() == [2]


# ---------------------------------------------------------------- reads that blocked on a FIFO


class _Blocked(Exception):
    pass


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise _Blocked("blocked: a FIFO was opened")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_find_beta_skips_a_fifo_named_like_an_event_file(tmp_path: Path) -> None:
    """readers/hparams.py find_beta: its glob for ``events.out.tfevents.*`` beside a stdout log opened whatever it
    matched, so a FIFO of that name blocked the whole check forever (found by test_filesystem)."""
    os.mkfifo(tmp_path / "events.out.tfevents.1700000000.host.1.0")
    os.mkfifo(tmp_path / "config.yaml")
    with _deadline(10):
        assert find_beta(tmp_path) is None


@pytest.mark.parametrize(
    ("reader", "name"),
    [("swanlab", "run-abcdefgh.swanlab"), ("swanlab-export", "export.csv"), ("swanlab-export", "export.json")],
)
def test_sniff_never_opens_a_fifo(tmp_path: Path, reader: str, name: str) -> None:
    """swanlab/rundir.py and swanlab/export.py sniff: they opened any file of the right name to read its first
    bytes, and open() of a FIFO waits for a writer."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with _deadline(10):
        assert not get_reader(reader).sniff(fifo)


# ---------------------------------------------------------------- regexes that were quadratic on hostile text


def test_record_name_regex_is_linear() -> None:
    """swanlab/rundir.py _RECORD_NAME_RE: ``run-[A-Za-z0-9_-]+\\.swanlab`` searched over ``run-run-run-...`` tried
    every ``run-`` and ran each to the end of the text (hours for 1 MB); the run is now bounded."""
    started = time.perf_counter()
    assert _RECORD_NAME_RE.search("run-" * 250_000) is None
    assert time.perf_counter() - started < 2


def test_clean_is_linear_on_unterminated_c1_strings() -> None:
    """reporters/common.py _ANSI: a key of many 8-bit string introducers (``\\x90`` ...) without a terminator made
    every introducer scan to the end of the text: ``clean`` of 1 MB took minutes, in every output format."""
    started = time.perf_counter()
    assert clean("\x90" * 1_000_000 + "tail") == "tail"
    assert clean("\x9d8;;http://x\x90y\x9cz") == "8;;http://xz"  # still stripped, still safe
    assert time.perf_counter() - started < 2


# ---------------------------------------------------------------- file names are whatever the disk holds


def test_event_file_name_with_a_superscript_digit(tmp_path: Path) -> None:
    """tensorboard.py _natural_key: a name chunk ``²`` passed str.isdigit(), then int("²") raised ValueError while
    ordering a run's event files (found probing odd names)."""
    (tmp_path / "events.out.tfevents.1²").write_bytes(event_file(4).data)
    (tmp_path / "events.out.tfevents.2").write_bytes(event_file(4, runtime=False).data)
    result = get_reader("tensorboard").read(sorted(tmp_path.iterdir()))
    assert len(result.frame) == 8


def test_swanlab_logs_folder_named_with_a_superscript_digit(tmp_path: Path) -> None:
    """swanlab/rundir.py: a ``logs/²`` folder passed str.isdigit() as a key folder, then int("²") raised ValueError
    while listing the folders no key names (found probing odd names)."""
    column = b'{"model_type": "Column", "data": {"key": "train/loss", "kid": "1", "cls": "CUSTOM"}}'
    scalar = b'{"model_type": "Scalar", "data": {"key": "train/loss", "step": 1, "metric": {"data": 0.5}}}'
    data = bytearray(swanlab_file([(column, None), (scalar, None)]).data)
    data[6] = 1  # version 1 (swanlab 0.6/0.7): JSON payloads; no Footer, so logs/ is consulted
    run = tmp_path / "swanlog" / "run-20260101_000000-abcdefgh"
    for kid in ("1", "²"):
        (run / "logs" / kid).mkdir(parents=True)
        (run / "logs" / kid / "1000.log").write_bytes(b'{"index": 2, "data": 0.4}\n')
    (run / "backup.swanlab").write_bytes(bytes(data))
    result = get_reader("swanlab").read([run / "backup.swanlab"])
    assert sorted(result.frame["step"].tolist()) == [1, 2]


# ---------------------------------------------------------------- numbers beyond Python's limits (found by the fuzzer)


def test_swanlab_config_integer_beyond_the_int_digit_limit() -> None:
    """swanlab/config.py _scalar: int() of a plain scalar of more than 4300 digits raises ValueError (CPython's
    limit on int(str)), which escaped parse_config_yaml (fuzz: mutated config.yaml, a run of 9s spliced in). The
    value now keeps its text, as other scalars outside the subset do."""
    outcome = replay("swanlab_config", b"beta: " + b"9" * 4301 + b"\nlr: 0.1\n")
    assert isinstance(outcome, list)
    assert any("beta is not a finite number" in n for n in outcome[0].notes)


def test_swanlab_export_json_timestamp_and_step_beyond_float_range() -> None:
    """swanlab/export.py _wall and _step: float() of a JSON integer beyond float range raised OverflowError
    (fuzz: mutated api-run-metrics JSON, 296 nines spliced into a timestamp)."""
    big = b"1" + b"0" * 400
    data = b'{"metricType": "SCALAR", "list": [{"key": "train/loss", "metrics": [{"step": %s, "value": 0.5}, '
    data += b'{"step": 1, "value": 0.5, "timestamp": %s}]}]}'
    outcome = replay("swanlab_export_json", data % (big, big))
    assert isinstance(outcome, list)
    assert outcome[0].frame["step"].tolist() == [1]


@pytest.mark.parametrize("where", ["training_args.json", "tensorboard args", "swanlab config.yaml"])
def test_beta_integer_beyond_float_range(tmp_path: Path, where: str) -> None:
    """hparams.py beta_in, tensorboard.py _beta_from, swanlab/rundir.py _read_config: math.isfinite() of an integer
    beyond float range raises OverflowError (found reviewing every float conversion after the fuzz finds above)."""
    big = "9" * 400
    if where == "training_args.json":
        (tmp_path / "training_args.json").write_text('{"beta": ' + big + "}", encoding="utf-8")
        assert find_beta(tmp_path) is None
    elif where == "tensorboard args":
        from dpodoctor.readers.tensorboard.assemble import beta_from

        notes: list[str] = []
        assert beta_from({"beta": int(big)}, "events", notes) is None
        assert notes and len(notes[0]) < 200
    else:
        outcome = replay("swanlab_config", b"beta:\n  desc: ''\n  sort: 1\n  value: " + big.encode() + b"\n")
        assert isinstance(outcome, list) and outcome[0].beta is None


def test_stdout_torn_quote_reads_the_same_whatever_dict_came_before(tmp_path: Path) -> None:
    """Found by an old-vs-new differential run of the stdout reader over mutated fixture logs: a value with one
    quote (``'-1.0637,``) was read by the previous dict's layout pattern (a quote optional on each side) but skipped
    by the generic pair pattern (a quote that opens must close), so what a dict gave depended on the dict before it.
    The layout patterns now take exactly what the generic one takes (readers/stdout.py, _layout_re/_check_re)."""
    good = "{{'loss': '0.5', 'rewards/margins': '0.1', 'epoch': '{}'}}\n"
    torn = "{'loss': '0.4', 'rewards/margins': '-1.0637, 'epoch': '0.9'}\n"
    other = "{'eval_loss': '0.5', 'epoch': '0.8'}\n"
    reader = get_reader("stdout")
    margins = []
    for before in ("", other):
        path = tmp_path / f"train{len(before)}.log"
        path.write_text("".join(good.format(i / 10) for i in range(1, 8)) + before + torn)
        frame = reader.read([path]).frame
        margins.append(frame[frame["metric"] == "margins"]["value"].tolist())
    assert margins[0] == margins[1] == [0.1] * 7  # the torn value is no number, after either dict


def test_signalling_nan_in_an_event_file_prints_no_numpy_warning(tmp_path: Path) -> None:
    """Found by the full fuzz run (mutated event files): a scalar whose float32 bytes are a signalling NaN made the
    numpy fast path widen it with "RuntimeWarning: invalid value encountered in cast", which the CLI printed to
    stderr with a source line. The value is a NaN, as protobuf gives; the cast now runs with that warning off
    (readers/tensorboard/decode.py)."""
    import struct
    import warnings

    records = [tfrecord(scalar_event("train/loss", step, 0.5)) for step in range(1, 6)]
    signalling = scalar_event("train/loss", 6, 1.0).replace(struct.pack("<f", 1.0), b"\x01\x00\x80\x7f")
    records.append(tfrecord(signalling))
    path = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    path.write_bytes(b"".join(records))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = get_reader("tensorboard").read([path]).frame
    values = frame[frame["metric"] == "loss"]["value"].tolist()
    assert values[:5] == [0.5] * 5 and values[5] != values[5]  # the last is NaN
