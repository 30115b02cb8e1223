"""Make the LLaMA-Factory fixture runs (tests/fixtures/diagnosis/lf_*): the corpus's tiny model and pairs, trained
by LLaMA-Factory's own CLI. LLaMA-Factory is not a dependency of dpodoctor: it goes in a venv of its own.

How they were made (LLaMA-Factory 0.9.5, transformers 4.57.1, TRL 0.24.0, torch 2.13.0 CPU, on the shared 2-core
machine, ~25 s of training each):

    python3 -m venv /tmp/lfvenv && /tmp/lfvenv/bin/pip install torch==2.13.0
    /tmp/lfvenv/bin/pip install --no-deps llamafactory==0.9.5   # its resolver loops on torchaudio/torchvision pins
    /tmp/lfvenv/bin/pip install transformers==4.57.1 trl==0.24.0 accelerate==1.11.0 datasets==4.0.0 peft==0.18.1 \\
        omegaconf fire 'tyro<0.9' einops sentencepiece tiktoken pyyaml scipy matplotlib packaging protobuf \\
        safetensors pydantic fastapi sse-starlette uvicorn tensorboard torchdata==0.11.0
    /tmp/lfvenv/bin/python tools/corpus/llamafactory.py /tmp/lf          # model, tokenizer, data, dataset_info.json
    cd /tmp/lf && PYTHONPATH=/tmp/lf/stubs OMP_NUM_THREADS=1 DISABLE_VERSION_CHECK=1 \\
        /tmp/lfvenv/bin/llamafactory-cli train <the dpo_*.yaml kept in each fixture folder>

``stubs/torchaudio``: LLaMA-Factory's data module imports torchaudio at load time for audio inputs, and no torchaudio
build loads against torch 2.13 on the CPU (2.11.1 fails to load its library); the stub is an empty module, never
called on text data. Each fixture keeps what the run wrote that dpodoctor reads: ``runs/`` (TensorBoard),
``trainer_log.jsonl`` (LLaMA-Factory's own log) and the YAML it was launched with (the only place that names
``pref_beta``, ``pref_loss`` and ``pref_ftx``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.corpus.tiny import build_tokenizer, preference_rows, tiny_llama


def main(out: Path) -> None:
    tokenizer = build_tokenizer()
    tiny_llama(tokenizer, seed=0).save_pretrained(out / "tiny")
    tokenizer.save_pretrained(out / "tiny")
    (out / "data").mkdir(parents=True, exist_ok=True)
    info = {}
    for split, n, seed in (("train", 800, 0), ("eval", 64, 10_000)):  # the corpus baseline: 15 % of pairs flipped
        rows = preference_rows(n, seed=seed, noise=0.15)
        pairs = zip(rows["prompt"], rows["chosen"], rows["rejected"], strict=True)
        data = [{"instruction": p, "chosen": c.strip(), "rejected": r.strip()} for p, c, r in pairs]
        (out / "data" / f"{split}.json").write_text(json.dumps(data))
        columns = {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}
        info[f"tiny_{split}"] = {"file_name": f"{split}.json", "ranking": True, "columns": columns}
    (out / "data" / "dataset_info.json").write_text(json.dumps(info, indent=1))
    stub = out / "stubs" / "torchaudio"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('"""Stub: no torchaudio build loads against torch 2.13 on the CPU."""\n')


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lf"))
