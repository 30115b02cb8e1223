"""Tests for the stdout reader: the dict shapes transformers prints, tqdm noise, step derivation, the step table,
how the log ended, and that arbitrary text can neither crash the reader nor get evaluated.

Why small inline logs plus the real fixtures: the inline ones pin each shape down in isolation (and say which
shape broke), the fixtures prove the whole thing on what TRL 1.16 / transformers 5.x really writes, checked
against the trainer_state.json the same run wrote.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpodoctor.readers.stdout.scan as stdout_scan
from dpodoctor import load
from dpodoctor.errors import ReadError
from dpodoctor.metrics import FRAMEWORK_KEYS, canonical
from dpodoctor.model import COLUMNS, Ended
from dpodoctor.readers import ReadResult, get_reader, reader_for
from dpodoctor.readers.stdout import StdoutReader, parse_metric_dict

FIXTURES = Path(__file__).parent / "fixtures" / "trl"
TRL_LOGS = sorted(FIXTURES.glob("*/train.log"))
READER = StdoutReader()


def _write(tmp_path: Path, text: str | bytes, name: str = "train.log") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _read(tmp_path: Path, text: str | bytes) -> ReadResult:
    return READER.read([_write(tmp_path, text)])


def _series(result: ReadResult, metric: str, split: str = "train") -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == split) & (f["metric"] == metric)]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def _bar(n: int, total: int, tail: str = "[00:10<00:12,  1.10s/it]") -> str:
    pct = n * 100 // total
    fill = "█" * (pct // 10)
    return f"{pct:3d}%|{fill:<10}| {n}/{total} {tail}"


def _train_loop(total: int, log_every: int, dicts: dict[int, str]) -> str:
    """A transformers-like console: a \\r bar per step; after a logged step the dict, then the bar redrawn."""
    out = []
    for step in range(1, total + 1):
        out.append("\r" + _bar(step, total))
        if step in dicts:
            out.append("\r" + " " * 40 + "\r" + dicts[step] + "\n")
            out.append("\r" + _bar(step, total))
    return "".join(out)


# ---------------------------------------------------------------- registry, sniff, run_root


def test_registered_and_sniffs_by_name(tmp_path: Path) -> None:
    assert get_reader("stdout").name == "stdout"
    assert StdoutReader.priority == 10
    for name in ("train.log", "job.out", "notes.txt", "stdout", "stdout_rank0"):
        assert READER.sniff(_write(tmp_path, "x", name)), name
    for name in ("trainer_state.json", "events.out.tfevents.1", "train.jsonl"):
        assert not READER.sniff(_write(tmp_path, "x", name)), name
    assert not READER.sniff(tmp_path / "missing.log")


def test_sniff_takes_swanlab_console_but_not_its_metric_logs(tmp_path: Path) -> None:
    run = tmp_path / "healthy" / "swanlog" / "run-1"
    (run / "console").mkdir(parents=True)
    (run / "logs" / "3").mkdir(parents=True)
    console = _write(run / "console", "x", "2026-11-24.log")
    metric_log = _write(run / "logs" / "3", "x", "1000.log")
    assert READER.sniff(console)
    assert not READER.sniff(metric_log)
    assert reader_for(metric_log) is None or reader_for(metric_log).name != "stdout"  # type: ignore[union-attr]


def test_run_root() -> None:
    assert READER.run_root(Path("/x/runs/healthy/train.log")) == Path("/x/runs/healthy")
    console = Path("/x/runs/healthy/swanlog/run-20261124-1tv8/console/2026-11-24.log")
    assert READER.run_root(console) == Path("/x/runs/healthy")


# ---------------------------------------------------------------- the dict shapes


def test_float_dicts_of_transformers_4(tmp_path: Path) -> None:
    text = (
        "some warning\n"
        "{'loss': 0.6922, 'grad_norm': 0.34, 'learning_rate': 5e-07, 'rewards/chosen': -0.001, "
        "'rewards/rejected': -0.002, 'rewards/accuracies': 0.5, 'rewards/margins': 0.001, 'epoch': 0.06}\n"
        "{'loss': 0.6909, 'grad_norm': 0.29, 'learning_rate': 1e-06, 'rewards/chosen': 0.0017, "
        "'rewards/rejected': -0.0028, 'rewards/accuracies': 0.7, 'rewards/margins': 0.0045, 'epoch': 0.12}\n"
    )
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.6922, 2: 0.6909}
    assert _series(result, "learning_rate") == {1: 5e-07, 2: 1e-06}
    assert _series(result, "margins") == {1: 0.001, 2: 0.0045}
    assert _series(result, "accuracy") == {1: 0.5, 2: 0.7}
    assert _series(result, "epoch") == {1: 0.06, 2: 0.12}
    assert result.steps_derived
    assert any("order of the log lines" in n for n in result.notes)
    assert result.beta is None
    assert result.ended is Ended.UNKNOWN


def test_string_values_of_transformers_5(tmp_path: Path) -> None:
    text = (
        "{'loss': '0.6969', 'grad_norm': '0.2881', 'learning_rate': '6.897e-07', 'entropy': '0.3194', "
        "'num_tokens': '1.59e+05', 'rewards/chosen': '0.002126', 'rewards/margins': '-0.006554', "
        "'mean_token_accuracy': '0.9129', 'epoch': '0.01767'}\n"
    )
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.6969}
    assert _series(result, "num_tokens") == {1: 1.59e05}
    assert _series(result, "learning_rate") == {1: 6.897e-07}
    assert _series(result, "margins") == {1: -0.006554}
    assert _series(result, "mean_token_accuracy") == {1: 0.9129}


def test_dict_glued_to_a_tqdm_bar_with_cr_and_ansi(tmp_path: Path) -> None:
    text = (
        "\r" + _bar(8, 20) + "\r" + _bar(9, 20) + "\r 50%|█████     | 10/20 [00:10<00:10,  1.0s/it]\x1b[A"
        "{'loss': 0.69, 'rewards/margins': 0.01, 'epoch': 0.5}"
        "\r" + _bar(10, 20) + "\r" + _bar(11, 20) + "\r" + _bar(20, 20)
        + "{'loss': 0.5, 'rewards/margins': 0.2, 'epoch': 1.0}\r" + _bar(20, 20) + "\n"
    )  # fmt: skip
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {10: 0.69, 20: 0.5}
    assert _series(result, "margins") == {10: 0.01, 20: 0.2}
    assert any("tqdm progress bar" in n for n in result.notes)


def test_dicts_glued_to_cr_less_bar_lines(tmp_path: Path) -> None:
    # nohup-like: no \r at all, each dict printed at the end of the bar line that precedes it.
    lines = []
    for step in range(5, 21, 5):
        lines.append(_bar(step, 20) + f"{{'loss': {0.7 - step / 100}, 'epoch': {step / 20}}}")
        lines.append(_bar(step, 20))
    result = _read(tmp_path, "\n".join(lines) + "\n")
    assert sorted(_series(result, "loss")) == [5, 10, 15, 20]
    assert _series(result, "loss")[20] == pytest.approx(0.5)


def test_eval_dicts_go_to_the_eval_split(tmp_path: Path) -> None:
    dicts = {
        5: "{'loss': 0.69, 'rewards/margins': 0.01, 'epoch': 0.5}",
        10: "{'loss': 0.6, 'rewards/margins': 0.1, 'epoch': 1.0}",
    }
    text = _train_loop(10, 5, dicts).replace(
        "\r" + _bar(10, 10) + "\r" + " " * 40,
        "\r" + _bar(10, 10) + "\n\n  0%|          | 0/4 [00:00<?, ?it/s]\x1b[A\n\x1b[A"
        "{'eval_loss': 0.65, 'eval_rewards/margins': 0.05, 'eval_runtime': 0.09, 'epoch': 1.0}\n"
        "\r" + _bar(10, 10) + "\n100%|██████████| 4/4 [00:00<00:00, 58.31it/s]\x1b[A\r" + " " * 40,
        1,
    )
    result = _read(tmp_path, text)
    assert _series(result, "loss", "eval") == {10: 0.65}
    assert _series(result, "margins", "eval") == {10: 0.05}
    assert _series(result, "runtime", "eval") == {10: 0.09}
    assert _series(result, "loss") == {5: 0.69, 10: 0.6}
    assert _series(result, "epoch") == {5: 0.5, 10: 1.0}


def test_summary_dict_is_not_a_step_and_means_finished(tmp_path: Path) -> None:
    text = _train_loop(
        10,
        5,
        {
            5: "{'loss': '0.69', 'epoch': '1'}",
            10: "{'loss': '0.6', 'epoch': '2'}",
        },
    )
    text += (
        "\r" + " " * 40 + "\r{'train_runtime': '17.35', 'train_samples_per_second': '184.4', "
        "'train_steps_per_second': '23.05', 'train_loss': '0.5492', 'epoch': '2'}\n\r" + _bar(10, 10) + "\n"
    )
    result = _read(tmp_path, text)
    assert result.ended is Ended.FINISHED
    assert result.summary == {
        "train_runtime": 17.35,
        "train_samples_per_second": 184.4,
        "train_steps_per_second": 23.05,
        "train_loss": 0.5492,
    }
    assert _series(result, "loss") == {5: 0.69, 10: 0.6}
    assert _series(result, "epoch") == {5: 1.0, 10: 2.0}
    assert set(result.frame["metric"]) == {"loss", "epoch"}


def test_summary_dict_with_per_step_keys_is_stored_at_the_final_step(tmp_path: Path) -> None:
    # As in TRL >= 0.29: the train_runtime line also carries the metrics of the steps after the last log.
    text = _train_loop(13, 5, {5: "{'loss': '0.69', 'epoch': '0.38'}", 10: "{'loss': '0.6', 'epoch': '0.77'}"})
    text += (
        "\r" + " " * 40 + "\r{'train_runtime': '1.341e+04', 'train_loss': '0.5384', 'rewards/margins': '0.9951', "
        "'rewards/chosen': '-1.767', 'epoch': '1'}\n\r" + _bar(13, 13) + "\n"
    )
    result = _read(tmp_path, text)
    assert result.ended is Ended.FINISHED
    assert result.summary == {"train_runtime": 13410.0, "train_loss": 0.5384}
    assert _series(result, "margins") == {13: 0.9951}
    assert _series(result, "chosen") == {13: -1.767}
    assert _series(result, "loss") == {5: 0.69, 10: 0.6}
    assert any("train_runtime line also carried" in n and "step 13" in n for n in result.notes)


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        ("nan", math.nan),
        ("'nan'", math.nan),
        ("'NaN'", math.nan),
        ("inf", math.inf),
        ("'inf'", math.inf),
        ("-inf", -math.inf),
        ("'-inf'", -math.inf),
        ("np.float64(0.25)", 0.25),
    ],
)
def test_nan_and_inf_values(tmp_path: Path, printed: str, expected: float) -> None:
    result = _read(tmp_path, f"{{'loss': {printed}, 'rewards/margins': 0.5}}\n")
    (value,) = _series(result, "loss").values()
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == expected
    assert _series(result, "margins") == {1: 0.5}


def test_user_dicts_are_ignored(tmp_path: Path) -> None:
    text = (
        "{'foo': 'bar'}\n"
        "WORLD INFO DICT: {'localhost': [1, 2, 4]}\n"
        "{'eos_token_id': 248046, 'pad_token_id': 248044}\n"
        "{'loss': 0.5, 'note': 'hello', 'flag': True, 'x': None}\n"
    )
    result = _read(tmp_path, text)
    assert set(result.frame["metric"]) == {"loss"}
    assert _series(result, "loss") == {1: 0.5}


def test_only_user_dicts_is_no_metrics(tmp_path: Path) -> None:
    path = _write(tmp_path, "{'foo': 'bar'}\n{'a': 1}\n")
    with pytest.raises(ReadError) as info:
        READER.read([path])
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_the_parser_never_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(ast, "literal_eval", forbidden)
    text = "{'loss': 0.5, 'x': __import__('os').system('x'), 'grad_norm': 1.5}\n{'loss': __import__('os')}\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.5}
    assert _series(result, "grad_norm") == {1: 1.5}
    assert set(result.frame["metric"]) == {"loss", "grad_norm"}


def test_parse_metric_dict() -> None:
    assert parse_metric_dict("x\r\x1b[A{'loss': '0.5', 'epoch': 1}\r") == {"loss": 0.5, "epoch": 1.0}
    assert parse_metric_dict("{'foo': 'bar'} {'eval_loss': 0.25}") == {"eval_loss": 0.25}
    assert parse_metric_dict("{'foo': 'bar'}") is None
    assert parse_metric_dict("no dict here") is None
    assert parse_metric_dict("{'loss': '1 day', 'grad_norm': 2}") == {"grad_norm": 2.0}


# ---------------------------------------------------------------- step derivation


def test_steps_from_the_real_progress_bar_match_trainer_state() -> None:
    run = FIXTURES / "healthy"
    result = READER.read([run / "train.log"])
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]

    assert sorted(_series(result, "loss")) == list(range(5, 401, 5)) == [h["step"] for h in train]
    assert sorted(_series(result, "loss", "eval")) == list(range(20, 401, 20)) == [h["step"] for h in evals]
    assert result.steps_derived
    assert result.notes[0] == "steps derived from the tqdm progress bar (dict lines carry no step)"

    checked = 0
    for entry in train + evals:
        for key, expected in entry.items():
            mapped = canonical(key)
            if key == "step" or mapped is None:
                continue
            split, metric = mapped
            got = _series(result, metric, split)[entry["step"]]
            assert math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-12), (key, entry["step"], got, expected)
            checked += 1
    assert checked == sum(len(h) - 1 for h in train + evals)  # every logged value, all but "step"
    assert result.summary["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-3)


@pytest.mark.parametrize("log", TRL_LOGS, ids=lambda p: p.parent.name)
def test_every_trl_fixture_finished_with_bar_steps(log: Path) -> None:
    result = READER.read([log])
    assert result.ended is Ended.FINISHED
    history = json.loads((log.parent / "trainer_state.json").read_text())["log_history"]
    assert sorted(_series(result, "loss")) == [h["step"] for h in history if "loss" in h]
    assert sorted(_series(result, "loss", "eval")) == [h["step"] for h in history if "eval_loss" in h]


def test_steps_from_epoch_when_the_bars_are_missing() -> None:
    # SwanLab's console capture of the healthy run drops most bar redraws: the step comes from the epoch.
    (console,) = (FIXTURES / "healthy").glob("swanlog/run-*/console/*.log")
    result = READER.read([console])
    assert sorted(_series(result, "loss")) == list(range(5, 401, 5))
    assert sorted(_series(result, "loss", "eval")) == list(range(20, 401, 20))
    assert "epoch × 200 steps per epoch" in result.notes[0]
    assert result.ended is Ended.FINISHED


def test_rounded_epochs_are_snapped_to_the_logging_interval(tmp_path: Path) -> None:
    # transformers 4.x rounds epochs to 0.01; buffered output prints all dicts after the bars.
    bars = "".join("\r" + _bar(n, 160) for n in range(1, 161))
    dicts = "".join(
        f"{{'loss': {0.7 - step / 1000}, 'epoch': {round(step / 160, 2)}}}\n" for step in range(10, 161, 10)
    )
    text = bars + "\n" + dicts + "{'train_runtime': 48.5, 'train_loss': 0.68, 'epoch': 1.0}\n"
    result = _read(tmp_path, text)
    assert sorted(_series(result, "loss")) == list(range(10, 161, 10))
    assert "160 steps per epoch" in result.notes[0] and "snapped" in result.notes[0]


def test_falls_back_to_the_order_when_bar_steps_go_back(tmp_path: Path) -> None:
    text = (
        "{'loss': 0.7}\r" + _bar(10, 20) + "\n{'loss': 0.6}\r" + _bar(5, 20) + "\n{'loss': 0.5}\r" + _bar(15, 20)
    ) + "\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.7, 2: 0.6, 3: 0.5}
    assert "order of the log lines" in result.notes[0]


def test_eval_before_any_bar_takes_the_preceding_train_step(tmp_path: Path) -> None:
    text = "{'loss': 0.7}\n{'eval_loss': 0.72, 'epoch': 0.5}\n{'loss': 0.6}\n{'eval_loss': 0.65}\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.7, 2: 0.6}
    assert _series(result, "loss", "eval") == {1: 0.72, 2: 0.65}


# ---------------------------------------------------------------- the step table


SEED_TABLE = """\
Step Training Loss Rewards/Margins Rewards/Chosen Rewards/Rejected Rewards/Accuracies
10 0.693100 0.001200 0.000500 -0.000700 0.500000
20 0.690000 0.010000 0.004000 -0.006000 0.600000
30 0.650000 0.150000 0.050000 -0.100000 0.750000
"""


def test_seed_step_table(tmp_path: Path) -> None:
    result = _read(tmp_path, "Training...\n" + SEED_TABLE + "done\n")
    assert _series(result, "loss") == {10: 0.6931, 20: 0.69, 30: 0.65}
    assert _series(result, "margins") == {10: 0.0012, 20: 0.01, 30: 0.15}
    assert _series(result, "chosen") == {10: 0.0005, 20: 0.004, 30: 0.05}
    assert _series(result, "rejected") == {10: -0.0007, 20: -0.006, 30: -0.1}
    assert _series(result, "accuracy") == {10: 0.5, 20: 0.6, 30: 0.75}
    assert not result.steps_derived
    assert result.ended is Ended.UNKNOWN


def test_notebook_table_with_validation_loss_no_log_and_unknown_columns(tmp_path: Path) -> None:
    table = (
        "Step\tTraining Loss\tValidation Loss\tRewards/chosen\tLogps/chosen\tLogits/chosen\tFancy Score\n"
        "50\tNo log\t0.690000\t0.010000\t-40.100000\t-1.800000\t3.000000\n"
        "100\t0.680000\t0.670000\t0.020000\t-39.900000\t-1.790000\t4.000000\n"
    )
    result = _read(tmp_path, table)
    assert _series(result, "loss") == {100: 0.68}  # "No log" is skipped, not NaN
    assert _series(result, "loss", "eval") == {50: 0.69, 100: 0.67}
    assert _series(result, "chosen", "eval") == {50: 0.01, 100: 0.02}
    assert _series(result, "logps_chosen", "eval") == {50: -40.1, 100: -39.9}
    assert _series(result, "logits_chosen", "eval") == {50: -1.8, 100: -1.79}
    assert _series(result, "fancy score", "eval") == {50: 3.0, 100: 4.0}


def test_table_header_is_case_insensitive_and_epoch_only_tables_get_ordinals(tmp_path: Path) -> None:
    text = "EPOCH TRAINING LOSS VALIDATION LOSS\n1 0.6 0.65\n2 0.5 0.55\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.6, 2: 0.5}
    assert _series(result, "loss", "eval") == {1: 0.65, 2: 0.55}
    assert _series(result, "epoch") == {1: 1.0, 2: 2.0}
    assert result.steps_derived


# ---------------------------------------------------------------- how the log ended


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("Traceback (most recent call last):\n  File 'x.py'\nRuntimeError: CUDA out of memory\n", "traceback"),
        ("slurmstepd: error: *** STEP 1.0 ON gn11 CANCELLED AT 2025-05-31T00:39:07 ***\n", "CANCELLED"),
        ("Killed\n", "Killed"),
        ("^CKeyboardInterrupt\n", "KeyboardInterrupt"),
    ],
)
def test_crash_after_the_last_metric_line(tmp_path: Path, tail: str, reason: str) -> None:
    text = "{'loss': 0.7}\r" + _bar(1, 10) + "\n{'loss': 0.6}\r" + _bar(2, 10) + "\r" + _bar(3, 10) + tail
    result = _read(tmp_path, text)
    assert result.ended is Ended.CRASHED
    assert any(reason in n and "after the last metric line" in n for n in result.notes)


def test_a_traceback_before_the_last_metric_line_is_not_a_crash(tmp_path: Path) -> None:
    text = "{'loss': 0.7}\nTraceback (most recent call last):\n  ...\n{'loss': 0.6}\nsaving model\n"
    assert _read(tmp_path, text).ended is Ended.UNKNOWN
    assert _read(tmp_path, "{'loss': 0.7}\nthe job UnKilled everything\n").ended is Ended.UNKNOWN


def test_no_metrics_raises_read_error_naming_the_file(tmp_path: Path) -> None:
    # One `name: value` pair per line, or pairs with no known metric, are not metric lines.
    path = _write(tmp_path, "Epoch 1 started\nloss: 0.61\nbatch_size: 8, seed: 42\nsaving\n")
    with pytest.raises(ReadError, match="no DPO metrics found") as info:
        READER.read([path])
    assert info.value.path == path
    with pytest.raises(ReadError):
        READER.read([_write(tmp_path, b"", "empty.log")])


def test_unreadable_file_is_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(ReadError) as info:
        READER.read([tmp_path / "missing.log"])
    assert info.value.path == tmp_path / "missing.log"


# ---------------------------------------------------------------- streaming and several files


def test_streaming_in_tiny_chunks_gives_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # 97-byte chunks cross every kind of boundary (inside dicts, bars, multi-byte characters) many times.
    log = FIXTURES / "healthy" / "train.log"
    big = READER.read([log])
    monkeypatch.setattr(stdout_scan, "CHUNK", 97)
    small = READER.read([log])
    assert small.frame.equals(big.frame)
    assert (small.summary, small.ended, small.notes) == (big.summary, big.ended, big.notes)


def test_a_file_without_line_breaks_is_cut_at_a_brace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdout_scan, "CHUNK", 64)
    monkeypatch.setattr(stdout_scan, "MAX_CARRY", 200)
    monkeypatch.setattr(stdout_scan, "DICT_MAX", 100)
    text = "".join("x" * 150 + f"{{'loss': {i}.5, 'epoch': {i}}}" for i in range(1, 30))
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {i: i + 0.5 for i in range(1, 30)}


def test_several_files_keep_the_richest(tmp_path: Path) -> None:
    full = _write(tmp_path, "{'loss': 0.7}\n{'loss': 0.6}\n", "train.log")
    (tmp_path / "swanlog" / "run-1" / "console").mkdir(parents=True)
    copy = _write(tmp_path / "swanlog" / "run-1" / "console", "{'loss': 0.7}\n", "2026.log")
    junk = _write(tmp_path, "nothing\n", "notes.txt")
    result = READER.read([copy, junk, full])
    assert _series(result, "loss") == {1: 0.7, 2: 0.6}
    assert any(str(copy) in n for n in result.notes)


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    result = _read(tmp_path, b"\xff\xfe garbage \xe2\x96\r{'loss': 0.5, 'epoch': 1}\n\xc3")
    assert _series(result, "loss") == {1: 0.5}


# ---------------------------------------------------------------- properties

# TRL's own keys: each maps to a different canonical metric (aliases of other frameworks share names, so a dict
# holding `acc` and `rewards/accuracies` would rightly give one row for both).
_KNOWN_KEYS = sorted(FRAMEWORK_KEYS["trl"])
_NOISE = st.lists(
    st.one_of(
        st.sampled_from(["\r", "\n", "\x1b[A", " ", "  5%|▌         | 20/400 [00:00<00:14, 26.32it/s]", "warn: x"]),
        st.builds(lambda n: _bar(n, 400), st.integers(0, 400)),
        st.text(st.characters(blacklist_characters="{}'", blacklist_categories=("Cs",)), max_size=20),
    ),
    max_size=12,
).map("".join)


@st.composite
def _printed_dict(draw: st.DrawFn) -> tuple[str, dict[str, float]]:
    keys = draw(st.lists(st.sampled_from(_KNOWN_KEYS), min_size=1, max_size=8, unique=True))
    parts = []
    expected = {}
    for key in keys:
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        style = draw(st.sampled_from(["repr", "quoted repr", "quoted 4g"]))
        printed = repr(value) if style != "quoted 4g" else f"{value:.4g}"
        expected[key] = float(printed)
        parts.append(f"'{key}': " + (printed if style == "repr" else f"'{printed}'"))
    return "{" + ", ".join(parts) + "}", expected


@given(before=_NOISE, printed=_printed_dict(), after=_NOISE)
@settings(max_examples=300, deadline=None)
def test_property_printed_dicts_parse_back_exactly(
    before: str, printed: tuple[str, dict[str, float]], after: str
) -> None:
    text, expected = printed
    assert parse_metric_dict(before + text + after) == expected


@given(before=_NOISE, printed=_printed_dict(), after=_NOISE)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_the_reader_returns_the_printed_values(
    before: str, printed: tuple[str, dict[str, float]], after: str
) -> None:
    text, expected = printed
    with tempfile.TemporaryDirectory() as tmp:
        result = _read(Path(tmp), before + text + after)
    f = result.frame
    assert len(f) == len(expected)
    for key, value in expected.items():
        split, metric = canonical(key)  # type: ignore[misc]
        assert list(_series(result, metric, split).values()) == [value]


_FRAGMENTS = st.sampled_from(
    [
        "{'loss': ",
        "'0.5'",
        "nan",
        "}",
        "{'",
        "'eval_loss': ",
        "'train_runtime': 1",
        "'epoch': ",
        ", ",
        "\r",
        "\n",
        "\x1b[A",
        " 45%|████▌     | 9/20 [",
        "100%|",
        "Step Training Loss Validation Loss\n",
        "10 0.5 No log\n",
        "Traceback (most recent call last)",
        "Killed",
        "-",
        "e",
        "np.float64(",
    ]
)


@given(st.one_of(st.binary(max_size=400), st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=40)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_arbitrary_text_raises_nothing_but_read_error(data: bytes | list[str]) -> None:
    raw = data if isinstance(data, bytes) else "".join(data).encode("utf-8", errors="surrogatepass")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = READER.read([_write(Path(tmp), raw)])
        except ReadError:
            return
    assert list(result.frame.columns) == list(COLUMNS)
    assert len(result.frame) > 0 or result.summary


@pytest.mark.parametrize(
    "text",
    [
        # absurd epochs: epoch × steps per epoch overflows or goes negative, so the order is used instead
        "{'loss': 0.7, 'epoch': 1e308}\r" + _bar(20, 20) + "\n{'loss': 0.6, 'epoch': -5}\n"
        "{'train_runtime': 1, 'epoch': 1e-300}\n",
        "{'loss': 0.7, 'epoch': 1e300}\n{'loss': 0.6, 'epoch': 2e300}\n{'train_runtime': 1, 'epoch': 1e-300}\r"
        + _bar(20, 20),
        # a step column far beyond int64 is not a step
        "Step Training Loss\n1e300 0.5\n",
    ],
)
def test_absurd_numbers_do_not_crash(tmp_path: Path, text: str) -> None:
    try:
        result = _read(tmp_path, text)
    except ReadError:
        return
    assert result.frame["step"].between(0, 2**53).all()


# ---------------------------------------------------------------- `name: value` lines of custom loops


def _minimind(epochs: int, per_epoch: int, every: int, stop: int | None = None) -> str:
    """Lines in MiniMind's layout (our own numbers): `Epoch:[e/E](cur/total), name: value, ...`."""
    out = []
    for epoch in range(1, epochs + 1):
        for cur in range(every, per_epoch + 1, every):
            global_step = (epoch - 1) * per_epoch + cur
            if stop is not None and global_step > stop:
                return "".join(out)
            loss = 0.7 - global_step / 1000
            out.append(
                f"Epoch:[{epoch}/{epochs}]({cur}/{per_epoch}), loss: {loss:.4f}, dpo_loss: {loss:.4f}, "
                f"aux_loss: 0.0000, learning_rate: {global_step * 1e-8:.8f}, epoch_time: {epoch * 0.5:.3f}min\n"
            )
    return "".join(out)


