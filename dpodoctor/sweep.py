"""Loading (and diagnosing) the runs of a sweep: from the cache where it can, in worker processes where it pays.

Why processes: reading a run and running the rules on it is CPU work in Python and numpy, independent from run to
run, so a sweep of tens of runs scales with the cores. Each worker reads whole runs (and, for ``check``, diagnoses
them), and sends back the finished :class:`~dpodoctor.model.Run` (and its report), so nothing crosses process
boundaries twice. A check whose work is small (a few small files, or a sweep the cache already holds) stays in one
process: starting workers would cost more than it saves.

The result is the same, in the same order, whatever the number of workers: each source's outcome is put back in its
place in discovery order before anything is reported.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dpodoctor.discovery import RunSource
from dpodoctor.errors import DpoDoctorError, NoMetricsError, ReadError
from dpodoctor.model import Run
from dpodoctor.results import RunReport
from dpodoctor.settings import DiagnoseSettings

__all__ = ["Outcome", "default_jobs", "load_sources", "worker_count"]

# Below this much work (bytes to parse, plus the bytes of the runs to diagnose), one process is faster than
# starting workers: a check of a few small runs starts instantly.
PARALLEL_MIN_BYTES: Final = 8 * 1024 * 1024
# Rough speeds for deciding whether to show a progress bar: parsing, and the rules (which scale with the points).
_PARSE_BYTES_PER_S: Final = 40e6
_RULES_BYTES_PER_S: Final = 30e6
_PROGRESS_AFTER_S: Final = 1.0

_ERRORS: Final[dict[str, type[DpoDoctorError]]] = {
    "DpoDoctorError": DpoDoctorError,
    "ReadError": ReadError,
    "NoMetricsError": NoMetricsError,
}


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class Outcome:
    """What one source gave: its runs (and their reports, when asked to diagnose), or the error that stopped it."""

    runs: list[Run]
    reports: list[RunReport] | None = None
    error: DpoDoctorError | None = None

    def __iter__(self) -> Any:
        return iter((self.runs, self.reports, self.error))


@dataclass
class _Job:
    """The picklable description of one source's work."""

    source: RunSource
    metric_map: dict[str, str] | None
    cache_root: str | None
    diagnose: DiagnoseSettings | None


def _error_parts(exc: DpoDoctorError) -> tuple[str, str, str | None]:
    name = "NoMetricsError" if isinstance(exc, NoMetricsError) else type(exc).__name__
    if name not in _ERRORS:
        name = "ReadError" if isinstance(exc, ReadError) else "DpoDoctorError"
    return name, exc.reason, None if exc.path is None else str(exc.path)


def _rebuild_error(parts: tuple[str, str, str | None]) -> DpoDoctorError:
    name, reason, path = parts
    return _ERRORS.get(name, DpoDoctorError)(reason, path)


def _run_job_remote(job: _Job) -> tuple[list[Run], list[RunReport] | None, tuple[str, str, str | None] | None]:
    """:func:`_run_job` in a worker. Its error comes back as (class name, reason, path): a DpoDoctorError does not
    survive pickling with its ``reason`` and ``path`` (its constructor takes them, its ``args`` hold the message)."""
    runs, reports, exc = _run_job(job)
    return runs, reports, None if exc is None else _error_parts(exc)


