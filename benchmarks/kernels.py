"""CPU cost of the numeric kernels (dpodoctor.stats, dpodoctor.rolling) on short and long curves, and of a cold
diagnosis per run: this checkout against another one, in the same minute.

Why a script of its own: a check of 6 runs x 10k steps spends most of its diagnosis in a few kernels (Theil-Sen on
curves thinned to 400 or 500 points, Kendall's tau and rolling medians on 10k points), and a change to one of them
shows in benchmarks/bench.py only as a few % of a noisy wall time. Here each kernel is timed alone (process CPU
time, best of ``--repeat`` passes of a loop) on 100-, 500- and 10k-point curves, then ``diagnose_run`` on runs read
afresh for every pass (a read run keeps its curve summaries, so a second pass over the same runs would skip them).

``--against DIR`` measures the same in a fresh process with DIR's dpodoctor first on the path, alternating with this
checkout's ``--rounds`` times (default 3), and prints both side by side: the machine has 2 shared cores, so only
figures taken in the same minute compare. Inputs are read, never written; nothing is written into the checkout.

    PYTHONPATH=$PWD python -B benchmarks/kernels.py [--against /work/main] [--repeat 5] [--diagnose PATH ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the checkout for the dpodoctor modules imported below
sys.path.append(str(Path(__file__).resolve().parents[1]))  # appended: PYTHONPATH's checkout wins, as in accuracy.py

LENGTHS = (100, 500, 10_000)


def best_us(call: Callable[[], object], repeat: int, budget: float = 0.02) -> float:
    """Best of ``repeat`` loops of ``call``, in CPU µs per call (each loop ~``budget`` CPU-s)."""
    call()
    start = time.process_time()
    call()
    once = max(time.process_time() - start, 1e-6)
    loops = max(1, int(budget / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(loops):
            call()
        best = min(best, (time.process_time() - start) / loops)
    return best * 1e6


def curve(n: int, seed: int) -> tuple:
    """A DPO-like noisy curve of ``n`` points logged every 5 steps (a drift plus batch noise), as float arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    steps = np.arange(5, 5 * n + 5, 5, dtype=float)
    values = 0.7 - 0.3 * np.exp(-steps / steps[-1] * 3) + 0.05 * np.cumsum(rng.normal(size=n)) / np.sqrt(n)
    return steps, values + 0.1 * rng.normal(size=n)


def kernels(repeat: int) -> dict[str, float]:
    """µs per call of each kernel, named ``kernel@points``."""
    import numpy as np

    from dpodoctor import stats

    out: dict[str, float] = {}
    for n in LENGTHS:
        x, y = curve(n, n)
        xs = x.astype(np.int64)
        out[f"theil_sen_slope@{n}"] = best_us(lambda x=x, y=y: stats.theil_sen_slope(x, y), repeat)
        if n > 400:  # the curve summaries thin to 400 points (curve.SUMMARY_TREND_POINTS), the rules' trends to 500
            keep = np.unique(np.linspace(0, n - 1, 400).round().astype(np.int64))
            x4, y4 = x[keep], y[keep]
            out[f"theil_sen_slope@{n}->400"] = best_us(lambda x=x4, y=y4: stats.theil_sen_slope(x, y), repeat)
        out[f"kendall_tau@{n}"] = best_us(lambda x=x, y=y: stats.kendall_tau(x, y), repeat)
        out[f"median@{n}"] = best_us(lambda y=y: stats.median(y), repeat)
        out[f"noise_sigma_of@{n}"] = best_us(lambda y=y: stats.noise_sigma_of(y), repeat)
        window = stats.window_for(n)
        out[f"rolling_median@{n}"] = best_us(lambda y=y, w=window: stats.rolling_median(y, w), repeat)
        out[f"trend@{n}"] = best_us(lambda x=xs, y=y: stats.trend(stats.Curve(x, y)), repeat)
    return out


def diagnosis_ms_per_run(path: Path, repeat: int) -> float:
    """Best of ``repeat`` passes of diagnose_run over every run of ``path`` read afresh, in CPU ms per run."""
    from dpodoctor.api import load_all
    from dpodoctor.checks import diagnose_run

    best = float("inf")
    runs = 1
    for _ in range(repeat):
        loaded = load_all([path], jobs=1, cache=False)
        if loaded.problems:
            raise SystemExit(f"{path}: {loaded.problems[0]}")
        runs = max(len(loaded.runs), 1)
        start = time.process_time()
        for run in loaded.runs:
            diagnose_run(run)
        best = min(best, time.process_time() - start)
    return 1000 * best / runs


def measure(repeat: int, diagnose: list[Path]) -> dict[str, float]:
    figures = kernels(repeat)
    for path in diagnose:
        figures[f"diagnose_run ms/run {path.name}"] = diagnosis_ms_per_run(path, max(1, repeat // 2))
    return figures


def child(checkout: Path, repeat: int, diagnose: list[Path]) -> dict[str, float]:
    """:func:`measure` in a fresh process importing ``checkout``'s dpodoctor."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-B", __file__, "--json", "--repeat", str(repeat)]
    command += [arg for path in diagnose for arg in ("--diagnose", str(path))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of this many loops per kernel")
    parser.add_argument("--against", type=Path, help="another checkout to time in the same minute (e.g. /work/main)")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: alternations of the two checkouts")
    parser.add_argument("--diagnose", type=Path, action="append", default=[], help="also time diagnose_run on this")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (what --against reads)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.repeat, args.diagnose)))
        return
    here = Path(__file__).resolve().parents[1]
    if args.against is None:
        for name, value in measure(args.repeat, args.diagnose).items():
            print(f"{name:42} {value:10.1f}")
        return
    rounds: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
    for _ in range(args.rounds):
        rounds["other"].append(child(args.against.resolve(), args.repeat, args.diagnose))
        rounds["this"].append(child(here, args.repeat, args.diagnose))
    print(f"{'kernel@points (us/call; diagnose ms/run)':42} {str(args.against)[-12:]:>12} {'this':>10} {'ratio':>7}")
    for name in rounds["this"][0]:
        other = min(r[name] for r in rounds["other"])
        this = min(r[name] for r in rounds["this"])
        print(f"{name:42} {other:12.1f} {this:10.1f} {other / this:6.2f}x")
    print(f"(best of {args.rounds} alternating rounds, each the best of {args.repeat} loops; CPU time)")


if __name__ == "__main__":
    main()
