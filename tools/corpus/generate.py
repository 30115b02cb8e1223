"""Train the calibration corpus: real ``trl.DPOTrainer`` (and CPO/ORPO) runs of a tiny random Llama on the CPU.

    PYTHONPATH=. python -m tools.corpus.generate                      # every run of the grid not yet made
    PYTHONPATH=. python -m tools.corpus.generate --only healthy_s0,lr_1e-1
    PYTHONPATH=. python -m tools.corpus.generate --list               # the grid, without training

Each run goes to ``--out/<name>/`` (default ../corpus-data/runs, beside the repository) and holds exactly what a
user has after ``python train.py > train.log 2>&1``: TensorBoard event files under ``runs/``, ``train.log`` (stdout and
stderr of the process) and ``trainer_state.json`` (``Trainer.state`` at the end; a killed run has none). The run's
metadata (parameters, label, versions, exit status, duration, output sizes and hashes) goes to ``--meta/<name>.json``,
and the manifest in git (tools/corpus/manifest.jsonl) is rewritten from those files after every run.

Why fork: a kill must be a real kill (SIGKILL or Ctrl-C of the training process, leaving what such a run leaves), so
each run is its own process; forking from a parent that has imported torch/transformers/TRL once saves ~10 s of imports
per run. One run at a time and one torch thread: the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _offline in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_offline, "1")  # everything is built locally; a download would be a bug

from tools.corpus.grid import GRID  # noqa: E402
from tools.corpus.spec import RunSpec  # noqa: E402

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.jsonl"
DEFAULT_OUT = HERE.parents[2] / "corpus-data" / "runs"  # beside the repository, outside it: the bulk stays out of git
DEFAULT_META = HERE.parents[2] / "corpus-data" / "meta"


def versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}


def attach_dead_adapter(model: Any) -> None:
    """Freeze the base weights and add a rank-4 LoRA-style adapter to every MLP down-projection with BOTH factors at 0.

    The output is unchanged (A·B = 0), and the gradients of A and B are both exactly 0 (each is the other times
    something), so the optimizer never moves anything: grad_norm is 0 at every step. The same happens with a real
    adapter whose two factors are zero-initialised.
    """
    import torch

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in model.model.layers:
        proj = layer.mlp.down_proj
        proj.lora_a = torch.nn.Parameter(torch.zeros(4, proj.in_features))
        proj.lora_b = torch.nn.Parameter(torch.zeros(proj.out_features, 4))
        proj.register_forward_hook(lambda mod, args, out: out + (args[0] @ mod.lora_a.T) @ mod.lora_b.T)


def supervised_warm_start(model: Any, tokenizer: Any, spec: RunSpec) -> None:
    """Fine-tune ``model`` on prompt + chosen answer (plain next-token loss, Adam) for ``spec.policy_sft_steps`` steps.

    Used to make a reference that is not the policy's start: DPO then begins with the policy already far from the
    reference, so the logged rewards are far from 0 at the first step (a user who passes the base model as
    ``ref_model`` while training an SFT checkpoint, or the reverse).
    """
    import torch

    from tools.corpus.tiny import preference_rows

    rows = preference_rows(256, seed=spec.seed + 20_000, noise=0.0, template=spec.template)
    texts = [p + c for p, c in zip(rows["prompt"], rows["chosen"], strict=True)]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(spec.seed)
    model.train()
    for _ in range(spec.policy_sft_steps):
        index = torch.randint(0, len(texts), (16,), generator=generator)
        loss = model(
            input_ids=batch["input_ids"][index], attention_mask=batch["attention_mask"][index], labels=labels[index]
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"supervised warm start: {spec.policy_sft_steps} steps, last loss {loss.item():.3f}", flush=True)


def kill_callback(step: int, mode: str) -> Any:
    """A callback that kills its own process when ``step`` ends: SIGKILL (nothing flushed) or Ctrl-C."""
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= step:
                if mode == "sigint":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGKILL)

    return Kill()


def train(spec: RunSpec, out: Path) -> None:
    """One run, in the current process (stdout/stderr already point at train.log)."""
    import copy

    import torch

    from tools.corpus.tiny import TAIL, build_tokenizer, preference_pairs, tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_tokenizer(tuple(TAIL) if spec.template or spec.longer else ())
    model = tiny_llama(tokenizer, seed=spec.seed)
    ref_model = copy.deepcopy(model)
    if spec.policy_sft_steps:
        supervised_warm_start(model, tokenizer, spec)  # the reference stays the random init: not the policy's start
    if spec.dead_adapter:
        attach_dead_adapter(model)
    pairs = {"noise": spec.noise, "template": spec.template, "longer": spec.longer}
    train_set = preference_pairs(spec.pairs, seed=spec.seed, **pairs)
    eval_set = preference_pairs(spec.eval_pairs, seed=spec.seed + 10_000, **pairs)
    common: dict[str, Any] = {
        "output_dir": str(out),
        "learning_rate": spec.learning_rate,
        "lr_scheduler_type": spec.lr_scheduler_type,
        "warmup_steps": spec.warmup_steps,
        "max_grad_norm": spec.max_grad_norm,
        "per_device_train_batch_size": spec.batch_size,
        "per_device_eval_batch_size": 16,
        "num_train_epochs": spec.epochs,
        "max_steps": spec.max_steps,
        "logging_steps": spec.logging_steps,
        "eval_strategy": "steps" if spec.eval else "no",
        "eval_steps": spec.eval_steps if spec.eval else None,
        "report_to": ["tensorboard"],
        "save_strategy": "no",
        "bf16": False,
        "use_cpu": True,
        "seed": spec.seed,
        "beta": spec.beta,
        "dataloader_num_workers": 0,
        **spec.extra,
    }
    callbacks = [kill_callback(spec.kill_at_step, spec.kill_mode)] if spec.kill_at_step else []
    if spec.trainer == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(
            loss_type=list(spec.loss_type),
            loss_weights=list(spec.loss_weights) if spec.loss_weights else None,
            label_smoothing=spec.label_smoothing,
            **common,
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set if spec.eval else None,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    elif spec.trainer == "kto":
        # TRL 1.16's stable KTOTrainer (trl.experimental.kto is a deprecated alias). The pairs are unpaired (each →
        # a desirable and an undesirable completion) and shuffled, the form KTO data sets come in. Why shuffle here:
        # given the paired set, TRL unpaired it itself and, in a first try, trained the rows in order: all the
        # desirable completions of an epoch, then all the undesirable ones (single-label batches, the loss swinging
        # at each half-epoch), which no KTO user means to do.
        from trl import KTOConfig, KTOTrainer
        from trl.data_utils import unpair_preference_dataset

        args = KTOConfig(**common)
        trainer = KTOTrainer(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=unpair_preference_dataset(train_set).shuffle(seed=spec.seed),
            eval_dataset=unpair_preference_dataset(eval_set).shuffle(seed=spec.seed) if spec.eval else None,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    elif spec.trainer in ("cpo", "orpo"):
        if spec.trainer == "cpo":
            from trl.experimental.cpo import CPOConfig as Config
            from trl.experimental.cpo import CPOTrainer as Trainer
        else:
            from trl.experimental.orpo import ORPOConfig as Config
            from trl.experimental.orpo import ORPOTrainer as Trainer
        common.pop("beta")
        args = Config(beta=spec.beta, **common)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set if spec.eval else None,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    else:
        raise ValueError(f"unknown trainer {spec.trainer!r}")
    trainer.train()
    trainer.state.save_to_json(str(out / "trainer_state.json"))


def run_in_child(spec: RunSpec, out: Path) -> tuple[str, float, float]:
    """Fork, point the child's fd 1 and 2 at ``out/train.log``, train; returns (how it ended, wall s, CPU s)."""
    out.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: a training process whose output goes to train.log, as with `> train.log 2>&1`
        code = 1
        try:
            log = os.open(out / "train.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            train(spec, out)
            code = 0
        except KeyboardInterrupt:
            import traceback

            traceback.print_exc()
            code = 130
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime  # the child's own CPU time: comparable on a busy machine, unlike `seconds`
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}", seconds, cpu
    return f"exit {os.WEXITSTATUS(status)}", seconds, cpu


