"""What the benchmark scripts share: running a command in a fresh process and measuring its time, CPU and the peak
memory of its whole process tree, without writing anything into the checkout.

Why one module: benchmarks/bench.py and benchmarks/stdout_memory.py measured the same things with two copies of the
same sampling loop. Not part of the package or the test suite.

Fresh processes get ``PYTHONPYCACHEPREFIX`` set to a folder under the system temp folder: compiled modules go
there, never into ``__pycache__`` folders of the checkout, and after the first run every process starts from
compiled modules as an installed dpodoctor does (``PYTHONDONTWRITEBYTECODE``/``-B`` alone would also keep the
checkout clean, but then every process compiles dpodoctor's sources again, a cost no installed copy pays).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYCACHE = Path(tempfile.gettempdir()) / "dpodoctor-bench-pycache"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured process: this checkout first on the path, compiled modules outside it."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Sampler:
    """Peak RSS of a process and of its whole tree (workers included: the sum over the tree at each sample), every
    20 ms. Without psutil both stay 0 (the kernel's figure in :func:`run_measured` still holds)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_main = 0
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                main = proc.memory_info().rss
                tree = main
                for child in proc.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error:
                break
            self.peak_main = max(self.peak_main, main)
            self.peak_tree = max(self.peak_tree, tree)
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and their waited-for children: the workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(
    command: Sequence[str], env: dict[str, str] | None = None, ok: Sequence[int] = (0, 1)
) -> dict[str, Any]:
    """Run ``command`` in a fresh process: wall seconds, CPU seconds (its children included), exit code, peak RSS of
    the main process and of the process tree (sampled), and the kernel's peak RSS of the largest process waited for
    so far (``ru_maxrss`` of RUSAGE_CHILDREN: a running maximum over this script's children)."""
    before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(command), cwd=ROOT, env=env or child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    with Sampler(proc.pid) as sampler:
        _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {err.strip()[-2000:]}")
    return {
        "seconds": seconds,
        "cpu": children_cpu() - before,
        "exit": proc.returncode,
        "rss_main": sampler.peak_main,
        "rss_tree": sampler.peak_tree,
        "rss_kernel": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def run_timed(command: Sequence[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its workers) of one fresh process, output discarded; exit 0 or
    1 (a check that found errors) is a run, anything else an error naming the command and its stderr's end. No
    memory sampling: the scripts that compare checkouts side by side time only, so nothing polls while they run."""
    before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        list(command),
        env=env,
        cwd=cwd or tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return wall, children_cpu() - before


def dpodoctor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dpodoctor", *args]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"
