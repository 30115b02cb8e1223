"""Make the tracker fixtures of tests/fixtures/{wandb,trackio,mlflow}: real files written by each tracker's package.

Run it in a venv of its own that has the trackers (they are not dpodoctor dependencies)::

    python3 -m venv /tmp/trk && /tmp/trk/bin/pip install torch==2.13.0 trl wandb mlflow trackio tensorboard
    /tmp/trk/bin/python tools/make_tracker_fixtures.py /tmp/trackers-out

What it does (all offline, nothing is sent anywhere):

* ``all/``: one real ``trl.DPOTrainer`` run on a tiny random Llama (the model, tokenizer and pairs of
  tests/test_integration_transformers.py) with ``report_to=["wandb", "trackio", "mlflow", "tensorboard"]``:
  ``WANDB_MODE=offline`` (``all/wandb/offline-run-*/``), ``TRACKIO_DIR=all/trackio`` (``<project>.db``),
  ``MLFLOW_TRACKING_URI=file:all/mlruns`` (the file store) and the TensorBoard events under ``all/runs/``.
  The same run's ``log_history`` is then replayed through transformers' own ``MLflowCallback`` into
  ``sqlite:///all/mlflow.db`` (one process can log to one MLflow backend only), so the SQLite store holds the same
  points, written by MLflow's SQLAlchemy store.
* ``killed/``: the same training with ``report_to=["wandb", "tensorboard"]`` in a child process (own process group),
  killed with SIGKILL (trainer and wandb-core together, as an out-of-memory kill of the job would) once it has
  logged ``--kill-after`` dicts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The tiny model, its tokenizer and the task's words are the corpus generator's (one recipe for every real fixture).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.corpus.tiny import NUMBERS, build_tokenizer, tiny_llama

PROJECT = "dpodoctor-fixture"


def _pairs(n: int, seed: int, noise: float) -> Any:
    """'what is three plus four ?' -> chosen ' seven', rejected a wrong sum; a share ``noise`` of pairs flipped.

    Not the corpus's ``preference_pairs``: that one flips exactly ``round(noise * n)`` pairs, this one flips each pair
    with probability ``noise``, which is how the committed tracker fixtures were made (kept so they can be remade)."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        wrong = rng.choice([x for x in range(len(NUMBERS)) if x != a + b])
        good, bad = f" {NUMBERS[a + b]}", f" {NUMBERS[wrong]}"
        if rng.random() < noise:
            good, bad = bad, good
        rows["prompt"].append(f"what is {NUMBERS[a]} plus {NUMBERS[b]} ?")
        rows["chosen"].append(good)
        rows["rejected"].append(bad)
    return Dataset.from_dict(rows)


def train(out: Path, report_to: list[str], max_steps: int, run_name: str) -> Any:
    from trl import DPOConfig, DPOTrainer

    tokenizer = build_tokenizer()
    model = tiny_llama(tokenizer, seed=0)  # seeds torch with 0 before building it, as this script did
    args = DPOConfig(
        output_dir=str(out),
        run_name=run_name,
        project=PROJECT,
        learning_rate=1e-3,
        beta=0.1,
        per_device_train_batch_size=8,
        max_steps=max_steps,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=20,
        per_device_eval_batch_size=16,
        report_to=report_to,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=_pairs(1200, 0, 0.15),
        eval_dataset=_pairs(48, 1, 0.15),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    return trainer


def replay_into_mlflow_sqlite(out: Path, db: Path) -> None:
    """The run's log_history through transformers' MLflowCallback, into an MLflow SQLite store."""
    import mlflow
    from transformers import TrainerControl, TrainerState
    from transformers.integrations import MLflowCallback
    from trl import DPOConfig

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    state = TrainerState.load_from_json(str(out / "trainer_state.json"))
    args = DPOConfig(output_dir=str(out), run_name="all", beta=0.1, learning_rate=1e-3, report_to=[], use_cpu=True)
    callback = MLflowCallback()
    control = TrainerControl()
    state.is_world_process_zero = True
    callback.on_train_begin(args, state, control)
    for logs in state.log_history:
        state.global_step = int(logs["step"])
        callback.on_log(args, state, control, logs={k: v for k, v in logs.items() if k != "step"})
    callback.on_train_end(args, state, control)


def child(out: Path, kind: str) -> None:
    if kind == "all":
        train(out, ["wandb", "trackio", "mlflow", "tensorboard"], 120, "all")
        replay_into_mlflow_sqlite(out, out / "mlflow.db")
    else:
        train(out, ["wandb", "tensorboard"], 120, "killed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--kill-after", type=int, default=25, help="train dicts logged before the SIGKILL")
    parser.add_argument("--child", choices=["all", "killed"])
    options = parser.parse_args()
    if options.child:
        child(options.dest, options.child)
        return
    for kind in ("all", "killed"):
        out = (options.dest / kind).resolve()
        out.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(out),
            "WANDB_SILENT": "true",
            "TRACKIO_DIR": str(out / "trackio"),
            "MLFLOW_TRACKING_URI": f"file:{out / 'mlruns'}",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            # MLflow 3 refuses new file stores unless asked: the file store is still what older setups have on disk
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [sys.executable, __file__, str(out), "--child", kind]
        with (out / "train.log").open("wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            if kind == "all":
                proc.wait()
                continue
            while proc.poll() is None:
                time.sleep(0.2)
                text = (out / "train.log").read_bytes()
                if text.count(b"{'loss'") >= options.kill_after:
                    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its wandb-core service, mid-training
                    proc.wait()
                    break
        print(kind, "exit", proc.returncode)
    print(json.dumps({"dest": str(options.dest)}))


if __name__ == "__main__":
    main()
