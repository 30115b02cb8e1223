"""The CI-gate output formats: every format from the same findings, the same exit code, and escaping of log text.

Why these tests: a gate is only as good as its weakest format. A JSON document that drifts from its schema breaks
consumers, a JUnit file that does not parse or shows no failure lets a broken run through, and a run name from a
log must not be able to forge a GitHub workflow command, inject HTML into a PR comment or break the XML.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.checks import RULES, diagnose_run
from dpodoctor.cli import app
from dpodoctor.compare import Comparison
from dpodoctor.curve import fmt
from dpodoctor.model import Ended, Run, make_frame
from dpodoctor.report import Report
from dpodoctor.reporters import FORMATS, load_schema, render, render_text
from dpodoctor.reporters.common import DIRECTION, VERDICT_MARK, clean, fmt_number, metric_rows
from dpodoctor.reporters.github import MAX_PER_SEVERITY, escape_data, escape_property
from dpodoctor.reporters.html import esc, render_html
from dpodoctor.reporters.markdown import md
from dpodoctor.results import Corroboration, Finding, RunReport, Severity
from dpodoctor.table import material_move
from tests.conftest import TRL, TRL_RUNS
from tests.synthetic import curves, make_run

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
MACHINE = [f for f in FORMATS if f != "text"]
GITHUB_LINE = re.compile(r"^::(error|warning|notice)( [^:]*)?::.*$")
ANSI_OR_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Everything a hostile log can put into a name: command separators, line breaks, HTML, colour and an OSC 8 link.
HOSTILE = "run::a,b%\nnext\r<script>&amp;|x|\x1b[31mred\x1b[0m\x1b]8;;http://x\x07link\x1b]8;;\x07"


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run in GitHub Actions too: never append to the real step summary of the job running them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def sweep() -> Report:
    return api.check([TRL], fail_on="info")


def schema_validator(ref: str | None = None) -> Draft202012Validator:
    schema = load_schema()
    if ref is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"}
    return Draft202012Validator(schema)


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def one(report: Report, rr: RunReport) -> Report:
    return Report(runs=[rr], fail_on=report.fail_on)


# ---------------------------------------------------------------------------------------------------------------
# Exit codes: the same whatever the format
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_exits_1_on_errors_and_0_with_exit_zero(fmt: str) -> None:
    code, out, _ = cli(str(TRL / "lr_too_low"), "--format", fmt)
    assert code == 1 and "DPO101" in out
    code, out, err = cli(str(TRL / "lr_too_low"), "--format", fmt, "--exit-zero")
    assert code == 0 and "DPO101" in out, "--exit-zero still reports"
    assert "--exit-zero" in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_exits_0_on_a_healthy_run(fmt: str) -> None:
    assert cli(str(TRL / "healthy"), "--format", fmt)[0] == 0


def test_exit_zero_keeps_exit_2_for_unusable_input() -> None:
    code, _, err = cli(str(TRL / "lr_too_low"), "--exit-zero", "--require-metrics", "nll_loss")
    assert code == 2 and "nll_loss" in err


@pytest.mark.parametrize("fmt", MACHINE)
def test_output_file_keeps_the_summary_on_stderr(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"report.{fmt}"
    code, stdout, stderr = cli(str(TRL / "lr_too_low"), "-f", fmt, "-o", str(out))
    assert code == 1 and stdout == ""
    assert "1 run(s) checked" in stderr
    assert out.read_text(encoding="utf-8") == render(api.check([TRL / "lr_too_low"]), fmt)


# ---------------------------------------------------------------------------------------------------------------
# --require-metrics: a gate must not pass because nothing was read
# ---------------------------------------------------------------------------------------------------------------


def test_require_metrics_present_passes() -> None:
    code, _, err = cli(str(TRL / "healthy"), "--require-metrics", "loss, margins,accuracy,chosen,rejected,logps_chosen")
    assert code == 0 and "required" not in err


def test_require_metrics_missing_is_exit_2_naming_run_and_metric() -> None:
    code, out, err = cli(str(TRL / "healthy"), "-f", "json", "--require-metrics", "loss,nll_loss,bogus")
    assert code == 2
    assert "run healthy" in err and "nll_loss, bogus" in err
    assert "bogus: not a canonical metric name" in err and "nll_loss:" not in err
    doc = json.loads(out)  # the report is still written, and says why the gate failed
    schema_validator().validate(doc)
    assert doc["summary"]["exit_code"] == 2 and "nll_loss" in doc["problems"][0]


def test_require_metrics_accepts_an_eval_only_metric() -> None:
    """TRL logs `runtime` only at evaluation: the eval split counts as having the metric."""
    [run] = api.load(TRL / "healthy")
    assert run.has("runtime", "eval") and not run.has("runtime", "train")
    assert cli(str(TRL / "healthy"), "--require-metrics", "runtime")[0] == 0


# ---------------------------------------------------------------------------------------------------------------
# JSON and JSON Lines: the documented schema
# ---------------------------------------------------------------------------------------------------------------


def test_schema_is_valid_and_shipped_as_package_data() -> None:
    Draft202012Validator.check_schema(load_schema())
    assert 'dpodoctor = ["schema/*.json"]' in (ROOT / "pyproject.toml").read_text()
    assert load_schema()["properties"]["version"] == {"const": 1}


def test_json_of_every_fixture_validates(sweep: Report) -> None:
    doc = json.loads(render(sweep, "json"))
    schema_validator().validate(doc)
    assert len(doc["runs"]) == len(TRL_RUNS)


def test_schema_rejects_a_broken_document(sweep: Report) -> None:
    doc = json.loads(render(sweep, "json"))
    del doc["runs"][0]["findings"]
    assert not schema_validator().is_valid(doc)


def test_jsonl_one_self_contained_finding_per_line(sweep: Report) -> None:
    lines = render(sweep, "jsonl").splitlines()
    doc = json.loads(render(sweep, "json"))
    expected = [(r["name"], r["path"], r["source"], f) for r in doc["runs"] for f in r["findings"]]
    assert len(lines) == len(expected) > 0
    validator = schema_validator("jsonl_line")
    for line, (name, path, source, finding) in zip(lines, expected, strict=True):
        record = json.loads(line)
        validator.validate(record)
        assert (record["run"], record["path"], record["source"]) == (name, path, source)
        assert {k: record[k] for k in finding} == finding


# ---------------------------------------------------------------------------------------------------------------
# Every format from the same findings
# ---------------------------------------------------------------------------------------------------------------


def codes_by_format(report: Report) -> dict[str, list[str]]:
    """The finding codes each format shows, for a report gated at info (every finding a failure in JUnit)."""
    out = {
        "json": [f["code"] for r in json.loads(render(report, "json"))["runs"] for f in r["findings"]],
        "jsonl": [json.loads(line)["code"] for line in render(report, "jsonl").splitlines()],
        "github": re.findall(r"title=(DPO\d{3})", render(report, "github")),
        "markdown": re.findall(r"^\*\*[✗⚠ℹ] (DPO\d{3}) ", render(report, "markdown"), flags=re.M),
        "text": re.findall(r"[✗⚠ℹ] (DPO\d{3}) \S+ \[", render_text(report)),
    }
    root = ET.fromstring(render(report, "junit"))
    out["junit"] = [c.get("name", "").split()[0] for c in root.iter("testcase") if c.find("failure") is not None]
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("run", TRL_RUNS)
def test_every_format_shows_the_same_findings(sweep: Report, run: str) -> None:
    [rr] = [r for r in sweep.runs if r.run.name == run]
    found = codes_by_format(one(sweep, rr))
    assert found["json"] == sorted(f.code for f in rr.findings)
    assert all(codes == found["json"] for codes in found.values()), found


# ---------------------------------------------------------------------------------------------------------------
# JUnit
# ---------------------------------------------------------------------------------------------------------------


def junit(*args: str) -> ET.Element:
    code, out, _ = cli(*args, "-f", "junit")
    assert code in (0, 1)
    return ET.fromstring(out)


def test_junit_lr_too_low_one_failure_per_error() -> None:
    root = junit(str(TRL / "lr_too_low"), "--fail-on", "error")
    [suite] = root.findall("testsuite")
    rr = api.check([TRL / "lr_too_low"]).runs[0]
    assert suite.get("name") == "lr_too_low"
    assert suite.get("failures") == "1" and root.get("failures") == "1"
    assert int(suite.get("tests", "")) == len(rr.checked) + len(rr.skipped) == len(suite.findall("testcase"))
    [failed] = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed.get("classname") == "lr_too_low" and failed.get("name") == "DPO101 loss-stuck-ln2"
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "error"
    assert "loss stays at" in (failure.get("message") or "") and "what to try:" in (failure.text or "")


def test_junit_below_fail_on_passes_with_system_out() -> None:
    root = junit(str(TRL / "lr_too_low"), "--fail-on", "never")
    assert root.get("failures") == "0"
    case = next(c for c in root.iter("testcase") if c.get("name") == "DPO101 loss-stuck-ln2")
    out = case.find("system-out")
    assert out is not None and (out.text or "").startswith("[error] loss stays at")


def test_junit_failure_counts_follow_fail_on() -> None:
    report = api.check([TRL / "lr_too_high"], fail_on="warning")
    root = ET.fromstring(render(report, "junit"))
    assert int(root.get("failures", "")) == report.count(Severity.WARNING) + report.count(Severity.ERROR) > 0
    infos = [f.code for f in report.runs[0].findings if f.severity is Severity.INFO]
    for code in infos:
        case = next(c for c in root.iter("testcase") if (c.get("name") or "").startswith(code))
        assert case.find("failure") is None and case.find("system-out") is not None


def test_junit_rules_lacking_data_are_skipped() -> None:
    data = curves(200)
    del data["accuracy"]
    report = Report(runs=[diagnose_run(make_run(data, name="no-accuracy"))])
    rr = report.runs[0]
    needs_accuracy = [code for code, missing in rr.skipped.items() if "accuracy" in missing]
    assert "DPO301" in needs_accuracy
    root = ET.fromstring(render(report, "junit"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("skipped") == str(len(rr.skipped)) == root.get("skipped")
    for code in needs_accuracy:
        case = next(c for c in suite.iter("testcase") if c.get("name") == f"{code} {RULES[code].name}")
        skipped = case.find("skipped")
        assert skipped is not None and "accuracy" in (skipped.get("message") or "")
    accuracy_only = [c for c in needs_accuracy if rr.skipped[c] == ["accuracy"]]
    case = next(c for c in suite.iter("testcase") if (c.get("name") or "").startswith(accuracy_only[0]))
    assert case.find("skipped").get("message") == "needs accuracy"  # type: ignore[union-attr]


def test_junit_root_totals_and_unreadable_inputs() -> None:
    report = api.check([TRL / "lr_too_low", TRL / "healthy"])
    report.problems.append("bad/events.out.tfevents.1: not a TensorBoard file")
    root = ET.fromstring(render(report, "junit"))
    suites = root.findall("testsuite")
    assert len(suites) == 3
    for key in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(key, "")) == sum(int(s.get(key, "")) for s in suites)
    assert root.get("errors") == "1" and root.get("failures") == "1"


# ---------------------------------------------------------------------------------------------------------------
# GitHub annotations and step summary
# ---------------------------------------------------------------------------------------------------------------


def test_github_annotations_follow_the_workflow_command_syntax(sweep: Report) -> None:
    for rr in sweep.runs:
        lines = render(one(sweep, rr), "github").splitlines()
        assert len(lines) == len(rr.findings)
        for line, f in zip(lines, rr.findings, strict=True):
            assert GITHUB_LINE.match(line), line
            kind = {"error": "error", "warning": "warning", "info": "notice"}[f.severity.value]
            assert line.startswith(f"::{kind} title={f.code} {f.name}::{rr.run.name}: ")
            assert "file=" not in line  # the run is a folder


def test_github_points_at_the_log_file() -> None:
    path = TRL / "lr_too_low" / "train.log"
    code, out, _ = cli(str(path), "-f", "github")
    assert code == 1
    assert out.startswith(f"::error title=DPO101 loss-stuck-ln2,file={escape_property(path)}::lr_too_low: ")


def finding(code: str, severity: Severity) -> Finding:
    return Finding(code, "synthetic", severity, "train", "loss", 1, 2, f"{code} message")


def test_github_at_most_10_per_severity_then_one_line() -> None:
    findings = (
        [finding(f"DPO{i:03d}", Severity.ERROR) for i in range(13)]
        + [finding(f"DPO{i:03d}", Severity.WARNING) for i in range(100, 112)]
        + [finding(f"DPO{i:03d}", Severity.INFO) for i in range(200, 203)]
    )
    report = Report(runs=[RunReport(run=make_run(curves(50)), findings=findings)])
    lines = render(report, "github").splitlines()
    *annotations, last = lines
    assert [line.split(" ", 1)[0] for line in annotations] == ["::error"] * MAX_PER_SEVERITY + [
        "::warning"
    ] * MAX_PER_SEVERITY + ["::notice"] * 3
    assert all(GITHUB_LINE.match(line) for line in annotations)
    assert "3 error, 2 warning annotation(s) omitted" in last and not last.startswith("::")


def test_github_appends_the_markdown_report_to_the_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = cli(str(TRL / "lr_too_low"), "-f", "github")
    assert code == 1 and out.startswith("::error ")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")
    assert render(api.check([TRL / "lr_too_low"]), "markdown") in text
    cli(str(TRL / "lr_too_low"), "-f", "json")  # only the github format writes the summary
    assert summary.read_text(encoding="utf-8") == text


def test_github_escaping_matches_actions_toolkit() -> None:
    assert escape_data("50%\r\ndone") == "50%25%0D%0Adone"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def test_markdown_seed_table_for_lr_too_low() -> None:
    code, out, _ = cli(str(TRL / "lr_too_low"), "-f", "markdown")
    assert code == 1
    assert "| metric | healthy behaviour | first → end | verdict |" in out
    verdicts = dict(re.findall(r"^\| (\S+) \| .* \| .* \| (\S) \|$", out, flags=re.M))
    assert verdicts == {
        "loss": "✗",
        "rewards/margins": "✗",
        "rewards/accuracies": "✗",
        "rewards/chosen": "✓",
        "rewards/rejected": "✓",
        # the eval split gets rows of its own: the run's eval curves did not move (lr 1e-9) and no rule fired
        "eval/loss": "✓",
        "eval/rewards/margins": "✓",
        "eval/rewards/accuracies": "✓",
        "eval/rewards/chosen": "✓",
        "eval/rewards/rejected": "✓",
    }
    assert "first: first logged value · end: median of the last 8 points (steps 365–400)" in out
    assert "**✗ DPO101 loss-stuck-ln2** (error)" in out


@pytest.mark.parametrize("run", ["lr_too_low", "lr_too_high", "healthy"])
def test_shared_rows_agree_with_the_text_report(sweep: Report, run: str) -> None:
    """reporters.common computes the rows the text report prints, so the two reports cannot disagree."""
    [rr] = [r for r in sweep.runs if r.run.name == run]
    text = render_text(one(sweep, rr), width=200).splitlines()
    for row in metric_rows(rr):
        assert any(line.startswith(row.mark) and f" {row.label} " in line and row.span in line for line in text), row


# ---------------------------------------------------------------------------------------------------------------
# The per-metric table: one end value everywhere, ✓ only beside a healthy direction, eval rows, in JSON too
# ---------------------------------------------------------------------------------------------------------------


def _run(sweep: Report, name: str) -> RunReport:
    [rr] = [r for r in sweep.runs if r.run.name == name]
    return rr


@pytest.mark.parametrize("run", TRL_RUNS)
def test_one_end_value_everywhere(sweep: Report, run: str) -> None:
    """Text table, "checked" lines, Markdown, HTML, JSON and compare all print the CurveSummary's numbers and the
    same verdict for every row: a report cannot show two end values for one curve (issue 13, class 5)."""
    rr = _run(sweep, run)
    report = one(sweep, rr)
    text = render_text(report, width=200).splitlines()
    markdown = render(report, "markdown")
    page = render_html(report, plots=False)
    doc = json.loads(render(report, "json"))
    json_rows = {(r["split"], r["metric"]): r for r in doc["runs"][0]["table"]}
    compared = {(row.split, row.metric): row for row in Comparison(runs=[rr]).table() if row.metric}
    rows = [row for row in metric_rows(rr) if row.logged]
    assert rows
    for row in rows:
        assert row.split is not None
        c = rr.curves[(row.split, row.metric)]
        assert row.span == f"{fmt_number(c.first_value)} → {fmt_number(c.end)}"
        assert any(line.startswith(row.mark) and f" {row.label} " in line and row.span in line for line in text), row
        assert f"| {md(row.label)} | {md(row.healthy)} | {row.span} | {row.mark} |" in markdown
        assert re.search(rf"<td>{re.escape(esc(row.label))}</td>.*?{re.escape(esc(row.span))}</td>"
                         rf'<td class="mark [a-z]+">{row.mark}</td>', page)  # fmt: skip
        j = json_rows[(row.split, row.metric)]
        assert (j["mark"], j["verdict"], j["label"]) == (row.mark, row.verdict, row.label)
        assert j["curve"]["end"]["value"] == pytest.approx(c.end, rel=1e-5)
        assert j["curve"]["first"] == {"step": c.first_step, "value": pytest.approx(c.first_value, rel=1e-5)}
        compared_row = compared[(row.split, row.metric)]
        assert compared_row.values[0] == pytest.approx(c.end) and compared_row.marks == (row.mark,)
        if row.split == "train" and row.metric in rr.health:  # the "checked" line quotes the same two numbers
            assert fmt(c.first_value) in rr.health[row.metric] and fmt(c.end) in rr.health[row.metric]


def assert_no_check_mark_beside_a_wrong_way_move(rr: RunReport) -> None:
    """A ✓ never sits next to a curve whose end level moved against the seed's healthy direction by more than its
    noise (from its start level or from the first value the table shows); such a row without a finding is ⚠."""
    for row in metric_rows(rr):
        if not row.logged:
            assert row.mark == "–"
            continue
        c = row.curve
        assert c is not None
        wrong = max(-DIRECTION[row.metric] * (c.end - c.start), -DIRECTION[row.metric] * (c.end - c.first_value))
        moved_against = wrong > max(c.noise, material_move(row.metric, rr.beta_used))
        if row.mark == "✓":
            assert not moved_against, row
        if moved_against and row.severity in (None, Severity.INFO):
            assert (row.verdict, row.mark) == ("against", "⚠"), row


@pytest.mark.parametrize("run", TRL_RUNS)
def test_no_check_mark_beside_a_wrong_way_move(sweep: Report, run: str) -> None:
    assert_no_check_mark_beside_a_wrong_way_move(_run(sweep, run))


@pytest.mark.skipif(not (ROOT.parent / "shared" / "real-logs").is_dir(), reason="../shared/real-logs is not present")
def test_no_check_mark_beside_a_wrong_way_move_on_real_logs() -> None:
    report = api.check([ROOT.parent / "shared" / "real-logs"], fail_on="never")
    assert report.runs
    for rr in report.runs:
        assert_no_check_mark_beside_a_wrong_way_move(rr)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), drift=st.floats(-3, 3), n=st.integers(2, 80), beta=st.sampled_from([0.01, 0.1, 1]))
def test_no_check_mark_beside_a_wrong_way_move_on_any_curve(seed: int, drift: float, n: int, beta: float) -> None:
    """The same on synthetic runs whose rejected reward and loss drift either way, short or long, at any β."""
    data = curves(n, seed=seed, beta=beta)
    ramp = np.linspace(0, 1, n)
    data["rejected"] = data["rejected"] + drift * beta * 10 * ramp
    data["margins"] = data["chosen"] - data["rejected"]
    data["loss"] = data["loss"] + 0.1 * drift * ramp
    assert_no_check_mark_beside_a_wrong_way_move(diagnose_run(make_run(data, beta=beta)))


def test_rewards_rejected_that_rose_is_not_a_check_mark(sweep: Report) -> None:
    """The issue's "✓ rewards/rejected decreases 0.62 → 2.8", on a real TRL run (DPO+SFT, rejected rises from 0.24
    to 2.8): the row is ⚠, the legend and its "checked" line say why, and no ✓ line describes it."""
    rr = _run(sweep, "both_rise_rpo_alpha1.0_template1")
    text = render_text(one(sweep, rr), width=200)
    assert re.search(r"^⚠ +rewards/rejected +decreases +0\.24 → 2\.8 ", text, flags=re.M)
    assert "⚠ without a finding: rewards/rejected, eval/rewards/rejected moved against its healthy direction" in text
    assert re.search(r"^ +⚠ rejected reward rose from 0\.2401 at step 5 .*against its healthy direction", text, re.M)
    assert not re.search(r"✓ .*rejected", text)


def test_table_has_eval_rows_labelled_as_eval(sweep: Report) -> None:
    rr = _run(sweep, "overfit")
    rows = metric_rows(rr)
    assert [r.label for r in rows if r.split == "eval"] == [
        "eval/loss",
        "eval/rewards/margins",
        "eval/rewards/accuracies",
        "eval/rewards/chosen",
        "eval/rewards/rejected",
    ]
    # a finding about the train loss marks the train row, not the eval one (DPO103 is about the train split)
    by_label = {r.label: r for r in rows}
    assert by_label["loss"].mark == "⚠" and "DPO103" in by_label["loss"].codes
    assert "DPO103" not in by_label["eval/loss"].codes


def test_eval_finding_marks_the_eval_row() -> None:
    """DPO501 is about the eval loss: its ⚠ goes on the eval/loss row, and the train loss row stays ✓."""
    rng = np.random.default_rng(3)
    steps = np.arange(1, 401)
    train = 0.69 - 0.4 * (1 - np.exp(-steps / 120)) + rng.normal(0, 0.01, steps.size)
    eval_steps = np.arange(20, 401, 20)
    eval_loss = 0.6 - 0.2 * np.minimum(eval_steps, 160) / 160 + 0.25 * np.maximum(eval_steps - 160, 0) / 240
    frame = make_frame(
        ["train"] * steps.size + ["eval"] * eval_steps.size,
        ["loss"] * (steps.size + eval_steps.size),
        [*steps, *eval_steps],
        [*train, *eval_loss],
    )
    rr = diagnose_run(Run("diverging", Path("diverging"), "synthetic", frame, beta=0.1, ended=Ended.FINISHED))
    assert "DPO501" in {f.code for f in rr.findings}
    by_label = {r.label: r for r in metric_rows(rr)}
    assert by_label["eval/loss"].mark == "⚠" and by_label["eval/loss"].codes == ("DPO501",)
    assert by_label["loss"].mark == "✓"


def test_json_carries_the_per_metric_table_and_curves(sweep: Report) -> None:
    doc = json.loads(render(sweep, "json"))
    schema_validator().validate(doc)
    assert doc["version"] == 1 and doc["schema_version"] == "1.1"  # additive: version 1 readers keep working
    assert {word: v["mark"] for word, v in doc["verdicts"].items()} == VERDICT_MARK
    for run, rr in zip(doc["runs"], sweep.runs, strict=True):
        assert [r["label"] for r in run["table"]] == [row.label for row in metric_rows(rr)]
        assert {(c["split"], c["metric"]) for c in run["curves"]} == {k for k, c in rr.curves.items() if c.logged}
        assert any(r["split"] == "eval" for r in run["table"])  # every TRL fixture evaluates
        assert (run["beta"], run["beta_source"], run["beta_logged"]) == (rr.beta_used, "log", rr.run.beta)
    for ref in ("row", "curve"):
        assert not schema_validator(ref).is_valid({"split": "train"})


def test_json_reports_the_beta_used_and_where_it_came_from(tmp_path: Path) -> None:
    """A log that does not state β: the JSON says the β that was used (never null) and that it was assumed; with
    --beta it is the user's."""
    log = tmp_path / "train.log"
    log.write_bytes((TRL / "lr_too_low" / "train.log").read_bytes())
    _, out, _ = cli(str(log), "-f", "json")
    doc = json.loads(out)
    schema_validator().validate(doc)
    run = doc["runs"][0]
    assert (run["beta"], run["beta_source"], run["beta_logged"]) == (0.1, "assumed", None)
    assert "assumed" in run["beta_note"]
    _, out, _ = cli(str(log), "-f", "json", "--beta", "0.05")
    run = json.loads(out)["runs"][0]
    assert (run["beta"], run["beta_source"], run["beta_logged"]) == (0.05, "user", None)


