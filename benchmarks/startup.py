"""The fixed cost of each command: wall and CPU time of fresh `dpodoctor` processes, medians of several.

Why a script of its own: the targets of issue 16 for the commands that read little (``--help``, ``rules``,
``explain`` <= 0.25 s; a check of one small run <= 0.4 s, cold and warm) are mostly interpreter start and imports,
which move by tens of milliseconds with the machine's load. So every command of every checkout given is run in
turn, round after round (checkout A, checkout B, next command, ...), and the medians compare runs taken in the same
minutes. ``--importtime`` adds the sum of ``python -X importtime``'s top-level import times of each command (medians
too): what the imports cost, apart from the work. The least CPU time of each command is shown too: on a busy
machine it is the closest to the command's own cost.

    python benchmarks/startup.py                                   # this checkout, 7 rounds
    python benchmarks/startup.py --checkout /work/main --checkout . --importtime   # two checkouts side by side

Each checkout is run with ``PYTHONPATH`` set to it, compiled modules in a temp ``PYTHONPYCACHEPREFIX`` (nothing is
written into a checkout; one unmeasured round first compiles them), and its own temp ``DPODOCTOR_CACHE_DIR``: the
cold check passes ``--no-cache``; the warm one reads the cache the unmeasured round filled. The small run is
``/tmp/dpodoctor-bench/sweep-1x200-args`` (benchmarks/bench.py writes it: 1 run x 200 steps of TensorBoard events as
transformers writes them) unless ``--run`` names another. Not part of the test suite, which runs it once with
``--smoke`` on a fixture to see that it still works (never a timed assertion).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = Path("/tmp/dpodoctor-bench/sweep-1x200-args")


def commands(run: Path, out: Path) -> dict[str, list[str]]:
    """The measured commands, by the name the table shows."""
    check = ["check", str(run), "--format", "json", "--output", str(out)]
    return {
        "--version": ["--version"],
        "--help": ["--help"],
        "rules": ["rules"],
        "explain DPO103": ["explain", "DPO103"],
        "check small run, cold": [*check, "--no-cache"],
        "check small run, warm": check,
    }


def child_env(checkout: Path, pycache: Path, cache: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONPYCACHEPREFIX": str(pycache)}
    env["DPODOCTOR_CACHE_DIR"] = str(cache)
    env["COLUMNS"] = "100"  # the same help and tables whatever terminal runs this
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(python: str, args: list[str], env: dict[str, str], importtime: bool) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system of the child) and, with ``importtime``, the summed top-level import
    microseconds of one fresh ``python -m dpodoctor ARGS`` (else 0). Run from the temp folder: ``-m`` puts the
    current folder first on the path, which must not be a checkout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    flags = ["-X", "importtime"] if importtime else []
    start = time.perf_counter()
    proc = subprocess.run(
        [python, *flags, "-m", "dpodoctor", *args],
        env=env,
        cwd=env["DPODOCTOR_CACHE_DIR"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"dpodoctor {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    total = 0
    if importtime:
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and "|" in line and "cumulative" not in line:
                _, cumulative, name = line[len("import time:") :].split("|")
                if not name.startswith("  "):  # top level: one space before the name
                    total += int(cumulative)
    return wall, cpu, float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout", action="append", type=Path, help="a dpodoctor checkout (repeatable); default: this one"
    )
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="the small run to check (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds (default: %(default)s; at least 5)")
    parser.add_argument("--importtime", action="store_true", help="also sum -X importtime's top-level import times")
    parser.add_argument("--smoke", action="store_true", help="one round, to see that the script works")
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    opts = parser.parse_args()
    checkouts = [c.resolve() for c in opts.checkout or [ROOT]]
    opts.run = opts.run.resolve()  # the commands run from a temp folder
    if not opts.run.exists():
        raise SystemExit(f"{opts.run}: not found (benchmarks/bench.py writes it; or give --run)")
    rounds = 1 if opts.smoke else max(opts.repeat, 5)
    with tempfile.TemporaryDirectory(prefix="dpodoctor-startup-") as tmp:
        work = Path(tmp)
        cmds = commands(opts.run, work / "report.json")
        envs = {c: child_env(c, work / f"pyc{i}", work / f"cache{i}") for i, c in enumerate(checkouts)}
        for env in envs.values():
            Path(env["DPODOCTOR_CACHE_DIR"]).mkdir()
        for checkout in checkouts:  # compile the modules and fill the cache, unmeasured (--smoke: the cache only)
            for name, args in cmds.items():
                if not opts.smoke or name.endswith("warm"):
                    run_once(opts.python, args, envs[checkout], importtime=False)
        samples: dict[tuple[Path, str], list[tuple[float, float, float]]] = {}
        for _ in range(rounds):
            for name, args in cmds.items():
                for checkout in checkouts:
                    got = run_once(opts.python, args, envs[checkout], importtime=False)
                    if opts.importtime:
                        got = (*got[:2], run_once(opts.python, args, envs[checkout], importtime=True)[2])
                    samples.setdefault((checkout, name), []).append(got)
    load = os.getloadavg()[0]
    print(f"dpodoctor startup: medians of {rounds} fresh processes per command, load average {load:.2f}")
    header = f"{'command':<24} {'checkout':<28} {'wall s':>7} {'CPU s':>7} {'CPU min':>7}"
    print(header + (f" {'imports ms':>10}" if opts.importtime else ""))
    for name in cmds:
        for checkout in checkouts:
            rows = samples[(checkout, name)]
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            least = min(r[1] for r in rows)  # the least disturbed process: the cost itself on a busy machine
            line = f"{name:<24} {str(checkout)[-28:]:<28} {wall:7.3f} {cpu:7.3f} {least:7.3f}"
            if opts.importtime:
                line += f" {statistics.median(r[2] for r in rows) / 1000:10.1f}"
            print(line)


if __name__ == "__main__":
    main()
