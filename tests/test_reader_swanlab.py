"""Tests for the SwanLab readers: every on-disk layout and export in tests/fixtures/swanlab, the real TRL runs'
swanlog/ against their TensorBoard events, crashes, NaN spellings, proto3 defaults, and that reading never writes.

Why hand-made files as well as the samples: the samples are what SwanLab really wrote, but none of them holds a
point at step 0 with value 0.0 (proto3 leaves both off the wire), a record split over blocks, or every NaN spelling.
The hand-made ones are written with a port of swanlab 0.10.3's ``DataStoreWriter`` (checked below to reproduce a
real file byte for byte) around protobuf bytes encoded here from the field numbers in
``dpodoctor/readers/swanlab/wire.py``.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import shutil
import sqlite3
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpodoctor.readers.swanlab.rundir as rundir_mod
from dpodoctor import api
from dpodoctor.discovery import discover
from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.model import Ended
from dpodoctor.readers import ReadResult, read_runs, reader_for
from dpodoctor.readers.stdout import StdoutReader
from dpodoctor.readers.swanlab import SwanLabExportReader, SwanLabReader, wire
from dpodoctor.readers.swanlab.config import parse_config_yaml, parse_yaml, unwrap_config
from dpodoctor.readers.swanlab.export import classify_header, split_experiment_key
from dpodoctor.readers.swanlab.framing import scan_frames
from dpodoctor.readers.tensorboard import TensorBoardReader

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = FIXTURES / "swanlab"
TRL = FIXTURES / "trl"
TRL_RUNS = sorted(p.name for p in TRL.iterdir() if p.is_dir())
READER = SwanLabReader()
EXPORTS = SwanLabExportReader()

TRAIN_KEYS = {"loss", "chosen", "rejected", "accuracy", "margins", "logps_chosen", "logps_rejected", "epoch"}
EVAL_KEYS = {"margins", "loss"}
CONFIG = {"beta": 0.1, "learning_rate": 5e-07, "loss_type": "sigmoid"}


# ---------------------------------------------------------------- helpers


def _runs(folder: Path) -> list[tuple[str, ReadResult]]:
    """Every SwanLab run discovery finds under ``folder``, read (name, result); files holding no metrics are
    skipped, as a walk does."""
    out = []
    for source in discover([folder]):
        if source.reader.name not in ("swanlab", "swanlab-export"):
            continue
        try:
            results = read_runs(source.reader, source.files)
        except NoMetricsError:
            continue
        out.extend((f"{source.name}#{r.label}" if r.label else source.name, r) for r in results)
    return out


def _points(result: ReadResult) -> dict[tuple[str, str, int], float]:
    f = result.frame
    return {
        (str(s), str(m), int(t)): float(v)
        for s, m, t, v in f[["split", "metric", "step", "value"]].itertuples(index=False)
    }


def _series(result: ReadResult, metric: str, split: str = "train") -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == split) & (f["metric"] == metric)]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _record_file(folder: Path) -> Path:
    (path,) = [
        p for p in folder.glob("swanlog/run-*/*.swanlab") if p.name == "backup.swanlab" or p.name.startswith("run-")
    ]
    return path


def _tree_digest(folder: Path) -> dict[str, str]:
    """Every file (hidden ones included) and folder below ``folder`` with a hash of its bytes."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return digest


def _check(paths: list[Path]) -> Any:
    """api.check without a project config file (the repository's own pyproject.toml is not a dpodoctor config)."""
    if "use_config" in inspect.signature(api.check).parameters:
        return api.check(paths, use_config=False)
    return api.check(paths)  # pragma: no cover - older API


def _reference() -> ReadResult:
    return READER.read([_record_file(SAMPLES / "offline-0.8.5")])


# ---------------------------------------------------------------- writing SwanLab files (a port of swanlab's writer)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int, value: int | bytes | str) -> bytes:
    key = _varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(value, int)
        return key + _varint(value)
    if wire_type == 1:
        assert isinstance(value, bytes) and len(value) == 8
        return key + value
    raw = value.encode() if isinstance(value, str) else value
    assert isinstance(raw, bytes)
    return key + _varint(len(raw)) + raw


def _timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    return (_field(1, 0, whole) if whole else b"") + (_field(2, 0, nanos) if nanos else b"")


def _record(num: int, kind: int, body: bytes, when: float = 1_795_490_073.5) -> bytes:
    return _field(1, 0, num) + _field(2, 2, _timestamp(when)) + _field(kind, 2, body)


def _scalar(num: int, key: str, step: int, value: float, when: float = 1_795_490_073.5) -> bytes:
    """A Record{scalar} as proto3 writes it: step 0 and value 0.0 are left off the wire."""
    number = _field(1, 1, struct.pack("<d", value)) if value != 0.0 or math.copysign(1, value) < 0 else b""
    body = (
        _field(1, 2, key)
        + (_field(2, 0, step) if step else b"")
        + _field(3, 0, 1)
        + _field(4, 2, _timestamp(when))
        + _field(5, 2, number)
    )
    return _record(num, 13, body, when)


def _column(num: int, key: str, system: bool = False) -> bytes:
    body = _field(1, 0, 2 if system else 1) + _field(2, 0, 1) + _field(3, 2, key) + _field(5, 2, key.split("/")[0])
    return _record(num, 12, body)


def _finish(state: int, error: str = "") -> bytes:
    body = (_field(1, 0, state) if state else b"") + (_field(2, 2, error) if error else b"")
    return _record(-2, 11, body)