def test_assumed_beta_is_said_once(tmp_path: Path) -> None:
    """The header says once that β is assumed, why, and how to set it; sentences that quote nats mark β "(assumed)"
    once each, not the whole explanation again (it was three times in one sentence)."""
    log = tmp_path / "train.log"
    log.write_bytes((TRL / "lr_too_low" / "train.log").read_bytes())
    _, out, _ = cli(str(log), "--no-plots")
    wide = render_text(api.check([log]), width=400).replace(str(tmp_path), "RUN")  # the test's name is in the path
    assert out.count("pass --beta") == 1 and wide.count("the log does not say") == 1
    assert "β=0.1 (assumed)" in wide
    for line in wide.splitlines():
        for sentence in re.split(r"[.;] ", line):
            assert sentence.count("assumed") <= 1, sentence


def test_md_escapes_html_and_table_syntax() -> None:
    assert md("a|b") == "a\\|b"
    assert md("<img src=x onerror=alert(1)> & co") == "&lt;img src=x onerror=alert(1)> &amp; co"
    assert md("two\nlines") == "two lines"
    assert md("[link](http://x) *b* `c` \\|") == "\\[link\\](http://x) \\*b\\* \\`c\\` \\\\\\|"
    assert md("max_grad_norm _x_") == "max_grad_norm \\_x\\_"


