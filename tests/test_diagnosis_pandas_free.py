"""The diagnosis runs without pandas: every fixture run, rebuilt from its arrays alone, gets the same report.

Why: a cold ``dpodoctor check`` of TensorBoard runs should never import pandas (issue 16), so the rules must read a
run only through ``run.arrays`` / ``run.has`` / ``run.metrics`` / ``run.steps`` and build no pandas object. This
test proves it where it counts, in a fresh interpreter in which ``import pandas`` fails: each run of the fixture
groups is read here by the normal readers, its curves are written out as numpy arrays, and a child process rebuilds
it as an object that has nothing but those arrays and the run's metadata (no frame, no ``series``: reading any other
attribute fails), diagnoses it, and must produce exactly what :func:`diagnose_run` gives the real run here:
every finding (code, severity, steps, message, evidence, cause, what it absorbed), the skipped and checked rules,
the health sentences, every curve summary and the expectations. Nothing in it depends on how a Run stores its
curves, so it holds for a frame-backed run and for a lazily read one alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dpodoctor.api import load
from dpodoctor.checks import diagnose_run
from dpodoctor.errors import DpoDoctorError
from tests.diagnosis_document import document
from tools.golden import cases as golden_cases

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The child: pandas cannot be imported (sys.modules["pandas"] = None makes every import of it fail), the runs are
# rebuilt from the arrays, diagnosed, and their documents printed; it also says whether anything pandas got loaded.
CHILD = '''
import json, sys
sys.modules["pandas"] = None  # `import pandas` now raises ImportError, wherever it is attempted
import numpy as np
from pathlib import Path

from dpodoctor.checks import diagnose_run
from dpodoctor.model import Ended
from tests.diagnosis_document import document


class ArraysOnlyRun:
    """A run that holds its curves as arrays and nothing else: no frame, no series, no pandas anywhere."""

    def __init__(self, meta, curves):
        self.name, self.path, self.source = meta["name"], Path(meta["path"]), meta["source"]
        self.beta, self.beta_source, self.ended = meta["beta"], meta["beta_source"], Ended(meta["ended"])
        self.steps_derived, self.summary, self.config = meta["steps_derived"], meta["summary"], meta["config"]
        self.notes, self.other_sources = meta["notes"], [Path(p) for p in meta["other_sources"]]
        self._curves = curves

    def __getattr__(self, name):  # only for names not set above: frame, series, _columns, _groups ...
        raise AssertionError(f"the diagnosis read run.{name}: it may read only arrays/has/metrics/steps")

    def arrays(self, metric, split="train"):
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
        return self._curves.get((split, metric), empty)

    def has(self, metric, split="train"):
        return (split, metric) in self._curves

    @property
    def metrics(self):
        return sorted(self._curves)

    @property
    def steps(self):
        return max((int(s.max()) for s, _ in self._curves.values() if len(s)), default=0)


folder = Path(sys.argv[1])
out = {}
for meta in json.loads((folder / "runs.json").read_text()):
    data = np.load(folder / meta["arrays"])
    curves = {}
    for i, (split, metric) in enumerate(meta["metrics"]):
        steps, values = data[f"s{i}"], data[f"v{i}"]
        steps.flags.writeable = False  # as a reader's run hands them out: a rule may not write into them
        values.flags.writeable = False
        curves[(split, metric)] = (steps, values)
    out[meta["key"]] = document(diagnose_run(ArraysOnlyRun(meta, curves)))
loaded = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] == "pandas" and mod is not None)
print(json.dumps({"documents": out, "pandas_loaded": loaded}, default=repr))
'''


def _cases() -> list[Path]:
    """The golden report cases: every fixture run folder, and each other source beside a run on its own (a
    train.log, a trainer_state.json, a tracker folder), so every reader's runs are diagnosed both ways."""
    return [ROOT / case for case in golden_cases()]


def test_diagnosis_of_arrays_alone_imports_no_pandas_and_matches(tmp_path: Path) -> None:
    metas: list[dict[str, Any]] = []
    expected: dict[str, Any] = {}
    for case in _cases():
        try:
            runs = load(case)
        except DpoDoctorError:  # a fixture of a log that cannot be read (its golden report is the error)
            continue
        for index, run in enumerate(runs):
            key = f"{case.relative_to(FIXTURES)}#{index}"
            pairs = list(run.metrics)
            arrays: dict[str, np.ndarray] = {}
            for i, (split, metric) in enumerate(pairs):
                steps, values = run.arrays(metric, split)  # type: ignore[arg-type]
                arrays[f"s{i}"], arrays[f"v{i}"] = np.asarray(steps), np.asarray(values)
            name = f"run{len(metas)}.npz"
            np.savez(tmp_path / name, **arrays)  # type: ignore[arg-type]
            metas.append(
                {
                    "key": key,
                    "arrays": name,
                    "metrics": pairs,
                    "name": run.name,
                    "path": str(run.path),
                    "source": run.source,
                    "beta": run.beta,
                    "beta_source": run.beta_source,
                    "ended": run.ended.value,
                    "steps_derived": run.steps_derived,
                    "summary": run.summary,
                    "config": run.config,
                    "notes": run.notes,
                    "other_sources": [str(p) for p in run.other_sources],
                }
            )
            expected[key] = document(diagnose_run(run))
    assert len(metas) >= 100 and len({m["source"] for m in metas}) >= 5  # every fixture group, many readers
    (tmp_path / "runs.json").write_text(json.dumps(metas))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    result = json.loads(child.stdout)
    assert result["pandas_loaded"] == []
    # through JSON on both sides, so a numpy scalar and the float it equals compare as the same text
    assert json.loads(json.dumps(expected, default=repr)) == result["documents"]


def test_the_arrays_only_run_refuses_everything_else() -> None:
    """The child's run really holds nothing but the arrays: a diagnosis that asked it for its frame would fail."""
    script = CHILD.split("folder = ")[0] + "ArraysOnlyRun({'name': 'x', 'path': 'x', 'source': 'x', "
    script += "'beta': None, 'beta_source': None, 'ended': 'unknown', 'steps_derived': False, 'summary': {}, "
    script += "'config': {}, 'notes': [], 'other_sources': []}, {}).frame\n"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert child.returncode != 0
    assert "the diagnosis read run.frame" in child.stderr
