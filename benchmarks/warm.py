"""The warm re-check (issue 16: <= 0.5 s on 600 runs x 100 steps and on 6 x 10k): wall and CPU seconds of
``dpodoctor check SWEEP --format json`` once the cache holds the sweep, for this checkout and, side by side in the
same minute, for other checkouts (``--against``, e.g. the main branch's).

Why a script of its own: benchmarks/bench.py times the warm check of its own sweeps among every other case; comparing
two versions of the code needs them measured alternately, on the same inputs, while the shared machine's load is
the same for both. Each checkout gets its own cache folder under the temp folder (filled by one cold check, which
is not timed, then one warm check that settles it), its own compiled modules (``PYTHONPYCACHEPREFIX``), and then
``--repeat`` rounds of one fresh process per checkout, alternating; the medians are printed with the load average.
The warm report is checked to equal the cold one byte for byte. Writes nothing into the checkouts.

    PYTHONPATH=$PWD python -B benchmarks/warm.py [--against /work/main] [--repeat 5] [SWEEP ...]

SWEEPs default to the sweeps benchmarks/bench.py leaves in ``--data`` (default /tmp/dpodoctor-bench).
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

SWEEPS = ("sweep-600x100-args", "sweep-600x100-noargs", "sweep-6x10000-args", "sweep-6x10000-noargs")


def _env(checkout: Path, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CI")}
    env["PYTHONPATH"] = str(checkout)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    env["DPODOCTOR_CACHE_DIR"] = str(scratch / "cache")
    return env


def _run(env: dict[str, str], sweep: Path, out: Path, *flags: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh ``check`` process writing its JSON report to ``out``."""
    command = dpodoctor_command("check", str(sweep), "--no-config", "--format", "json", "-o", str(out), *flags)
    return run_timed(command, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/tmp/dpodoctor-bench"))
    parser.add_argument("--against", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sweeps = args.sweeps or [args.data / name for name in SWEEPS if (args.data / name).is_dir()]
    checkouts = [ROOT, *[p.resolve() for p in args.against]]
    names = ["this" if c == ROOT else str(c) for c in checkouts]
    scratch = Path(tempfile.mkdtemp(prefix="dpodoctor-warm-"))
    try:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
        for sweep in sweeps:
            envs, reports = [], []
            for n, checkout in enumerate(checkouts):
                place = scratch / f"{n}"
                shutil.rmtree(place, ignore_errors=True)
                place.mkdir()
                env = _env(checkout, place)
                cold, warm = place / "cold.json", place / "warm.json"
                _run(env, sweep, cold)  # fills the cache
                _run(env, sweep, warm)  # the first warm check (settles the cache and the compiled modules)
                if cold.read_bytes() != warm.read_bytes():
                    raise RuntimeError(f"{names[n]}: the warm report of {sweep} differs from the cold one")
                envs.append(env)
                reports.append(cold.read_bytes())
            if len(set(reports)) != 1:
                print(f"  note: the checkouts' reports of {sweep.name} differ")
            times: list[list[tuple[float, float]]] = [[] for _ in checkouts]
            for _ in range(args.repeat):
                for n, env in enumerate(envs):
                    times[n].append(_run(env, sweep, scratch / f"{n}" / "again.json"))
            for n, name in enumerate(names):
                wall = statistics.median(t[0] for t in times[n])
                cpu = statistics.median(t[1] for t in times[n])
                walls = " ".join(f"{t[0]:.2f}" for t in times[n])
                print(f"{sweep.name:24} {name:12} warm wall {wall:.3f} s  CPU {cpu:.3f} s  (walls: {walls})")
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
