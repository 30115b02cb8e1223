"""CPU cost of the diagnosis alone, per run: the rules' share of a check, apart from reading and reporting.

Why a script of its own: the end-to-end benchmark (benchmarks/bench.py) mixes reading, diagnosing and writing the
report, so a change to the rules shows there only as a few % of noise. Here each sweep is read once, then
:func:`dpodoctor.checks.diagnose_run` is timed over every run (process CPU time, best of ``--repeat`` passes, so
another process on the two cores does not count) and reported as milliseconds per run.

Also timed apart: the curve summaries (:func:`dpodoctor.curve.summarize_run`, part of the diagnosis) and the run's
entry of the JSON report (:func:`dpodoctor.jsondoc.run_fragment`: made from the diagnosis and encoded), the two other
per-run costs of a cold ``check --format json`` besides reading.

Inputs (read, never written): the sweeps benchmarks/bench.py's make_sweep leaves in ``--data`` (default
/tmp/dpodoctor-bench), and the real SLURM stdout log named in bench.py (``$DPODOCTOR_REAL_LOGS``, default
/work/shared/real-logs) when present. Writes nothing into the checkout: run it with ``python -B`` or with
``PYTHONPYCACHEPREFIX`` set (as benchmarks/_measure.py does for its children) to keep ``__pycache__`` out too.

    PYTHONPATH=$PWD python -B benchmarks/diagnose_cost.py [--repeat 3] [--profile sweep-600x100-noargs] [PATH ...]

PATHs, when given, are measured instead of the sweeps and the real log (any folder or file ``dpodoctor check``
reads).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the checkout for the dpodoctor modules imported below
# appended: a checkout on PYTHONPATH (or an installed dpodoctor) wins over this one, as in benchmarks/accuracy.py
sys.path.append(str(Path(__file__).resolve().parents[1]))

SWEEPS = ("sweep-600x100-noargs", "sweep-6x10000-noargs")
REAL_SLURM_LOG = "dario-translation-62116400/rm-62116400_0.out"  # the one benchmarks/bench.py uses


def cpu_ms_per_run(runs: list, repeat: int) -> float:
    """Best of ``repeat`` passes of diagnose_run over ``runs``, in CPU ms per run (process time: user + sys)."""
    from dpodoctor.checks import diagnose_run

    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for run in runs:
            diagnose_run(run)
        best = min(best, time.process_time() - start)
    return 1000 * best / max(len(runs), 1)


def summaries_ms_per_run(runs: list, repeat: int) -> float:
    """Best of ``repeat`` passes of the curve summaries alone (:func:`dpodoctor.curve.summarize_run`, the first
    thing a diagnosis computes), in CPU ms per run."""
    from dpodoctor.curve import summarize_run

    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for run in runs:
            summarize_run(run)
        best = min(best, time.process_time() - start)
    return 1000 * best / max(len(runs), 1)


def entry_ms_per_run(runs: list, repeat: int) -> float:
    """Best of ``repeat`` passes of making and encoding each run's entry of the JSON report
    (:func:`dpodoctor.jsondoc.run_fragment`: the findings, the per-metric table, the curve summaries), in CPU ms per
    run. The entry is kept on its report once made (and its curves' rounded numbers on them), so each pass drops it
    first."""
    from dpodoctor.checks import diagnose_run
    from dpodoctor.jsondoc import run_fragment

    reports = [diagnose_run(run) for run in runs]
    best = float("inf")
    for _ in range(repeat):
        for report in reports:
            report.__dict__.pop("_document", None)
            report.__dict__.pop("_json_fragment", None)
            for curve in report.curves.values():
                curve.__dict__.pop("_json_numbers", None)  # the rounded numbers, kept on a summary once made
        start = time.process_time()
        for report in reports:
            run_fragment(report)
        best = min(best, time.process_time() - start)
    return 1000 * best / max(len(runs), 1)


def load(path: Path) -> list:
    """Every run under ``path``, read once in this process (no cache, no workers)."""
    from dpodoctor.api import load_all

    loaded = load_all([path], jobs=1, cache=False)
    if loaded.problems:
        raise SystemExit(f"{path}: {loaded.problems[0]}")
    return loaded.runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/dpodoctor-bench"))
    real_logs = os.environ.get("DPODOCTOR_REAL_LOGS", "/work/shared/real-logs")
    parser.add_argument("--real-logs", type=Path, default=Path(real_logs))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", help="print a cProfile of one pass over this case (a sweep name or 'real')")
    parser.add_argument("paths", nargs="*", type=Path, help="measure these instead of the sweeps and the real log")
    args = parser.parse_args()

    cases: list[tuple[str, Path]] = [(name, args.data / name) for name in SWEEPS]
    cases.append(("real", args.real_logs / REAL_SLURM_LOG))
    if args.paths:
        cases = [(str(path), path) for path in args.paths]
    for name, path in cases:
        if not path.exists():
            print(f"{name}: {path} not found, skipped")
            continue
        runs = load(path)
        points = sum(len(run.arrays(metric, split)[1]) for run in runs for split, metric in run.metrics)  # no frame
        if args.profile == name:
            from dpodoctor.checks import diagnose_run

            profile = cProfile.Profile()
            profile.enable()
            for run in runs:
                diagnose_run(run)
            profile.disable()
            pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
        ms = cpu_ms_per_run(runs, args.repeat)
        summaries = summaries_ms_per_run(runs, args.repeat)
        entry = entry_ms_per_run(runs, args.repeat)
        best = f"best of {args.repeat}"
        print(
            f"{name}: {len(runs)} runs, {points} points: diagnose_run {ms:.2f} ms CPU per run ({best}), of it the curve"
            f" summaries {summaries:.2f} ms; report entry {entry:.2f} ms"
        )


if __name__ == "__main__":
    main()
