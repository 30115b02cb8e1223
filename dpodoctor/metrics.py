"""Canonical metric names and the one table that maps framework keys onto them.

Why a table and not code: every reader (TensorBoard tags, stdout dict keys, trainer_state.json, JSONL and CSV
columns) gives raw keys such as ``train/rewards/margins``, ``eval_rewards/margins`` or OpenRLHF's ``chosen_reward``.
Splitting off the split prefix and looking the rest up here is the only place that knows the naming, so a new
framework is one more dict below, not a new parser.
"""

from __future__ import annotations

import math
from typing import Final, Literal

Split = Literal["train", "eval"]

LN2: Final = math.log(2.0)

# The five metrics of the seed's reference table: the rules need these.
CORE_METRICS: Final = ("loss", "margins", "accuracy", "chosen", "rejected")

# Per framework: raw key (after the split prefix is removed) -> canonical metric name. All of them are merged into
# KEY_MAP; a key two frameworks share must mean the same there (checked at import, see _merge). Keys that mean
# something else elsewhere are left out and keep their own name (see the comments), because a wrong alias is worse
# than none: a rule would then read the wrong curve with confidence.
FRAMEWORK_KEYS: Final[dict[str, dict[str, str]]] = {
    # TRL's DPOTrainer through transformers' Trainer (the seed's table first).
    "trl": {
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
    },
    # OpenRLHF's DPOTrainer: `loss`/`acc` are the last micro-batch's, `loss_mean`/`acc_mean` the mean over the
    # micro-batches of one optimizer step (a 0.9 moving average in releases before 0.5). Both pairs are logged in
    # the same dict, so the means keep names of their own instead of colliding with loss/accuracy.
    # Its evaluation logs `eval_loss` and `acc_mean` under `eval/`: see SPLIT_KEYS.
    "openrlhf": {
        "acc": "accuracy",
        "chosen_reward": "chosen",
        "reject_reward": "rejected",
        "acc_mean": "accuracy_mean",
        "loss_mean": "loss_mean",
        "lr": "learning_rate",
    },
    # torchtune's DPO recipes: TRL's rewards/* names, but `log_probs/` instead of `logps/`.
    "torchtune": {
        "log_probs/chosen": "logps_chosen",
        "log_probs/rejected": "logps_rejected",
        "lr": "learning_rate",
    },
    # NeMo-Aligner's DPO (`train/...`, validation under `val/...`) and NeMo-RL's (`validation/...`): `loss` is the
    # total, `preference_loss` the DPO term alone (they differ when an SFT term is added), so it keeps its name.
    "nemo-aligner": {
        "acc": "accuracy",
        "accuracy": "accuracy",
        "rewards_chosen_mean": "chosen",
        "rewards_rejected_mean": "rejected",
        "preference_loss": "preference_loss",
        "sft_loss": "sft_loss",
        "lr": "learning_rate",
    },
    # Align-Anything's DPO trainer (`train/...`). Its `reward` is chosen + rejected summed, so it keeps its name.
    "align-anything": {
        "better_sample_reward": "chosen",
        "worse_sample_reward": "rejected",
        "reward_accuracy": "accuracy",
        "reward_margin": "margins",
        "lr": "learning_rate",
    },
    # verl's SPIN recipe (online DPO): metrics under `actor/`, which is a namespace there, not a split.
    "verl-spin": {
        "actor/dpo_loss": "loss",
        "actor/rewards_chosen": "chosen",
        "actor/rewards_rejected": "rejected",
        "actor/rewards_margins": "margins",
        "actor/rewards_accuracies": "accuracy",
        "actor/grad_norm": "grad_norm",
        "actor/lr": "learning_rate",
        "actor/policy_chosen_logps": "logps_chosen",
        "actor/policy_rejected_logps": "logps_rejected",
        "actor/reference_chosen_logps": "ref_logps_chosen",
        "actor/reference_rejected_logps": "ref_logps_rejected",
        "training/epoch": "epoch",
    },
    # LLaMA-Factory's trainer_log.jsonl copies log_history keys under short names: `accuracy` is
    # rewards/accuracies and `lr` is learning_rate. Its `reward` is log_history's `reward`, which only LLaMA-Factory's
    # PPO trainer logs (the mean reward-model score), so it keeps its own name.
    "llama-factory": {
        "accuracy": "accuracy",
        "lr": "learning_rate",
    },
}

