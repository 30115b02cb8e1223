"""DPODoctorCallback: unit behaviour on synthetic logs, its per-log cost, and two real ``trl.DPOTrainer`` runs on a
tiny random Llama on the CPU (no download: tools/corpus/tiny.py builds the tokenizer, the model and the data, the
same recipe as the fixtures and the calibration corpus).

Skipped without the ``[trl]`` extra (``pip install -e '.[test,trl]'``); CI installs it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from transformers import TrainerControl

from dpodoctor.integrations.transformers import REPORT_JSON, REPORT_MARKDOWN, DPODoctorCallback
from tests.conftest import TRL as TRL_FIXTURES
from tools.corpus.tiny import build_tokenizer, preference_pairs, tiny_llama

LN2 = math.log(2)


def dpo_logs(step: int, rng: np.random.Generator, *, learning: bool) -> dict[str, Any]:
    """One train log as TRL's DPOTrainer writes it (the keys and their rough sizes)."""
    r = (1 - math.exp(-step / 100)) if learning else 0.0
    chosen, rejected = 0.2 * r + rng.normal(0, 0.05), -0.4 * r + rng.normal(0, 0.05)
    if not learning:
        chosen, rejected = rng.normal(0, 1e-7), rng.normal(0, 1e-7)
    return {
        "loss": LN2 - 0.2 * r + (rng.normal(0, 0.1) if learning else rng.normal(0, 1e-6)),
        "grad_norm": 1.0 + rng.normal(0, 0.1),
        "learning_rate": 5e-7,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/accuracies": float(np.clip(0.5 + 0.33 * r + rng.normal(0, 0.1), 0, 1)),
        "rewards/margins": chosen - rejected,
        "logps/chosen": -50.0 + rng.normal(),
        "logps/rejected": -60.0 + rng.normal(),
        "logits/chosen": 0.1,
        "logits/rejected": 0.2,
        "epoch": step / 1000,
    }


def fake_trainer(tmp_path: Path, max_steps: int = 10_000, **args: Any) -> tuple[Any, Any, TrainerControl]:
    options = {"output_dir": str(tmp_path / "out"), "beta": 0.1, "run_name": None, **args}
    state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=max_steps)
    return SimpleNamespace(**options), state, TrainerControl()


def test_a_stuck_run_is_stopped_once_with_the_reason_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args, state, control = fake_trainer(tmp_path, max_steps=200)
    callback = DPODoctorCallback(stop_on="error", check_every=1)
    rng = np.random.default_rng(0)
    callback.on_train_begin(args, state, control)
    with caplog.at_level(logging.INFO, logger="dpodoctor"):
        for step in range(1, 201):
            state.global_step = step
            callback.on_log(args, state, control, logs=dpo_logs(step, rng, learning=False))
            if control.should_training_stop:
                break
        callback.on_log(args, state, control, logs={"train_runtime": 3.0, "train_loss": LN2, "epoch": 0.1})
        callback.on_train_end(args, state, control)
    assert control.should_training_stop and state.global_step < 200
    assert callback.stopped_by == "DPO101 loss-stuck-ln2"
    messages = [r.getMessage() for r in caplog.records if r.name == "dpodoctor"]
    assert sum(m.startswith(f"dpodoctor: step {state.global_step}: DPO101 loss-stuck-ln2 [error]") for m in messages)
    stop = [m for m in messages if "stopping training" in m]
    assert len(stop) == 1 and stop[0].startswith(f"dpodoctor: stopping training at step {state.global_step}: DPO101")
    doc = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    [run] = doc["runs"]
    assert run["beta"] == 0.1 and run["ended"] == "finished" and run["name"] == "out"
    assert [f["code"] for f in run["findings"]][:1] == ["DPO101"]
    assert "DPO101" in (tmp_path / "out" / REPORT_MARKDOWN).read_text()


