"""The benchmark script still runs (tiny sizes, no peers). The real benchmark is not part of the suite: see README,
Performance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of benchmarks/*.py in a subprocess from the checkout; a non-zero exit fails with its output's tail."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # runs benchmarks/bench.py end to end in a subprocess
def test_benchmark_smoke(tmp_path: Path) -> None:
    out = _run_script("bench.py", "--smoke", "--data", str(tmp_path / "bench")).stdout
    for line in ("dpodoctor check, no cache", "warm cache (re-check)", "== stdout:", "== SwanLab 0.10"):
        assert line in out, out


def test_diagnose_cost_script_times_the_rules_per_run() -> None:
    """benchmarks/diagnose_cost.py (the rules' CPU per run) still runs, on a committed fixture, and says what it
    measured; a missing input is named and skipped, not a crash."""
    fixture = ROOT / "tests" / "fixtures" / "trl" / "healthy"
    missing = ROOT / "tests" / "fixtures" / "no-such-run"
    proc = _run_script("diagnose_cost.py", "--repeat", "1", str(fixture), str(missing))
    line, skipped = proc.stdout.strip().splitlines()[-2:]
    assert skipped == f"{missing}: {missing} not found, skipped", proc.stdout
    assert line.startswith(f"{fixture}: 1 runs, ") and "ms CPU per run (best of 1)" in line, proc.stdout
    ms = float(line.split("diagnose_run ")[1].split(" ms")[0])
    summaries = float(line.split("of it the curve summaries ")[1].split(" ms")[0])
    entry = float(line.split("report entry ")[1].split(" ms")[0])
    assert ms > 0 and summaries > 0 and entry > 0


def test_the_read_cost_script_times_reading_per_run() -> None:
    """benchmarks/read_cost.py (the read's CPU per run) still runs on a committed fixture and says what it measured:
    reading TensorBoard events imports no pandas; a missing input is named and skipped, not a crash."""
    fixture = ROOT / "tests" / "fixtures" / "diagnosis" / "healthy_kto"
    missing = ROOT / "tests" / "fixtures" / "no-such-run"
    proc = _run_script("read_cost.py", "--repeat", "1", str(fixture), str(missing))
    line, skipped = proc.stdout.strip().splitlines()[-2:]
    assert skipped == f"{missing}: {missing} not found, skipped", proc.stdout
    assert line.startswith(f"{fixture}: 1 runs: read "), proc.stdout
    assert "pandas imported by reading: no" in line, proc.stdout
    assert float(line.split("read ")[1].split(" ms")[0]) > 0


def test_the_startup_script_times_each_command_of_a_checkout() -> None:
    """benchmarks/startup.py (wall and CPU medians of fresh processes per command) still runs, here one round on a
    committed fixture, and prints one row per command with its figures; a missing run is named, not a crash."""
    run = ROOT / "tests" / "fixtures" / "corpus" / "healthy_s0"
    out = _run_script("startup.py", "--smoke", "--importtime", "--run", str(run)).stdout.splitlines()
    assert out[0].startswith("dpodoctor startup: medians of 1 fresh processes per command"), out
    rows = {line[:24].strip(): line[24:].split() for line in out[2:]}
    assert list(rows) == [
        "--version",
        "--help",
        "rules",
        "explain DPO103",
        "check small run, cold",
        "check small run, warm",
    ], out
    for checkout, wall, cpu, least, imports in rows.values():
        assert checkout.endswith(ROOT.name) and float(wall) > 0 and float(imports) > 0, out
        assert 0 < float(least) <= float(cpu), out
    missing = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--run", str(ROOT / "no-such-run")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "no-such-run: not found" in missing.stderr
