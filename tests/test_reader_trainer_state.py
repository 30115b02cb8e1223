"""Tests for the trainer_state.json reader: log_history with exact steps, bare NaN tokens, the checkpoint copies of
one run, wrappers of a log_history, how the run ended, and β from an arguments file beside it.

Why hand-made states: each test pins one layout rule down; the TRL fixtures then prove the reader on what
transformers really writes, checked against the stdout reader on the same runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpodoctor.readers.trainer_state  # noqa: F401  (registers the reader)
from dpodoctor.discovery import discover
from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.model import COLUMNS, Ended
from dpodoctor.readers import ReadResult, get_reader, read_runs, reader_for
from dpodoctor.readers.stdout import StdoutReader
from dpodoctor.readers.trainer_state import TrainerStateReader
from tests.conftest import TRL, TRL_RUNS

READER = TrainerStateReader()


def _series(result: ReadResult, metric: str, split: str = "train") -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == split) & (f["metric"] == metric)]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def _train(step: int, loss: float, margin: float, epoch: float) -> dict[str, Any]:
    return {"epoch": epoch, "loss": loss, "rewards/margins": margin, "rewards/accuracies": 0.5 + margin, "step": step}


def _state(history: list[dict[str, Any]], global_step: int, max_steps: int = 0, **extra: Any) -> dict[str, Any]:
    return {"global_step": global_step, "max_steps": max_steps or global_step, "log_history": history, **extra}


def _write(folder: Path, data: Any, name: str = "trainer_state.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


SUMMARY = {"epoch": 1.0, "step": 30, "total_flos": 1.0, "train_loss": 0.6, "train_runtime": 12.5}
HISTORY = [
    _train(10, 0.69, 0.01, 0.33),
    _train(20, 0.62, 0.12, 0.67),
    {"epoch": 0.67, "eval_loss": 0.64, "eval_rewards/margins": 0.08, "eval_runtime": 0.5, "step": 20},
    _train(30, 0.55, 0.25, 1.0),
    SUMMARY,
]


# ---------------------------------------------------------------- registry, sniff, run_root


def test_registered_with_its_priority() -> None:
    reader = get_reader("trainer_state")
    assert reader.priority == 40 and reader.multi_file
    assert get_reader("tensorboard").priority > reader.priority > get_reader("stdout").priority


def test_sniff(tmp_path: Path) -> None:
    assert READER.sniff(_write(tmp_path, "{}"))  # the name is enough
    wrapper = _write(tmp_path, {"eval_loss": [], "raw_log_history": [{"step": 1, "loss": 0.7}]}, "history.json")
    assert READER.sniff(wrapper)
    assert READER.sniff(_write(tmp_path, {"log_history": []}, "state_copy.json"))
    assert not READER.sniff(_write(tmp_path, {"beta": 0.1}, "config.json"))
    assert not READER.sniff(_write(tmp_path, '{"log_history": []}', "train.jsonl"))
    assert not READER.sniff(tmp_path / "missing.json")
    assert reader_for(wrapper) is READER or reader_for(wrapper).name == "trainer_state"  # type: ignore[union-attr]


def test_run_root_of_checkpoint_copies_is_the_output_folder() -> None:
    out = Path("/x/out")
    assert READER.run_root(out / "checkpoint-500" / "trainer_state.json") == out
    assert READER.run_root(out / "trainer_state.json") == out
    assert READER.run_root(out / "checkpoint-500" / "history.json") == out / "checkpoint-500"
    assert READER.run_root(out / "checkpoint-best" / "trainer_state.json") == out / "checkpoint-best"


# ---------------------------------------------------------------- reading


def test_train_eval_and_summary_entries(tmp_path: Path) -> None:
    result = READER.read([_write(tmp_path, _state(HISTORY, 30))])
    assert _series(result, "loss") == {10: 0.69, 20: 0.62, 30: 0.55}
    assert _series(result, "margins") == {10: 0.01, 20: 0.12, 30: 0.25}
    assert _series(result, "accuracy") == pytest.approx({10: 0.51, 20: 0.62, 30: 0.75})
    assert _series(result, "loss", "eval") == {20: 0.64}
    assert _series(result, "margins", "eval") == {20: 0.08}
    assert _series(result, "runtime", "eval") == {20: 0.5}
    # the eval entry's epoch is the train epoch at that step; the summary entry's epoch adds nothing
    assert _series(result, "epoch") == {10: 0.33, 20: 0.67, 30: 1.0}
    assert result.summary == {"total_flos": 1.0, "train_loss": 0.6, "train_runtime": 12.5}
    assert result.ended is Ended.FINISHED
    assert not result.steps_derived
    assert result.config["global_step"] == 30
    assert list(result.frame.columns) == list(COLUMNS)


def test_bare_nan_and_infinity_tokens(tmp_path: Path) -> None:
    text = (
        '{"global_step": 20, "max_steps": 40, "log_history": [\n'
        '  {"epoch": 0.5, "loss": 0.0, "rewards/margins": NaN, "rewards/chosen": -Infinity, "step": 10},\n'
        '  {"epoch": 1.0, "loss": 0.0, "rewards/margins": NaN, "rewards/chosen": Infinity, "step": 20}\n'
        "]}"
    )
    result = READER.read([_write(tmp_path, text)])
    assert all(math.isnan(v) for v in _series(result, "margins").values())
    assert _series(result, "chosen") == {10: -math.inf, 20: math.inf}
    assert result.ended is Ended.TRUNCATED  # short of max_steps
    assert any("no end-of-training entry" in n for n in result.notes)
    assert "stopped at step 20 of max_steps 40" in result.notes


def test_summary_entry_with_per_step_keys_after_the_last_log(tmp_path: Path) -> None:
    # TRL >= 0.29 puts the metrics of the steps after the last logging step on the train_runtime entry.
    history = [_train(10, 0.69, 0.01, 0.5), {**SUMMARY, "step": 13, "rewards/margins": 0.3, "epoch": 0.65}]
    result = READER.read([_write(tmp_path, _state(history, 13))])
    assert _series(result, "margins") == {10: 0.01, 13: 0.3}
    assert any("train_runtime entry also carried rewards/margins" in n for n in result.notes)


def test_entries_without_a_step_are_skipped(tmp_path: Path) -> None:
    history = [_train(10, 0.69, 0.01, 0.5), {"loss": 0.1}, "junk", {"step": -3, "loss": 1}, {"step": 1.5, "loss": 2}]
    result = READER.read([_write(tmp_path, _state(history, 10))])
    assert _series(result, "loss") == {10: 0.69}
    assert any("skipped 4 log_history entries without a valid step" in n for n in result.notes)


def test_non_numeric_values_are_skipped(tmp_path: Path) -> None:
    history = [{"step": 5, "loss": 0.7, "note": "x", "flag": True, "nested": {"a": 1}, "big": 10**400}]
    result = READER.read([_write(tmp_path, _state(history, 5))])
    assert set(result.frame["metric"]) == {"loss"}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"global_step": 3, "log_history": [{"step": 1, "loss": 0.', ReadError),  # cut inside its first entry
        ("[1, 2, 3]", NoMetricsError),
        ('{"global_step": 3}', NoMetricsError),
        ('{"log_history": []}', NoMetricsError),
        ('{"log_history": [{"step": 1, "note": "x"}]}', NoMetricsError),
        (b"\xff\xfe\x00garbage", ReadError),
        ("[" * 100000, ReadError),
    ],
)
def test_bad_files_raise_read_errors_naming_the_file(tmp_path: Path, content: str | bytes, error: type) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(error) as info:
        READER.read([path])
    assert info.value.path == path


# ---------------------------------------------------------------- checkpoints: one run


def _checkpointed_run(out: Path, final: bool) -> list[Path]:
    paths = [
        _write(out / "checkpoint-10", _state(HISTORY[:1], 10, 30)),
        _write(out / "checkpoint-20", _state(HISTORY[:3], 20, 30)),
    ]
    if final:
        paths.append(_write(out, _state(HISTORY, 30)))
    return paths


def test_checkpoint_copies_are_one_run_read_from_the_latest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = _checkpointed_run(out, final=False)
    result = READER.read(list(reversed(paths)))
    assert _series(result, "loss") == {10: 0.69, 20: 0.62}
    assert result.ended is Ended.TRUNCATED  # short of max_steps
    assert "stopped at step 20 of max_steps 30" in result.notes
    assert str(out / "checkpoint-20" / "trainer_state.json") in result.notes[0]
    assert str(out / "checkpoint-10" / "trainer_state.json") in result.notes[0]


def test_the_final_state_in_the_output_folder_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = READER.read(_checkpointed_run(out, final=True))
    assert _series(result, "loss") == {10: 0.69, 20: 0.62, 30: 0.55}
    assert result.ended is Ended.FINISHED
    assert result.notes[0].startswith(f"read {out / 'trainer_state.json'} (step 30)")


def test_discovery_groups_the_checkpoints_into_one_run(tmp_path: Path) -> None:
    out = tmp_path / "sweep" / "out"
    _checkpointed_run(out, final=True)
    (out / "train.log").write_text("{'loss': 0.7}\n")
    [source] = discover([tmp_path / "sweep"])
    assert source.reader.name == "trainer_state" and source.root == out and len(source.files) == 3
    assert source.others == [out / "train.log"]


# ---------------------------------------------------------------- wrappers of a log_history


def test_raw_log_history_wrapper(tmp_path: Path) -> None:
    wrapper = {
        "eval_loss": [],
        "metadata": {"run_name": "x", "beta": 0.2},
        "raw_log_history": HISTORY,
        "train_loss": [{"step": 10, "loss": 0.69}],
    }
    path = _write(tmp_path, wrapper, "my_dpo_history.json")
    [result] = read_runs(READER, [path])
    assert result.label is None
    assert _series(result, "loss") == {10: 0.69, 20: 0.62, 30: 0.55}
    assert result.ended is Ended.FINISHED
    assert (result.beta, result.beta_source) == (0.2, str(path))


def test_a_wrapper_beside_a_trainer_state_is_a_run_of_its_own(tmp_path: Path) -> None:
    state = _write(tmp_path, _state(HISTORY, 30))
    wrapper = _write(tmp_path, {"log_history": HISTORY[:2]}, "sft_history.json")
    runs = READER.read_runs([wrapper, state])
    assert [r.label for r in runs] == ["trainer_state.json", "sft_history.json"]
    assert [max(_series(r, "loss")) for r in runs] == [30, 20]
    first = READER.read([wrapper, state])
    assert max(_series(first, "loss")) == 30
    assert any("sft_history.json" in n for n in first.notes)


# ---------------------------------------------------------------- β from the files beside it


def test_beta_from_training_args_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = _checkpointed_run(out, final=False)
    _write(out, {"beta": 0.05, "loss_type": "sigmoid", "max_grad_norm": 1.0, "nested": {"x": 1}}, "training_args.json")
    result = READER.read(paths)
    assert result.beta == 0.05
    assert result.beta_source == str(out / "training_args.json")
    assert result.config["loss_type"] == "sigmoid" and result.config["max_grad_norm"] == 1.0
    assert "nested" not in result.config


def test_beta_in_the_checkpoint_folder_and_nested_args(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = _checkpointed_run(out, final=False)
    _write(out / "checkpoint-20", {"args": {"pref_beta": 0.3}}, "config.json")
    result = READER.read(paths)
    assert result.beta == 0.3 and result.beta_source is not None and "checkpoint-20" in result.beta_source


@pytest.mark.parametrize("beta", ['"0.1"', "true", "NaN", "null"])
def test_a_non_numeric_beta_is_not_read(tmp_path: Path, beta: str) -> None:
    path = _write(tmp_path, _state(HISTORY, 30))
    _write(tmp_path, f'{{"beta": {beta}}}', "train_results.json")
    assert READER.read([path]).beta is None


def test_an_unreadable_arguments_file_is_a_note(tmp_path: Path) -> None:
    path = _write(tmp_path, _state(HISTORY, 30))
    _write(tmp_path, "{not json", "training_args.json")
    result = READER.read([path])
    assert result.beta is None
    assert any("training_args.json: not readable as JSON" in n for n in result.notes)


# ---------------------------------------------------------------- the real TRL fixtures


@pytest.mark.parametrize("run", TRL_RUNS)
def test_fixture_states_agree_with_the_console_log(run: str) -> None:
    """The same run read from trainer_state.json (exact) and from train.log (printed with 4 significant digits)."""
    state = READER.read([TRL / run / "trainer_state.json"])
    console = StdoutReader().read([TRL / run / "train.log"])
    assert state.ended is console.ended is Ended.FINISHED
    pairs = {(str(s), str(m)) for s, m in state.frame[["split", "metric"]].drop_duplicates().itertuples(index=False)}
    assert pairs == {
        (str(s), str(m)) for s, m in console.frame[["split", "metric"]].drop_duplicates().itertuples(index=False)
    }
    for split, metric in pairs:
        exact, printed = _series(state, metric, split), _series(console, metric, split)
        assert exact.keys() == printed.keys(), (split, metric)
        for step, value in exact.items():
            assert math.isclose(printed[step], value, rel_tol=1e-3, abs_tol=1e-9), (split, metric, step)
    assert state.summary["train_loss"] == pytest.approx(console.summary["train_loss"], rel=1e-3)


# ---------------------------------------------------------------- robustness

_JSON_BITS = st.sampled_from(
    ['{"log_history": [', '{"step": 1, ', '"loss": ', "NaN", "Infinity", "0.5", "}", "]", ", ", '"global_step": ', "-1"]
)


@given(st.one_of(st.binary(max_size=300), st.lists(st.one_of(_JSON_BITS, st.text(max_size=6)), max_size=30)))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_arbitrary_content_raises_nothing_but_read_error(tmp_path: Path, data: bytes | list[str]) -> None:
    raw = data if isinstance(data, bytes) else "".join(data).encode("utf-8", errors="surrogatepass")
    path = tmp_path / "trainer_state.json"
    path.write_bytes(raw)
    try:
        result = READER.read([path])
    except ReadError:
        return
    assert list(result.frame.columns) == list(COLUMNS)