def test_without_stop_on_the_callback_only_reports(tmp_path: Path) -> None:
    args, state, control = fake_trainer(tmp_path)
    callback = DPODoctorCallback(check_every=5, write_reports=False)
    rng = np.random.default_rng(1)
    for step in range(1, 101):
        state.global_step = step
        callback.on_log(args, state, control, logs=dpo_logs(step, rng, learning=False))
    assert not control.should_training_stop
    assert callback.evaluations == 20
    assert "DPO101" in {f.code for f in callback.report.runs[0].findings}
    callback.on_train_end(args, state, control)
    assert not (tmp_path / "out").exists()


def test_stopping_waits_for_the_warmup(tmp_path: Path) -> None:
    class Args(SimpleNamespace):
        def get_warmup_steps(self, max_steps: int) -> int:
            return 40

    args = Args(output_dir=str(tmp_path), beta=0.1, run_name="warm")
    state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=200)
    control = TrainerControl()
    callback = DPODoctorCallback(stop_on="error", check_every=1, write_reports=False)
    rng = np.random.default_rng(2)
    for step in range(1, 201):
        state.global_step = step
        callback.on_log(args, state, control, logs=dpo_logs(step, rng, learning=False))
        if control.should_training_stop:
            break
    assert state.global_step == 80  # 2 × warmup: the first diagnosis allowed to stop


def test_beta_comes_from_args_and_a_user_beta_wins(tmp_path: Path) -> None:
    args, state, control = fake_trainer(tmp_path, beta=0.5)
    callback = DPODoctorCallback(check_every=1)
    state.global_step = 1
    callback.on_log(args, state, control, logs={"loss": LN2})
    assert callback.report.runs[0].beta_used == 0.5
    mine = DPODoctorCallback(beta=0.05, check_every=1)
    mine.on_log(args, state, control, logs={"loss": LN2})
    assert mine.report.runs[0].beta_used == 0.05


def replay(callback: DPODoctorCallback, run: Path, tmp_path: Path) -> tuple[Any, Any, TrainerControl]:
    """A simulated Trainer loop over a real run: every dict of its ``trainer_state.json`` log history goes to
    ``on_log`` at its step, with transformers' own TrainerState and TrainerControl, then ``on_train_end``."""
    from transformers import TrainerState

    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    args, _, control = fake_trainer(tmp_path, beta=0.1)
    state = TrainerState(global_step=0, max_steps=max(int(h["step"]) for h in history))
    callback.on_train_begin(args, state, control)
    for entry in history:
        state.global_step = int(entry["step"])
        callback.on_log(args, state, control, logs={k: v for k, v in entry.items() if k != "step"})
    callback.on_train_end(args, state, control)
    return args, state, control


def standing(messages: list[str]) -> set[str]:
    """The codes the callback's log lines leave standing: announced and not taken back since."""
    held: set[str] = set()
    for message in messages:
        said = re.match(r"dpodoctor: step \d+: (DPO\d{3}) \S+ (\[|no longer holds)", message)
        if said and said[2] == "[":
            assert said[1] not in held, f"{said[1]} announced twice without a retraction: {messages}"
            held.add(said[1])
        elif said:
            assert said[1] in held, f"{said[1]} taken back but never announced: {messages}"
            held.remove(said[1])
    return held


