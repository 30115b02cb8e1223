"""`dpodoctor watch` takes back what no longer holds, and waits for the warm-up as DPODoctorCallback does (issue 18,
point 5). The logs grow one chunk per look: the watch's ``sleep`` appends the next chunk of a real fixture, so every
look sees a longer prefix of the run, deterministically, through the real CLI."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from typer.testing import CliRunner

from dpodoctor import api, live
from dpodoctor.cli import app
from dpodoctor.live import WARMUP_FACTOR, LiveDiagnosis, warmup_steps
from dpodoctor.model import make_frame
from tests.conftest import TRL

runner = CliRunner()
LINE = re.compile(r"^step (\d+): (DPO\d{3}) (\S+)(?: \[\w+\])?(:| no longer holds)", re.M)


def event_file(run: str) -> Path:
    return next((TRL / run / "runs").glob("*/events.out.tfevents.*"))


def records(path: Path) -> list[bytes]:
    """The serialized events of an event file, in order (TFRecord framing: length, CRC, data, CRC)."""
    data, out, offset = path.read_bytes(), [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 8], "little")
        out.append(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
    return out


def with_args(events: list[bytes], **changes: object) -> list[bytes]:
    """The events with the trainer's ``args`` text summary changed (as if the run had been configured so)."""
    out = []
    for raw in events:
        event = event_pb2.Event.FromString(raw)
        for value in event.summary.value:
            if value.tag == "args/text_summary":
                config = json.loads(value.tensor.string_val[0])
                config.update(changes)
                value.tensor.string_val[0] = json.dumps(config).encode()
        out.append(event.SerializeToString())
    return out


def chunks_by_step(events: list[bytes], steps_per_chunk: int) -> list[list[bytes]]:
    """Events grouped so that each chunk ends after the records of ``steps_per_chunk`` logged steps."""
    chunks: list[list[bytes]] = [[]]
    seen: list[int] = []
    for raw in events:
        step = event_pb2.Event.FromString(raw).step
        if step and (not seen or step != seen[-1]):
            seen.append(step)
            if len(seen) % steps_per_chunk == 1 and len(seen) > 1:
                chunks.append([])
        chunks[-1].append(raw)
    return chunks


def grower(chunks: list[list[bytes]], target: Path) -> Callable[[float], None]:
    """A ``sleep`` for watch: each call appends the next chunk, as a trainer would between two looks; Ctrl-C after
    the last."""
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(target.open("wb"))
    pending = list(chunks)

    def append_next() -> None:
        for raw in pending.pop(0):
            writer.write(raw)
        writer.flush()

    append_next()

    def sleep(_seconds: float) -> None:
        if not pending:
            raise KeyboardInterrupt
        append_next()

    return sleep


