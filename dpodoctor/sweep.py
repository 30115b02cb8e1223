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
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dpodoctor.discovery import RunSource
from dpodoctor.errors import DpoDoctorError, NoMetricsError, ReadError
from dpodoctor.model import Run
from dpodoctor.results import RunReport
from dpodoctor.settings import DiagnoseSettings

__all__ = ["Checked", "Outcome", "SweepState", "default_jobs", "load_sources", "worker_count"]

# Below this much work (bytes to parse, plus the bytes of the runs to diagnose), one process is faster than
# starting workers: a check of a few small runs starts instantly.
PARALLEL_MIN_BYTES: Final = 8 * 1024 * 1024
# A run's fixed cost of diagnosis (~5 ms: ~30 rules, the curve summaries, its report entry), in bytes of logs at
# the rules' speed: 600 runs of 100 steps are more work than their 50 MB of events say.
RUN_BYTES: Final = 150_000
# Tasks sent to the workers: about this many batches of sources per worker, each of at most this many sources.
BATCHES_PER_WORKER: Final = 8
BATCH_MAX_SOURCES: Final = 64
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
    # With ``record``: every file and folder the source's read (and β search) depended on, cached or not.
    depends: list[str] | None = None

    def __iter__(self) -> Any:
        return iter((self.runs, self.reports, self.error))


@dataclass
class _Job:
    """The picklable description of one source's work."""

    source: RunSource
    metric_map: dict[str, str] | None
    cache_root: str | None
    diagnose: DiagnoseSettings | None
    record: bool = False


def _error_parts(exc: DpoDoctorError) -> tuple[str, str, str | None]:
    name = "NoMetricsError" if isinstance(exc, NoMetricsError) else type(exc).__name__
    if name not in _ERRORS:
        name = "ReadError" if isinstance(exc, ReadError) else "DpoDoctorError"
    return name, exc.reason, None if exc.path is None else str(exc.path)


def _rebuild_error(parts: tuple[str, str, str | None]) -> DpoDoctorError:
    name, reason, path = parts
    return _ERRORS.get(name, DpoDoctorError)(reason, path)


_Remote = tuple[list[Run], list[RunReport] | None, tuple[str, str, str | None] | None, list[str] | None]


def _run_job_remote(job: _Job) -> _Remote:
    """:func:`_run_job` in a worker. Its error comes back as (class name, reason, path): a DpoDoctorError does not
    survive pickling with its ``reason`` and ``path`` (its constructor takes them, its ``args`` hold the message)."""
    out = _run_job(job)
    return out.runs, out.reports, None if out.error is None else _error_parts(out.error), out.depends


def _run_job(job: _Job) -> Outcome:
    """Read one source (through the cache when there is one) and, when asked, diagnose its runs; with
    ``job.record``, say what the read depended on (:attr:`Outcome.depends`)."""
    if not job.record:
        return _do_job(job)
    from dpodoctor.cache import record_dependencies

    with record_dependencies() as seen:
        outcome = _do_job(job, seen)
    outcome.depends = sorted(seen)
    return outcome


