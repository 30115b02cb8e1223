"""A new format or rule family is one module dropped into its package, with no other edit.

Proved with exactly the modules the README's "Adding a format" and "Adding a rule" sections show: each is written
into a copy of the package, and a fresh interpreter reads a file of the new format and runs the new rule.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_module(target: str) -> str:
    """The README's code block whose first line names ``target`` (``# dpodoctor/readers/sacred.py``)."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        if block.startswith(f"# {target}\n"):
            return block
    raise AssertionError(f"README shows no module {target}")


def test_a_dropped_in_reader_and_rule_family_are_used_with_no_other_edit(tmp_path: Path) -> None:
    package = tmp_path / "dpodoctor"
    shutil.copytree(ROOT / "dpodoctor", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "readers" / "sacred.py").write_text(readme_module("dpodoctor/readers/sacred.py"), encoding="utf-8")
    (package / "checks" / "example.py").write_text(readme_module("dpodoctor/checks/example.py"), encoding="utf-8")
    run = tmp_path / "runs" / "1"
    run.mkdir(parents=True)
    steps = list(range(10, 210, 10))
    metrics = {  # the layout Sacred's FileStorageObserver.log_metrics writes
        "loss": {"steps": steps, "values": [0.69 - 0.002 * i for i in range(20)], "timestamps": [""] * 20},
        "rewards/accuracies": {"steps": steps, "values": [0.5 + 0.02 * i for i in range(20)], "timestamps": [""] * 20},
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    script = (
        "import json, sys, dpodoctor\n"
        "from dpodoctor.readers import READERS\n"
        "from dpodoctor.checks import RULES\n"
        "report = dpodoctor.check(sys.argv[1], use_config=False)\n"
        "print(json.dumps({'file': dpodoctor.__file__, 'readers': [r.name for r in READERS], "
        "'rule': 'DPO901' in RULES, 'sources': [r.run.source for r in report.runs], "
        "'codes': [f.code for r in report.runs for f in r.findings], "
        "'points': [len(r.run.frame) for r in report.runs]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "DPODOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "runs")], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["file"].startswith(str(package))  # the copy with the new modules, not the checkout
    assert "sacred" in out["readers"] and out["rule"]
    assert out["sources"] == ["sacred"] and out["points"] == [40]
    assert "DPO901" in out["codes"]  # the run logs no eval split: the new family's rule ran on the new format