def watch_growing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunks: list[list[bytes]], *args: str
) -> tuple[int, str]:
    """`dpodoctor watch` over a log that grows one chunk per look; its exit code and stdout."""
    target = tmp_path / "runs" / "now" / "events.out.tfevents.1.vm.1.0"
    monkeypatch.setattr(live, "watch", functools.partial(live.watch, sleep=grower(chunks, target)))
    result = runner.invoke(app, ["watch", str(tmp_path), "--interval", "0.01", "--no-config", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout


def standing(stdout: str) -> dict[str, int]:
    """The findings the watch's lines leave standing (announced and not taken back), with the step said."""
    held: dict[str, int] = {}
    for step, code, _name, kind in LINE.findall(stdout):
        if kind == ":":
            assert code not in held, f"{code} announced twice without a retraction:\n{stdout}"
            held[code] = int(step)
        else:
            assert code in held, f"{code} taken back but never announced:\n{stdout}"
            del held[code]
    return held


def test_a_finding_that_stops_holding_on_a_healthy_run_is_taken_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chunks = chunks_by_step(records(event_file("healthy")), steps_per_chunk=5)
    code, stdout = watch_growing(monkeypatch, tmp_path, chunks)
    assert code == 0, stdout
    said = LINE.findall(stdout)
    # The slow start of the margins is announced while it holds and withdrawn when the margins catch up...
    assert ("DPO203", ":") in [(c, k) for _, c, _, k in said], stdout
    taken_back = [int(step) for step, c, _, kind in said if c == "DPO203" and kind == " no longer holds"]
    assert taken_back and f"step {taken_back[0]}: DPO203 margin-slow no longer holds" in stdout
    # ...so nothing said during the watch stands against the final report, which has no findings.
    assert standing(stdout) == {}
    assert "no findings: every rule that could run passed" in stdout
    assert api.check(tmp_path, use_config=False).runs[0].findings == []


def test_what_the_watch_leaves_standing_is_what_the_final_report_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chunks = chunks_by_step(records(event_file("lr_too_low")), steps_per_chunk=5)
    code, stdout = watch_growing(monkeypatch, tmp_path, chunks)
    assert code == 1, stdout
    held = standing(stdout)
    assert set(held) == {"DPO101"}
    final = {f.code for f in api.check(tmp_path, use_config=False).runs[0].findings}
    assert set(held) <= final - live.QUIET_WHILE_LIVE


def test_no_dpo101_before_the_warmup_has_passed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """lr_too_low was trained without warm-up: DPO101 is said at the first look that shows it. The same log with a
    warm-up of 100 steps in its arguments: not before step 200, as the callback would not stop before then."""
    events = records(event_file("lr_too_low"))
    _, plain = watch_growing(monkeypatch, tmp_path / "plain", chunks_by_step(events, 5))
    first = {c: int(s) for s, c, _, k in LINE.findall(plain) if k == ":"}
    assert first["DPO101"] < 100, plain  # the rule itself sees it early

    monkeypatch.undo()
    warm = chunks_by_step(with_args(events, warmup_steps=100), 5)
    code, stdout = watch_growing(monkeypatch, tmp_path / "warm", warm, "--fail-fast")
    announced = [(int(s), c) for s, c, _, k in LINE.findall(stdout) if k == ":"]
    assert announced and announced[0][1] == "DPO101", stdout
    assert announced[0][0] >= WARMUP_FACTOR * 100, stdout
    assert code == 1 and "stopped: --fail-fast (DPO101 loss-stuck-ln2" in stdout


def test_confirmation_holds_a_finding_back_for_that_many_looks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    events = chunks_by_step(records(event_file("lr_too_low")), 5)
    _, once = watch_growing(monkeypatch, tmp_path / "once", events)
    monkeypatch.undo()
    _, thrice = watch_growing(monkeypatch, tmp_path / "thrice", events, "--confirm", "3")
    step_once = next(int(s) for s, c, _, k in LINE.findall(once) if c == "DPO101" and k == ":")
    step_thrice = next(int(s) for s, c, _, k in LINE.findall(thrice) if c == "DPO101" and k == ":")
    assert step_thrice == step_once + 2 * 25  # two more looks, five logged steps (of 5) each


def test_warmup_steps_from_the_trainer_arguments() -> None:
    run = api.load(TRL / "lr_too_low" / "runs")[0]
    assert run.config["warmup_steps"] == 0 and warmup_steps(run) == 0
    assert warmup_steps(replace(run, config={"warmup_steps": 30})) == 30
    assert warmup_steps(replace(run, config={"warmup_ratio": 0.1, "max_steps": 400})) == 40
    # transformers 5: a warmup_steps below 1 is a ratio; epochs x the steps per epoch the logged epoch shows
    planned = 2 * 400 / float(run.series("epoch").iloc[-1])
    assert warmup_steps(replace(run, config={"warmup_steps": 0.1, "num_train_epochs": 2, "max_steps": -1})) == int(
        -(-0.1 * planned // 1)
    )
    for bad in ({"warmup_steps": "100"}, {"warmup_steps": True}, {"warmup_ratio": 0.1}, {"warmup_steps": float("nan")}):
        assert warmup_steps(replace(run, config=bad, frame=make_frame([], [], [], [], []))) == 0


def test_the_engine_holds_findings_during_the_warmup_except_nonfinite_values() -> None:
    run = api.load(TRL / "lr_too_low" / "runs")[0]
    engine = LiveDiagnosis()
    early = replace(run, config={"warmup_steps": 300})  # 400 steps < 2 x 300
    report, new = engine.diagnose(early)
    assert "DPO101" in {f.code for f in report.findings} and new == [] and engine.confirmed(run.name, report) == []
    _, new = engine.diagnose(run)
    assert [f.code for f in new] == ["DPO101"]
