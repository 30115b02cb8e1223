"""Copy the representative subset of the corpus into tests/fixtures/corpus/ and write its README from the manifest.

    PYTHONPATH=. python -m tools.corpus.subset            # after tools/corpus/generate.py has made the runs

The copies are byte-for-byte (tests/test_corpus_subset.py checks every file against the manifest's sha256), so the
tests see exactly what a user of TRL has on disk. Keep the subset small (under ~3 MB): the bulk stays out of git.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from tools.corpus.generate import DEFAULT_OUT, MANIFEST
from tools.corpus.labels import EXPECTATIONS

REPO = Path(__file__).resolve().parents[2]
DEST = REPO / "tests" / "fixtures" / "corpus"

# Why each run is in the subset: several loss types healthy, batch 1 and logging intervals 1 and 25, and one run of
# every main failure (killed, killed in the warm-up, lr far too high and too low, overfit, gradients dead).
SUBSET = [
    "healthy_s0",
    "healthy_ipo",
    "healthy_hinge",
    "healthy_sigmoid_sft",
    "healthy_exo_pair_ls0.1",
    "healthy_batch1_log1",
    "healthy_log25_long",
    "inverted_labels",
    "killed_sigkill_mid",
    "killed_warmup",
    "lr_1e-1",
    "lr_1e-9_ipo",
    "overfit",
    "grad_dead_adapter",
    "ref_mismatch",
]

README_HEAD = """# Corpus subset: real TRL runs with known labels

A representative subset of the calibration corpus (made by `tools/corpus/generate.py`, see
[tools/corpus/README.md](../../../tools/corpus/README.md)); the full corpus (~125 runs) stays out of git. Every run
is a real `trl.DPOTrainer` run (or TRL's experimental CPO/ORPO trainer) of a tiny random Llama (2 layers, hidden 64,
word-level tokenizer) on the synthetic "what is three plus four ?" preference task, trained on the CPU. Each folder
holds, byte for byte, what the training process left: `runs/<date>_<host>/events.out.tfevents.*` (transformers'
TensorBoardCallback), `train.log` (stdout and stderr, tqdm bars included) and `trainer_state.json` (`Trainer.state`
at the end; **a killed run has none**, and its event file and log stop where the kill found them).

The **label** says how the run was made (the failure that was induced), never what dpodoctor says about it; the
codes each label expects are in `tools/corpus/labels.py`. `tools/corpus/manifest.jsonl` holds every parameter and the
sha256 of every file (tests/test_corpus_subset.py checks both against this folder).

Generated with {versions}. Regenerate this folder with `PYTHONPATH=. python -m tools.corpus.subset`.

| run | label | loss | β | lr | batch | logging | steps | noise | other | what was induced |
|---|---|---|---|---|---|---|---|---|---|---|
"""


def describe_other(params: dict[str, Any]) -> str:
    bits = []
    if params["trainer"] != "dpo":
        bits.append(f"{params['trainer'].upper()}Trainer")
    if params["label_smoothing"]:
        bits.append(f"label_smoothing {params['label_smoothing']:g}")
    if params["warmup_steps"]:
        bits.append(f"warm-up {params['warmup_steps']}")
    if params["kill_at_step"]:
        bits.append(f"{params['kill_mode']} at step {params['kill_at_step']}")
    if params["dead_adapter"]:
        bits.append("all-zero adapter")
    if params["policy_sft_steps"]:
        bits.append(f"policy fine-tuned {params['policy_sft_steps']} steps first")
    if params["template"]:
        bits.append("long shared tail")
    if not params["eval"]:
        bits.append("no eval")
    if params["pairs"] != 800:
        bits.append(f"{params['pairs']} pairs")
    return ", ".join(bits) or "-"


def planned_steps(params: dict[str, Any]) -> str:
    if params["max_steps"] > 0:
        return str(params["max_steps"])
    return str(round(params["pairs"] / params["batch_size"] * params["epochs"]))


def readme_row(row: dict[str, Any]) -> str:
    p = row["params"]
    loss = "+".join(p["loss_type"]) if p["trainer"] == "dpo" else p["trainer"]
    cells = [
        f"`{row['name']}`",
        row["label"],
        loss,
        f"{p['beta']:g}",
        f"{p['learning_rate']:g}",
        str(p["batch_size"]),
        str(p["logging_steps"]),
        planned_steps(p) + (f" (killed at {p['kill_at_step']})" if p["kill_at_step"] else ""),
        f"{p['noise']:g}",
        describe_other(p),
        p["why"],
    ]
    return "| " + " | ".join(cells) + " |\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dest", type=Path, default=DEST)
    options = parser.parse_args(argv)
    manifest = {r["name"]: r for r in map(json.loads, MANIFEST.read_text().splitlines())}
    missing = [name for name in SUBSET if name not in manifest]
    if missing:
        parser.error(f"not in the manifest yet (generate them first): {', '.join(missing)}")
    if options.dest.exists():
        shutil.rmtree(options.dest)
    options.dest.mkdir(parents=True)
    for name in SUBSET:
        shutil.copytree(options.runs / name, options.dest / name)
    versions = manifest[SUBSET[0]]["versions"]
    text = README_HEAD.format(versions=", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    text += "".join(readme_row(manifest[name]) for name in SUBSET)
    text += "\nWhat each label expects from the tool:\n\n"
    for label in sorted({manifest[name]["label"] for name in SUBSET}):
        e = EXPECTATIONS[label]
        codes = f" (any of {', '.join(e.codes)})" if e.codes else ""
        text += f"- **{label}**: {e.kind}{codes}. {e.why}.\n"
    (options.dest / "README.md").write_text(text)
    size = sum(p.stat().st_size for p in options.dest.rglob("*") if p.is_file())
    print(f"{len(SUBSET)} runs copied to {options.dest}, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