def _log_line(num: int, text: str) -> bytes:
    return _record(num, 16, _field(1, 2, text) + _field(4, 0, num))


def _frame(payloads: list[bytes], version: int = 2) -> bytes:
    """swanlab 0.10.3 ``DataStoreWriter``: file header, then LevelDB-log chunks in 32 KB blocks."""
    out = bytearray(struct.pack("<4sHB", b":SWL", 0xE1D6, version))

    def chunk(data: bytes, kind: int) -> None:
        out.extend(struct.pack("<IHB", zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF, len(data), kind))
        out.extend(data)

    for data in payloads:
        left = 32768 - len(out) % 32768
        if left < 7:
            out.extend(b"\x00" * left)
            left = 32768
        if len(data) + 7 <= left:
            chunk(data, 1)
            continue
        room = left - 7
        chunk(data[:room], 2)
        rest = data[room:]
        while len(rest) > 32768 - 7:
            chunk(rest[: 32768 - 7], 3)
            rest = rest[32768 - 7 :]
        chunk(rest, 4)
    return bytes(out)


def _run_dir(tmp: Path, content: bytes, name: str = "run-abcd1234.swanlab") -> Path:
    """A minimal ``swanlog/run-*/`` with one record file; returns the record file."""
    run = tmp / "swanlog" / "run-20260101_000000-abcd1234"
    run.mkdir(parents=True, exist_ok=True)
    path = run / name
    path.write_bytes(content)
    return path


def _json_record(model_type: str, data: dict[str, Any]) -> bytes:
    return (json.dumps({"model_type": model_type, "data": data}) + "\n").encode()


# ---------------------------------------------------------------- the samples SwanLab wrote

COMPLETE = [
    ("offline-0.10.3", 2),
    ("local-0.10.3", 2),
    ("local-no-swanboard-0.10.3", 1),
    ("csvwriter-offline-0.10.3", 2),
    ("offline-0.9.8", 1),
    ("local-0.9.8", 1),
    ("offline-0.8.5", 1),
    ("offline-0.7.20", 1),
    ("local-0.7.20", 2),
    ("offline-0.6.13", 1),
    ("local-0.6.13", 1),
    ("local-0.5.9", 1),
    ("local-0.4.12", 2),
]


@pytest.mark.parametrize(("sample", "n_runs"), COMPLETE)
def test_complete_sample_gives_the_documented_run(sample: str, n_runs: int) -> None:
    runs = _runs(SAMPLES / sample)
    assert len(runs) == n_runs
    reference = _points(_reference())
    for _, result in runs:
        f = result.frame
        assert len(f) == 410  # 8 train keys x 50 steps + 2 eval keys x 5
        assert set(_points(result)) == set(reference)
        assert {m for s, m in f[["split", "metric"]].drop_duplicates().itertuples(index=False) if s == "train"} == (
            TRAIN_KEYS
        )
        assert {m for s, m in f[["split", "metric"]].drop_duplicates().itertuples(index=False) if s == "eval"} == (
            EVAL_KEYS
        )
        assert sorted(_series(result, "loss")) == list(range(1, 51))
        assert sorted(_series(result, "margins", "eval")) == [10, 20, 30, 40, 50]
        loss = _series(result, "loss")
        assert math.isnan(loss[25]) and sum(math.isnan(v) for v in f["value"]) == 1
        # The same seeded values in every version and layout.
        assert all(_same(v, reference[k]) for k, v in _points(result).items())
        assert result.ended == Ended.FINISHED
        assert result.beta == 0.1 and result.config == CONFIG
        assert result.beta_source is not None and result.beta_source.startswith("swanlog/run-")
        assert result.beta_source.endswith("/files/config.yaml")
        assert f["wall_time"].notna().all()  # every layout carries a time per point
        assert not any("torn" in n or "finish" in n for n in result.notes)


def test_each_run_of_a_shared_swanlog_is_its_own_run_and_a_lone_run_is_its_output_folder() -> None:
    names = sorted(name for name, _ in _runs(SAMPLES / "offline-0.10.3"))
    assert names == ["swanlog/run-20261124_031433-q8o3529m", "swanlog/run-20261124_031435-7f91o63j"]
    [(name, _)] = _runs(SAMPLES / "offline-0.8.5")
    assert name == "offline-0.8.5"  # one run in swanlog/: the folder around it is the run
    record = _record_file(SAMPLES / "offline-0.8.5")
    assert READER.run_root(record) == SAMPLES / "offline-0.8.5"
    slice_ = next(SAMPLES.glob("local-0.10.3/swanlog/run-*/logs/1/1000.log"))
    assert READER.run_root(slice_) == slice_.parents[2]


@pytest.mark.parametrize("sample", ["disabled-0.10.3", "disabled-0.4.12"])
def test_disabled_mode_leaves_nothing_to_read(sample: str) -> None:
    assert not (SAMPLES / sample / "swanlog").exists()
    assert [s for s in discover([SAMPLES / sample]) if s.reader.name.startswith("swanlab")] == []


