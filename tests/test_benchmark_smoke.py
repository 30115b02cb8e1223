"""The benchmark script still runs (tiny sizes, no peers). The real benchmark is not part of the suite: see README,
Performance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # runs benchmarks/bench.py end to end in a subprocess
def test_benchmark_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--data", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for line in ("dpodoctor check, no cache", "warm cache (re-check)", "== stdout:", "== SwanLab 0.10"):
        assert line in out, out