def test_key_value_lines_with_epoch_and_step_within_the_epoch(tmp_path: Path) -> None:
    text = "Model Params: 12.5M\nTrainable Params: 12.5M\n" + _minimind(epochs=2, per_epoch=40, every=10)
    result = _read(tmp_path, text)
    assert sorted(_series(result, "loss")) == [10, 20, 30, 40, 50, 60, 70, 80]
    assert _series(result, "loss")[50] == pytest.approx(0.65)
    assert _series(result, "learning_rate")[80] == pytest.approx(8e-7)
    assert set(result.frame["metric"]) == {"loss", "dpo_loss", "aux_loss", "learning_rate"}  # no epoch_time
    assert not result.steps_derived
    assert any("steps per epoch" in n for n in result.notes)
    assert result.ended is Ended.FINISHED


def test_key_value_lines_stopped_early_and_crashed(tmp_path: Path) -> None:
    text = _minimind(epochs=1, per_epoch=100, every=10, stop=30) + "Traceback (most recent call last):\n  x\n"
    result = _read(tmp_path, text)
    assert sorted(_series(result, "loss")) == [10, 20, 30]
    assert result.ended is Ended.CRASHED
    assert "stopped at step 30 of 100" in result.notes
    unknown = _read(tmp_path, _minimind(epochs=1, per_epoch=100, every=10, stop=30))
    assert unknown.ended is Ended.UNKNOWN