def test_a_finding_that_stops_holding_is_taken_back_in_the_training_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The healthy TRL fixture, replayed log by log: its margins start slowly (DPO203 is announced), then catch up;
    the callback says so, and what its log leaves standing is what the report it writes says (no finding)."""
    callback = DPODoctorCallback(check_every=4)
    with caplog.at_level(logging.INFO, logger="dpodoctor"):
        replay(callback, TRL_FIXTURES / "healthy", tmp_path)
    messages = [r.getMessage() for r in caplog.records if r.name == "dpodoctor"]
    announced = [m for m in messages if re.match(r"dpodoctor: step \d+: DPO203 margin-slow \[info\]", m)]
    taken_back = [m for m in messages if re.match(r"dpodoctor: step \d+: DPO203 margin-slow no longer holds$", m)]
    assert announced and taken_back, messages
    assert [f"dpodoctor: {line}" for line in callback.retractions] == taken_back
    assert standing(messages) == set()
    doc = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    assert doc["runs"][0]["findings"] == []


def test_what_the_training_log_leaves_standing_is_the_final_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a stuck real run (lr 1e-9) the findings announced and never taken back are the final report's."""
    callback = DPODoctorCallback(check_every=4)
    with caplog.at_level(logging.INFO, logger="dpodoctor"):
        replay(callback, TRL_FIXTURES / "lr_too_low", tmp_path)
    held = standing([r.getMessage() for r in caplog.records if r.name == "dpodoctor"])
    final = {f.code for f in callback.report.runs[0].findings}
    assert "DPO101" in held and held <= final


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="stop_on"):
        DPODoctorCallback(stop_on="fatal")
    with pytest.raises(ValueError, match="check_every"):
        DPODoctorCallback(check_every=0)


# The cost of a log step at 10k logged steps (under 5 ms) is measured by benchmarks/bench.py, not by a timed test.


# ------------------------------------------------------------------------------------------ a real DPOTrainer


def _train(tmp_path: Path, learning_rate: float, max_steps: int, callback: DPODoctorCallback) -> Any:
    """A real trl.DPOTrainer run: a 2-layer, 64-wide random Llama, 200 pairs, batch 8, logging every step."""
    pytest.importorskip("torch")
    from trl import DPOConfig, DPOTrainer

    tokenizer = build_tokenizer()
    model = tiny_llama(tokenizer, seed=0)
    args = DPOConfig(
        output_dir=str(tmp_path / f"lr{learning_rate:g}"),
        learning_rate=learning_rate,
        per_device_train_batch_size=8,
        max_steps=max_steps,
        logging_steps=1,
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # a model built in memory has no hub id to load the reference from
        args=args,
        train_dataset=preference_pairs(200),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    trainer.train()
    return trainer


@pytest.mark.slow  # trains a real trl.DPOTrainer
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 renames TRL's defaults
def test_dpo_trainer_healthy_run_reports_no_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("trl")
    callback = DPODoctorCallback(stop_on="error", check_every=1)  # judged at every log, not only at the end
    with caplog.at_level(logging.INFO, logger="dpodoctor"):
        trainer = _train(tmp_path, 3e-3, 40, callback)
    assert trainer.state.global_step == 40 and callback.stopped_by is None
    assert callback.evaluations >= 40
    assert not [r for r in caplog.records if r.name == "dpodoctor" and r.levelno >= logging.ERROR]
    doc = json.loads((tmp_path / "lr0.003" / REPORT_JSON).read_text())
    assert doc["runs"][0]["beta"] == 0.1 and doc["summary"]["errors"] == 0
    assert doc["runs"][0]["steps"] == 40


@pytest.mark.slow  # trains a real trl.DPOTrainer
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 renames TRL's defaults
def test_dpo_trainer_with_lr_1e_9_is_stopped_with_dpo101(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("trl")
    callback = DPODoctorCallback(stop_on="error")  # the default, adaptive schedule
    max_steps = 100
    with caplog.at_level(logging.INFO, logger="dpodoctor"):
        trainer = _train(tmp_path, 1e-9, max_steps, callback)
    assert trainer.state.global_step < max_steps
    assert callback.stopped_by == "DPO101 loss-stuck-ln2"
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "dpodoctor")
    assert f"dpodoctor: stopping training at step {trainer.state.global_step}: DPO101 loss-stuck-ln2" in text
    doc = json.loads((tmp_path / "lr1e-09" / REPORT_JSON).read_text())
    assert "DPO101" in [f["code"] for f in doc["runs"][0]["findings"]]
    assert (tmp_path / "lr1e-09" / REPORT_MARKDOWN).is_file()
