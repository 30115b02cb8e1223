"""Tests for the line and table readers: generic JSON lines, LLaMA-Factory's trainer_log.jsonl, and CSV (wide, as
pandas writes it, and long, as tbparse writes it).

Why hand-made files: each one follows a documented layout with our own numbers, small enough to see at a glance
which rule a failure breaks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpodoctor.readers.jsonl
from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.model import COLUMNS, Ended
from dpodoctor.readers import ReadResult, get_reader, read_runs, reader_for
from dpodoctor.readers.csvlog import CsvReader  # importing a reader module registers the reader
from dpodoctor.readers.jsonl import JsonlReader
from dpodoctor.readers.llamafactory import LlamaFactoryReader

JSONL = JsonlReader()
LF = LlamaFactoryReader()
CSV = CsvReader()


def _series(result: ReadResult, metric: str, split: str = "train") -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == split) & (f["metric"] == metric)]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _lines(*objects: dict[str, Any]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_priorities() -> None:
    assert get_reader("jsonl").priority == get_reader("csv").priority == 20
    assert get_reader("trainer_state").priority > get_reader("llamafactory").priority > 20
    assert get_reader("stdout").priority < 20


# ---------------------------------------------------------------- generic JSON lines


def test_jsonl_sniff(tmp_path: Path) -> None:
    good = {"step": 1, "loss": 0.69}
    assert JSONL.sniff(_write(tmp_path, "a.jsonl", "\n" + _lines(good)))
    assert JSONL.sniff(_write(tmp_path, "a.json", _lines(good)))
    assert JSONL.sniff(_write(tmp_path, "a.ndjson", _lines({"global_step": 3, "train/rewards/margins": 0.1})))
    assert not JSONL.sniff(_write(tmp_path, "b.jsonl", _lines({"loss": 0.69})))  # no step
    assert not JSONL.sniff(_write(tmp_path, "c.jsonl", _lines({"step": 1, "learning_rate": 1e-6})))  # only lr
    assert not JSONL.sniff(_write(tmp_path, "d.json", json.dumps(good, indent=2)))  # pretty JSON is no JSONL
    assert not JSONL.sniff(_write(tmp_path, "e.txt", _lines(good)))
    assert not JSONL.sniff(_write(tmp_path, "f.jsonl", "not json\n"))


def test_jsonl_values_splits_and_nesting(tmp_path: Path) -> None:
    text = _lines(
        {"step": 10, "loss": 0.69, "rewards/margins": "0.01", "note": "warmup", "ok": True, "lr": 1e-6},
        {"step": 20, "train": {"loss": 0.6, "rewards": {"chosen": 0.05}}, "grad_norm": "nan"},
        {"step": 20, "eval_loss": 0.65, "eval_rewards/accuracies": 0.7},
    )
    result = JSONL.read([_write(tmp_path, "m.jsonl", text)])
    assert _series(result, "loss") == {10: 0.69, 20: 0.6}
    assert _series(result, "margins") == {10: 0.01}
    assert _series(result, "chosen") == {20: 0.05}
    assert _series(result, "learning_rate") == {10: 1e-6}
    assert math.isnan(_series(result, "grad_norm")[20])
    assert _series(result, "loss", "eval") == {20: 0.65}
    assert _series(result, "accuracy", "eval") == {20: 0.7}
    assert set(result.frame["metric"]) == {"loss", "margins", "chosen", "learning_rate", "grad_norm", "accuracy"}
    assert result.ended is Ended.UNKNOWN and not result.steps_derived


def test_jsonl_wandb_history_takes_the_trainer_step_and_wall_time(tmp_path: Path) -> None:
    text = _lines(
        {"_step": 0, "_runtime": 5.1, "_timestamp": 1700000000.5, "train/global_step": 5, "train/loss": 0.69},
        {"_step": 1, "_runtime": 9.9, "_timestamp": 1700000004.0, "train/global_step": 10, "train/loss": 0.6},
    )
    path = _write(tmp_path, "wandb-history.jsonl", text)
    assert JSONL.sniff(path)
    result = JSONL.read([path])
    # `_step` is wandb's own counter of log calls: the trainer's global step wins, and `_runtime` is not a metric
    assert _series(result, "loss") == {5: 0.69, 10: 0.6}
    assert set(result.frame["metric"]) == {"loss"}
    assert result.frame["wall_time"].tolist() == [1700000000.5, 1700000004.0]


def test_jsonl_summary_torn_last_line_and_garbage(tmp_path: Path) -> None:
    good = _lines({"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6})
    result = JSONL.read([_write(tmp_path, "a.jsonl", good + "garbage\n" + '{"step": 3, "loss": 0.5')])
    assert _series(result, "loss") == {1: 0.7, 2: 0.6}
    assert result.ended is Ended.TRUNCATED
    assert any("cut short" in n for n in result.notes)
    assert any("1 line(s) that are not JSON objects" in n for n in result.notes)

    finished = JSONL.read([_write(tmp_path, "b.jsonl", good + _lines({"step": 2, "train_runtime": 3.5}))])
    assert finished.ended is Ended.FINISHED and finished.summary == {"train_runtime": 3.5}


def test_jsonl_step_going_back_is_noted(tmp_path: Path) -> None:
    rows = [(1, 0.7), (2, 0.6), (2, 0.65), (1, 0.8)]
    text = _lines(*({"step": step, "loss": loss} for step, loss in rows))
    result = JSONL.read([_write(tmp_path, "a.jsonl", text)])
    assert _series(result, "loss") == {1: 0.8, 2: 0.65}
    assert any("the step goes back at line 4" in n for n in result.notes)


def test_jsonl_without_metrics_is_no_metrics(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.jsonl", _lines({"step": 1, "note": "x"}))
    with pytest.raises(NoMetricsError) as info:
        JSONL.read([path])
    assert info.value.path == path


# ---------------------------------------------------------------- LLaMA-Factory trainer_log.jsonl


def _lf(step: int, total: int = 6, **values: Any) -> dict[str, Any]:
    return {
        "current_steps": step,
        "total_steps": total,
        **values,
        "percentage": round(step / total * 100, 2),
        "elapsed_time": "0:00:10",
        "remaining_time": "1 day, 0:00:01",
    }


LF_RUN = [
    _lf(2, loss=0.6931, accuracy=0.0, lr=1e-6, epoch=0.33),
    _lf(4, loss=0.61, accuracy=0.75, lr=2e-6, epoch=0.67),
    _lf(4, eval_loss=0.64, epoch=0.67),
    _lf(6, loss=0.52, accuracy=0.9, lr=1e-6, epoch=1.0, reward=1.5),
    _lf(6, epoch=1.0),  # the line LogCallback writes for the train_runtime entry
]


def test_llamafactory_sniff_and_priority_over_generic_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path, "trainer_log.jsonl", _lines(*LF_RUN))
    assert LF.sniff(path)
    assert reader_for(path) is not None and reader_for(path).name == "llamafactory"  # type: ignore[union-attr]
    assert not LF.sniff(_write(tmp_path, "other.jsonl", _lines({"step": 1, "loss": 0.7})))


def test_llamafactory_columns(tmp_path: Path) -> None:
    result = LF.read([_write(tmp_path, "trainer_log.jsonl", _lines(*LF_RUN))])
    assert _series(result, "loss") == {2: 0.6931, 4: 0.61, 6: 0.52}
    assert _series(result, "accuracy") == {2: 0.0, 4: 0.75, 6: 0.9}
    assert _series(result, "learning_rate") == {2: 1e-6, 4: 2e-6, 6: 1e-6}
    assert _series(result, "loss", "eval") == {4: 0.64}
    assert _series(result, "reward") == {6: 1.5}  # PPO's reward-model score: its own name, not "chosen"
    assert set(result.frame["metric"]) == {"loss", "accuracy", "learning_rate", "epoch", "reward"}
    assert result.ended is Ended.FINISHED
    assert result.config["max_steps"] == 6


def test_llamafactory_partial_and_torn(tmp_path: Path) -> None:
    partial = LF.read([_write(tmp_path, "trainer_log.jsonl", _lines(*LF_RUN[:2]))])
    assert partial.ended is Ended.TRUNCATED  # the log stops short of total_steps
    assert any("stopped at 4 of 6 steps" in n for n in partial.notes)

    torn = LF.read([_write(tmp_path, "trainer_log.jsonl", _lines(*LF_RUN[:2]) + '{"current_steps": 6, "tot')])
    assert torn.ended is Ended.TRUNCATED
    assert any("cut short" in n for n in torn.notes)
    assert _series(torn, "loss") == {2: 0.6931, 4: 0.61}


def test_llamafactory_resume_keeps_the_later_values(tmp_path: Path) -> None:
    text = _lines(*LF_RUN[:2], _lf(2, loss=0.7, accuracy=0.5, lr=1e-6, epoch=0.33), *LF_RUN[3:])
    result = LF.read([_write(tmp_path, "trainer_log.jsonl", text)])
    assert _series(result, "loss") == {2: 0.7, 4: 0.61, 6: 0.52}
    assert any("goes back" in n for n in result.notes)


def test_llamafactory_beta_from_a_json_config_beside_it(tmp_path: Path) -> None:
    _write(tmp_path, "training_args.json", json.dumps({"pref_beta": 0.25, "stage": "dpo"}))
    result = LF.read([_write(tmp_path, "trainer_log.jsonl", _lines(*LF_RUN))])
    assert result.beta == 0.25 and result.config["stage"] == "dpo"


# ---------------------------------------------------------------- CSV


def test_csv_sniff(tmp_path: Path) -> None:
    assert CSV.sniff(_write(tmp_path, "a.csv", "step,train/loss\n1,0.7\n"))
    assert CSV.sniff(_write(tmp_path, "b.csv", "Step,rewards/margins\n1,0.1\n"))
    assert CSV.sniff(_write(tmp_path, "c.csv", "global_step,loss\n1,0.7\n"))
    assert CSV.sniff(_write(tmp_path, "d.csv", "wall_time,step,tag,value\n"))
    assert CSV.sniff(_write(tmp_path, "e.tsv", "step\tloss\n1\t0.7\n"))
    assert not CSV.sniff(_write(tmp_path, "f.csv", "loss,margin\n0.7,0.1\n"))  # no step column
    assert not CSV.sniff(_write(tmp_path, "g.csv", "step,learning_rate,epoch\n1,1e-6,0.1\n"))
    assert not CSV.sniff(_write(tmp_path, "h.txt", "step,loss\n1,0.7\n"))
    assert not CSV.sniff(_write(tmp_path, "i.csv", b"\xff\xfe\x00\x01"))


def test_csv_wide_as_pandas_writes_it(tmp_path: Path) -> None:
    # pandas.to_csv: the index as a nameless first column, NaN as an empty cell.
    text = (
        ",step,train/loss,train/rewards/margins,eval/loss,train/grad_norm\n"
        "0,10,0.69,0.01,,nan\n"
        "1,20,0.6,0.1,0.65,n/a\n"
        '2,30,"0.55",0.2,,1.5\n'
        "3,,0.5,0.3,,\n"
    )
    result = CSV.read([_write(tmp_path, "scalars.csv", text)])
    assert _series(result, "loss") == {10: 0.69, 20: 0.6, 30: 0.55}
    assert _series(result, "margins") == {10: 0.01, 20: 0.1, 30: 0.2}
    assert _series(result, "loss", "eval") == {20: 0.65}  # empty cells are missing, not NaN
    grad = _series(result, "grad_norm")
    assert math.isnan(grad[10]) and grad[30] == 1.5 and 20 not in grad
    assert any("1 cell(s) that are not numbers" in n for n in result.notes)
    assert any("1 row(s) without a valid step" in n for n in result.notes)
    assert result.ended is Ended.UNKNOWN


def test_csv_long_as_tbparse_writes_it(tmp_path: Path) -> None:
    text = (
        "step,tag,value,wall_time\n"
        "5,train/loss,0.69,100.5\n"
        "5,train/rewards/margins,0.01,100.5\n"
        "10,train/loss,0.6,110.0\n"
        "10,eval/rewards/accuracies,0.7,111.0\n"
        "10,train/train_runtime,20.0,112.0\n"
    )
    result = CSV.read([_write(tmp_path, "tb.csv", text)])
    assert _series(result, "loss") == {5: 0.69, 10: 0.6}
    assert _series(result, "accuracy", "eval") == {10: 0.7}
    assert result.summary == {"train_runtime": 20.0}
    assert result.ended is Ended.FINISHED
    f = result.frame
    assert f[(f["metric"] == "loss")]["wall_time"].tolist() == [100.5, 110.0]


def test_csv_long_with_several_runs(tmp_path: Path) -> None:
    text = "dir_name,step,tag,value\nrun_a,1,loss,0.7\nrun_b,1,loss,0.5\nrun_a,2,loss,0.6\n"
    path = _write(tmp_path, "all.csv", text)
    runs = read_runs(CSV, [path])
    assert [r.label for r in runs] == ["run_a", "run_b"]
    assert [_series(r, "loss") for r in runs] == [{1: 0.7, 2: 0.6}, {1: 0.5}]
    first = CSV.read([path])
    assert _series(first, "loss") == {1: 0.7, 2: 0.6}
    assert any("holds 2 runs" in n for n in first.notes)


def test_csv_without_numbers_is_no_metrics(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "step,loss\n1,x\n2,\n")
    with pytest.raises(NoMetricsError) as info:
        CSV.read([path])
    assert info.value.path == path
    with pytest.raises(NoMetricsError):
        CSV.read([_write(tmp_path, "b.csv", "loss\n0.5\n")])


def test_csv_huge_field_stops_with_a_note(tmp_path: Path) -> None:
    text = 'step,loss\n1,0.7\n2,"' + "x" * 200_000 + '"\n3,0.5\n'
    result = CSV.read([_write(tmp_path, "a.csv", text)])
    assert _series(result, "loss") == {1: 0.7}
    assert any("stopped reading at line" in n for n in result.notes)


# ---------------------------------------------------------------- robustness

_BITS = st.sampled_from(
    ["step", ",", "\n", "loss", "tag", "value", "0.5", "nan", '"', "{", "}", ":", '"step": 1', '"loss": ', "[", "-1"]
)


@pytest.mark.parametrize(
    ("reader", "name"), [(JSONL, "a.jsonl"), (LF, "trainer_log.jsonl"), (CSV, "a.csv"), (CSV, "a.tsv")]
)
@given(data=st.one_of(st.binary(max_size=300), st.lists(st.one_of(_BITS, st.text(max_size=5)), max_size=40)))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_arbitrary_content_raises_nothing_but_read_error(
    tmp_path: Path, reader: Any, name: str, data: bytes | list[str]
) -> None:
    raw = data if isinstance(data, bytes) else "".join(data).encode("utf-8", errors="surrogatepass")
    path = _write(tmp_path, name, raw)
    reader.sniff(path)
    try:
        results = read_runs(reader, [path])
    except ReadError:
        return
    for result in results:
        assert list(result.frame.columns) == list(COLUMNS)
        assert result.frame["step"].between(0, 2**53).all()


def test_jsonl_module_exports() -> None:
    assert dpodoctor.readers.jsonl.step_number("12") == 12
    assert dpodoctor.readers.jsonl.step_number(1e300) is None
    assert dpodoctor.readers.jsonl.cell_number(True) is None
    assert dpodoctor.readers.jsonl.cell_number("1_000") is None