# Keys whose meaning depends on the split: framework -> (split, raw key) -> canonical metric. Looked up before
# KEY_MAP. OpenRLHF's evaluation logs its accuracy as `acc_mean` (the mean over the eval set: the accuracy itself).
SPLIT_KEYS: Final[dict[str, dict[tuple[Split, str], str]]] = {
    "openrlhf": {("eval", "acc_mean"): "accuracy"},
}


def _merge(tables: dict[str, dict[str, str]]) -> dict[str, str]:
    """One lookup from the per-framework dicts; a key mapped differently by two frameworks is a bug in the table."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for framework, table in tables.items():
        for key, metric in table.items():
            if merged.get(key, metric) != metric:
                raise ValueError(
                    f"metric key {key!r}: {owner[key]} maps it to {merged[key]!r}, {framework} to {metric!r}"
                )
            merged[key] = metric
            owner.setdefault(key, framework)
    return merged


# raw key (after the split prefix is removed) -> canonical metric name: every framework's table in one lookup.
KEY_MAP: Final[dict[str, str]] = _merge(FRAMEWORK_KEYS)
_SPLIT_MAP: Final[dict[tuple[Split, str], str]] = {k: v for table in SPLIT_KEYS.values() for k, v in table.items()}

# Every canonical name a table gives, and the ones that only describe the bookkeeping of a run: a file whose only
# known keys are these (`epoch`, `learning_rate`) is not a training log worth reading.
KNOWN_METRICS: Final = frozenset(KEY_MAP.values()) | frozenset(_SPLIT_MAP.values())
BOOKKEEPING_METRICS: Final = frozenset(
    {"epoch", "learning_rate", "runtime", "samples_per_second", "steps_per_second", "num_tokens"}
)

# Keys of the end-of-training summary (`{'train_runtime': ...}`, or `train/train_runtime` in TensorBoard).
# They describe the whole run, not a step, so they go to Run.summary and never into the step table.
SUMMARY_KEYS: Final = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}
)

# Split prefixes. `val/` and `validation/` are NeMo's (and Lightning's `val_`) names for the eval split; none of
# them is a prefix of another or of a KEY_MAP key, so the order does not matter and `eval_`, `eval/`, `train/`
# behave as before.
_PREFIXES: Final[tuple[tuple[str, Split], ...]] = (
    ("train/", "train"),
    ("eval/", "eval"),
    ("eval_", "eval"),
    ("val/", "eval"),
    ("val_", "eval"),
    ("validation/", "eval"),
    ("validation_", "eval"),
)


def _strip(raw: str) -> tuple[Split, str] | None:
    for prefix, split in _PREFIXES:
        if raw.startswith(prefix) and len(raw) > len(prefix):
            return split, raw[len(prefix) :]
    return None


def split_key(raw: str) -> tuple[Split, str]:
    """Split a raw key into its split and the key without the split prefix.

    ``train/rewards/margins`` -> (train, rewards/margins); ``eval_loss`` -> (eval, loss); ``loss`` -> (train, loss).
    A second prefix of the same split is removed too: OpenRLHF logs ``eval/eval_loss`` -> (eval, loss).
    """
    first = _strip(raw)
    if first is None:
        return "train", raw
    split, rest = first
    second = _strip(rest)
    if second is not None and second[0] == split and split == "eval":
        return second
    return first


def canonical(raw: str) -> tuple[Split, str] | None:
    """Map a raw key to (split, canonical metric), or None for an end-of-run summary key.

    Keys the table does not know keep their own name, so no logged data is dropped; the rules only look at the
    canonical names.
    """
    split, key = split_key(raw)
    if key in SUMMARY_KEYS or raw in SUMMARY_KEYS:
        return None
    return split, _SPLIT_MAP.get((split, key)) or KEY_MAP.get(key, key)


def is_summary_key(raw: str) -> bool:
    """True for the end-of-training summary keys, with or without a `train/` prefix."""
    return raw in SUMMARY_KEYS or split_key(raw)[1] in SUMMARY_KEYS


def is_dpo_metric(raw: str) -> bool:
    """True when a raw key maps to a known metric that says something about training (not epoch or lr alone).

    Why: sniffing a JSONL or CSV file, or a ``name: value`` line of a custom loop, needs a cheap test that the
    columns are training metrics and not, say, a table of learning-rate schedules.
    """
    mapped = canonical(raw)
    return mapped is not None and mapped[1] in KNOWN_METRICS and mapped[1] not in BOOKKEEPING_METRICS