def _do_job(job: _Job, seen: set[str] | None = None) -> Outcome:
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
    finally:
        if seen is not None and cache is not None:
            seen |= cache.depends
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
    import multiprocessing  # here: a check that starts no worker does not import it

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
    record: bool = False,
) -> list[Outcome]:
    """One :class:`Outcome` per source, in the order given.

    ``jobs``: worker processes at most (None: one per CPU). ``cache``: True for the default cache folder, a path for
    another, False for none. ``progress``: allow a progress bar on stderr when there is more than about a second of
    work. ``diagnose``: the settings for :func:`~dpodoctor.rules.diagnose_run`; when given, each run is diagnosed
    in the process that read it (and its report is cached with it). ``warnings``: where to say that the cache
    folder was refused (see :mod:`dpodoctor.cache`). ``record``: fill each outcome's ``depends``. ``cache`` may
    also be a :class:`~dpodoctor.cache.RunCache` already opened.
    """
    from dpodoctor.cache import RunCache, record_dependencies

    cache_root: str | None = None
    store: RunCache | None = None
    if isinstance(cache, RunCache):
        store = cache
        cache_root = str(store.root)
    elif cache:
        store = RunCache(None if cache is True else Path(cache))
        if store.refused is not None:  # an untrusted cache folder: read everything, and say why
            if warnings is not None:
                warnings.append(f"cache not used: {store.refused}")
            store = None
        else:
            cache_root = str(store.root)
    job_list = [_Job(s, metric_map, cache_root, diagnose, record) for s in sources]
    outcomes: list[Outcome | None] = [None] * len(sources)

    # What is left to do: sources the cache cannot answer are parsed; runs without a cached diagnosis are diagnosed.
    pending: list[int] = []
    sizes: dict[int, int] = {}  # bytes of logs of each pending source
    parse_bytes = 0
    rules_bytes = 0
    for i, source in enumerate(sources):
        seen: set[str] = set()
        with record_dependencies() if record and store is not None else contextlib.nullcontext(seen) as seen:
            if store is not None:
                store.depends = set()
            hit = store.lookup(source.reader, source.files) if store is not None else None
            done = _from_cache(store, job_list[i], *hit) if hit is not None and store is not None else None
        if done is not None:
            if record and store is not None:
                done.depends = sorted(seen | store.depends)
            outcomes[i] = done
            continue
        pending.append(i)
        size = sizes[i] = _size(source)
        if hit is None:
            parse_bytes += size
        if diagnose is not None:
            rules_bytes += size + RUN_BYTES  # as work_estimate counts it
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


def work_estimate(sources: list[RunSource], *, diagnose: bool, parse: bool = True) -> int:
    """The work of reading (``parse``) and diagnosing (``diagnose``) ``sources``, in bytes of logs: what
    :func:`worker_count` compares with its threshold. The bytes of the files to parse, plus as much again for the
    rules (which scale with the points) and :data:`RUN_BYTES` for each run to diagnose (its fixed cost)."""
    size = sum(_size(source) for source in sources)
    return (size if parse else 0) + ((size + RUN_BYTES * len(sources)) if diagnose else 0)