def outputs(out: Path) -> list[dict[str, Any]]:
    """Every file the run left: relative path, size and sha256 (the manifest's proof of what was made)."""
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": str(path.relative_to(out)), "bytes": path.stat().st_size, "sha256": digest})
    return files


def write_manifest(meta_dir: Path, manifest: Path = MANIFEST) -> int:
    """Rewrite the manifest from the per-run metadata files, in grid order; returns the number of rows."""
    order = {spec.name: i for i, spec in enumerate(GRID)}
    rows = [json.loads(p.read_text()) for p in meta_dir.glob("*.json")]
    rows = [r for r in rows if r["name"] in order]
    rows.sort(key=lambda r: order[r["name"]])
    manifest.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return len(rows)


def same_recipe(row: dict[str, Any], spec: RunSpec, meta: Path) -> bool:
    """Whether a run already made used ``spec``'s recipe. Its label and description may change without a re-run (they
    interpret the recipe); the metadata is updated to them."""
    interpretation = ("why", "label")
    defaults = RunSpec.defaults()  # a field added to RunSpec after a run was made had its default then
    made = {k: row["params"].get(k, defaults[k]) for k in defaults if k not in interpretation}
    wanted = {k: v for k, v in spec.params().items() if k not in interpretation}
    if made != wanted:
        return False
    if row["label"] != spec.label or row["params"]["why"] != spec.why:
        row["label"] = row["params"]["label"] = spec.label
        row["params"]["why"] = spec.why
        meta.write_text(json.dumps(row, sort_keys=True, indent=1))
    return True


