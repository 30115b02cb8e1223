"""The key map: every key the fixture runs contain maps to a known canonical metric, in the right split."""

from __future__ import annotations

import json

import pytest

from dpodoctor import load
from dpodoctor.metrics import KEY_MAP, canonical, is_summary_key, split_key
from tests.conftest import TRL, TRL_RUNS

KNOWN = set(KEY_MAP.values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("rewards/margins", ("train", "margins")),
        ("train/rewards/margins", ("train", "margins")),
        ("eval_rewards/margins", ("eval", "margins")),
        ("eval/rewards/margins", ("eval", "margins")),
        ("eval_loss", ("eval", "loss")),
        ("rewards/accuracies", ("train", "accuracy")),
        ("logps/chosen", ("train", "logps_chosen")),
        ("train/grad_norm", ("train", "grad_norm")),
        ("eval_samples_per_second", ("eval", "samples_per_second")),
        ("my_custom_metric", ("train", "my_custom_metric")),
    ],
)
def test_canonical(raw: str, expected: tuple[str, str]) -> None:
    assert canonical(raw) == expected


@pytest.mark.parametrize("raw", ["train_runtime", "train/train_runtime", "train_loss", "total_flos"])
def test_summary_keys_are_not_metrics(raw: str) -> None:
    assert is_summary_key(raw) and canonical(raw) is None


def test_split_prefix_needs_a_rest() -> None:
    assert split_key("eval_") == ("train", "eval_")


@pytest.mark.parametrize("run", TRL_RUNS)
def test_every_fixture_key_is_mapped(run: str) -> None:
    """Both sources of every fixture run give only canonical names, and the same (split, metric) set."""
    seen = {}
    for source in (TRL / run, TRL / run / "train.log"):
        [r] = load(source)
        unknown = {m for _, m in r.metrics} - KNOWN
        assert not unknown, f"{source}: unmapped keys {unknown}"
        seen[r.source] = set(r.metrics)
    assert seen["tensorboard"] == seen["stdout"]


def test_trainer_state_keys_are_all_mapped() -> None:
    """trainer_state.json's log_history holds the same keys the trainer printed: all known."""
    for run in TRL_RUNS:
        state = json.loads((TRL / run / "trainer_state.json").read_text())
        for entry in state["log_history"]:
            for key in entry:
                if key in ("step", "epoch") or is_summary_key(key):
                    continue
                mapped = canonical(key)
                assert mapped is not None and mapped[1] in KNOWN, key