@pytest.mark.parametrize(
    ("lines", "steps"),
    [
        (["step 5 loss: 0.69, acc: 0.5", "step 10 loss: 0.6, acc: 0.7"], [5, 10]),
        (["Step: 5, loss: 0.69, rewards/margins: 0.01", "Step: 10, loss: 0.6, rewards/margins: 0.1"], [5, 10]),
        (["Step 5/20 | loss: 0.69 | acc: 0.5", "Step 10/20 | loss: 0.6 | acc: 0.7"], [5, 10]),
        (["iter: 5, loss: 0.69, acc: 0.5", "iter: 10, loss: 0.6, acc: 0.7"], [5, 10]),
        (["loss: 0.69, acc: 0.5", "loss: 0.6, acc: 0.7"], [1, 2]),  # no step: the line order
    ],
)
def test_key_value_step_patterns(tmp_path: Path, lines: list[str], steps: list[int]) -> None:
    result = _read(tmp_path, "\n".join(lines) + "\n")
    assert sorted(_series(result, "loss")) == steps
    assert result.steps_derived is (steps == [1, 2])


def test_key_value_eval_lines_and_noise(tmp_path: Path) -> None:
    text = (
        "2025-01-01 10:00:00 INFO start, lr: 1e-6, batch_size: 8\n"  # only bookkeeping names: not a metric line
        "step 10 loss: 0.65, acc: 0.6, time: 0:01:02, speed: 3.2it/s\n"
        "Validation loss: 0.66, acc: 0.58\n"
        "step 20 Loss: 0.55, Acc: 0.7, rewards/margins: 0.21\n"
        "loss: 0.5\n"  # one pair only
    )
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {10: 0.65, 20: 0.55}
    assert _series(result, "accuracy") == {10: 0.6, 20: 0.7}
    assert _series(result, "margins") == {20: 0.21}
    assert _series(result, "loss", "eval") == {10: 0.66}  # no step on the line: the step before it
    assert _series(result, "accuracy", "eval") == {10: 0.58}
    assert set(result.frame["metric"]) == {"loss", "accuracy", "margins"}


