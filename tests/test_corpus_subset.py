"""The corpus subset (tests/fixtures/corpus/): its README and the manifest agree with the files present, the scoreboard
machinery works, and the verdicts issue 13's "Done when" asks for (healthy → no warning or error; an induced failure →
its code at warning or error).

Verdicts today's rules get wrong are marked xfail (strict) in KNOWN_WRONG with the reason, so the rules work that fixes
one turns it into a failure here ("XPASS(strict)") and the entry is removed. The expected codes per label live in
tools/corpus/labels.py, not here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import dpodoctor
from tools.corpus.labels import EXPECTATIONS, REAL_LOGS

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ROOT / "tests" / "fixtures" / "corpus"
MANIFEST = ROOT / "tools" / "corpus" / "manifest.jsonl"
RUNS = sorted(p.name for p in SUBSET.iterdir() if p.is_dir())


def load_scoreboard() -> ModuleType:
    """benchmarks/accuracy.py is a script, not a package: load it from its file."""
    spec = importlib.util.spec_from_file_location("benchmarks_accuracy", ROOT / "benchmarks" / "accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ACCURACY = load_scoreboard()
MANIFEST_ROWS: dict[str, dict[str, Any]] = ACCURACY.load_manifest(MANIFEST)


def readme_rows() -> dict[str, list[str]]:
    """Run name → the cells of its row in the subset README's table."""
    rows = {}
    for line in (SUBSET / "README.md").read_text().splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


# ---------------------------------------------------------------------------------------------- the subset itself


def test_the_subset_holds_real_runs_and_stays_small() -> None:
    assert len(RUNS) >= 10
    total = sum(p.stat().st_size for p in SUBSET.rglob("*") if p.is_file())
    assert total < 3_000_000, f"tests/fixtures/corpus/ is {total / 1e6:.1f} MB; keep the bulk out of git"


def test_every_run_has_a_readme_row_and_every_row_a_run() -> None:
    assert sorted(readme_rows()) == RUNS


@pytest.mark.parametrize("name", RUNS)
def test_files_are_the_generated_ones_byte_for_byte(name: str) -> None:
    row = MANIFEST_ROWS[name]
    folder = SUBSET / name
    present = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}
    assert sorted(present) == sorted(f["path"] for f in row["files"])
    for entry in row["files"]:
        data = present[entry["path"]].read_bytes()
        assert len(data) == entry["bytes"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]


@pytest.mark.parametrize("name", RUNS)
def test_readme_agrees_with_the_manifest(name: str) -> None:
    row, cells = MANIFEST_ROWS[name], readme_rows()[name]
    params = row["params"]
    label, _loss, beta, lr, batch, logging = cells[:6]
    assert label == row["label"] and label in EXPECTATIONS
    assert float(beta) == params["beta"] and float(lr) == params["learning_rate"]
    assert int(batch) == params["batch_size"] and int(logging) == params["logging_steps"]
    assert row["as_intended"], f"{name} ended with {row['ended']}, not as its recipe says"


@pytest.mark.parametrize("name", RUNS)
def test_a_killed_run_left_what_a_kill_leaves(name: str) -> None:
    params = MANIFEST_ROWS[name]["params"]
    folder = SUBSET / name
    assert (folder / "train.log").is_file() and list(folder.glob("runs/*/events.out.tfevents.*"))
    assert (folder / "trainer_state.json").is_file() == (params["kill_at_step"] is None)


def test_the_manifest_records_versions_and_a_label_known_to_the_table() -> None:
    assert len(MANIFEST_ROWS) >= len(RUNS)
    for row in MANIFEST_ROWS.values():
        assert row["label"] in EXPECTATIONS, row["name"]
        assert set(row["versions"]) == {"trl", "transformers", "torch"}
        assert row["total_bytes"] == sum(f["bytes"] for f in row["files"])


# ---------------------------------------------------------------------------------------------- the scoreboard


def scored(label: str, findings: list[tuple[str, str]]) -> Any:
    return ACCURACY.score(ACCURACY.Scored("run", label, "corpus", findings=findings))


