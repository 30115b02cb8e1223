"""The layering contracts of pyproject.toml ([tool.importlinter]) hold: no import cycle inside dpodoctor/ (at any
level, function-level imports included), readers never import rules, checks or reporters, rules never import
reporters, and the sweep never imports the API. Checked with import-linter's `lint-imports`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command is not None, "lint-imports is not installed (it is in the [test] extra)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([command, "--no-cache"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and "Contracts: 4 kept, 0 broken." in done.stdout