def _run_job(job: _Job) -> Outcome:
    """Read one source (through the cache when there is one) and, when asked, diagnose its runs."""
    from dpodoctor.cache import RunCache
    from dpodoctor.checks import diagnose_run
    from dpodoctor.loading import read_source
    from dpodoctor.readers import read_runs

    cache = RunCache(Path(job.cache_root)) if job.cache_root is not None else None
    keys: list[str | None] = []

    def read(reader: Any, files: list[Path]) -> list[Any]:
        if cache is None:
            return read_runs(reader, files)
        results, key = cache.read_runs_keyed(reader, files)
        keys.append(key)
        return results

    try:
        runs = read_source(job.source, job.metric_map, read)
    except DpoDoctorError as exc:
        return Outcome([], None, exc)
    if job.diagnose is None:
        return Outcome(runs)
    data_key = keys[0] if keys else None
    reports = []
    for index, run in enumerate(runs):
        key = cache.diagnosis_key(data_key, index, run, job.diagnose, job.metric_map) if cache is not None else None
        report = cache.load_diagnosis(key, run) if cache is not None else None
        if report is None:
            report = diagnose_run(run, settings=job.diagnose)
            if cache is not None:
                cache.store_diagnosis(key, report)
        reports.append(report)
    return Outcome(runs, reports)


def _size(source: RunSource) -> int:
    total = 0
    for path in source.files:
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size
    return total