# ---------------------------------------------------------------------------------------------------------------
# Hostile log text through every format
# ---------------------------------------------------------------------------------------------------------------


def test_clean_strips_terminal_escapes_and_unsafe_characters() -> None:
    assert clean("a\x1b[1;31mb\x1b[0mc") == "abc"
    assert clean("\x1b]8;;http://x\x07link\x1b]8;;\x1b\\") == "link"
    assert clean("x\x1b(By\x9b2Jz") == "xyz"
    assert clean("a\x00b\x7fc\ud800d\ufffee\uffff") == "abcde"
    assert clean("tab\tnl\ncr\r β ✓") == "tab\tnl\ncr\r β ✓"
    assert clean("\x1b]8;;unterminated") == "8;;unterminated"  # an unterminated OSC cannot swallow the text


def hostile_report(tmp_path: Path) -> Report:
    """A run named by a hostile string, with a NaN loss (DPO001) and a metric key built from the same string."""
    n = 60
    steps = np.arange(1, n + 1)
    loss = np.linspace(0.69, 0.5, n)
    loss[30] = math.nan
    key = f"custom/{HOSTILE}"
    split = ["train"] * (2 * n)
    metric = ["loss"] * n + [key] * n
    run = Run(
        name=HOSTILE,
        path=tmp_path / HOSTILE.replace("\x00", ""),
        source="synthetic",
        frame=make_frame(split, metric, [*steps, *steps], [*loss, *np.ones(n)]),
        beta=0.1,
        ended=Ended.FINISHED,
        notes=[HOSTILE],
    )
    rr = diagnose_run(run)
    assert "DPO001" in {f.code for f in rr.findings}
    nonfinite = next(f for f in rr.findings if f.code == "DPO001")
    assert "loss" in nonfinite.message
    # a key name reaches findings through messages and evidence (e.g. a rule naming an unknown metric)
    nonfinite.message += f"; see {key}"
    nonfinite.evidence[key] = math.nan
    nonfinite.corroborating.append(Corroboration("DPO202", "margin-flat", HOSTILE))
    rr.skipped[f"DPO999 {HOSTILE}"] = [key]
    log = tmp_path / "a,b:c%.log"  # a real file whose path needs property escaping
    log.write_text("")
    file_run = Run(name=f"file {HOSTILE}", path=log, source="synthetic", frame=run.frame, beta=0.1)
    return Report(runs=[rr, diagnose_run(file_run)], fail_on="warning", problems=[f"{HOSTILE}: unreadable"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_log_text_through_every_format(fmt: str, tmp_path: Path) -> None:
    out = render(hostile_report(tmp_path), fmt)
    if fmt != "text":
        assert not ANSI_OR_UNSAFE.search(out), repr(out)
        assert "\\u001b" not in out  # not even JSON-escaped inside a string (JUnit writes evidence as JSON)
    if fmt == "json":
        doc = json.loads(out)
        schema_validator().validate(doc)
        assert doc["runs"][0]["name"] == "run::a,b%\nnext\r<script>&amp;|x|redlink"
        assert not ANSI_OR_UNSAFE.search(json.dumps(doc, ensure_ascii=False))  # also after decoding \u escapes
    elif fmt == "jsonl":
        for line in out.splitlines():
            record = json.loads(line)
            schema_validator("jsonl_line").validate(record)
            assert "\x1b" not in json.dumps(record, ensure_ascii=False)
    elif fmt == "junit":
        root = ET.fromstring(out)
        names = [s.get("name") for s in root.findall("testsuite")]
        assert names[0] == "run::a,b%\nnext\r<script>&amp;|x|redlink"
        assert root.get("errors") == "1" and int(root.get("failures", "")) >= 2
    elif fmt == "github":
        lines = out.splitlines()
        assert len(lines) == 1 + sum(len(rr.findings) for rr in hostile_report(tmp_path).runs)
        for line in lines:
            assert GITHUB_LINE.match(line), line
            assert "\r" not in line
        assert any(f"file={escape_property(tmp_path / 'a,b:c%.log')}::" in line for line in lines)
        assert "%3A" not in lines[1].split("::", 2)[2]  # data keeps ":" (only properties escape it)
    elif fmt == "markdown":
        assert "<" not in out and "\x1b" not in out
        assert "&lt;script>&amp;amp;\\|x\\|redlink" in out
        table = [line for line in out.splitlines() if line.startswith("|")]
        assert all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in table)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_formats_cannot_start_a_line_with_a_workflow_command(fmt: str, tmp_path: Path) -> None:
    """The CLI skips the zero-width-space pass for JSON and JSON Lines (cli._NO_FORGED_LINES): log text with line
    breaks and "::" (a run name, a message, a problem) stays inside escaped strings, so no line can start with it."""
    report = hostile_report(tmp_path)
    report.runs[0].run.name = "x\n::error::forged\n  ::warning::too"
    out = render(report, fmt)
    assert "::error::forged" in out  # the text is there, escaped inside a string
    assert not [line for line in out.splitlines() if line.lstrip().startswith("::")]


def test_action_installs_from_its_own_path_and_runs_the_gate() -> None:
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    assert "using: composite" in action
    assert 'pip install --quiet --disable-pip-version-check "${{ github.action_path }}"' in action
    for name, default in (("path", '"."'), ("fail-on", "error"), ("format", "github"), ("args", '""')):
        assert re.search(rf"^  {name}:\n(    .*\n)*?    default: {re.escape(default)}$", action, flags=re.M), name
    assert '--fail-on "$INPUT_FAIL_ON" --format "$INPUT_FORMAT"' in action
    assert "${{ inputs." not in action.split("run: |", 2)[2]  # inputs reach the script only through env


# A level as CurveSummary.level_text words it: "0.4339 (median of the last 8 points, steps 365–400)".
LEVEL = re.compile(
    r"(?P<num>-?[\d.]+(?:e[-+]?\d+)?) \(median of the last (?P<k>\d+) points, steps (?P<a>\d+)–(?P<b>\d+)\)"
)
# An end quoted without saying what it is: "the margin ends at 0.147".
BARE_END = re.compile(r"\bend(?:s|ing|ed)? at (?P<num>-?[\d.]+(?:e[-+]?\d+)?)(?![\d.e])(?! \()")
REAL_LOGS = ROOT.parent / "shared" / "real-logs"


def _close(printed: str, value: float) -> bool:
    """Whether a printed number is ``value`` to the digits printed."""
    mantissa, _, exponent = printed.lower().lstrip("-").partition("e")
    unit = 10.0 ** (-len(mantissa.partition(".")[2]) + (int(exponent) if exponent else 0))
    return abs(float(printed) - value) <= 0.5 * unit * (1 + 1e-9)


def _messages(report: Report) -> list[tuple[RunReport, Finding, str]]:
    return [(rr, f, m) for rr in report.runs for f in rr.findings for m in [f.message, *map(str, f.corroborating)]]


def _report_with_real_logs(sweep: Report) -> Report:
    if not REAL_LOGS.is_dir():
        return sweep
    return Report(runs=[*sweep.runs, *api.check([REAL_LOGS], fail_on="never").runs])


def test_levels_quoted_by_findings_are_the_curve_summaries_end(sweep: Report) -> None:
    """A finding that quotes an end level quotes the CurveSummary's (the table's end): same value, same window."""
    report = _report_with_real_logs(sweep)
    seen = 0
    for rr, f, message in _messages(report):
        for m in LEVEL.finditer(message):
            seen += 1
            k, window = int(m["k"]), (int(m["a"]), int(m["b"]))
            ends = [c.end for c in rr.curves.values() if c.logged and c.end_points == k and c.end_steps == window]
            assert any(_close(m["num"], end) for end in ends), f"{rr.run.name} {f.code}: {m[0]}"
    assert seen  # the fixtures' findings do quote levels


def test_bare_ends_quoted_by_findings_are_the_curve_summaries_end(sweep: Report) -> None:
    """'X ends at V' without a label must be an end the table shows: the end level (or the last point) of one of
    the run's curves, in its own units or in nats (÷ β)."""
    bad = []
    for rr, f, message in _messages(_report_with_real_logs(sweep)):
        ends = [v for c in rr.curves.values() if c.logged for v in (c.end, c.last_value)]
        ends += [v / rr.beta_used for v in ends]
        for m in BARE_END.finditer(message):
            if not any(_close(m["num"], v) for v in ends):
                bad.append(f"{rr.run.name} {f.code}: {m[0]!r} in {message!r}")
    assert bad == []