def test_key_value_lines_are_ignored_when_the_log_has_metric_dicts(tmp_path: Path) -> None:
    text = "step 1 loss: 0.9, acc: 0.1\n{'loss': 0.69, 'epoch': 0.5}\nstep 2 loss: 0.8, acc: 0.2\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.69}
    assert set(result.frame["metric"]) == {"loss", "epoch"}


def test_key_value_streaming_in_tiny_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _minimind(epochs=2, per_epoch=40, every=5) + "Killed\n"
    big = _read(tmp_path, text)
    monkeypatch.setattr(stdout_scan, "CHUNK", 53)
    small = _read(tmp_path, text)
    assert small.frame.equals(big.frame)
    assert (small.ended, small.notes) == (big.ended, big.notes)


# ---------------------------------------------------------------- several runs appended to one file


def _hf_run(total: int, every: int, final_loss: float) -> str:
    """A transformers-like console run (bars, dicts with epochs, the end-of-training summary)."""
    dicts = {
        step: f"{{'loss': {0.7 - (0.7 - final_loss) * step / total:.4f}, 'epoch': {step / total:.2f}}}"
        for step in range(every, total + 1, every)
    }
    return (
        _train_loop(total, every, dicts)
        + "\r"
        + " " * 40
        + f"\r{{'train_runtime': 10.0, 'train_loss': {final_loss}, 'epoch': 1.0}}\n\r"
        + _bar(total, total)
        + "\n"
    )


