"""Canonical metric names and the one table that maps framework keys onto them.

Why a table and not code: every reader (TensorBoard tags, stdout dict keys, later SwanLab and JSONL keys) gives raw
keys such as ``train/rewards/margins`` or ``eval_rewards/margins``. Splitting off the split prefix and looking the rest
up here is the only place that knows the naming, so a new framework is one more row, not a new parser.
"""

from __future__ import annotations

import math
from typing import Final, Literal

Split = Literal["train", "eval"]

LN2: Final = math.log(2.0)

# The five metrics of the seed's reference table: the rules need these.
CORE_METRICS: Final = ("loss", "margins", "accuracy", "chosen", "rejected")

# raw key (after the split prefix is removed) -> canonical metric name.
KEY_MAP: Final[dict[str, str]] = {
    # the seed's table
    "loss": "loss",
    "rewards/margins": "margins",
    "rewards/chosen": "chosen",
    "rewards/rejected": "rejected",
    "rewards/accuracies": "accuracy",
    # also read when present
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    # everything else TRL 1.16 / transformers 5.x logs (see tests/fixtures/trl)
    "epoch": "epoch",
    "entropy": "entropy",
    "num_tokens": "num_tokens",
    "logits/chosen": "logits_chosen",
    "logits/rejected": "logits_rejected",
    "mean_token_accuracy": "mean_token_accuracy",
    "runtime": "runtime",
    "samples_per_second": "samples_per_second",
    "steps_per_second": "steps_per_second",
    # older TRL releases
    "nll_loss": "nll_loss",
    "logps/ref_chosen": "ref_logps_chosen",
    "logps/ref_rejected": "ref_logps_rejected",
    "aux_loss": "aux_loss",
}

# Keys of the end-of-training summary (`{'train_runtime': ...}`, or `train/train_runtime` in TensorBoard).
# They describe the whole run, not a step, so they go to Run.summary and never into the step table.
SUMMARY_KEYS: Final = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}
)

# Split prefixes, longest first so `eval/` wins over a bare key.
_PREFIXES: Final[tuple[tuple[str, Split], ...]] = (
    ("train/", "train"),
    ("eval/", "eval"),
    ("eval_", "eval"),
)


def split_key(raw: str) -> tuple[Split, str]:
    """Split a raw key into its split and the key without the split prefix.

    ``train/rewards/margins`` -> (train, rewards/margins); ``eval_loss`` -> (eval, loss); ``loss`` -> (train, loss).
    """
    for prefix, split in _PREFIXES:
        if raw.startswith(prefix) and len(raw) > len(prefix):
            return split, raw[len(prefix) :]
    return "train", raw


def canonical(raw: str) -> tuple[Split, str] | None:
    """Map a raw key to (split, canonical metric), or None for an end-of-run summary key.

    Keys the table does not know keep their own name, so no logged data is dropped; the rules only look at the
    canonical names.
    """
    split, key = split_key(raw)
    if key in SUMMARY_KEYS or raw in SUMMARY_KEYS:
        return None
    return split, KEY_MAP.get(key, key)


def is_summary_key(raw: str) -> bool:
    """True for the end-of-training summary keys, with or without a `train/` prefix."""
    return raw in SUMMARY_KEYS or split_key(raw)[1] in SUMMARY_KEYS
