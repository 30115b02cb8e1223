"""When worker processes win (issue 16: "parallel workers only when they win, decided from the number and size of
the inputs, with the crossover measured on 2 cores"): cold ``dpodoctor check --no-cache --format json`` of each
sweep with ``--jobs 1`` and ``--jobs 2`` (and the default, which decides by itself), alternating in fresh processes,
wall and CPU seconds (the workers' included), with the machine's load said before each round.

Why a script of its own: the choice in ``dpodoctor.sweep.worker_count`` rests on these figures; bench.py times the
default only. Writes nothing into the checkout (compiled modules go to a temp ``PYTHONPYCACHEPREFIX``).

    PYTHONPATH=$PWD python -B benchmarks/workers.py [--repeat 3] [--jobs 1 --jobs 2 --jobs default] [SWEEP ...]

SWEEPs default to the sweeps benchmarks/bench.py leaves in ``--data`` (default /tmp/dpodoctor-bench), smallest
first. ``--decide`` also prints what ``worker_count`` decides for each sweep's inputs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import ROOT, dpodoctor_command, run_timed

SWEEPS = (
    "sweep-1x200-args",
    "sweep-6x10000-noargs",
    "sweep-600x100-noargs",
    "sweep-20x20000-args",
)


def _env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CI")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def _load() -> str:
    """The 1-minute load average and the runnable tasks right now (/proc/loadavg's 4th field, this script included)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"load {fields[0]} runnable {fields[3].split('/')[0]}"
    except OSError:
        return f"load {os.getloadavg()[0]:.2f}"


def _run(env: dict[str, str], sweep: Path, jobs: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its workers) of one cold check."""
    flags = [] if jobs == "default" else ["--jobs", jobs]
    return run_timed(
        dpodoctor_command("check", str(sweep), "--no-config", "--no-cache", "--format", "json", *flags), env
    )


def _decision(sweep: Path) -> str:
    """What worker_count decides for this sweep (in this process: the load signal is this moment's)."""
    from dpodoctor.discovery import discover
    from dpodoctor.sweep import work_estimate, worker_count

    sources = discover([sweep])
    work = work_estimate(sources, diagnose=True)
    return (
        f"{len(sources)} sources, work {work / 1e6:.1f} MB-equivalent: default {worker_count(None, len(sources), work)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/tmp/dpodoctor-bench"))
    parser.add_argument("--jobs", action="append", default=[], help="1, 2, ... or default (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--decide", action="store_true", help="also print worker_count's decision for each sweep")
    args = parser.parse_args(argv)
    sweeps = args.sweeps or [args.data / name for name in SWEEPS if (args.data / name).is_dir()]
    settings = args.jobs or ["1", "2"]
    scratch = Path(tempfile.mkdtemp(prefix="dpodoctor-workers-"))
    try:
        env = _env(scratch)
        print(f"{os.cpu_count()} CPUs; {_load()} at start")
        for sweep in sweeps:
            if args.decide:
                print(f"{sweep.name}: {_decision(sweep)}")
            _run(env, sweep, settings[0])  # compiles the modules, warms the page cache
            times: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
            for round_ in range(args.repeat):
                print(f"  round {round_ + 1}: {_load()}", flush=True)
                for jobs in settings:
                    times[jobs].append(_run(env, sweep, jobs))
            for jobs in settings:
                wall = statistics.median(t[0] for t in times[jobs])
                cpu = statistics.median(t[1] for t in times[jobs])
                each = " ".join(f"{t[0]:.2f}/{t[1]:.2f}" for t in times[jobs])
                print(f"{sweep.name:24} --jobs {jobs:8} wall {wall:.2f} s  CPU {cpu:.2f} s  (wall/CPU: {each})")
        print(f"{_load()} at end")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