def test_sniff_claims_record_files_and_metric_slices_only() -> None:
    assert getattr(reader_for(_record_file(SAMPLES / "offline-0.9.8")), "name", None) == "swanlab"
    assert READER.sniff(_record_file(SAMPLES / "offline-0.7.20"))
    assert READER.sniff(next(SAMPLES.glob("offline-crash-osexit-0.10.3/swanlog/run-*/run-*.swanlab")))  # 0 bytes
    assert READER.sniff(next(SAMPLES.glob("local-0.4.12/swanlog/run-*/logs/0/1000.log")))
    assert not READER.sniff(SAMPLES / "local-0.10.3" / "swanlog" / "runs.swanlab")  # SQLite index
    for name in ("config.yaml", "swanlab-metadata.json", "requirements.txt"):
        assert not READER.sniff(next(SAMPLES.glob(f"offline-0.10.3/swanlog/run-*/files/{name}")))
    assert not READER.sniff(next(SAMPLES.glob("local-0.4.12/swanlog/run-*/logs/0/_summary.json")))
    assert not READER.sniff(next(SAMPLES.glob("offline-0.10.3/swanlog/run-*/debug/debug.log")))


def test_stdout_reader_refuses_swanlab_metric_slices_but_keeps_the_console_capture() -> None:
    stdout = StdoutReader()
    slices = list(SAMPLES.glob("*/swanlog/run-*/logs/*/*.log")) + list(TRL.glob("*/swanlog/run-*/logs/*/*.log"))
    assert len(slices) > 400 and not any(stdout.sniff(p) for p in slices)
    assert all(getattr(reader_for(p), "name", None) == "swanlab" for p in slices[:50])
    assert stdout.sniff(next(TRL.glob("healthy/swanlog/run-*/console/*.log")))


# ---------------------------------------------------------------- crashes


def test_uncaught_exception_is_crashed_with_the_error_text() -> None:
    [(_, result)] = _runs(SAMPLES / "offline-crash-raise-0.10.3")
    assert result.ended == Ended.CRASHED
    assert len(result.frame) == 246 and result.frame["step"].max() == 30
    assert sorted(_series(result, "loss", "eval")) == [10, 20, 30]
    [note] = [n for n in result.notes if "CRASHED" in n]
    assert "Traceback (most recent call last):" in note and "RuntimeError: simulated CUDA OOM at step 30" in note


def test_os_exit_leaves_a_zero_byte_file_and_a_read_error_naming_it() -> None:
    record = next(SAMPLES.glob("offline-crash-osexit-0.10.3/swanlog/run-*/run-*.swanlab"))
    assert record.stat().st_size == 0
    with pytest.raises(ReadError) as info:
        READER.read([record])
    assert info.value.path == record
    assert "0 bytes: the run was killed before SwanLab wrote anything (os._exit?)" in str(info.value)
    loaded = api.load_all([SAMPLES / "offline-crash-osexit-0.10.3"])
    assert not [r for r in loaded.runs if r.source == "swanlab"]
    assert any("os._exit" in str(p) for p in loaded.problems)


def test_kill9_torn_tail_keeps_every_complete_record() -> None:
    [(_, result)] = _runs(SAMPLES / "offline-crash-kill9-0.10.3")
    assert result.ended == Ended.TRUNCATED
    assert len(result.frame) == 686 and result.frame["step"].max() == 84
    assert max(_series(result, "margins", "eval")) == 80
    last_steps = result.frame[result.frame["split"] == "train"].groupby("metric", observed=True)["step"].max()
    assert set(last_steps) == {83, 84}  # the last step is only partly on disk
    text = "\n".join(result.notes)
    assert "torn tail" in text and "byte 52880 of 52887" in text and "no finish record" in text


def test_kill9_layout_b_without_footer() -> None:
    [(_, result)] = _runs(SAMPLES / "offline-crash-kill9-0.7.20")
    assert result.ended == Ended.TRUNCATED
    assert len(result.frame) == 654
    assert max(_series(result, "loss")) == 80 and max(_series(result, "loss", "eval")) == 70
    assert any("no Footer record" in n for n in result.notes)


def test_local_kill9_reads_the_record_file_and_the_index_only_in_the_wal() -> None:
    [(_, result)] = _runs(SAMPLES / "local-crash-kill9-0.10.3")
    assert result.ended == Ended.TRUNCATED and result.frame["step"].max() == 85  # the record file is ahead of logs/
    assert len(result.frame) == 689


def test_zero_byte_record_file_falls_back_to_logs_named_by_the_wal_only_index(tmp_path: Path) -> None:
    """The tag rows of this sample are only in runs.swanlab-wal: reading the copy with its WAL finds them."""
    folder = tmp_path / "run"
    shutil.copytree(SAMPLES / "local-crash-kill9-0.10.3", folder)
    record = _record_file(folder)
    record.write_bytes(b"")
    [(_, result)] = _runs(folder)
    logs = record.parent / "logs"
    lines = sum(len(p.read_text().splitlines()) for p in logs.glob("*/*.log"))
    assert len(result.frame) == lines and result.frame["step"].max() == 80
    assert result.ended == Ended.TRUNCATED  # experiment.status 0 in the index
    text = "\n".join(result.notes)
    assert "os._exit" in text and "runs.swanlab status 0" in text
    full = _points(READER.read([_record_file(SAMPLES / "local-crash-kill9-0.10.3")]))
    assert all(_same(v, full[k]) for k, v in _points(result).items())


def test_logs_ahead_of_a_torn_record_file_are_added_and_named_by_the_0_10_rule(tmp_path: Path) -> None:
    """No runs.swanlab: folder n is the n-th key first logged (0.10's rule), checked against the record file."""
    folder = tmp_path / "run"
    shutil.copytree(SAMPLES / "local-crash-kill9-0.10.3", folder)
    for db in folder.glob("swanlog/runs.swanlab*"):
        db.unlink()
    record = _record_file(folder)
    record.write_bytes(record.read_bytes()[:20000])
    [(_, result)] = _runs(folder)
    assert result.ended == Ended.TRUNCATED and result.frame["step"].max() == 80
    text = "\n".join(result.notes)
    assert "swanlab 0.10's rule" in text and "1-based" in text and "added" in text
    full = _points(READER.read([_record_file(SAMPLES / "local-crash-kill9-0.10.3")]))
    assert all(_same(v, full[k]) for k, v in _points(result).items())