def _fork_context() -> Any:
    """fork where it exists: workers start in milliseconds with every module already imported."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def load_sources(
    sources: list[RunSource],
    *,
    metric_map: dict[str, str] | None = None,
    jobs: int | None = 1,
    cache: bool | Path | str = False,
    progress: bool = False,
    diagnose: DiagnoseSettings | None = None,
    parallel_min_bytes: int | None = None,
    warnings: list[str] | None = None,
) -> list[Outcome]:
    """One :class:`Outcome` per source, in the order given.

    ``jobs``: worker processes at most (None: one per CPU). ``cache``: True for the default cache folder, a path for
    another, False for none. ``progress``: allow a progress bar on stderr when there is more than about a second of
    work. ``diagnose``: the settings for :func:`~dpodoctor.rules.diagnose_run`; when given, each run is diagnosed
    in the process that read it (and its report is cached with it). ``warnings``: where to say that the cache
    folder was refused (see :mod:`dpodoctor.cache`).
    """
    from dpodoctor.cache import RunCache

    cache_root: str | None = None
    store: RunCache | None = None
    if cache:
        store = RunCache(None if cache is True else Path(cache))
        if store.refused is not None:  # an untrusted cache folder: read everything, and say why
            if warnings is not None:
                warnings.append(f"cache not used: {store.refused}")
            store = None
        else:
            cache_root = str(store.root)
    job_list = [_Job(s, metric_map, cache_root, diagnose) for s in sources]
    outcomes: list[Outcome | None] = [None] * len(sources)

    # What is left to do: sources the cache cannot answer are parsed; runs without a cached diagnosis are diagnosed.
    pending: list[int] = []
    sizes: dict[int, int] = {}  # bytes of logs of each pending source
    parse_bytes = 0
    rules_bytes = 0
    for i, source in enumerate(sources):
        hit = store.lookup(source.reader, source.files) if store is not None else None
        if hit is not None and store is not None:
            done = _from_cache(store, job_list[i], *hit)
            if done is not None:
                outcomes[i] = done
                continue
        pending.append(i)
        size = sizes[i] = _size(source)
        if hit is None:
            parse_bytes += size
        if diagnose is not None:
            rules_bytes += size
    threshold = PARALLEL_MIN_BYTES if parallel_min_bytes is None else parallel_min_bytes
    workers = worker_count(jobs, len(pending), parse_bytes + rules_bytes, threshold)
    estimate = (parse_bytes / _PARSE_BYTES_PER_S + rules_bytes / _RULES_BYTES_PER_S) / max(1, workers)
    bar = _Progress(len(pending)) if progress and pending and estimate >= _PROGRESS_AFTER_S else None

    try:
        if workers <= 1:
            if bar is not None:
                bar.start()
            for i in pending:
                outcomes[i] = _run_job(job_list[i])
                if bar is not None:
                    bar.advance()
        else:
            _run_parallel(job_list, pending, sizes, workers, outcomes, bar)
    finally:
        if bar is not None:
            bar.stop()
    return [o if o is not None else Outcome([]) for o in outcomes]


def worker_count(jobs: int | None, sources: int, work_bytes: int, min_bytes: int = PARALLEL_MIN_BYTES) -> int:
    """How many worker processes a check uses: more than one only where they win.

    Why not always one per CPU: a worker costs its start (fork: milliseconds) plus sending every finished run and
    report back through a pipe (pickling frames of millions of points), and on a machine whose cores are already
    busy a second process only competes with the first. Measured on this project's 2-core machine while four other
    sessions kept it busy (load average 7-8), `check --no-cache --format json` of 6 runs x 10k steps (45 MB of event
    files, no args summary): --jobs 1 20.5 s wall, --jobs 2 27.7 s (workers lose by a third); before this rule the
    default already chose 2 there. So:

    * fewer pending sources than 2, or less than ``min_bytes`` (8 MB) of logs to parse and runs to diagnose: one
      process (a few seconds of work at most; starting workers costs more than it saves);
    * otherwise at most ``jobs`` (None: one per CPU this process may use), at most one per source, and, when the
      user did not ask for a number, at most the CPUs left idle by the machine's load (1-minute load average): on
      a busy machine, one process.

    The report is the same whatever this returns (outcomes are put back in discovery order).
    """
    workers = default_jobs() if jobs is None else max(1, jobs)
    workers = min(workers, sources)
    if workers <= 1 or work_bytes < min_bytes:
        return 1
    if jobs is None:
        workers = min(workers, max(1, default_jobs() - _busy_cpus()))
    return workers


def _busy_cpus() -> int:
    """CPUs other processes keep busy: the 1-minute load average, rounded (0 where the OS does not say)."""
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0


def _from_cache(store: Any, job: _Job, results: list[Any], key: str) -> Outcome | None:
    """The outcome of a source whose read (and, when asked, every diagnosis) the cache holds; else None."""
    from dpodoctor.loading import read_source

    try:
        runs = read_source(job.source, job.metric_map, lambda reader, files: results)
    except DpoDoctorError as exc:
        return Outcome([], None, exc)
    if job.diagnose is None:
        return Outcome(runs)
    reports = []
    for index, run in enumerate(runs):
        report = store.load_diagnosis(store.diagnosis_key(key, index, run, job.diagnose, job.metric_map), run)
        if report is None:
            return None
        reports.append(report)
    return Outcome(runs, reports)


def _outcome(
    result: tuple[list[Run], list[RunReport] | None, tuple[str, str, str | None] | None],
) -> Outcome:
    runs, reports, error = result
    return Outcome(runs, reports, _rebuild_error(error) if error is not None else None)


def _run_parallel(
    job_list: list[_Job],
    pending: list[int],
    sizes: dict[int, int],
    workers: int,
    outcomes: list[Outcome | None],
    bar: _Progress | None,
) -> None:
    # Largest first: a sweep's biggest run should not start last and leave the other workers idle.
    order = sorted(pending, key=lambda i: -sizes[i])
    with ProcessPoolExecutor(max_workers=workers, mp_context=_fork_context()) as pool:
        futures: dict[Future[Any], int] = {pool.submit(_run_job_remote, job_list[i]): i for i in order}
        if bar is not None:
            bar.start()  # after the workers are forked: no thread of ours is running while they are
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[futures[future]] = _outcome(future.result())
                if bar is not None:
                    bar.advance()


class _Progress:
    """A transient rich progress bar on stderr (the caller decides whether one is wanted at all)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._progress: Any = None
        self._task: Any = None
        self._started = 0.0

    def start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("dpodoctor: reading runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self._task = self._progress.add_task("runs", total=self.total)
        self._progress.start()
        self._started = time.monotonic()

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def progress_wanted(stream: Any = None, environ: dict[str, str] | None = None) -> bool:
    """A progress bar is for people: stderr is a terminal, and not CI (``CI`` is set by every CI system)."""
    stream = stream or sys.stderr
    environ = dict(os.environ) if environ is None else environ
    if environ.get("CI") or environ.get("TERM") == "dumb":
        return False
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
