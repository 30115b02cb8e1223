"""CPU cost of reading runs alone, per run: the reader's share of a check, apart from the diagnosis and the report.

Why a script of its own: the end-to-end benchmark (benchmarks/bench.py) mixes reading, diagnosing and writing the
report, and the diagnosis is several times the read. Here each sweep is read with ``load_all`` (one process, no
cache, no diagnosis: discovery, decoding, assembling each run, finding β beside it), timed in process CPU time, best
of ``--repeat`` passes after one pass that imports what reading needs, and reported as milliseconds per run. It
also says whether reading imported pandas (a TensorBoard run is read into numpy columns, its frame built only when
something asks for it), and what building every run's pandas frame would add (``run.frame``: what the check of a
TensorBoard sweep no longer pays).

Inputs (read, never written): the sweeps benchmarks/bench.py's make_sweep leaves in ``--data`` (default
/tmp/dpodoctor-bench). Writes nothing into the checkout: run it with ``python -B`` or with ``PYTHONPYCACHEPREFIX`` set.

    PYTHONPATH=$PWD python -B benchmarks/read_cost.py [--repeat 3] [--profile sweep-600x100-noargs] [PATH ...]

PATHs, when given, are measured instead of the sweeps (any folder or file ``dpodoctor check`` reads).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # no __pycache__ in the checkout for the dpodoctor modules imported below
# appended: a checkout on PYTHONPATH (or an installed dpodoctor) wins over this one, as in benchmarks/accuracy.py
sys.path.append(str(Path(__file__).resolve().parents[1]))

SWEEPS = ("sweep-600x100-noargs", "sweep-600x100-args", "sweep-6x10000-noargs")


def load(path: Path) -> list[Any]:
    """Every run under ``path``, read in this process (no cache, no workers, no diagnosis)."""
    from dpodoctor.api import load_all

    loaded = load_all([path], jobs=1, cache=False)
    if loaded.problems:
        raise SystemExit(f"{path}: {loaded.problems[0]}")
    return loaded.runs


def imports_pandas(path: Path) -> bool:
    """Whether reading ``path`` imports pandas, in a fresh interpreter (this one may have imported it already), with
    this one's module path (``-P``: not the current folder first, which may hold another checkout)."""
    code = (
        "import sys; from dpodoctor.api import load_all; "
        f"load_all([{str(path)!r}], jobs=1, cache=False); print('pandas' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-B", "-P", "-c", code], capture_output=True, text=True, env=env, check=True)
    return proc.stdout.strip() == "True"


def read_ms_per_run(path: Path, repeat: int) -> tuple[float, list[Any]]:
    """Best of ``repeat`` reads of ``path``, in CPU ms per run (process time: user + sys), and the runs read."""
    best, runs = float("inf"), []
    for _ in range(repeat):
        start = time.process_time()
        runs = load(path)
        best = min(best, time.process_time() - start)
    return 1000 * best / max(len(runs), 1), runs


def frame_ms_per_run(path: Path, repeat: int) -> float:
    """Best of ``repeat`` passes building every run's frame (on runs read afresh each time, untimed)."""
    best = float("inf")
    for _ in range(repeat):
        runs = load(path)
        start = time.process_time()
        for run in runs:
            run.frame  # noqa: B018 - builds it
        best = min(best, time.process_time() - start)
    return 1000 * best / max(len(runs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/dpodoctor-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", help="print a cProfile of one read of this case (a sweep name or a PATH)")
    parser.add_argument("paths", nargs="*", type=Path, help="measure these instead of the sweeps")
    args = parser.parse_args()

    cases: list[tuple[str, Path]] = [(name, args.data / name) for name in SWEEPS]
    if args.paths:
        cases = [(str(path), path) for path in args.paths]
    for name, path in cases:
        if not path.exists():
            print(f"{name}: {path} not found, skipped")
            continue
        pandas = imports_pandas(path)
        load(path)  # imports what reading needs (not timed)
        if args.profile == name:
            profile = cProfile.Profile()
            profile.enable()
            load(path)
            profile.disable()
            pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
        ms, runs = read_ms_per_run(path, args.repeat)
        frames = frame_ms_per_run(path, args.repeat)
        print(
            f"{name}: {len(runs)} runs: read {ms:.2f} ms CPU per run (best of {args.repeat}); "
            f"pandas imported by reading: {'yes' if pandas else 'no'}; building every frame adds {frames:.2f} ms a run"
        )


if __name__ == "__main__":
    main()