def test_two_console_runs_in_one_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "Loading...\n" + _hf_run(20, 5, 0.5) + "Loading again...\n" + _hf_run(40, 10, 0.3))
    runs = READER.read_runs([path])
    assert [r.label for r in runs] == ["run1", "run2"]
    assert sorted(_series(runs[0], "loss")) == [5, 10, 15, 20]
    assert sorted(_series(runs[1], "loss")) == [10, 20, 30, 40]
    assert [r.ended for r in runs] == [Ended.FINISHED, Ended.FINISHED]
    assert [r.summary["train_loss"] for r in runs] == [0.5, 0.3]
    assert all("tqdm progress bar" in " ".join(r.notes) for r in runs)
    assert "end-of-training summary" in " ".join(runs[1].notes)

    first = READER.read([path])
    assert _series(first, "loss") == _series(runs[0], "loss")
    assert any("holds 2 runs" in n for n in first.notes)

    [one] = READER.read_runs([_write(tmp_path, _hf_run(20, 5, 0.5), "single.log")])
    assert one.label is None


def test_a_crashed_run_then_a_restart(tmp_path: Path) -> None:
    crashed = _hf_run(40, 10, 0.3).split("{'loss': 0.4000")[0] + "\nTraceback (most recent call last):\n  ...\n"
    runs = READER.read_runs([_write(tmp_path, crashed + _hf_run(40, 10, 0.3))])
    assert [r.ended for r in runs] == [Ended.CRASHED, Ended.FINISHED]
    assert sorted(_series(runs[0], "loss")) == [10, 20]
    assert any("the epoch goes back from 0.5 to 0.25" in n for n in runs[1].notes)


