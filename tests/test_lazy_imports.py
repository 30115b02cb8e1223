"""Each command imports only what it needs: which modules a fresh interpreter has loaded after running it.

Why a test on module names and not on time: timings belong to benchmarks/bench.py (this machine is shared and
slow or fast by the minute); the imports are what decide the time, and they do not change with load. pandas alone
takes 0.4–1 s to import, scipy 0.7 s, matplotlib and plotext more: a command that does not compute with them must
not import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HEAVY = ("pandas", "scipy", "matplotlib", "plotext", "pydantic")

# Runs the real entry point, then reports the loaded top-level packages (atexit: after typer's own exit).
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr))
sys.argv = ["dpodoctor", *sys.argv[1:]]
from dpodoctor.cli import main
main()
"""


def _modules_after(*args: str, tmp_path: Path) -> set[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.parametrize("args", [("rules",), ("explain", "DPO103"), ("--help",), ("--version",), ("check", "--help")])
def test_commands_that_read_no_logs_import_no_numpy_pandas_or_plotting(args: tuple[str, ...], tmp_path: Path) -> None:
    loaded = _modules_after(*args, tmp_path=tmp_path)
    assert "dpodoctor" in loaded
    assert not loaded & {*HEAVY, "numpy"}, sorted(loaded & {*HEAVY, "numpy"})


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_of_one_run_imports_neither_scipy_nor_plotting(fmt: str, tmp_path: Path) -> None:
    loaded = _modules_after("check", str(FIXTURES / "trl" / "healthy"), "--format", fmt, tmp_path=tmp_path)
    assert "numpy" in loaded  # this command computes (pandas: only where the diagnosis still builds a Series)
    assert not loaded & set(HEAVY) - {"pandas"}, sorted(loaded & set(HEAVY))


def test_import_dpodoctor_defers_the_api_until_used() -> None:
    code = (
        "import sys, dpodoctor; before = 'dpodoctor.api' in sys.modules; dpodoctor.check; "
        "print(before, 'dpodoctor.api' in sys.modules, 'pandas' in sys.modules, dpodoctor.Run.__name__)"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    # the API is imported on first use; pandas is not, until a run's points are read (readers import it lazily)
    assert out.split() == ["False", "True", "False", "Run"]