def test_scoring_follows_the_label_table() -> None:
    assert scored("healthy", [("DPO003", "info")]).verdict == "ok"  # info is a note, not a verdict
    assert scored("healthy", [("DPO602", "warning")]).verdict == "false alarm"
    assert scored("lr_too_low", [("DPO101", "error"), ("DPO202", "warning")]).verdict == "ok"
    missed = scored("lr_too_low", [("DPO602", "warning")])
    assert missed.verdict == "missed" and missed.false_positives == ["DPO602"]
    assert scored("too_early", [("DPO005", "warning"), ("DPO101", "error")]).verdict == "too severe"
    assert scored("borderline", [("DPO101", "error")]).verdict == "unscored"
    assert scored("(not in manifest)", []).verdict == "unscored"
    unreadable = ACCURACY.Scored("run", "healthy", "corpus", unreadable="no training run found")
    assert ACCURACY.score(unreadable).verdict == "unreadable"


def test_every_expected_code_is_a_rule_and_real_log_labels_are_separate() -> None:
    for label, expectation in EXPECTATIONS.items():
        assert expectation.kind in ("healthy", "failure", "unscored"), label
        for code in expectation.codes + expectation.also_ok:
            assert code in dpodoctor.RULES, f"{label}: {code} is not a rule"
    assert all(label.startswith("real:") for label, _ in REAL_LOGS.values())


def test_per_rule_counts_add_up_on_the_subset() -> None:
    runs = ACCURACY.corpus_runs(SUBSET, MANIFEST_ROWS)
    assert [r.name for r in runs] == RUNS
    assert all(r.label == MANIFEST_ROWS[r.name]["label"] and not r.unreadable for r in runs)
    rows = ACCURACY.per_rule(runs)
    assert sum(row[2] for row in rows) == sum(len(r.detected_by) for r in runs)
    assert sum(row[3] for row in rows) == sum(len(r.false_positives) for r in runs)
    assert sum(len(r.detected_by) > 0 for r in runs if r.verdict == "missed") == 0
    labels = ACCURACY.per_label(runs)
    assert sum(row[2] for row in labels) == len(runs)


def test_the_scoreboard_runs_as_a_script_and_writes_only_where_told(tmp_path: Path) -> None:
    out = tmp_path / "verdicts.json"
    before = sorted(p for p in SUBSET.rglob("*"))
    script = str(ROOT / "benchmarks" / "accuracy.py")
    proc = subprocess.run(
        [sys.executable, script, "--corpus", str(SUBSET), "--no-real-logs", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for heading in ("-- per label", "-- per rule", "false-alarm rate on healthy runs", "-- misclassified"):
        assert heading in proc.stdout
    doc = json.loads(out.read_text())
    assert sorted(r["name"] for r in doc) == RUNS
    assert sorted(p for p in SUBSET.rglob("*")) == before


# ---------------------------------------------------------------------------------------------- the verdicts

# What today's rules get wrong on the subset (run → reason). Remove an entry when a rules change fixes it.
KNOWN_WRONG: dict[str, str] = {}


def verdict_cases() -> list[Any]:
    cases = []
    for name in RUNS:
        label = MANIFEST_ROWS[name]["label"]
        if EXPECTATIONS[label].kind == "unscored":
            continue
        marks = [pytest.mark.xfail(reason=KNOWN_WRONG[name], strict=True)] if name in KNOWN_WRONG else []
        cases.append(pytest.param(name, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("name", verdict_cases())
def test_the_verdict_matches_how_the_run_was_made(name: str) -> None:
    item = ACCURACY.Scored(name, MANIFEST_ROWS[name]["label"], "corpus")
    item.findings, item.unreadable = ACCURACY.diagnose(SUBSET / name)
    ACCURACY.score(item)
    expectation = EXPECTATIONS[item.label]
    if expectation.kind == "healthy":
        assert item.verdict == "ok", f"{name} is {item.label}, yet got {item.describe_findings()}"
    else:
        assert item.verdict == "ok", (
            f"{name} ({item.label}) expects any of {expectation.codes} at warning or error, at most "
            f"{expectation.worst}; got {item.describe_findings()}"
        )
