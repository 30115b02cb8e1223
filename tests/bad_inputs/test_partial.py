"""Partial files: a log cut at any byte yields every complete record before the cut and says it was cut.

Why every offset: a crashed writer stops wherever the kernel stopped it, inside a length field, a CRC, a payload or a
JSON string, and each of those positions takes a different path through a reader. A small file makes "every" cheap.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dpodoctor import api
from dpodoctor.errors import ReadError
from dpodoctor.model import Ended
from dpodoctor.readers import ReadResult, get_reader
from dpodoctor.readers.tensorboard import TensorBoardReader
from tests.bad_inputs.builders import event_file, jsonl_log, stdout_log, swanlab_run
from tests.conftest import TRL

TB = TensorBoardReader()
TB_NAME = "events.out.tfevents.1700000000.host.1.0"
RUN_DIR = "swanlog/run-20260101_000000-abcdefgh"


def _points(result: ReadResult) -> set[tuple[str, str, int, float]]:
    f = result.frame
    return {
        (str(s), str(m), int(t), float(v))
        for s, m, t, v in zip(f["split"], f["metric"], f["step"], f["value"], strict=True)
    }


def _canonical(points: list[tuple[str, int, float]]) -> set[tuple[str, str, int, float]]:
    names = {"train/loss": ("train", "loss"), "train/rewards/margins": ("train", "margins")}
    return {(*names[tag], step, value) for tag, step, value in points if tag in names}


# ---------------------------------------------------------------- TensorBoard


@pytest.mark.parametrize("read", ["read", "read_reference"])
def test_tensorboard_cut_at_every_offset_keeps_every_complete_record(tmp_path: Path, read: str) -> None:
    """Both decoders (the fast numpy one that ``read`` uses and the protobuf reference) agree at every cut."""
    events = event_file(steps=6)
    path = tmp_path / TB_NAME
    for cut in range(len(events.data) + 1):
        path.write_bytes(events.data[:cut])
        expected = events.points_before(cut)
        scalars = _canonical(expected)
        try:
            result = getattr(TB, read)([path])
        except ReadError as exc:
            assert not scalars, (cut, exc)
            assert exc.path == path and exc.reason.startswith("no scalar summaries found"), (cut, exc)
            continue
        assert _points(result) == scalars, cut
        runtime = any(p[0] == "train/train_runtime" for p in expected)
        if cut in events.ends:
            assert not any("truncated" in n for n in result.notes), (cut, result.notes)
        else:
            assert any(f"truncated at byte {cut}" in n for n in result.notes), (cut, result.notes)
            assert result.ended is (Ended.FINISHED if runtime else Ended.TRUNCATED), cut


def test_tensorboard_cut_run_gets_dpo005_in_the_report(tmp_path: Path) -> None:
    (source,) = (TRL / "healthy" / "runs").glob("*/events.out.tfevents.*")
    data = source.read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    (run / source.name).write_bytes(data[: len(data) * 2 // 3 + 5])
    report = api.check([run], use_config=False)
    (rr,) = report.runs
    assert rr.run.ended is Ended.TRUNCATED
    dpo005 = [f for f in rr.findings if f.code == "DPO005"]
    assert dpo005 and "truncated" in dpo005[0].message


# ---------------------------------------------------------------- SwanLab


def _swanlab_points(result: ReadResult) -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == "train") & (f["metric"] == "loss")]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def test_swanlab_torn_tail_at_every_offset_keeps_every_complete_record(tmp_path: Path) -> None:
    run = swanlab_run(steps=12)
    path = tmp_path / RUN_DIR / "run-abcdefgh.swanlab"
    path.parent.mkdir(parents=True)
    reader = get_reader("swanlab")
    for cut in range(len(run.data) + 1):
        path.write_bytes(run.data[:cut])
        expected = {
            step: value
            for end, p in zip(run.ends, run.points, strict=True)
            if end <= cut and p
            for _, step, value in [p]
        }
        try:
            result = reader.read([path])
        except ReadError as exc:
            assert not expected, (cut, exc)
            assert exc.path is not None
            continue
        assert _swanlab_points(result) == expected, cut
        if cut < len(run.data):
            assert result.ended is Ended.TRUNCATED, cut
            assert any("torn tail (truncated)" in n or "no finish record" in n for n in result.notes), cut


def test_swanlab_torn_tail_across_blocks(tmp_path: Path) -> None:
    """Records split over 32 KiB blocks (FIRST/MIDDLE/LAST chunks): a cut inside a split record loses only it."""
    run = swanlab_run(steps=30, pad=5000)
    assert len(run.data) > 4 * 32768
    path = tmp_path / RUN_DIR / "run-abcdefgh.swanlab"
    path.parent.mkdir(parents=True)
    reader = get_reader("swanlab")
    cuts = sorted({*range(7, len(run.data), 997), *(e - 1 for e in run.ends), *(e + 3 for e in run.ends)})
    for cut in (c for c in cuts if c <= len(run.data)):
        path.write_bytes(run.data[:cut])
        expected = {p[1] for end, p in zip(run.ends, run.points, strict=True) if end <= cut and p}
        try:
            result = reader.read([path])
        except ReadError:
            assert not expected, cut
            continue
        assert set(_swanlab_points(result)) == expected, cut


# ---------------------------------------------------------------- stdout


def test_stdout_cut_mid_line_at_every_offset(tmp_path: Path) -> None:
    """Every dict whose closing brace is before the cut is read; a cut that leaves a last line without its line
    break marks the run truncated (unless it had already finished)."""
    data = stdout_log(steps=6)
    path = tmp_path / "train.log"
    reader = get_reader("stdout")
    closes = [i + 1 for i, byte in enumerate(data) if byte == ord("}")]
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        complete = sum(1 for c in closes if c <= cut)
        try:
            result = reader.read([path])
        except ReadError:
            assert complete == 0, cut
            continue
        f = result.frame
        losses = int(((f["split"] == "train") & (f["metric"] == "loss")).sum())
        assert losses == min(complete, 6), cut
        tail = data[:cut].replace(b"\r", b"\n").rsplit(b"\n", 1)[-1]
        if "train_runtime" in result.summary:
            assert result.ended is Ended.FINISHED, cut
        elif tail.strip():
            assert result.ended is Ended.TRUNCATED, cut
            assert any("ends mid-line" in n and "truncated" in n for n in result.notes), (cut, result.notes)
        else:
            assert result.ended is Ended.UNKNOWN, cut


def test_stdout_cut_mid_dict_gives_dpo005(tmp_path: Path) -> None:
    source = (TRL / "healthy" / "train.log").read_bytes()
    cut = source.rindex(b"{'loss'", 0, len(source) // 2) + 20
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_bytes(source[:cut])
    (rr,) = api.check([run], use_config=False).runs
    assert rr.run.ended is Ended.TRUNCATED
    assert "DPO005" in {f.code for f in rr.findings}


# ---------------------------------------------------------------- JSONL


@pytest.mark.parametrize("reader_name", ["jsonl", "llamafactory"])
def test_jsonl_torn_last_line_at_every_offset(tmp_path: Path, reader_name: str) -> None:
    if reader_name == "jsonl":
        data, name, key = jsonl_log(steps=8), "metrics.jsonl", "step"
    else:
        data = b"".join(
            b'{"current_steps": %d, "total_steps": 8, "loss": %.3f}\n' % (s, 0.69 - s / 100) for s in range(1, 9)
        )
        name, key = "trainer_log.jsonl", "current_steps"
    path = tmp_path / name
    reader = get_reader(reader_name)
    line_ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        whole = sum(1 for end in line_ends if end <= cut)
        partial = data[line_ends[whole - 1] if whole else 0 : cut]
        try:
            result = reader.read([path])
        except ReadError:
            assert whole == 0, cut
            continue
        f = result.frame
        losses = sorted(f[(f["metric"] == "loss")]["step"].tolist())
        torn = bool(partial.strip()) and not partial.rstrip().endswith(b"}")
        assert losses[:whole] == list(range(1, whole + 1)), (cut, key)
        if torn:
            assert result.ended is Ended.TRUNCATED, cut
            assert any("cut short" in n for n in result.notes), (cut, result.notes)
        assert all(math.isfinite(v) for v in f["value"])


# ---------------------------------------------------------------- trackers (W&B record file, MLflow metric file)

_TRACKERS = Path(__file__).resolve().parent.parent / "fixtures" / "trackers"


def test_wandb_record_file_cut_at_every_offset_keeps_every_complete_record(tmp_path: Path) -> None:
    """The killed run's own file, cut further: every complete history row before the cut is read, nothing after."""
    from dpodoctor.readers.wandb_run import decode_records, scan_wandb

    source = next((_TRACKERS / "wandb_killed" / "wandb").glob("offline-run-*/run-*.wandb"))
    data = source.read_bytes()
    full = decode_records(scan_wandb(data, source).records).rows
    path = tmp_path / "wandb" / source.parent.name / source.name
    path.parent.mkdir(parents=True)
    reader = get_reader("wandb")
    for cut in range(0, len(data) + 1, 257):
        path.write_bytes(data[:cut])
        try:
            result = reader.read([path])
        except ReadError as exc:
            assert exc.path is not None
            continue
        assert result.ended is Ended.TRUNCATED, cut
        loss = result.frame[(result.frame["split"] == "train") & (result.frame["metric"] == "loss")]
        expected = [int(items["train/global_step"]) for _, items in full if "train/loss" in items]
        assert loss["step"].tolist() == expected[: len(loss)], cut  # a prefix of the rows, in order
        assert any("torn tail (truncated)" in n or "no exit record" in n for n in result.notes), cut


def test_mlflow_metric_file_cut_mid_line_drops_only_that_line(tmp_path: Path) -> None:
    source = next((_TRACKERS / "all" / "mlruns" / "0").glob("*/meta.yaml")).parent
    run = tmp_path / "mlruns" / "0" / source.name
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_bytes((source / "meta.yaml").read_bytes())
    data = (source / "metrics" / "loss").read_bytes()
    reader = get_reader("mlflow")
    for cut in range(len(data) + 1):
        (run / "metrics" / "loss").write_bytes(data[:cut])
        complete = data[:cut].count(b"\n")
        try:
            result = reader.read([run / "meta.yaml"])
        except ReadError:
            assert complete == 0, cut
            continue
        steps = result.frame[result.frame["metric"] == "loss"]["step"].tolist()
        assert steps == [int(line.split()[2]) for line in data.splitlines()[:complete]], cut