def expected_ending(spec: RunSpec) -> str:
    if spec.kill_at_step is None:
        return "exit 0"
    return "killed by signal 9" if spec.kill_mode == "sigkill" else "exit 130"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--meta", type=Path, default=DEFAULT_META)
    parser.add_argument("--only", default="", help="comma-separated run names (default: the whole grid)")
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the manifest to rewrite (default: in git)")
    parser.add_argument("--redo", action="store_true", help="train again runs already made")
    options = parser.parse_args(argv)
    wanted = [s for s in GRID if not options.only or s.name in options.only.split(",")]
    if options.list:
        for spec in wanted:
            print(f"{spec.name:40s} {spec.label:22s} {spec.why}")
        print(f"{len(wanted)} run(s)")
        return 0
    import torch

    torch.set_num_threads(1)
    import transformers  # noqa: F401  (imported once here, before the forks)
    import trl  # noqa: F401

    options.meta.mkdir(parents=True, exist_ok=True)
    info = versions()
    for n, spec in enumerate(wanted, 1):
        meta = options.meta / f"{spec.name}.json"
        if meta.exists() and not options.redo and same_recipe(json.loads(meta.read_text()), spec, meta):
            continue  # made already, with the same recipe (a changed recipe is made again)
        out = options.out / spec.name
        if out.exists():
            import shutil

            shutil.rmtree(out)
        ended, seconds, cpu_seconds = run_in_child(spec, out)
        files = outputs(out)
        row = {
            "name": spec.name,
            "label": spec.label,
            "params": spec.params(),
            "versions": info,
            "ended": ended,
            "as_intended": ended == expected_ending(spec),
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "total_bytes": sum(f["bytes"] for f in files),
            "files": files,
        }
        meta.write_text(json.dumps(row, sort_keys=True, indent=1))
        write_manifest(options.meta, options.manifest)
        flag = "" if row["as_intended"] else "  <-- NOT AS INTENDED"
        print(
            f"[{n}/{len(wanted)}] {spec.name}: {ended} in {seconds:.1f} s ({cpu_seconds:.1f} s CPU), "
            f"{row['total_bytes']} B{flag}"
        )
        sys.stdout.flush()
    rows = write_manifest(options.meta, options.manifest)  # also when only labels or descriptions changed
    print(f"manifest: {rows} run(s) in {options.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
