"""The fuzz runs are sized to finish (issue 17, defect 8): ``tools/fuzz smoke`` is the short CI run, ``tools/fuzz
long`` splits the pre-release run over processes whose shards cover every fuzz test exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs import conftest
from tests.bad_inputs.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("mode", "examples"), [("smoke", 150), ("long", 2_000), ("full", 10_000), ("", 60)])
def test_each_named_run_has_its_example_count(monkeypatch: pytest.MonkeyPatch, mode: str, examples: int) -> None:
    monkeypatch.setenv("DPODOCTOR_FUZZ", mode)
    chosen = conftest._profile()
    assert chosen.max_examples == examples
    assert chosen.derandomize == (mode == "")  # only the default (the test suite's) replays the same inputs


@pytest.mark.skipif(sys.platform == "win32", reason="tools/fuzz is a bash script")
def test_the_long_run_shards_cover_every_fuzz_test_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "JOBS": "2", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [str(ROOT / "tools" / "fuzz"), "long", "--collect-only"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [logs] = tmp_path.glob("dpodoctor-fuzz.*")
    ids = [
        line for shard in sorted(logs.glob("shard-*.log")) for line in shard.read_text().splitlines() if "::" in line
    ]
    expected = {
        f"tests/bad_inputs/test_fuzz.py::{t}[{n}]"
        for t in ("test_fuzz_arbitrary_bytes", "test_fuzz_mutated_fixtures")
        for n in TARGETS
    }
    expected |= {
        f"tests/bad_inputs/test_fuzz.py::test_fuzz_end_to_end_every_format[{n}]"
        for n in ("tensorboard", "stdout", "trainer_state", "swanlab_record")
    }
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert len(re.findall(r"shard \d: passed", proc.stdout)) == 2