def test_logs_that_contradict_the_record_file_are_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(SAMPLES / "local-crash-kill9-0.10.3", folder)
    for db in folder.glob("swanlog/runs.swanlab*"):
        db.unlink()
    record = _record_file(folder)
    record.write_bytes(record.read_bytes()[:20000])
    logs = record.parent / "logs"
    (logs / "1").rename(logs / "tmp")
    (logs / "2").rename(logs / "1")
    (logs / "tmp").rename(logs / "2")
    [(_, result)] = _runs(folder)
    assert any("do not match" in n for n in result.notes)
    assert result.frame["step"].max() < 80


def test_layout_c_needs_its_index(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(SAMPLES / "local-0.5.9", folder)
    (folder / "swanlog" / "runs.swanlab").unlink()
    with pytest.raises(ReadError, match="no scalar metrics") as info:
        _runs(folder)
    assert "nothing names them" in str(info.value)


def test_crash_is_reported_by_the_run_ended_rule() -> None:
    record = next(SAMPLES.glob("offline-crash-kill9-0.10.3/swanlog/run-*/run-*.swanlab"))
    report = _check([record])
    [run] = report.runs
    assert "DPO005" in {f.code for f in run.findings}


# ---------------------------------------------------------------- never write into the user's folder


@pytest.mark.parametrize("sample", ["local-crash-kill9-0.10.3", "local-0.4.12", "local-0.10.3"])
def test_reading_leaves_the_sample_folder_byte_identical(sample: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = SAMPLES / sample
    before = _tree_digest(folder)
    opened: list[str] = []
    real_connect = sqlite3.connect

    def spy(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(database))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(rundir_mod.sqlite3, "connect", spy)
    assert _runs(folder)
    api.load_all([folder])
    assert _tree_digest(folder) == before
    if sample != "local-0.10.3":  # finished runs never need the index
        assert opened
    resolved = str(folder.resolve())
    assert all(resolved not in path and str(folder) not in path for path in opened)


# ---------------------------------------------------------------- the real TRL runs: swanlog/ vs TensorBoard


@pytest.mark.parametrize("run", TRL_RUNS)
def test_trl_swanlog_matches_tensorboard(run: str) -> None:
    tb = TensorBoardReader().read(sorted((TRL / run).glob("runs/*/events.out.tfevents.*")))
    record = next((TRL / run).glob("swanlog/run-*/run-*.swanlab"))
    sw = READER.read([record])
    a, b = _points(tb), _points(sw)
    assert set(a) == set(b)
    keys = sorted(a)
    tb_values = np.array([a[k] for k in keys])
    sw_values = np.array([b[k] for k in keys], dtype=np.float32).astype(np.float64)  # TB stores float32
    np.testing.assert_allclose(sw_values, tb_values, rtol=1e-6, atol=0, equal_nan=True)
    assert sw.ended == tb.ended == Ended.FINISHED
    assert set(sw.summary) == set(tb.summary)
    assert all(np.float32(sw.summary[k]) == pytest.approx(tb.summary[k], rel=1e-6) for k in tb.summary)
    assert sw.beta == tb.beta and sw.beta_source == f"swanlog/{record.parent.name}/files/config.yaml"
    assert sw.notes == []


@pytest.mark.parametrize("run", TRL_RUNS)
def test_trl_explicit_swanlab_file_gives_the_same_findings_as_tensorboard(run: str) -> None:
    record = next((TRL / run).glob("swanlog/run-*/run-*.swanlab"))
    from_swanlab = _check([record])
    from_tensorboard = _check([TRL / run / "runs"])
    assert [r.run.source for r in from_swanlab.runs] == ["swanlab"]
    assert [r.run.source for r in from_tensorboard.runs] == ["tensorboard"]
    assert [f.code for f in from_swanlab.runs[0].findings] == [f.code for f in from_tensorboard.runs[0].findings]
    assert from_swanlab.runs[0].beta_used == from_tensorboard.runs[0].beta_used


def test_trl_output_folder_is_one_run_read_from_tensorboard() -> None:
    [source] = discover([TRL / "healthy"])
    assert source.reader.name == "tensorboard"
    assert any(p.name.endswith(".swanlab") for p in source.others)


def test_trl_config_yaml_is_parsed_in_full() -> None:
    [config_path] = (TRL / "healthy").glob("swanlog/run-*/files/config.yaml")
    entries, failed = parse_config_yaml(config_path.read_text(encoding="utf-8"))
    assert failed == []
    config = unwrap_config(entries)
    assert (
        config["beta"] == 0.1 and config["adam_epsilon"] == 1e-08 and config["report_to"] == ["tensorboard", "swanlab"]
    )
    assert config["accelerator_config"]["use_seedable_sampler"] is True
    assert config["accelerator_config"]["dispatch_batches"] is None
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    assert config["label_names"] == {} and config["FRAMEWORK"] == "🤗transformers"
    assert config["rope_parameters"] == {"rope_theta": 10000.0, "rope_type": "default"}
    assert all(isinstance(k, str) for k in config)


# ---------------------------------------------------------------- exports


def test_cloud_wide_export_values_are_the_run_values() -> None:
    path = SAMPLES / "handmade-export" / "cloud-export-wide_multi-key.csv"
    assert EXPORTS.sniff(path) and not READER.sniff(path)
    result = EXPORTS.read([path])
    reference = _points(_reference())
    got = _points(result)
    assert len(got) == 355  # 7 train keys x 50 + eval margins x 5
    assert all(_same(v, reference[k]) for k, v in got.items())
    assert math.isnan(_series(result, "loss")[25])
    assert result.frame["wall_time"].between(1.7e9, 1.9e9).all()  # milliseconds -> seconds


def test_cloud_export_with_two_experiments_gives_two_labelled_runs(tmp_path: Path) -> None:
    src = SAMPLES / "handmade-export" / "cloud-export-wide_multi-key.csv"
    with src.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0] + [c.replace("dpo-offline-", "my-exp-2-", 1) for c in rows[0][1:]]
    body = [row + row[1:] for row in rows[1:]]
    path = tmp_path / "export.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    results = EXPORTS.read_runs([path])
    assert sorted(str(r.label) for r in results) == ["dpo-offline", "my-exp-2"]
    assert all(len(r.frame) == 355 for r in results)
    [run_a, run_b] = api.load(path)
    assert {run_a.name.split("#")[1], run_b.name.split("#")[1]} == {"dpo-offline", "my-exp-2"}


def test_legacy_per_key_column_csv() -> None:
    result = EXPORTS.read([SAMPLES / "handmade-export" / "cloud-column-csv_train-rewards-margins.csv"])
    assert sorted(_series(result, "margins")) == list(range(1, 51))
    assert _series(result, "margins") == _series(_reference(), "margins")


def test_openapi_dataframe_csvs_inner_and_outer_join() -> None:
    inner = EXPORTS.read([SAMPLES / "handmade-export" / "openapi-get_metrics-dataframe_inner-join.csv"])
    assert len(inner.frame) == 40 and sorted(set(inner.frame["step"])) == [10, 20, 30, 40, 50]
    outer = EXPORTS.read([SAMPLES / "handmade-export" / "openapi-metrics-dataframe_outer-join.csv"])
    reference = _points(_reference())
    assert len(outer.frame) == 355 and all(_same(v, reference[k]) for k, v in _points(outer).items())
    assert math.isnan(_series(outer, "loss")[25])  # an empty cell with a timestamp is a NaN
    assert 25 not in _series(outer, "margins", "eval")  # an empty cell without one was not logged
    assert any("empty value cell" in n for n in outer.notes)


def test_api_metrics_json_null_is_nan() -> None:
    result = EXPORTS.read([SAMPLES / "handmade-export" / "api-run-metrics_all-true.json"])
    assert len(result.frame) == 100
    assert math.isnan(_series(result, "loss")[25])
    reference = _points(_reference())
    assert all(_same(v, reference[k]) for k, v in _points(result).items())


def test_csvwriter_export_is_refused_because_it_holds_only_final_values() -> None:
    path = SAMPLES / "csvwriter-offline-0.10.3" / "csv_export" / "swanlab_runs.csv"
    assert EXPORTS.sniff(path)
    with pytest.raises(NoMetricsError, match="only the final value"):
        EXPORTS.read([path])
    loaded = api.load_all([SAMPLES / "csvwriter-offline-0.10.3"])
    assert len([r for r in loaded.runs if r.source == "swanlab"]) == 2
    assert any("swanlab_runs.csv" in i for i in loaded.ignored)


def test_export_folder_reads_every_file_as_its_own_run() -> None:
    names = sorted(name for name, _ in _runs(SAMPLES / "handmade-export"))
    assert len(names) == 5 and all(n.startswith("handmade-export#") for n in names)


def test_exports_sniff_leaves_other_csv_and_json_alone(tmp_path: Path) -> None:
    files = {
        "plain.csv": "step,loss\n1,0.5\n",
        "pairs.csv": "step,loss,loss_time\n1,0.5,1\n",
        "wandb.csv": "Step,run - train/loss,run - train/loss__MIN\n1,0.5,0.5\n",
        "metrics.json": '{"loss": [0.5, 0.4]}',
        "list.json": "[1, 2, 3]",
        "binary.csv": "\xff\xfe\x00garbage",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="latin-1")
        assert not EXPORTS.sniff(tmp_path / name), name
        assert not READER.sniff(tmp_path / name), name


def test_experiment_and_key_are_split_at_the_right_dash() -> None:
    assert split_experiment_key(["dpo-offline-train/loss", "dpo-offline-eval/rewards/margins"]) == [
        ("dpo-offline", "train/loss"),
        ("dpo-offline", "eval/rewards/margins"),
    ]
    assert split_experiment_key(["a-b-train/kl-div", "a-b-custom-metric"]) == [
        ("a-b", "train/kl-div"),
        ("a-b", "custom-metric"),
    ]
    assert split_experiment_key(["exp-loss"]) == [("exp", "loss")]
    assert classify_header(["step", "x_step", "x_timestamp"]) == "cloud export"
    assert classify_header(["step", "x", "x_timestamp"]) == "OpenApi DataFrame"
    assert classify_header(["step", "x", "y_timestamp"]) is None


# ---------------------------------------------------------------- hand-made layout A / B files


def test_writer_port_reproduces_a_real_file_byte_for_byte() -> None:
    for record in (_record_file(SAMPLES / "offline-0.8.5"), next((TRL / "healthy").glob("swanlog/run-*/*.swanlab"))):
        data = record.read_bytes()
        scan = scan_frames(data, record)
        assert scan.stop_at is None and _frame(scan.records) == data


def test_step_zero_and_value_zero_are_defaulted(tmp_path: Path) -> None:
    """Layout A (0.8-0.10): proto3 omits step 0 and number 0.0; the point is (0, 0.0), not missing."""
    payloads = [
        _column(1, "train/loss"),
        _scalar(2, "train/loss", 0, 0.0),
        _scalar(3, "train/loss", 1, 0.5),
        _scalar(4, "train/loss", 2, -0.0),
        _finish(wire.RUN_STATE_FINISHED),
    ]
    assert struct.pack("<d", 0.0) not in payloads[1]  # nothing but the key: the value really is off the wire
    result = READER.read([_run_dir(tmp_path, _frame(payloads))])
    assert _series(result, "loss") == {0: 0.0, 1: 0.5, 2: -0.0}
    assert result.ended == Ended.FINISHED


def test_layout_a_nan_and_inf_and_system_and_summary_keys(tmp_path: Path) -> None:
    payloads = [
        _column(1, "train/loss"),
        _scalar(2, "train/loss", 1, math.nan),
        _scalar(3, "train/loss", 2, math.inf),
        _scalar(4, "train/loss", 3, -math.inf),
        _column(5, "__swanlab__.cpu.pct", system=True),
        _scalar(6, "__swanlab__.cpu.pct", 0, 12.0),
        _column(7, "gpu.temp", system=True),
        _scalar(8, "gpu.temp", 1, 60.0),
        _scalar(9, "train/global_step", 3, 3.0),
        _scalar(10, "single_value/train_runtime", 3, 12.5),
        _scalar(11, "single_value/custom", 3, 1.0),
        _finish(wire.RUN_STATE_FINISHED),
    ]
    result = READER.read([_run_dir(tmp_path, _frame(payloads))])
    loss = _series(result, "loss")
    assert math.isnan(loss[1]) and loss[2] == math.inf and loss[3] == -math.inf
    assert result.frame["metric"].astype(str).unique().tolist() == ["loss"]
    assert result.summary == {"train_runtime": 12.5, "custom": 1.0}


def test_record_split_over_blocks_and_aborted_finish(tmp_path: Path) -> None:
    big = "x" * 80_000  # a console line longer than two blocks: FIRST, MIDDLE, LAST
    payloads = [_scalar(i, "train/loss", i, 1.0 / i) for i in range(1, 400)]
    payloads.insert(200, _log_line(1000, big))
    payloads.append(_finish(wire.RUN_STATE_ABORTED))
    data = _frame(payloads)
    scan = scan_frames(data, tmp_path / "x")
    assert len(scan.records) == len(payloads) and any(len(r) > 32768 for r in scan.records)
    result = READER.read([_run_dir(tmp_path, data)])
    assert len(result.frame) == 399
    assert result.ended == Ended.CRASHED and any("ABORTED" in n for n in result.notes)


def test_crashed_finish_record_without_error_text_and_running_state(tmp_path: Path) -> None:
    crashed = READER.read([_run_dir(tmp_path / "a", _frame([_scalar(1, "loss", 1, 0.5), _finish(2)]))])
    assert crashed.ended == Ended.CRASHED and any("CRASHED: (no error text)" in n for n in crashed.notes)
    running = READER.read([_run_dir(tmp_path / "b", _frame([_scalar(1, "loss", 1, 0.5), _finish(0)]))])
    assert running.ended == Ended.UNKNOWN  # state RUNNING (0, off the wire) in a finish record


def test_layout_b_nan_spellings_and_failed_footer(tmp_path: Path) -> None:
    payloads = [
        _json_record("Header", {"backup_type": "DEFAULT", "create_time": "2026-11-24T03:15:27.592883+00:00"}),
        _json_record("Column", {"key": "train/loss", "kid": "0", "cls": "CUSTOM"}),
    ]
    for step, data in enumerate(["NaN", "INF", "-INF", None, 0.25, "0.5"], start=1):
        metric = {"index": step, "data": data, "create_time": "2026-11-24T03:15:28.516418+00:00"}
        payloads.append(_json_record("Scalar", {"metric": metric, "key": "train/loss", "step": step, "epoch": step}))
    payloads.append(_json_record("Footer", {"success": False, "create_time": "2026-11-24T03:15:29+00:00"}))
    result = READER.read([_run_dir(tmp_path, _frame(payloads, version=1), "backup.swanlab")])
    loss = _series(result, "loss")
    assert math.isnan(loss[1]) and loss[2] == math.inf and loss[3] == -math.inf and math.isnan(loss[4])
    assert loss[5] == 0.25 and loss[6] == 0.5
    assert result.ended == Ended.CRASHED


def test_logs_nan_spellings_of_every_version(tmp_path: Path) -> None:
    """logs/ lines: 0.9/0.10 bare NaN/Infinity tokens, 0.4-0.7 "NaN"/"INF" strings, and null."""
    run = tmp_path / "swanlog" / "run-20260101_000000-abcd1234"
    lines = [
        '{"index": 1, "data": NaN, "create_time": "2026-01-01T00:00:01+00:00"}',
        '{"index": 2, "data": Infinity, "create_time": "2026-01-01T00:00:02+00:00"}',
        '{"index": 3, "data": -Infinity, "create_time": "2026-01-01T00:00:03+00:00"}',
        '{"index": 4, "data": "NaN", "create_time": "2026-01-01T00:00:04+00:00"}',
        '{"index": 5, "data": "INF", "create_time": "2026-01-01T00:00:05+00:00"}',
        '{"index": 6, "data": null, "create_time": "2026-01-01T00:00:06+00:00"}',
        '{"index": 7, "data": 0.5, "create_time": "2026-01-01T00:00:07+00:00"}',
        '{"index": 8, "data": 0.',  # the line a kill cut
    ]
    (run / "logs" / "0").mkdir(parents=True)
    (run / "logs" / "0" / "1000.log").write_text("\n".join(lines))
    db = sqlite3.connect(tmp_path / "swanlog" / "runs.swanlab")
    db.executescript(
        "CREATE TABLE experiment (id INTEGER PRIMARY KEY, run_id TEXT, name TEXT, status INTEGER);"
        "CREATE TABLE tag (id INTEGER PRIMARY KEY, experiment_id INTEGER, name TEXT, folder TEXT);"
        "INSERT INTO experiment VALUES (1, 'run-20260101_000000-abcd1234', 'x', -1);"
        "INSERT INTO tag VALUES (1, 1, 'train/loss', '0');"
    )
    db.commit()
    db.close()
    (run / "console").mkdir()
    (run / "console" / "error.log").write_text(
        "2026-01-01 00:00:08\nTraceback (most recent call last):\nValueError: x\n"
    )
    [(_, result)] = _runs(tmp_path)
    loss = _series(result, "loss")
    assert math.isnan(loss[1]) and loss[2] == math.inf and loss[3] == -math.inf
    assert math.isnan(loss[4]) and loss[5] == math.inf and math.isnan(loss[6]) and loss[7] == 0.5
    assert result.ended == Ended.CRASHED
    assert any("status -1" in n and "ValueError: x" in n for n in result.notes)
    assert any("skipped 1 line" in n for n in result.notes)


def test_wire_decoder_rejects_garbage_and_decodes_negative_int64() -> None:
    assert wire.iter_fields(_field(2, 0, -5)) == [(2, 0, (1 << 64) - 5)]
    point = wire.decode_record(_scalar(1, "k", -5, 1.5))
    assert isinstance(point, wire.ScalarPoint) and point.step == -5 and point.value == 1.5
    for bad in (b"\x80", b"\x0a\x05ab", b"\x0b", b"\x00\x01", b"\x11\x00"):
        with pytest.raises(wire.WireError):
            wire.iter_fields(bad)
    assert wire.decode_record(_log_line(1, "hello")) is None


def test_bad_headers_are_read_errors(tmp_path: Path) -> None:
    cases = {
        b":SW": "only 3 bytes",
        b"SQLite format 3\x00": "not a SwanLab run file",
        struct.pack("<4sHB", b":SWL", 0xE1D6, 9): "version 9",
    }
    for data, message in cases.items():
        path = _run_dir(tmp_path, data)
        with pytest.raises(ReadError, match=message):
            READER.read([path])


def test_corrupt_chunk_stops_the_read_quietly(tmp_path: Path) -> None:
    data = bytearray(_frame([_scalar(i, "loss", i, 0.1 * i) for i in range(1, 50)]))
    data[500] ^= 0xFF
    result = READER.read([_run_dir(tmp_path, bytes(data))])
    assert 0 < len(result.frame) < 49 and result.ended == Ended.TRUNCATED
    assert any("checksum" in n for n in result.notes)


_KILL9 = next(SAMPLES.glob("offline-crash-kill9-0.10.3/swanlog/run-*/run-*.swanlab")).read_bytes()
_BLOCKS = _frame(
    [_column(1, "train/loss")]
    + [_scalar(i + 1, "train/loss", i, float(i)) for i in range(300)]
    + [_log_line(400, "y" * 40_000)]
    + [_scalar(i + 500, "eval/loss", i, float(i)) for i in range(300)]
    + [_finish(1)]
)


def _count_after_cut(data: bytes, cut: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = _run_dir(Path(tmp), data[:cut])
        try:
            return len(READER.read([path]).frame)
        except ReadError:
            return 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.sampled_from([_KILL9, _BLOCKS]), cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_truncation_anywhere_only_loses_the_tail(data: bytes, cuts: tuple[float, float]) -> None:
    """Cut a layout-A file at any offset: only ReadError can come out, and a longer prefix never has fewer points."""
    a, b = sorted(int(c * len(data)) for c in cuts)
    assert _count_after_cut(data, a) <= _count_after_cut(data, b) <= _count_after_cut(data, len(data))


# ---------------------------------------------------------------- config.yaml subset


def test_yaml_subset_scalars_and_structures() -> None:
    text = """
a:
  desc: ''
  sort: 0
  value: 'it''s'
b:
  value:
  - 1
  - two: 2
    three: 3.0
  - [x, y]
c: "quoted \\"q\\" \\u00e9"
d: |
  line one
  line two
e: >-
  folded
  text
f: a long plain scalar that PyYAML wrapped
  over two lines
g: .inf
h: -.inf
i: no
j: ~
k: 1_000
l: 1.0e-08
m: {a: 1, b: x}
n: &anchor value
"""
    parsed = parse_yaml(text)
    assert parsed["a"] == {"desc": "", "sort": 0, "value": "it's"}
    assert parsed["b"] == {"value": [1, {"two": 2, "three": 3.0}, ["x", "y"]]}
    assert parsed["c"] == 'quoted "q" é'
    assert parsed["d"] == "line one\nline two\n" and parsed["e"] == "folded text"
    assert parsed["f"] == "a long plain scalar that PyYAML wrapped over two lines"
    assert parsed["g"] == math.inf and parsed["h"] == -math.inf and parsed["i"] is False and parsed["j"] is None
    assert parsed["k"] == 1000 and parsed["l"] == 1e-08 and parsed["m"] == {"a": 1, "b": "x"}
    assert parsed["n"] == "value"  # an anchor is YAML syntax, not part of the value


def test_one_bad_config_key_costs_only_that_key() -> None:
    text = "beta:\n  desc: ''\n  sort: 0\n  value: 0.2\nbroken:\n  value: 1\n    oops: 2\nlr:\n  sort: 1\n  value: 3\n"
    entries, failed = parse_config_yaml(text)
    assert unwrap_config(entries) == {"beta": 0.2, "lr": 3} and len(failed) == 1 and failed[0].startswith("broken")


def test_beta_from_config_yaml_and_bad_beta_is_a_note(tmp_path: Path) -> None:
    path = _run_dir(tmp_path, _frame([_scalar(1, "train/loss", 1, 0.5), _finish(1)]))
    files = path.parent / "files"
    files.mkdir()
    (files / "config.yaml").write_text("beta:\n  desc: ''\n  sort: 0\n  value: fast\n")
    result = READER.read([path])
    assert result.beta is None and result.config == {"beta": "fast"}
    assert any("beta is not a finite number" in n for n in result.notes)
    (files / "config.yaml").write_text("beta:\n  desc: ''\n  sort: 0\n  value: 0.05\n")
    result = READER.read([path])
    assert result.beta == 0.05 and result.beta_source == "swanlog/run-20260101_000000-abcd1234/files/config.yaml"


def test_frame_columns_and_dtypes_match_the_model() -> None:
    frame = _reference().frame
    assert list(frame.columns) == ["split", "metric", "step", "value", "wall_time"]
    assert isinstance(frame["split"].dtype, pd.CategoricalDtype) and frame["step"].dtype == np.int64


# ---------------------------------------------------------------- the fast path for the usual scalar record


@st.composite
def _scalar_records(draw: st.DrawFn) -> bytes:
    """Scalar Records with every optional field present or not, odd values, odd orders and damage."""
    varints = st.one_of(st.integers(0, 300), st.integers(-(2**63), 2**64 - 1))

    def timestamp() -> bytes:
        parts = []
        if draw(st.booleans()):
            parts.append(_field(1, 0, draw(varints)))
        if draw(st.booleans()):
            parts.append(_field(2, 0, draw(varints)))
        if draw(st.integers(0, 9)) == 0:
            parts.reverse()  # nanos before seconds: the general decoder's job
        return b"".join(parts)

    number = draw(st.floats(allow_nan=True, allow_infinity=True))
    value_choice = draw(st.sampled_from(["number", "number", "empty", "absent", "zero-field"]))
    value = {
        "number": _field(5, 2, _field(1, 1, struct.pack("<d", number))),
        "empty": _field(5, 2, b""),
        "absent": b"",
        "zero-field": _field(5, 2, _field(1, 1, struct.pack("<d", number)) + _field(2, 0, 1)),
    }[value_choice]
    key = draw(st.one_of(st.sampled_from(["train/loss", "train/rewards/margins"]), st.binary(min_size=0, max_size=140)))
    fields = [
        _field(1, 2, key),
        _field(2, 0, draw(varints)) if draw(st.booleans()) else b"",
        _field(3, 0, draw(st.integers(0, 2))) if draw(st.booleans()) else b"",
        _field(4, 2, timestamp()) if draw(st.booleans()) else b"",
        value,
    ]
    if draw(st.integers(0, 9)) == 0:
        fields = draw(st.permutations(fields))
    scalar = b"".join(fields)
    record = [
        _field(1, 0, draw(varints)) if draw(st.booleans()) else b"",
        _field(2, 2, timestamp()) if draw(st.booleans()) else b"",
        _field(13, 2, scalar),
    ]
    data = bytearray(b"".join(record))
    for _ in range(draw(st.integers(0, 2))):  # damage: cut, flip or insert
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["cut", "flip", "insert"]))
        if op == "cut":
            del data[at:]
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@pytest.mark.slow  # 3000 hypothesis examples
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scalar_records())
def test_fast_scalar_path_equals_the_general_decoder(record: bytes) -> None:
    """Whatever the fast path accepts, the general decoder reads the same way: same key, step, value (bit for bit)
    and wall time. What it does not accept it leaves to the general decoder (None)."""
    fast = wire.fast_scalar(record)
    if fast is None:
        return
    item = wire.decode_record(record)  # must not raise: the fast path only takes well-formed records
    assert isinstance(item, wire.ScalarPoint)
    raw_key, step, value, wall = fast
    assert raw_key.decode("utf-8", errors="replace") == item.key
    assert step == item.step
    assert _same(value, item.value) and struct.pack("<d", value) == struct.pack("<d", item.value)
    assert wall == item.wall_time or (wall is not None and _same(wall, item.wall_time))  # type: ignore[arg-type]


def test_the_fixtures_scalars_take_the_fast_path() -> None:
    """Every scalar record SwanLab 0.9/0.10 wrote in the fixtures is in the layout the fast path reads."""
    files = sorted(path for path in FIXTURES.rglob("run-*.swanlab") if path.stat().st_size)  # one is 0 bytes
    assert files
    scalars = 0
    for path in files:
        scan = scan_frames(path.read_bytes(), path)
        if scan.version != 2:
            continue
        for payload in scan.records:
            try:
                item = wire.decode_record(payload)
            except wire.WireError:
                continue
            if isinstance(item, wire.ScalarPoint):
                scalars += 1
                assert wire.fast_scalar(payload) is not None
    assert scalars > 1000
