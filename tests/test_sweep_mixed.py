"""A sweep folder that mixes every format: each run is reported once, from its richest source, named by its path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dpodoctor import api
from tests.conftest import FIXTURES, TRL


def _jsonl_from_trainer_state(src: Path, dst: Path) -> None:
    """A user's own JSONL log (`step` plus metric keys), written from a real run's log_history."""
    history = json.loads(src.read_text())["log_history"]
    lines = [json.dumps({k: v for k, v in e.items() if k != "epoch"}) for e in history if "loss" in e]
    dst.write_text("\n".join(lines) + "\n")


def _csv_from_trainer_state(src: Path, dst: Path) -> None:
    """A pandas.to_csv-style wide CSV (step plus metric columns) from a real run's log_history."""
    history = [e for e in json.loads(src.read_text())["log_history"] if "loss" in e]
    keys = ["loss", "rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies"]
    rows = ["step," + ",".join(keys)] + [f"{e['step']}," + ",".join(str(e[k]) for k in keys) for e in history]
    dst.write_text("\n".join(rows) + "\n")


def test_mixed_sweep_reports_each_run_once(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # a full TRL output folder (TensorBoard + SwanLab + train.log + trainer_state.json): one run, read from TB
    shutil.copytree(TRL / "healthy", sweep / "tb-and-all", symlinks=True)
    # the same kind of run with only its SwanLab folder
    shutil.copytree(TRL / "overfit" / "swanlog", sweep / "swanlab-only" / "swanlog")
    # only a trainer_state.json, in a checkpoint folder and at the top (one run: the latest is read)
    (sweep / "state-only" / "checkpoint-200").mkdir(parents=True)
    shutil.copy(TRL / "lr_too_low" / "trainer_state.json", sweep / "state-only" / "trainer_state.json")
    shutil.copy(TRL / "lr_too_low" / "trainer_state.json", sweep / "state-only" / "checkpoint-200")
    # only stdout
    (sweep / "stdout-only").mkdir()
    shutil.copy(TRL / "random_labels" / "train.log", sweep / "stdout-only" / "train.log")
    # a user's JSONL and CSV logs
    (sweep / "jsonl-run").mkdir()
    _jsonl_from_trainer_state(TRL / "beta_1.0" / "trainer_state.json", sweep / "jsonl-run" / "metrics.jsonl")
    (sweep / "csv-run").mkdir()
    _csv_from_trainer_state(TRL / "lr_too_high" / "trainer_state.json", sweep / "csv-run" / "scalars.csv")
    # a SwanLab cloud export
    (sweep / "export").mkdir()
    shutil.copy(FIXTURES / "swanlab" / "handmade-export" / "api-run-metrics_all-true.json", sweep / "export")

    report = api.check([sweep], use_config=False)
    by_name = {r.run.name: r for r in report.runs}
    assert len(report.runs) == len(by_name), "a run was reported twice"
    sources = {name: r.run.source for name, r in by_name.items()}
    assert sources["tb-and-all"] == "tensorboard"
    assert sources["swanlab-only"] == "swanlab"
    assert sources["state-only"] == "trainer_state"
    assert sources["stdout-only"] == "stdout"
    assert sources["jsonl-run"] == "jsonl"
    assert sources["csv-run"] == "csv"
    assert any(name.startswith("export") for name in sources), sources
    # the richest source is read, the others are named
    others = {p.name for p in by_name["tb-and-all"].run.other_sources}
    assert {"train.log", "trainer_state.json"} <= others
    # verdicts follow the data, whatever the format
    codes = {name: {f.code for f in r.findings} for name, r in by_name.items()}
    assert "DPO101" in codes["state-only"] and "DPO101" in codes["stdout-only"]
    assert "DPO103" in codes["swanlab-only"]
    assert not {f.severity.value for f in by_name["tb-and-all"].findings} & {"error", "warning"}