def worker_count(jobs: int | None, sources: int, work_bytes: int, min_bytes: int = PARALLEL_MIN_BYTES) -> int:
    """How many worker processes a check uses: more than one only where they win.

    Why not always one per CPU: a worker costs its start (fork: milliseconds) plus sending every finished run and
    report back through a pipe (~1 ms a small run: pickling its points and report), and a second process on a core
    another program keeps busy only competes with the first. So:

    * fewer pending sources than 2, or less than ``min_bytes`` (8 MB) of work (:func:`work_estimate`: the logs to
      parse and diagnose, and a fixed share for each run to diagnose): one process. Below that the whole check is
      about half a second, which a worker's start and the transfer of its results would eat;
    * otherwise at most ``jobs`` (None: one per CPU this process may use), at most one per source, and, when the
      user did not ask for a number, at most the CPUs nothing else is running on right now (:func:`_busy_cpus`:
      the tasks runnable at this instant besides this process, not a load average, which counts this very
      check's past and kept a benchmark on a quiet machine at one process).

    Measured on this project's 2-core machine (benchmarks/workers.py, cold ``check --no-cache --format json``,
    --jobs 1 and 2 alternating, medians of 3 fresh processes; the machine shared with four other sessions, load
    average 4-5, 5-7 tasks runnable): 6 x 10k (45 MB) --jobs 1 3.6 s wall / 1.75 CPU-s, --jobs 2 4.5 s / 2.1 CPU-s;
    600 x 100 13.2 s / 7.4 CPU-s against 14.9 s / 9.3 CPU-s; 20 x 20k (290 MB) 14.7 s / 6.4 CPU-s against
    15.0 s / 7.6 CPU-s. At load average 1.3-2.1 (one other task running: 2 runnable with this one): 6 x 10k
    1.50 s / 1.49 CPU-s against 1.83 s / 1.86 CPU-s, 600 x 100 6.04 s / 6.00 CPU-s against 7.26 s / 7.42 CPU-s,
    and the default (one process there) 1.36 s and 6.20 s. So a second process loses whenever another task holds a
    core, which the runnable count sees. A quiet machine (nothing else runnable) was not available to measure the
    crossover in this session; the issue's figures from a quieter hour gave 6 x 10k 1.6-1.8 s for one process and
    1.1-1.4 s for two, which is where the default now gives two.

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
    """CPUs other tasks are running on right now: the runnable tasks (``procs_running`` in /proc/stat, the same
    count as /proc/loadavg's 4th field) less this process, the median of three looks a millisecond apart (one look
    may catch a short-lived task). 0 where the OS does not say (the cost of a wrong guess is bounded: at most as
    many workers as CPUs)."""
    looks = []
    for attempt in range(3):
        if attempt:
            time.sleep(0.001)
        try:
            with open("/proc/stat", "rb") as handle:
                text = handle.read()
        except OSError:
            return 0
        start = text.find(b"procs_running ")
        if start < 0:
            return 0
        looks.append(int(text[start + 14 : text.index(b"\n", start)]))
    return max(0, sorted(looks)[1] - 1)


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


def _outcome(result: _Remote) -> Outcome:
    runs, reports, error, depends = result
    return Outcome(runs, reports, _rebuild_error(error) if error is not None else None, depends)


def _run_batch_remote(jobs: list[_Job]) -> list[_Remote]:
    """Several sources in one task: one message each way for a batch of small runs instead of one per run."""
    return [_run_job_remote(job) for job in jobs]


def batches(order: list[int], sizes: dict[int, int], workers: int) -> list[list[int]]:
    """``order`` cut into consecutive batches of about ``1 / (BATCHES_PER_WORKER * workers)`` of the bytes each,
    at most :data:`BATCH_MAX_SOURCES` sources (one source at least).

    Why: a task costs a round trip through the pool's queues (pickling the job, the result thread, a wake-up of the
    parent): ~1 ms each, which 600 small runs paid 600 times. Several batches per worker keep the load balanced
    (the largest sources, first in ``order``, travel alone or nearly)."""
    total = sum(sizes[i] for i in order)
    target = max(1, total // max(1, BATCHES_PER_WORKER * workers))
    out: list[list[int]] = []
    current: list[int] = []
    weight = 0
    for i in order:
        if current and (weight + sizes[i] > target or len(current) >= BATCH_MAX_SOURCES):
            out.append(current)
            current, weight = [], 0
        current.append(i)
        weight += sizes[i]
    if current:
        out.append(current)
    return out


def _run_parallel(
    job_list: list[_Job],
    pending: list[int],
    sizes: dict[int, int],
    workers: int,
    outcomes: list[Outcome | None],
    bar: _Progress | None,
) -> None:
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    # Largest first: a sweep's biggest run should not start last and leave the other workers idle.
    order = sorted(pending, key=lambda i: -sizes[i])
    with ProcessPoolExecutor(max_workers=workers, mp_context=_fork_context()) as pool:
        futures: dict[Future[Any], list[int]] = {
            pool.submit(_run_batch_remote, [job_list[i] for i in batch]): batch
            for batch in batches(order, sizes, workers)
        }
        if bar is not None:
            bar.start()  # after the workers are forked: no thread of ours is running while they are
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                for i, result in zip(futures[future], future.result(), strict=True):
                    outcomes[i] = _outcome(result)
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


# ---------------------------------------------------------------------------------------------- whole-sweep entries

# A file changed less than this long before the check started is not remembered in a whole-sweep entry: its change
# time may not yet differ from that of a change still to come within the file system's clock granularity (and a
# network file system's clock may lag ours). Such a sweep is still served by the per-run entries.
SETTLED_NS: int = 1_000_000_000

_FIELDS: Final = ("name", "source", "beta", "beta_source", "steps_derived", "summary", "config", "notes")


@dataclass
class Checked:
    """What a whole check of some paths gave: every run with its report, and what the walk and the reads said."""

    runs: list[Run]
    reports: list[RunReport]
    problems: list[DpoDoctorError]
    ignored: list[str]
    warnings: list[str]


class SweepState:
    """The cache entry of a whole check: every run's report (its JSON entry already encoded) and the runs' own
    fields, so a warm re-check of an unchanged sweep is one entry read and a stat of each file it depended on.

    Why: with one entry for each run's data and one for its diagnosis, a warm check of 600 small runs read 1,200
    entries, checked 1,200 MACs, looked for β beside every run and built 600 runs' points: ~1 s of a 1.3 s check.

    Named by the check's identity: the current folder and the paths as given (a run's name and path come from them),
    the metric map, the diagnosis settings (β, selections, rule options) and the reader registry; the dpodoctor
    version, cache format and package files are in every entry's name (:func:`~dpodoctor.cache.code_fingerprint`).
    Used only when every file and folder the check depended on is unchanged (:func:`~dpodoctor.cache.dependency_stat`):
    the paths given, every folder walked and every file in them, every file a reader or the β and config search
    opened and every folder they listed, the files the per-run entries depended on, and the folders of the inputs.
    Anything else (a file touched, a run added or removed, a config written beside a run, another ``--beta``) misses,
    and the check goes through the per-run entries as before, which also writes a new whole-sweep entry.

    A run from the entry has no points until something reads them (the text report, ``--plot-dir``,
    ``--require-metrics``, a Python user): then its source is read again through the per-run entries.
    """

    def __init__(self, store: Any, paths: list[Path], metric_map: dict[str, str] | None, diagnose: DiagnoseSettings):
        import json

        from dpodoctor.readers import READERS

        self.store = store
        self.metric_map = metric_map
        self.started_ns = time.time_ns()
        # dpodoctor's own environment variables change what readers read ($DPODOCTOR_STDOUT_MAX_POINTS); never the
        # cache's folder or key (the key is a secret: not in an entry)
        environ = {k: v for k, v in sorted(os.environ.items()) if k.startswith("DPODOCTOR_") and "CACHE" not in k}
        identity = [
            os.getcwd(),
            [str(p) for p in paths],
            metric_map,
            diagnose.to_dict(),
            [r.name for r in READERS],
            environ,
        ]
        self.identity: Any = json.loads(json.dumps(identity))

    # ------------------------------------------------------------------ reading

    def load(self) -> Checked | None:
        """The check from the entry, or None (no entry, a file changed, or an entry that fails a check)."""
        got = self.store.load_sweep(self.identity)
        if got is None:
            return None
        meta, text = got
        try:
            return self._checked(meta, text)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
            return None

    def _checked(self, meta: dict[str, Any], text: Any) -> Checked:
        from dpodoctor.model import NO_FRAME_YET, Ended, LazyRun, Once
        from dpodoctor.results import RunReport

        def strings(value: Any) -> list[str]:
            if type(value) is not list or not all(type(v) is str for v in value):
                raise TypeError("not a list of strings")
            return value

        readers = [Once(self._reread(self._source(item, strings))) for item in meta["sources"]]
        blob = text
        runs: list[Run] = []
        reports: list[RunReport] = []
        for item in meta["runs"]:
            src, index, start, stop = item["at"]
            if not all(type(v) is int for v in (src, index, start, stop)) or not 0 <= start <= stop <= len(blob):
                raise ValueError("run position")
            fields = {k: item[k] for k in _FIELDS}
            if not (
                type(fields["name"]) is str
                and type(fields["source"]) is str
                and (fields["beta"] is None or type(fields["beta"]) in (int, float))
                and (fields["beta_source"] is None or type(fields["beta_source"]) is str)
                and type(fields["steps_derived"]) is bool
                and type(fields["summary"]) is dict
                and type(fields["config"]) is dict
                and type(item["path"]) is str
            ):
                raise TypeError("run fields")
            strings(fields["notes"])
            run = LazyRun(
                frame=NO_FRAME_YET,
                path=Path(item["path"]),
                ended=Ended(item["ended"]),
                other_sources=[Path(p) for p in strings(item["other_sources"])],
                **fields,
            )
            run.defer(*_deferred(readers[src], index))  # IndexError for a bad source number
            fragment = blob[start:stop]
            if not (fragment.startswith("{\n") and fragment.endswith("\n    }")):
                raise ValueError("run fragment")
            report = RunReport.from_dict(run, item["report"])
            report.__dict__["_json_fragment"] = fragment
            runs.append(run)
            reports.append(report)
        problems = []
        for name, reason, path in meta["problems"]:
            if not (type(name) is str and type(reason) is str and (path is None or type(path) is str)):
                raise TypeError("problem")
            problems.append(_rebuild_error((name, reason, path)))
        return Checked(runs, reports, problems, strings(meta["ignored"]), strings(meta["warnings"]))

    @staticmethod
    def _source(item: dict[str, Any], strings: Callable[[Any], list[str]]) -> Callable[[], RunSource]:
        """The source of ``item``, checked now, made (its reader loaded) only when a run of it is read again."""
        from dpodoctor.readers import get_reader

        if not (type(item["name"]) is str and type(item["root"]) is str and type(item["explicit"]) is bool):
            raise TypeError("source")
        reader, files, others = strings([item["reader"]])[0], strings(item["files"]), strings(item["others"])
        return lambda: RunSource(
            name=item["name"],
            root=Path(item["root"]),
            reader=get_reader(reader),
            files=[Path(p) for p in files],
            others=[Path(p) for p in others],
            explicit=item["explicit"],
        )

    def _reread(self, source: Callable[[], RunSource]) -> Callable[[], list[Run]]:
        """The runs of ``source`` read again (through the per-run entries): where a run from the entry gets its
        points when something reads them."""

        def read() -> list[Run]:
            from dpodoctor.loading import read_source

            return read_source(source(), self.metric_map, self.store.read_runs)

        return read

    # ------------------------------------------------------------------ writing

    def store_check(
        self, checked: Checked, sources: list[RunSource], outcomes: list[Outcome], visited: set[str]
    ) -> None:
        """Remember ``checked`` when every part of it is exact JSON and nothing it depended on changed since
        :data:`SETTLED_NS` before the check started."""
        from dpodoctor.cache import dependency_stat
        from dpodoctor.jsondoc import run_fragment

        depends = set(visited)
        runs_meta: list[dict[str, Any]] = []
        pieces: list[str] = []
        offset = 0
        source_items = []
        reports = iter(checked.reports)
        for number, (source, outcome) in enumerate(zip(sources, outcomes, strict=True)):
            if outcome.depends is None:
                return
            depends.update(outcome.depends)
            for path in source.files:
                depends.add(str(path))
                depends.add(str(path.parent))
            source_items.append(
                {
                    "name": source.name,
                    "root": str(source.root),
                    "reader": source.reader.name,
                    "files": [str(p) for p in source.files],
                    "others": [str(p) for p in source.others],
                    "explicit": source.explicit,
                }
            )
            if outcome.error is not None:
                continue
            if outcome.reports is None:
                return
            for index, run in enumerate(outcome.runs):
                report = next(reports)
                if report.run is not run:
                    return
                data = run_fragment(report)
                pieces.append(data)
                item = {k: getattr(run, k) for k in _FIELDS}
                item.update(
                    path=str(run.path),
                    ended=run.ended.value,
                    other_sources=[str(p) for p in run.other_sources],
                    at=[number, index, offset, offset + len(data)],
                    report=report.to_dict(),
                )
                offset += len(data)
                runs_meta.append(item)
        problems = [list(_error_parts(p)) for p in checked.problems]
        deps = []
        settled = self.started_ns - SETTLED_NS
        for name in sorted(depends):
            absolute = os.path.abspath(name)
            if self.store.ignored(Path(absolute)):
                continue
            stat = dependency_stat(absolute)
            if stat[1] is not None and stat[3] >= settled:
                return  # changed just now (or while it was read): not a state worth remembering
            deps.append(stat)
        meta = {
            "sources": source_items,
            "runs": runs_meta,
            "problems": problems,
            "ignored": checked.ignored,
            "warnings": checked.warnings,
        }
        self.store.store_sweep(self.identity, meta, "".join(pieces), deps)


def _deferred(reread: Callable[[], list[Run]], index: int) -> tuple[Any, Any]:
    """The frame loader and the points of run ``index`` of a source read again when first needed."""
    from dpodoctor.model import FrameLoader, Once, points_in

    def frame() -> Any:
        return reread()[index].frame

    def points() -> Any:
        return points_in(reread()[index].__dict__)

    return FrameLoader(frame), Once(points)
