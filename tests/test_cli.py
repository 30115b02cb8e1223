"""The whole pipeline through the real CLI, on the real TRL fixture runs, read from TensorBoard and from stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from tests.conftest import TRL, TRL_RUNS

runner = CliRunner()

HEALTHY = ["healthy", "beta_1.0", "beta_0.01"]


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", *args, "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def sources(run: str) -> list[tuple[str, Path]]:
    """The same run from its TensorBoard events (the run folder, where TB is the richest source) and its stdout."""
    return [("tensorboard", TRL / run), ("stdout", TRL / run / "train.log")]


@pytest.mark.parametrize("run", TRL_RUNS)
@pytest.mark.parametrize("kind", ["tensorboard", "stdout"])
def test_fixture_verdicts(run: str, kind: str) -> None:
    path = dict(sources(run))[kind]
    code, doc = run_json(str(path))
    [r] = doc["runs"]
    assert r["source"] == kind
    assert r["steps"] == (360 if run == "overfit" else 400)
    codes = {f["code"] for f in r["findings"]}
    severities = {f["severity"] for f in r["findings"]}
    if run in HEALTHY:
        assert code == 0 and not severities & {"error", "warning"}, r["findings"]
    elif run == "lr_too_low":
        assert "DPO101" in codes and code == 1
    elif run == "random_labels":
        assert codes & {"DPO101", "DPO301"} and code == 1
    elif run == "overfit":
        assert "DPO103" in codes
    elif run == "lr_too_high":
        assert severities & {"error", "warning"}
    elif run.startswith("both_rise"):
        assert "DPO403" in codes
    else:  # pragma: no cover - a new fixture needs its expectation here
        pytest.fail(f"no expectation for fixture {run}")
    assert doc["summary"]["exit_code"] == code


@pytest.mark.parametrize("run", TRL_RUNS)
def test_same_codes_from_tensorboard_and_stdout(run: str) -> None:
    found = {}
    for kind, path in sources(run):
        _, doc = run_json(str(path))
        found[kind] = sorted(f["code"] for f in doc["runs"][0]["findings"])
    assert found["tensorboard"] == found["stdout"]


def test_beta_is_read_from_the_run_config() -> None:
    _, doc = run_json(str(TRL / "beta_0.01"))
    assert doc["runs"][0]["beta"] == pytest.approx(0.01)


def test_sweep_folder_one_run_per_output_dir_and_exit_1() -> None:
    code, doc = run_json(str(TRL))
    assert sorted(r["name"] for r in doc["runs"]) == TRL_RUNS
    assert {r["source"] for r in doc["runs"]} == {"tensorboard"}
    assert code == 1
    assert doc["summary"]["runs"] == len(TRL_RUNS)
    assert doc["summary"]["errors"] == sum(f["severity"] == "error" for r in doc["runs"] for f in r["findings"])


def test_json_document_shape() -> None:
    _, doc = run_json(str(TRL / "lr_too_low"))
    assert doc["version"] == 1
    assert set(doc["summary"]) >= {"runs", "errors", "warnings", "infos", "exit_code"}
    run = doc["runs"][0]
    assert set(run) >= {"name", "path", "source", "steps", "beta", "ended", "findings"}
    assert run["ended"] == "finished"
    finding = run["findings"][0]
    assert set(finding) >= {
        "code",
        "name",
        "severity",
        "split",
        "metric",
        "first_step",
        "last_step",
        "message",
        "evidence",
    }
    assert finding["first_step"] <= finding["last_step"]
    # schema 1.1 (additive): the per-metric table the text report prints, with the curve summaries it reads
    assert doc["schema_version"] == "1.1" and run["beta"] == 0.1 and run["beta_source"] == "log"
    loss = next(row for row in run["table"] if row["label"] == "loss")
    assert (loss["verdict"], loss["mark"], loss["codes"][0]) == ("error", "✗", "DPO101")
    assert loss["curve"]["end"]["points"] == 8 and loss["curve"]["first"]["step"] == 5
    assert {"eval/loss", "eval/rewards/margins"} <= {row["label"] for row in run["table"]}
    assert ("train", "grad_norm") in {(c["split"], c["metric"]) for c in run["curves"]}


@pytest.mark.parametrize(("fail_on", "expected"), [("error", 0), ("warning", 1), ("info", 1), ("never", 0)])
def test_fail_on_thresholds(fail_on: str, expected: int) -> None:
    """lr_too_high has a warning, an info and no error."""
    code, doc = run_json(str(TRL / "lr_too_high"), "--fail-on", fail_on)
    assert {f["severity"] for f in doc["runs"][0]["findings"]} == {"warning", "info"}
    assert code == expected


def test_exit_2_for_missing_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope: no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_exit_2_for_folder_without_runs(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("nothing here")
    result = runner.invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 2
    assert "no training run found" in result.output


def test_exit_2_for_unreadable_event_file(tmp_path: Path) -> None:
    bad = tmp_path / "events.out.tfevents.123.host"
    bad.write_bytes(b"\x07" * 300)
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and len(result.output.strip().splitlines()) == 1


def test_exit_2_for_unknown_format(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * 10)
    result = runner.invoke(app, ["check", str(f)])
    assert result.exit_code == 2 and "weights.bin" in result.output


def test_bad_usage_is_exit_2() -> None:
    assert runner.invoke(app, ["check", "--fail-on", "sometimes"]).exit_code == 2
    assert runner.invoke(app, ["check", str(TRL / "healthy"), "--beta", "-1"]).exit_code == 2


def test_no_path_checks_current_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRL / "overfit")
    code, doc = run_json()
    assert [r["name"] for r in doc["runs"]] == ["overfit"]
    assert "DPO103" in {f["code"] for f in doc["runs"][0]["findings"]}
    assert code == 0  # DPO103 is a warning; the default gate is error


def test_output_file_and_summary_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["check", str(TRL / "lr_too_low"), "-f", "json", "-o", str(out)])
    assert result.exit_code == 1
    assert json.loads(out.read_text())["runs"][0]["findings"][0]["code"] == "DPO101"
    assert result.stdout == ""
    assert "1 run(s) checked" in result.stderr


def test_cli_and_api_agree() -> None:
    report = api.check([TRL / "random_labels"])
    _, doc = run_json(str(TRL / "random_labels"))
    assert [f.code for f in report.runs[0].findings] == [f["code"] for f in doc["runs"][0]["findings"]]
    assert report.exit_code == doc["summary"]["exit_code"]


def test_text_report_through_cli() -> None:
    result = runner.invoke(app, ["check", str(TRL / "lr_too_low")])
    assert result.exit_code == 1
    out = result.stdout
    assert "DPO101 loss-stuck-ln2" in out and "rewards/margins" in out and "exit 1" in out


def test_every_command_has_help() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"command {name} has no help text"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_rules_and_explain_commands() -> None:
    listing = runner.invoke(app, ["rules"]).stdout
    assert "DPO101" in listing and "loss-stuck-ln2" in listing
    page = runner.invoke(app, ["explain", "dpo101"])
    assert page.exit_code == 0
    for heading in ("What it detects", "Why it matters", "Likely causes", "What to try", "Example"):
        assert heading in page.stdout
    assert runner.invoke(app, ["explain", "DPO999"]).exit_code == 2


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dpodoctor", "check", str(TRL / "healthy"), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"][0]["findings"] == []


def test_one_unreadable_run_in_a_sweep_still_reports_the_others(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(TRL / "healthy" / "runs", tmp_path / "good" / "runs")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "events.out.tfevents.1.host").write_bytes(b"\x07" * 300)
    result = runner.invoke(app, ["check", str(tmp_path), "-f", "json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [r["name"] for r in doc["runs"]] == ["good"]
    assert len(doc["problems"]) == 1 and "bad/events.out.tfevents.1.host" in doc["problems"][0]
    assert "dpodoctor: error:" in result.stderr
