"""The tracker readers (W&B run folders, Trackio and MLflow databases, the MLflow file store) on real files.

The fixture ``trackers/all`` is ONE real TRL run that logged to W&B, Trackio, MLflow and TensorBoard at once (see
tests/fixtures/trackers/README.md), so every tracker must give the verdict and the steps its TensorBoard events give.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.errors import ReadError
from dpodoctor.model import Ended
from dpodoctor.readers import get_reader, reader_for
from dpodoctor.readers.mlflow_store import parse_param, sanitize_key
from dpodoctor.readers.wandb_run import decode_records, scan_wandb

FIXTURES = Path(__file__).parent / "fixtures"
ALL = FIXTURES / "trackers" / "all"
KILLED = FIXTURES / "trackers" / "wandb_killed"
WANDB_RECORD = next((ALL / "wandb").glob("offline-run-*/run-*.wandb"))
TRACKER_SOURCES = {
    "wandb": ALL / "wandb",
    "mlflow": ALL / "mlruns",
    "mlflow-sqlite": ALL / "mlflow.db",
    "trackio": ALL / "dpodoctor-fixture.db",
}
CORE = ("loss", "margins", "accuracy", "chosen", "rejected")


def _verdict(report: api.Report) -> list[tuple[str, str, str, int | None, int | None]]:
    [run] = report.runs
    return sorted((f.code, f.split, f.metric, f.first_step, f.last_step) for f in run.findings)


@pytest.fixture(scope="module")
def tensorboard_report() -> api.Report:
    return api.check([ALL / "runs"], use_config=False)


@pytest.mark.parametrize("source", sorted(TRACKER_SOURCES))
def test_each_tracker_gives_the_tensorboard_verdict_and_steps(source: str, tensorboard_report: api.Report) -> None:
    report = api.check([TRACKER_SOURCES[source]], use_config=False)
    [run] = report.runs
    [tb] = tensorboard_report.runs
    assert run.run.source == source
    assert _verdict(report) == _verdict(tensorboard_report) and _verdict(report)  # DPO203 on this run
    assert report.exit_code == tensorboard_report.exit_code
    assert run.run.beta == tb.run.beta == 0.1
    assert run.run.steps == tb.run.steps == 120
    for split in ("train", "eval"):
        for metric in CORE:
            ours, theirs = run.run.series(metric, split), tb.run.series(metric, split)
            assert list(ours.index) == list(theirs.index), (split, metric)
            # TensorBoard stores float32; the trackers keep the double the trainer logged
            np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-6, atol=1e-7)


def test_tracker_configs_carry_the_dpo_settings() -> None:
    for source, path in TRACKER_SOURCES.items():
        [run] = api.load_all([path]).runs
        assert run.config.get("beta") == 0.1, source
        assert run.config.get("learning_rate") == 0.001, source
        assert run.config.get("max_grad_norm") == 1.0, source
        assert "sigmoid" in str(run.config.get("loss_type")), source


def test_how_each_tracker_says_the_run_ended() -> None:
    ended = {source: api.load_all([path]).runs[0].ended for source, path in TRACKER_SOURCES.items()}
    # W&B has an exit record, MLflow a FINISHED status; Trackio keeps no status, but the run reached max_steps
    assert ended == {
        "wandb": Ended.FINISHED,
        "mlflow": Ended.FINISHED,
        "mlflow-sqlite": Ended.FINISHED,
        "trackio": Ended.FINISHED,
    }
    [run] = api.load_all([TRACKER_SOURCES["wandb"]]).runs
    assert run.summary["train_runtime"] > 0 and "train_loss" in run.summary


def test_the_run_folder_is_one_run_read_from_tensorboard() -> None:
    """TensorBoard, W&B, MLflow (both stores), Trackio, stdout and trainer_state.json of one output folder: one run."""
    [run] = api.load_all([ALL]).runs
    assert run.source == "tensorboard"
    others = {p.name for p in run.other_sources}
    assert {"mlflow.db", "dpodoctor-fixture.db", "train.log", "trainer_state.json"} <= others
    assert any("wandb" in p.parts for p in run.other_sources)
    assert any("mlruns" in p.parts for p in run.other_sources)


def test_a_killed_wandb_run_is_read_to_its_last_complete_record_with_dpo005() -> None:
    report = api.check([KILLED / "wandb"], use_config=False)
    [rr] = report.runs
    run = rr.run
    assert run.source == "wandb" and run.ended is Ended.TRUNCATED
    assert run.steps == 40  # wandb-core had flushed up to step 40; the TensorBoard events reach 50
    assert any("torn tail (truncated)" in n for n in run.notes)
    assert any("no exit record" in n for n in run.notes)
    dpo005 = [f for f in rr.findings if f.code == "DPO005"]
    assert dpo005 and dpo005[0].last_step == 40
    tb = api.load_all([KILLED / "runs"]).runs[0]
    loss = run.series("loss")
    np.testing.assert_allclose(loss.to_numpy(), tb.series("loss").loc[loss.index].to_numpy(), rtol=1e-6)


def test_the_killed_record_file_keeps_every_complete_record() -> None:
    path = next((KILLED / "wandb").glob("offline-run-*/run-*.wandb"))
    scan = scan_wandb(path.read_bytes(), path)
    assert scan.stop_at is not None and scan.stop_reason is not None and "LAST" in scan.stop_reason
    decoded = decode_records(scan.records)
    assert decoded.exit_code is None and decoded.undecodable == 0
    steps = [items["train/global_step"] for _, items in decoded.rows if "train/loss" in items]
    assert steps == list(range(2, 42, 2))


# ------------------------------------------------------------------------------------------ nothing is written


def _snapshot(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                st_ = path.stat()
                out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {st_.st_mtime_ns} {st_.st_mode}"
            else:
                out[rel] = "dir"
    return out


def test_checking_tracker_folders_changes_nothing_byte_for_byte(tmp_path: Path) -> None:
    shutil.copytree(ALL, tmp_path / "all", symlinks=True)
    shutil.copytree(KILLED, tmp_path / "killed", symlinks=True)
    before = _snapshot(tmp_path)
    runner = CliRunner()
    targets = [
        tmp_path / "all",
        tmp_path / "all" / "wandb",
        tmp_path / "all" / "mlruns",
        tmp_path / "all" / "mlflow.db",
        tmp_path / "all" / "dpodoctor-fixture.db",
        tmp_path / "killed",
    ]
    for target in targets:
        result = runner.invoke(app, ["check", str(target), "--no-plots", "--no-cache", "--exit-zero"])
        assert result.exit_code == 0, (target, result.output)
    after = _snapshot(tmp_path)
    assert after == before
    assert not [k for k in after if k.endswith(("-wal", "-shm", "-journal"))]


def test_a_wal_database_being_written_is_read_whole_and_left_alone(tmp_path: Path) -> None:
    """A live Trackio writer: rows committed to the -wal only. They are read; the db and the WAL stay as they are."""
    db = tmp_path / "live.db"
    shutil.copyfile(TRACKER_SOURCES["trackio"], db)
    writer = sqlite3.connect(db)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        row = writer.execute("SELECT run_id, run_name, metrics FROM metrics ORDER BY id DESC LIMIT 1").fetchone()
        metrics = bytes(row[2]).replace(b'"train/global_step":120', b'"train/global_step":122')  # orjson bytes
        assert metrics != row[2]
        writer.execute(
            "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?, ?)",
            (row[0], "2026-12-03T09:18:00+00:00", row[1], 999, metrics),
        )
        writer.commit()
        wal = db.with_name("live.db-wal")
        assert wal.stat().st_size > 0
        before = _snapshot(tmp_path)
        [run] = api.load_all([db]).runs
        assert run.steps == 122
        assert _snapshot(tmp_path) == before
    finally:
        writer.close()


def test_a_hot_rollback_journal_is_refused_with_the_reason(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(TRACKER_SOURCES["mlflow-sqlite"], db)
    (tmp_path / "mlflow.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + b"\x00" * 504)
    with pytest.raises(ReadError, match="a write is in progress"):
        get_reader("mlflow-sqlite").read([db])


# ------------------------------------------------------------------------------------------ sweeps


def test_a_mixed_sweep_reports_each_run_once_from_its_richest_source(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(ALL, sweep / "a_everything", symlinks=True)
    shutil.copytree(KILLED / "wandb", sweep / "b_wandb_only" / "wandb", symlinks=True)
    shutil.copytree(ALL / "mlruns", sweep / "c_mlruns_only" / "mlruns")
    (sweep / "d_trackio").mkdir()
    shutil.copyfile(ALL / "dpodoctor-fixture.db", sweep / "d_trackio" / "project.db")
    (sweep / "e_stdout").mkdir()
    shutil.copyfile(FIXTURES / "trl" / "healthy" / "train.log", sweep / "e_stdout" / "train.log")
    shutil.copytree(FIXTURES / "trl" / "overfit", sweep / "f_tb_swanlab")
    loaded = api.load_all([sweep])
    names = [run.name for run in loaded.runs]
    assert len(names) == len(set(names)) == 6, names
    sources = {run.name: run.source for run in loaded.runs}
    assert sources == {
        "a_everything": "tensorboard",
        "b_wandb_only": "wandb",
        "c_mlruns_only": "mlflow",
        "d_trackio": "trackio",
        "e_stdout": "stdout",
        "f_tb_swanlab": "tensorboard",
    }
    assert not loaded.problems


def test_a_database_with_several_runs_gives_each_run(tmp_path: Path) -> None:
    db = tmp_path / "project.db"
    shutil.copyfile(TRACKER_SOURCES["trackio"], db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(
            "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) "
            "SELECT 'other-id', timestamp, 'second', step, metrics FROM metrics"
        )
    conn.close()
    runs = api.load_all([db]).runs
    assert sorted(r.name for r in runs) == [f"{tmp_path.name}#all", f"{tmp_path.name}#second"]
    assert runs[0].steps == runs[1].steps == 120


# ------------------------------------------------------------------------------------------ units


def test_sniffs_are_specific() -> None:
    assert reader_for(WANDB_RECORD).name == "wandb"  # type: ignore[union-attr]
    assert reader_for(ALL / "mlflow.db").name == "mlflow-sqlite"  # type: ignore[union-attr]
    assert reader_for(ALL / "dpodoctor-fixture.db").name == "trackio"  # type: ignore[union-attr]
    meta = next((ALL / "mlruns").glob("0/*/meta.yaml"))
    assert reader_for(meta).name == "mlflow"  # type: ignore[union-attr]
    assert reader_for(ALL / "mlruns" / "0" / "meta.yaml") is None  # the experiment's meta.yaml
    assert reader_for(WANDB_RECORD.parent / "logs" / "debug.log") is None
    assert reader_for(WANDB_RECORD.parent / "files" / "requirements.txt") is None
    assert get_reader("stdout").run_root(WANDB_RECORD.parent / "files" / "output.log") == ALL


def test_mlflow_key_sanitising_and_params() -> None:
    assert sanitize_key("rewards/margins") == "rewards/margins"
    assert sanitize_key("eval_rewards/accuracies") == "eval_rewards/accuracies"
    assert sanitize_key("loss(total)") == "loss_total_"
    assert parse_param("0.1") == 0.1 and parse_param("3") == 3 and parse_param("True") is True
    assert parse_param("['sigmoid']") == "['sigmoid']" and parse_param("None") is None


def _chunk(payload: bytes, kind: int = 1) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes([kind])))
    return struct.pack("<IHB", crc, len(payload), kind) + payload


def test_a_wandb_file_cut_at_every_offset_keeps_each_complete_record(tmp_path: Path) -> None:
    data = WANDB_RECORD.read_bytes()
    full = scan_wandb(data, WANDB_RECORD).records
    run_dir = tmp_path / "wandb" / "offline-run-20260101_000000-abcdefgh"
    run_dir.mkdir(parents=True)
    path = run_dir / "run-abcdefgh.wandb"
    reader = get_reader("wandb")
    for cut in sorted({*range(0, len(data), 1499), len(data) - 1, len(data)}):
        path.write_bytes(data[:cut])
        try:
            scan = scan_wandb(data[:cut], path)
        except ReadError:
            assert cut < 7
            continue
        assert scan.records == full[: len(scan.records)], cut
        try:
            result = reader.read([path])
        except ReadError:
            continue  # no history row yet (the first records are the run header and config)
        assert result.ended is (Ended.FINISHED if cut == len(data) else Ended.TRUNCATED), cut


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(st.binary(max_size=300), max_size=30),
    cut=st.integers(min_value=0, max_value=20_000),
)
def test_decoding_arbitrary_records_never_fails(records: list[bytes], cut: int) -> None:
    """Any payloads in valid framing: the scan returns them all, decoding never raises, and a cut keeps a prefix."""
    data = b":W&B" + struct.pack("<HB", 0xBEE1, 0) + b"".join(_chunk(r) for r in records if len(r) < 32000)
    if len(data) > 32768:
        return
    scan = scan_wandb(data, Path("x.wandb"))
    assert scan.records == [r for r in records if len(r) < 32000]
    decoded = decode_records(scan.records)
    assert decoded.undecodable <= len(records)
    cut_scan = scan_wandb(data[: max(7, cut)], Path("x.wandb"))
    assert cut_scan.records == scan.records[: len(cut_scan.records)]


# ------------------------------------------------------------------------------------------ watch


def test_watch_follows_a_growing_wandb_file(tmp_path: Path) -> None:
    from dpodoctor.live import Tailer

    data = WANDB_RECORD.read_bytes()
    run_dir = tmp_path / "wandb" / WANDB_RECORD.parent.name
    run_dir.mkdir(parents=True)
    path = run_dir / WANDB_RECORD.name
    tailer = Tailer([tmp_path])
    steps = []
    for cut in (len(data) // 3, 2 * len(data) // 3, len(data)):
        path.write_bytes(data[:cut])
        poll = tailer.poll()
        [run] = poll.runs
        assert run.source == "wandb" and poll.changed == {run.name}
        steps.append((run.steps, run.ended))
        assert tailer.poll().changed == set()  # nothing new: not read again
    assert steps[0][0] < steps[1][0] < steps[2][0] == 120
    assert [ended for _, ended in steps] == [Ended.TRUNCATED, Ended.TRUNCATED, Ended.FINISHED]


def test_watch_follows_a_trackio_database_written_in_wal_mode(tmp_path: Path) -> None:
    from dpodoctor.live import Tailer

    db = tmp_path / "project.db"
    shutil.copyfile(TRACKER_SOURCES["trackio"], db)
    writer = sqlite3.connect(db)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        query = "SELECT run_id, timestamp, run_name, step, metrics FROM metrics WHERE id > 30"
        later = writer.execute(query).fetchall()
        writer.execute("DELETE FROM metrics WHERE id > 30")
        writer.commit()
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        tailer = Tailer([tmp_path])
        [first] = tailer.poll().runs
        half = first.steps
        assert 0 < half < 120 and first.ended is Ended.UNKNOWN  # short of max_steps: running, or killed
        for row in later:  # the trainer goes on: every commit lands in the -wal only
            writer.execute(
                "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?, ?)", row
            )
            writer.commit()
        assert db.with_name("project.db-wal").stat().st_size > 0
        before = _snapshot(tmp_path)
        poll = tailer.poll()
        [run] = poll.runs
        assert run.steps == 120 and poll.changed == {run.name} and run.ended is Ended.FINISHED
        assert _snapshot(tmp_path) == before
    finally:
        writer.close()


def test_a_run_folder_without_its_record_file_falls_back_to_files(tmp_path: Path) -> None:
    """A run folder copied without ``run-<id>.wandb`` (online runs keep ``files/``): the summary and the console."""
    import json

    run_dir = tmp_path / "wandb" / WANDB_RECORD.parent.name
    shutil.copytree(WANDB_RECORD.parent, run_dir, ignore=shutil.ignore_patterns("*.wandb"))
    summary = decode_records(scan_wandb(WANDB_RECORD.read_bytes(), WANDB_RECORD).records).summary
    (run_dir / "files" / "wandb-summary.json").write_text(json.dumps(summary))  # the run summary, as W&B keeps it
    [run] = api.load_all([tmp_path / "wandb"]).runs
    assert run.source == "wandb"
    assert any("files/output.log" in n for n in run.notes)
    assert run.summary["train_runtime"] == summary["train_runtime"]
    tb = api.load_all([ALL / "runs"]).runs[0]
    assert len(run.series("loss")) == len(tb.series("loss"))


def test_several_runs_in_one_wandb_or_mlruns_folder_are_each_their_own_run(tmp_path: Path) -> None:
    wandb_dir = tmp_path / "project" / "wandb"
    shutil.copytree(WANDB_RECORD.parent, wandb_dir / WANDB_RECORD.parent.name)
    killed = next((KILLED / "wandb").glob("offline-run-*"))
    shutil.copytree(killed, wandb_dir / killed.name)
    mlruns = tmp_path / "project" / "mlruns" / "0"
    source = next((ALL / "mlruns" / "0").glob("*/meta.yaml")).parent
    shutil.copytree(source, mlruns / source.name)
    shutil.copytree(source, mlruns / ("f" * 32))
    loaded = api.load_all([tmp_path / "project"])
    by_name = {run.name: run for run in loaded.runs}
    assert sorted(by_name) == sorted(
        [
            f"wandb/{WANDB_RECORD.parent.name}",
            f"wandb/{killed.name}",
            f"mlruns/0/{source.name}",
            f"mlruns/0/{'f' * 32}",
        ]
    )
    assert by_name[f"wandb/{killed.name}"].ended is Ended.TRUNCATED
    assert by_name[f"wandb/{WANDB_RECORD.parent.name}"].ended is Ended.FINISHED
    assert not loaded.problems and not loaded.ignored


def test_a_relative_path_through_wandbs_latest_run_link_is_still_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk may meet the run through ``wandb/latest-run``; a relative argument must still group it with the
    TensorBoard events of the same folder."""
    monkeypatch.chdir(ALL.parent)
    [run] = api.load_all([Path(ALL.name)]).runs
    assert run.source == "tensorboard"
