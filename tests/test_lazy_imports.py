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

# A transformers run written by the tensorboard package's writer: a file_version record, the `args` text summary,
# then scalars (the shape of the benchmark's small run).
TB_RUN = FIXTURES / "corpus" / "healthy_s0"

# Runs the real entry point, then reports the loaded modules (atexit: after typer's own exit).
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["dpodoctor", *sys.argv[1:]]
from dpodoctor.cli import main
main()
"""


def _all_modules_after(*args: str, tmp_path: Path, codes: tuple[int, ...] = (0, 1)) -> set[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # stderr is a pipe here: rich would print it bare
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode in codes, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _modules_after(*args: str, tmp_path: Path) -> set[str]:
    """The top-level packages loaded after the command."""
    return {m.split(".")[0] for m in _all_modules_after(*args, tmp_path=tmp_path)}


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


@pytest.mark.parametrize("args", [("--help",), (), ("check", "--help"), ("explain", "-h")])
def test_help_pages_import_neither_markdown_nor_pretty_tracebacks(args: tuple[str, ...], tmp_path: Path) -> None:
    """typer's help panels (typer.rich_utils) import rich.markdown and rich.traceback for Markdown help and pretty
    tracebacks, neither of which dpodoctor's help uses: the CLI defers them (markdown-it, pygments: ~0.15 s)."""
    loaded = _all_modules_after(*args, tmp_path=tmp_path, codes=(0, 2))  # no arguments: the help, exit 2
    assert "typer.rich_utils" in loaded  # the help came from typer's own panels
    unwanted = {"rich.markdown", "rich.traceback", "rich.syntax", "rich.pretty", "markdown_it", "pygments"}
    assert not {m for m in loaded if m in unwanted or m.split(".")[0] in unwanted}, sorted(loaded & unwanted)


def test_rules_does_not_load_the_emoji_table(tmp_path: Path) -> None:
    loaded = _all_modules_after("rules", tmp_path=tmp_path)
    assert "rich.table" in loaded and "rich._emoji_codes" not in loaded


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_a_json_check_of_event_files_imports_no_protobuf_tensorboard_or_rich(cache: str, tmp_path: Path) -> None:
    """The file_version record and the `args` text summary are read without protobuf (readers.tensorboard.plain),
    the summary line on stderr is written without rich, and only the JSON reporter is imported; the same on a
    warm re-check, whose runs come from the cache."""
    args = ("check", str(TB_RUN), "--format", "json", "--output", str(tmp_path / "report.json"))
    if cache == "warm":
        _all_modules_after(*args, tmp_path=tmp_path)  # fills the cache
    loaded = _all_modules_after(*args, *(("--no-cache",) if cache == "cold" else ()), tmp_path=tmp_path)
    assert "dpodoctor.readers.tensorboard" in loaded or cache == "warm"
    top = {m.split(".")[0] for m in loaded}
    assert not top & {"google", "tensorboard", "rich", "pandas"}, sorted(top & {"google", "tensorboard", "rich"})
    reporters = {m for m in loaded if m.startswith("dpodoctor.reporters.")}
    assert reporters == {"dpodoctor.reporters.json", "dpodoctor.reporters.common"}, sorted(reporters)
    assert json.loads((tmp_path / "report.json").read_text())["runs"], "the check read the run"
    if cache == "warm":  # answered by the whole-check cache entry: its JSON entries need no numpy (table.py: late)
        assert "numpy" not in top and "dpodoctor.readers.tensorboard" not in loaded, sorted(top)


def test_a_text_check_still_draws_with_rich(tmp_path: Path) -> None:
    loaded = _all_modules_after("check", str(TB_RUN), "--no-plots", tmp_path=tmp_path)
    assert {"rich.console", "dpodoctor.reporters.text"} <= loaded
