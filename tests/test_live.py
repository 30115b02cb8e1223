"""Live diagnosis: the tails read only what is new and agree with the whole-file readers; ``watch`` follows a log
that grows while it runs (a background thread copies a real fixture into it) and stops as the gate says."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.errors import NoMetricsError
from dpodoctor.live import (
    LiveDiagnosis,
    MetricBuffer,
    Tailer,
    announce,
    fails_gate,
    watch,
)
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, WholeFileFollower, follower_for, get_reader
from dpodoctor.readers.stdout import StdoutReader, StdoutTail
from tests.conftest import TRL

runner = CliRunner()
ANNOUNCED = re.compile(r"^step (\d+): (DPO\d{3}) ", re.M)


def event_file(run: str) -> Path:
    return next((TRL / run / "runs").glob("*/events.out.tfevents.*"))


def record_ends(data: bytes) -> list[int]:
    """Byte offsets where each TFRecord of an event file ends."""
    ends, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 12 + length + 4
        ends.append(offset)
    return ends


def test_importing_dpodoctor_does_not_import_transformers() -> None:
    code = (
        "import sys, dpodoctor, dpodoctor.cli, dpodoctor.live, dpodoctor.integrations\n"
        "bad = [m for m in ('transformers', 'trl', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# ------------------------------------------------------------------------------------------ tails and buffers


def test_event_follower_reads_only_complete_records_and_matches_the_reader(tmp_path: Path) -> None:
    source = event_file("lr_too_low")
    data = source.read_bytes()
    ends = record_ends(data)
    grown = tmp_path / source.name
    reader = get_reader("tensorboard")
    follower = reader.follow()
    start = 0
    with grown.open("wb") as handle:
        for k in range(7, len(ends), 97):
            handle.write(data[start : ends[k] - 5])  # the last record of this batch is cut 5 bytes short
            handle.flush()
            start = ends[k] - 5
            follower.update([grown])
            assert follower.offset(grown) == ends[k - 1], "a partial record must be left for the next update"
        handle.write(data[start:])
    assert follower.update([grown])
    assert follower.offset(grown) == len(data)
    [live], whole = follower.results(), reader.read([grown])
    assert live.frame.equals(whole.frame)
    assert live.beta == whole.beta == 0.1
    assert live.ended is whole.ended
    assert live.notes == whole.notes
    assert not follower.update([grown])  # nothing new: nothing read


def test_event_follower_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    data = event_file("lr_too_low").read_bytes()
    grown = tmp_path / "events.out.tfevents.1.host"
    grown.write_bytes(data)
    reader = get_reader("tensorboard")
    follower = reader.follow()
    follower.update([grown])
    ends = record_ends(data)
    grown.write_bytes(data[: ends[40]])
    assert follower.update([grown])
    assert follower.offset(grown) == ends[40]
    assert follower.results()[0].frame.equals(reader.read([grown]).frame)


def test_a_watched_event_file_cut_mid_record_is_reported_truncated_like_check(tmp_path: Path) -> None:
    """The live copy of the assembler used to forget the cut: ``watch`` said UNKNOWN where ``check`` said TRUNCATED."""
    data = event_file("lr_too_low").read_bytes()
    ends = record_ends(data)
    run = tmp_path / "run"
    run.mkdir()
    cut = run / "events.out.tfevents.1.host"
    cut.write_bytes(data[: ends[len(ends) // 2] + 7])  # the writer died 7 bytes into a record
    [live] = Tailer([run]).poll().runs
    [checked] = api.load(run)
    assert checked.ended is Ended.TRUNCATED
    assert live.ended is checked.ended
    assert live.notes == checked.notes
    assert any("truncated at byte" in note for note in live.notes)


def test_stdout_tail_carries_partial_lines_and_matches_the_reader(tmp_path: Path) -> None:
    log = (TRL / "lr_too_low" / "train.log").read_bytes()
    grown = tmp_path / "train.log"
    tail = StdoutTail(grown)
    with grown.open("wb") as handle:
        with pytest.raises(NoMetricsError):
            tail.results()
        for start in range(0, len(log), 3331):  # cuts fall mid-line, mid-dict, mid-UTF-8 character
            handle.write(log[start : start + 3331])
            handle.flush()
            tail.poll()
    tail.poll()
    [live] = tail.results()
    [whole] = get_reader("stdout").read_runs([grown])
    assert live.frame.equals(whole.frame)
    assert live.ended is whole.ended


def test_stdout_follower_reads_only_what_is_new_and_matches_the_reader(tmp_path: Path) -> None:
    """StdoutReader.follow() (the Follower live asks for): update() is False when nothing was appended, True when
    lines arrived or discovery switched to another copy; results() then equal read_runs of that file."""
    log = (TRL / "lr_too_low" / "train.log").read_bytes()
    grown, copy = tmp_path / "train.log", tmp_path / "copy.log"
    copy.write_bytes(log)
    follower = StdoutReader().follow()
    with grown.open("wb") as handle:
        handle.write(log[: len(log) // 2])
        handle.flush()
        assert follower.update([grown]) is True
        assert follower.update([grown]) is False
        handle.write(log[len(log) // 2 :])
        handle.flush()
        assert follower.update([grown]) is True
    [live] = follower.results()
    [whole] = get_reader("stdout").read_runs([grown])
    assert live.frame.equals(whole.frame) and live.ended is whole.ended
    assert follower.update([copy]) is True  # switched to another file of the run
    [other] = follower.results()
    assert other.frame.equals(whole.frame)


def test_metric_buffer_builds_the_frame_framebuilder_builds() -> None:
    rng = np.random.default_rng(0)
    buffer, builder = MetricBuffer(capacity=4), FrameBuilder()
    for step in range(1, 60):
        logs = {"loss": float(rng.normal(0.69, 0.1)), "rewards/margins": float(rng.normal()), "epoch": step / 10}
        if step % 10 == 0:
            logs = {"eval_loss": 0.6, "eval_rewards/accuracies": 0.7, "epoch": step / 10}
        buffer.add_logs(logs, step)
        builder.add_many(logs.items(), step)
    buffer.add_logs({"loss": 0.5, "note": "text", "flag": True, "n": "0.25"}, 59)  # a re-logged step, odd values
    builder.add_many([("loss", 0.5), ("n", 0.25)], 59)
    buffer.add_logs({"train_runtime": 12.5, "train_loss": 0.6, "epoch": 5.9}, 59)
    builder.add_many([("train_runtime", 12.5), ("train_loss", 0.6), ("epoch", 5.9)], 59)
    frame = buffer.frame()
    expected = builder.build()
    assert frame[["split", "metric"]].astype(str).equals(expected[["split", "metric"]].astype(str))
    assert np.array_equal(frame["step"], expected["step"]) and np.allclose(frame["value"], expected["value"])
    assert buffer.summary == builder.summary == {"train_runtime": 12.5, "train_loss": 0.6}
    assert buffer.frame() is frame  # cached until the next point


def test_other_formats_are_read_again_only_when_their_files_change(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting:
        name = "counting"

        def read(self, paths: list[Path]) -> ReadResult:
            calls.append(1)
            return get_reader("tensorboard").read([event_file("healthy")])

    path = tmp_path / "metrics.bin"
    path.write_bytes(b"1")
    follower = follower_for(Counting())  # type: ignore[arg-type]  # no follow(): re-read whole when files change
    assert isinstance(follower, WholeFileFollower)
    assert follower.update([path]) and len(calls) == 1
    assert not follower.update([path]) and len(calls) == 1
    path.write_bytes(b"12")
    assert follower.update([path]) and len(calls) == 2
    assert len(follower.results()) == 1


def test_each_finding_is_announced_once_and_quiet_codes_never() -> None:
    run = api.load(TRL / "lr_too_low" / "runs")[0]
    engine = LiveDiagnosis()
    report, new = engine.diagnose(run)
    assert [f.code for f in new] == ["DPO101"]
    assert engine.diagnose(run)[1] == []
    assert fails_gate(report.findings, "error") is not None and fails_gate(report.findings, "never") is None
    assert announce(new[0], 400).startswith("step 400: DPO101 loss-stuck-ln2 [error]: loss stays at")


# ------------------------------------------------------------------------------------------ watch


def appender(chunks: list[bytes], target: Path, pause: float = 0.03) -> Callable[[], Iterator[None]]:
    """A context that writes ``chunks`` into ``target`` from a background thread, as a trainer would."""

    def run(stop: threading.Event) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab") as handle:
            for chunk in chunks:
                if stop.is_set():
                    return
                handle.write(chunk)
                handle.flush()
                time.sleep(pause)

    class Context:
        def __enter__(self) -> threading.Thread:
            self.stop = threading.Event()
            self.thread = threading.Thread(target=run, args=(self.stop,), daemon=True)
            self.thread.start()
            return self.thread

        def __exit__(self, *exc: object) -> None:
            self.stop.set()
            self.thread.join(10)

    return Context  # type: ignore[return-value]


def event_chunks(run: str, per_chunk: int = 25) -> list[bytes]:
    data = event_file(run).read_bytes()
    ends = [0, *record_ends(data)]
    return [data[ends[i] : ends[min(i + per_chunk, len(ends) - 1)]] for i in range(0, len(ends) - 1, per_chunk)]


def line_chunks(run: str, lines: int = 40) -> list[bytes]:
    text = (TRL / run / "train.log").read_bytes().splitlines(keepends=True)
    return [b"".join(text[i : i + lines]) for i in range(0, len(text), lines)]


@pytest.mark.parametrize("kind", ["tensorboard", "stdout"])
def test_watch_fail_fast_stops_a_stuck_run_while_it_is_written(tmp_path: Path, kind: str) -> None:
    if kind == "tensorboard":
        chunks, target = event_chunks("lr_too_low"), tmp_path / "runs" / "now" / event_file("lr_too_low").name
    else:
        chunks, target = line_chunks("lr_too_low"), tmp_path / "train.log"
    started = time.monotonic()
    with appender(chunks, target)():
        result = runner.invoke(app, ["watch", str(tmp_path), "--fail-fast", "--interval", "0.2", "--timeout", "60"])
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 30
    announced = ANNOUNCED.findall(result.stdout)
    assert [code for _, code in announced] == ["DPO101"], result.stdout  # printed once, and nothing else
    step = int(announced[0][0])
    assert 0 < step < 400, "stopped while the run was still being written"
    assert "stopped: --fail-fast (DPO101 loss-stuck-ln2 is at or above --fail-on error)" in result.stdout
    # what the watch saw is a prefix of the log: a check of the finished log agrees
    assert "DPO101" in {f.code for r in api.check([target], use_config=False).runs for f in r.findings}


def test_watch_of_a_healthy_run_ends_at_the_timeout_with_exit_0(tmp_path: Path) -> None:
    with appender(event_chunks("healthy", per_chunk=200), tmp_path / event_file("healthy").name, pause=0.01)():
        result = runner.invoke(app, ["watch", str(tmp_path), "--fail-fast", "--interval", "0.1", "--timeout", "1.5"])
    assert result.exit_code == 0, result.output
    assert "stopped: --timeout reached" in result.stdout
    assert not [c for _, c in ANNOUNCED.findall(result.stdout) if c in {"DPO101", "DPO102", "DPO103", "DPO301"}]


def test_ctrl_c_ends_the_watch_with_the_last_report_and_the_usual_exit_code(tmp_path: Path) -> None:
    (tmp_path / event_file("lr_too_low").name).write_bytes(event_file("lr_too_low").read_bytes())
    ticks: list[float] = []

    def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 2:
            raise KeyboardInterrupt

    out = io.StringIO()
    result = watch([tmp_path], interval=5, console=Console(file=out, width=120), sleep=sleep, use_config=False)
    assert result.reason == "interrupted" and ticks == [5, 5]
    assert result.report.exit_code == 1
    assert ANNOUNCED.findall(out.getvalue()) == [("400", "DPO101")]


def test_watch_waits_for_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    result = runner.invoke(app, ["watch", str(tmp_path / "later"), "--interval", "0.05", "--timeout", "0.2"])
    assert result.exit_code == 2
    assert "no training run found while watching" in result.stderr


def test_watch_rejects_bad_settings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["watch", str(tmp_path), "--interval", "0"])
    assert result.exit_code == 2 and "--interval" in result.stderr
    result = runner.invoke(app, ["watch", str(tmp_path), "--select", "XYZ"])
    assert result.exit_code == 2 and "unknown rule code" in result.stderr


def test_the_live_view_draws_the_run_table_and_findings(tmp_path: Path) -> None:
    (tmp_path / event_file("lr_too_low").name).write_bytes(event_file("lr_too_low").read_bytes())
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    result = watch([tmp_path], interval=0.01, timeout=0.05, console=console, live=True, use_config=False)
    text = out.getvalue()
    assert result.reason == "timeout"
    assert "rewards/margins" in text and "DPO101" in text  # the RunView table and the finding
    assert "watching" in text


def test_tailer_picks_up_a_run_that_appears_later(tmp_path: Path) -> None:
    tailer = Tailer([tmp_path])
    first = tailer.poll()
    assert first.runs == []
    (tmp_path / "train.log").write_bytes((TRL / "healthy" / "train.log").read_bytes())
    second = tailer.poll()
    assert [r.source for r in second.runs] == ["stdout"] and second.changed == {second.runs[0].name}
    assert tailer.poll().changed == set()  # nothing new: no run is rebuilt or re-diagnosed


def test_watch_json_of_the_final_report_is_the_check_document(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_bytes((TRL / "lr_too_low" / "train.log").read_bytes())
    result = watch([tmp_path], interval=0.01, timeout=0.01, console=Console(file=io.StringIO()), use_config=False)
    doc = json.loads(json.dumps(result.report.to_dict()))
    check = api.check([tmp_path], use_config=False).to_dict()
    assert [f["code"] for f in doc["runs"][0]["findings"]] == [f["code"] for f in check["runs"][0]["findings"]]


def test_confirm_holds_back_a_finding_until_it_persists() -> None:
    """A prefix can look wrong and recover: with confirm=3 a finding is announced only after three diagnoses."""
    run = api.load(TRL / "lr_too_low" / "runs")[0]
    engine = LiveDiagnosis(confirm=3)
    report, new = engine.diagnose(run)
    assert new == [] and fails_gate(engine.confirmed(run.name, report), "error") is None
    assert engine.diagnose(run)[1] == []
    report, new = engine.diagnose(run)
    assert [f.code for f in new] == ["DPO101"]
    assert fails_gate(engine.confirmed(run.name, report), "error") is not None
    # a poll without new data counts as holding
    other = LiveDiagnosis(confirm=2)
    report, _ = other.diagnose(run)
    assert [f.code for f in other.hold(run.name, report)] == ["DPO101"]