def test_an_evaluation_after_the_summary_is_not_a_new_run(tmp_path: Path) -> None:
    text = _hf_run(20, 5, 0.5) + "{'eval_loss': 0.55, 'eval_runtime': 0.1, 'epoch': 1.0}\n"
    [result] = READER.read_runs([_write(tmp_path, text)])
    assert _series(result, "loss", "eval") == {20: 0.55}


def test_two_key_value_runs_and_discovery_names(tmp_path: Path) -> None:
    run_dir = tmp_path / "minimind"
    run_dir.mkdir()
    text = _minimind(1, 40, 10) + "Model Params: 12.5M\n" + _minimind(1, 40, 10, stop=20)
    _write(run_dir, text, "dpo.log")
    runs = READER.read_runs([run_dir / "dpo.log"])
    assert [sorted(_series(r, "loss")) for r in runs] == [[10, 20, 30, 40], [10, 20]]
    assert [r.ended for r in runs] == [Ended.FINISHED, Ended.UNKNOWN]
    assert [r.name for r in load(run_dir)] == ["minimind#run1", "minimind#run2"]


def test_two_step_tables(tmp_path: Path) -> None:
    runs = READER.read_runs([_write(tmp_path, SEED_TABLE + "\nrestarting\n" + SEED_TABLE.replace("0.65", "0.6"))])
    assert len(runs) == 2
    assert _series(runs[1], "loss")[30] == 0.6


def test_a_config_dict_of_aliases_is_not_a_metric_line(tmp_path: Path) -> None:
    # DeepSpeed prints its optimizer config as a dict; `lr` is an alias (OpenRLHF, NeMo), but only bookkeeping.
    text = "optimizer_params ... {'lr': 1e-05, 'weight_decay': 0.0}\n{'loss': 0.7}\n{'acc': 0.6, 'loss': 0.65}\n"
    result = _read(tmp_path, text)
    assert _series(result, "loss") == {1: 0.7, 2: 0.65}
    assert _series(result, "accuracy") == {2: 0.6}
    assert "learning_rate" not in set(result.frame["metric"])
