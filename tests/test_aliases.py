"""The key aliases of other trainers: one test per framework, through canonical() and through a reader.

Why through a reader too: an alias is only useful if the keys, as that trainer writes them (with its split
prefixes and in its log format), come out under the canonical names the rules read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dpodoctor.readers.jsonl  # noqa: F401  (registers the reader)
from dpodoctor.metrics import (
    BOOKKEEPING_METRICS,
    CORE_METRICS,
    FRAMEWORK_KEYS,
    KEY_MAP,
    KNOWN_METRICS,
    SPLIT_KEYS,
    _merge,
    canonical,
    is_dpo_metric,
    split_key,
)
from dpodoctor.readers import ReadResult
from dpodoctor.readers.jsonl import JsonlReader
from dpodoctor.readers.stdout import StdoutReader


def _metrics(result: ReadResult) -> set[tuple[str, str]]:
    return {(str(s), str(m)) for s, m in result.frame[["split", "metric"]].drop_duplicates().itertuples(index=False)}


def _jsonl(tmp_path: Path, *rows: dict[str, float]) -> ReadResult:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return JsonlReader().read([path])


def _console(tmp_path: Path, text: str) -> ReadResult:
    path = tmp_path / "train.log"
    path.write_text(text)
    return StdoutReader().read([path])


# ---------------------------------------------------------------- the table itself


def test_the_tables_merge_into_key_map() -> None:
    for framework, table in FRAMEWORK_KEYS.items():
        for key, metric in table.items():
            assert KEY_MAP[key] == metric, (framework, key)
            assert metric in KNOWN_METRICS


def test_a_key_mapped_two_ways_is_refused() -> None:
    with pytest.raises(ValueError, match="'acc'"):
        _merge({"a": {"acc": "accuracy"}, "b": {"acc": "accuracy_mean"}})


def test_ambiguous_keys_keep_their_names() -> None:
    # `reward` is chosen+rejected in Align-Anything and the reward-model score in LLaMA-Factory's PPO.
    assert "reward" not in KEY_MAP and canonical("train/reward") == ("train", "reward")
    # MiniMind logs `loss` and `dpo_loss` side by side; only verl's namespaced `actor/dpo_loss` is the loss.
    assert "dpo_loss" not in KEY_MAP


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("eval_loss", ("eval", "loss")),
        ("eval/loss", ("eval", "loss")),
        ("train/loss", ("train", "loss")),
        ("val/loss", ("eval", "loss")),
        ("val_loss", ("eval", "loss")),
        ("validation/loss", ("eval", "loss")),
        ("validation_loss", ("eval", "loss")),
        ("eval/eval_loss", ("eval", "loss")),
        ("train/train_runtime", None),
        ("value_loss", ("train", "value_loss")),
        ("valid_loss", ("train", "valid_loss")),
        ("val/", ("train", "val/")),
        ("val/my_metric", ("eval", "my_metric")),
    ],
)
def test_split_prefixes(raw: str, expected: tuple[str, str] | None) -> None:
    assert canonical(raw) == expected


def test_split_key_strips_a_repeated_eval_prefix_only() -> None:
    assert split_key("eval/eval_rewards/margins") == ("eval", "rewards/margins")
    assert split_key("train/eval_loss") == ("train", "eval_loss")


def test_is_dpo_metric() -> None:
    assert is_dpo_metric("train/acc") and is_dpo_metric("val/rewards_chosen_mean")
    assert not any(is_dpo_metric(k) for k in ("epoch", "lr", "learning_rate", "train_runtime", "my_metric"))
    assert {"epoch", "learning_rate"} <= BOOKKEEPING_METRICS


def test_every_dpo_framework_maps_the_core_rewards() -> None:
    for framework in ("trl", "openrlhf", "nemo-aligner", "align-anything", "verl-spin"):
        targets = set(FRAMEWORK_KEYS[framework].values()) | set(FRAMEWORK_KEYS["trl"].values())
        assert {"chosen", "rejected", "accuracy"} <= targets, framework
        assert set(CORE_METRICS) - {"margins"} <= targets | {"loss"}, framework


# ---------------------------------------------------------------- one test per framework


def test_openrlhf(tmp_path: Path) -> None:
    assert canonical("train/acc") == ("train", "accuracy")
    assert canonical("train/chosen_reward") == ("train", "chosen")
    assert canonical("train/reject_reward") == ("train", "rejected")
    assert canonical("train/acc_mean") == ("train", "accuracy_mean")  # logged beside `acc`: kept apart
    assert canonical("train/loss_mean") == ("train", "loss_mean")
    assert canonical("eval/acc_mean") == ("eval", "accuracy")  # its evaluation's accuracy
    assert canonical("eval/eval_loss") == ("eval", "loss")
    assert SPLIT_KEYS["openrlhf"]
    result = _jsonl(
        tmp_path,
        {"global_step": 1, "train/loss": 0.69, "train/acc": 0.5, "train/chosen_reward": 0.01,
         "train/reject_reward": -0.01, "train/loss_mean": 0.69, "train/acc_mean": 0.5, "train/lr": 1e-7},
        {"global_step": 1, "eval/eval_loss": 0.68, "eval/acc_mean": 0.55},
    )  # fmt: skip
    assert _metrics(result) == {
        ("train", "loss"), ("train", "accuracy"), ("train", "chosen"), ("train", "rejected"),
        ("train", "loss_mean"), ("train", "accuracy_mean"), ("train", "learning_rate"),
        ("eval", "loss"), ("eval", "accuracy"),
    }  # fmt: skip


def test_torchtune(tmp_path: Path) -> None:
    assert canonical("log_probs/chosen") == ("train", "logps_chosen")
    assert canonical("log_probs/rejected") == ("train", "logps_rejected")
    assert canonical("rewards/margins") == ("train", "margins")
    # torchtune's DiskLogger writes `Step N | name:value name:value ...` lines (log_<time>.txt).
    text = "".join(
        f"Step {n} | loss:{0.7 - n / 100:.4f} lr:{n * 1e-7:.1e} rewards/chosen:{n / 100:.3f} "
        f"rewards/rejected:{-n / 100:.3f} rewards/accuracies:{0.5 + n / 50:.2f} rewards/margins:{n / 50:.3f} "
        f"log_probs/chosen:{-50 + n:.1f} log_probs/rejected:{-50 - n:.1f}\n"
        for n in (1, 2, 3)
    )
    result = _console(tmp_path, text)
    assert not result.steps_derived
    assert sorted(result.frame[result.frame["metric"] == "margins"]["step"]) == [1, 2, 3]
    expected = ("loss", "learning_rate", "chosen", "rejected", "accuracy", "margins", "logps_chosen", "logps_rejected")
    assert _metrics(result) == {("train", m) for m in expected}


def test_nemo_aligner_and_nemo_rl(tmp_path: Path) -> None:
    assert canonical("train/rewards_chosen_mean") == ("train", "chosen")
    assert canonical("train/rewards_rejected_mean") == ("train", "rejected")
    assert canonical("train/acc") == ("train", "accuracy")
    assert canonical("train/preference_loss") == ("train", "preference_loss")  # the DPO term; `loss` is the total
    assert canonical("val/acc") == ("eval", "accuracy")
    assert canonical("val/rewards_chosen_mean") == ("eval", "chosen")
    assert canonical("validation/accuracy") == ("eval", "accuracy")
    result = _jsonl(
        tmp_path,
        {"step": 10, "train/loss": 0.6, "train/preference_loss": 0.6, "train/acc": 0.7,
         "train/rewards_chosen_mean": 0.2, "train/rewards_rejected_mean": -0.1, "train/lr": 9e-7},
        {"step": 10, "val/loss": 0.62, "val/acc": 0.66, "val/rewards_chosen_mean": 0.1},
    )  # fmt: skip
    assert _metrics(result) == {
        ("train", "loss"), ("train", "preference_loss"), ("train", "accuracy"), ("train", "chosen"),
        ("train", "rejected"), ("train", "learning_rate"), ("eval", "loss"), ("eval", "accuracy"), ("eval", "chosen"),
    }  # fmt: skip


def test_align_anything(tmp_path: Path) -> None:
    result = _jsonl(
        tmp_path,
        {"step": 1, "train/loss": 0.69, "train/reward": 0.0, "train/better_sample_reward": 0.01,
         "train/worse_sample_reward": -0.01, "train/reward_accuracy": 0.5, "train/reward_margin": 0.02,
         "train/lr": 1e-6, "train/epoch": 0.1},
    )  # fmt: skip
    assert _metrics(result) == {
        ("train", "loss"), ("train", "reward"), ("train", "chosen"), ("train", "rejected"), ("train", "accuracy"),
        ("train", "margins"), ("train", "learning_rate"), ("train", "epoch"),
    }  # fmt: skip


def test_verl_spin(tmp_path: Path) -> None:
    for key, metric in {
        "actor/rewards_chosen": "chosen",
        "actor/rewards_rejected": "rejected",
        "actor/rewards_margins": "margins",
        "actor/rewards_accuracies": "accuracy",
        "actor/dpo_loss": "loss",
        "actor/policy_chosen_logps": "logps_chosen",
        "actor/reference_rejected_logps": "ref_logps_rejected",
    }.items():
        assert canonical(key) == ("train", metric)
    # verl's console logger: `step:N - name:value - name:value`
    text = "".join(
        f"step:{n} - training/global_step:{n} - actor/dpo_loss:{0.69 - n / 100:.3f} - actor/rewards_chosen:0.010 "
        f"- actor/rewards_rejected:-0.010 - actor/rewards_margins:{n / 50:.3f} - actor/rewards_accuracies:0.600\n"
        for n in (1, 2)
    )
    result = _console(tmp_path, text)
    assert _metrics(result) == {("train", m) for m in ("loss", "chosen", "rejected", "margins", "accuracy")}
    assert sorted(set(result.frame["step"])) == [1, 2]


def test_llama_factory_short_names() -> None:
    assert canonical("accuracy") == ("train", "accuracy")
    assert canonical("lr") == ("train", "learning_rate")
    assert canonical("eval_loss") == ("eval", "loss")
    assert canonical("reward") == ("train", "reward")


def test_unknown_keys_keep_their_names() -> None:
    for raw in ("my_custom_metric", "actor/entropy", "critic/score"):
        assert canonical(raw) == ("train", raw)
