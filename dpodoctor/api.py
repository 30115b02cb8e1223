"""The Python API. The CLI calls exactly these functions, so a script and a terminal get the same answers."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dpodoctor.cache import record_dependencies
from dpodoctor.config import Config
from dpodoctor.config import discover as discover_config
from dpodoctor.config import load_file as load_config_file
from dpodoctor.discovery import discover
from dpodoctor.errors import DpoDoctorError, NoMetricsError
from dpodoctor.loading import PathArg, Paths, as_paths
from dpodoctor.metrics import KEY_MAP
from dpodoctor.model import Run
from dpodoctor.readers import READERS
from dpodoctor.report import Report
from dpodoctor.results import FAIL_ON_CHOICES, Finding, RunReport
from dpodoctor.selectors import rule_selectors
from dpodoctor.settings import DiagnoseSettings
from dpodoctor.sweep import Checked, SweepState, load_sources


def _strings(values: str | Iterable[str]) -> list[str]:
    """Rule selectors from the API: one comma-separated string (as on the command line) or an iterable of them."""
    items = [values] if isinstance(values, str) else list(values)
    return [part for item in items for part in str(item).split(",")]


@dataclass
class Loaded:
    """Runs read from some paths, plus the files that could not be read and those that held no metrics."""

    runs: list[Run] = field(default_factory=list)
    problems: list[DpoDoctorError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # paths the walk skipped, with the reason
    # One report per run, in order, when the runs were diagnosed as they were read (check() with workers/cache).
    reports: list[RunReport] | None = None


def load_all(
    paths: Paths,
    *,
    metric_map: dict[str, str] | None = None,
    jobs: int | None = 1,
    cache: bool | Path | str = False,
    progress: bool = False,
    diagnosis: DiagnoseSettings | None = None,
) -> Loaded:
    """Read every run under ``paths``. Unreadable files are collected, not raised, so one bad file in a sweep
    does not hide the other runs; a path that does not exist raises.

    ``jobs``: worker processes for reading runs (None: one per CPU; small inputs always use one). ``cache``: True
    to use the on-disk cache of parsed runs (``$DPODOCTOR_CACHE_DIR`` or the user cache folder), or a folder for
    it. ``progress``: allow a progress bar on stderr for work longer than about a second (see
    :mod:`dpodoctor.sweep`). ``diagnosis``: when given, each run is also diagnosed under these settings in the
    process that read it (its diagnosis cached with it), and :attr:`Loaded.reports` holds the reports.
    """
    loaded = Loaded()
    path_list = as_paths(paths)
    whole, cache = _sweep_state(path_list, metric_map, cache, diagnosis, loaded.warnings)
    if whole is not None:
        checked = whole.load()
        if checked is not None:  # nothing the last check depended on changed: its runs and reports as they were
            return Loaded(checked.runs, checked.problems, checked.ignored, checked.warnings, checked.reports)
    visited: set[str] | None = None
    with record_dependencies() if whole is not None else contextlib.nullcontext() as opened:
        if whole is not None:
            visited = opened
        # (the walk's own listing recorded only for the whole-sweep entry; discover's two-argument form otherwise)
        walked = (path_list, loaded.warnings) if visited is None else (path_list, loaded.warnings, visited)
        sources = discover(*walked)
    outcomes = load_sources(
        sources,
        metric_map=metric_map,
        jobs=jobs,
        cache=whole.store if whole is not None else cache,
        progress=progress,
        diagnose=diagnosis,
        warnings=loaded.warnings,
        record=whole is not None,
    )
    reports: list[RunReport] = []
    for source, outcome in zip(sources, outcomes, strict=True):
        exc = outcome.error
        if exc is None:
            loaded.runs.extend(outcome.runs)
            reports.extend(outcome.reports or [])
        elif isinstance(exc, NoMetricsError) and not source.explicit:
            loaded.ignored.append(str(exc))
        else:
            loaded.problems.append(exc)
    if diagnosis is not None:
        loaded.reports = reports
    if whole is not None and visited is not None:
        checked = Checked(loaded.runs, reports, loaded.problems, loaded.ignored, loaded.warnings)
        whole.store_check(checked, sources, outcomes, visited)
    return loaded


def _sweep_state(
    paths: list[Path],
    metric_map: dict[str, str] | None,
    cache: bool | Path | str,
    diagnosis: DiagnoseSettings | None,
    warnings: list[str],
) -> tuple[SweepState | None, bool | Path | str]:
    """The whole-check cache entry (:class:`~dpodoctor.sweep.SweepState`) of a diagnosing check with the cache on
    (None otherwise), and the cache argument left for the per-run entries: False when the cache folder is refused
    (said once in ``warnings``, as the per-run cache says it)."""
    if diagnosis is None or not cache:
        return None, cache
    from dpodoctor.cache import RunCache

    store = RunCache(None if cache is True else Path(cache))
    if store.refused is not None:
        warnings.append(f"cache not used: {store.refused}")
        return None, False
    return SweepState(store, paths, metric_map, diagnosis), cache


def load(path: PathArg) -> list[Run]:
    """Read the runs under one file or folder. Raises DpoDoctorError on the first unreadable file."""
    loaded = load_all([path])
    if loaded.problems:
        raise loaded.problems[0]
    return loaded.runs


def diagnose(
    run: Run,
    *,
    beta: float | None = None,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
) -> list[Finding]:
    """The findings for one run, most severe first. ``select``/``ignore``: rule codes, prefixes or names."""
    chosen = rule_selectors(_strings(select), "select") if select is not None else None
    skipped = rule_selectors(_strings(ignore), "ignore") if ignore is not None else None
    settings = DiagnoseSettings(beta=beta, select=chosen, ignore=skipped)
    from dpodoctor.checks import diagnose_run  # the rule catalogue: not needed by a check the cache answers

    return diagnose_run(run, settings=settings).findings


def metric_names_hint(unknown: Iterable[str] = ()) -> str:
    """Says which metric names are valid, listing them (and the nearest to a misspelt one): a gate's author should
    not have to read the source to find them."""
    names = sorted(set(KEY_MAP.values()))
    near = [m for u in unknown for m in difflib.get_close_matches(u, names, n=1)]
    guess = f"did you mean {', '.join(dict.fromkeys(near))}? " if near else ""
    return f"not a canonical metric name; {guess}the names are {', '.join(names)}"


@dataclass
class CheckSettings:
    """The resolved settings of a check or a watch: the arguments over the project config over the defaults."""

    fail_on: str = "error"
    beta: float | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    params: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        paths: list[Path],
        *,
        fail_on: str | None = None,
        beta: float | None = None,
        select: str | Iterable[str] | None = None,
        ignore: str | Iterable[str] | None = None,
        config: Path | str | None = None,
        use_config: bool = True,
    ) -> CheckSettings:
        """Raises :class:`DpoDoctorError` for an unknown rule code, ``fail_on`` value or a β that is not positive."""
        file = (
            load_config_file(Path(config))
            if config is not None
            else (discover_config(paths) if use_config else Config())
        )
        settings = cls(
            fail_on=fail_on or file.fail_on or "error",
            beta=beta if beta is not None else file.beta,
            select=rule_selectors(_strings(select), "--select") if select is not None else file.select,
            ignore=rule_selectors(_strings(ignore), "--ignore") if ignore is not None else file.ignore,
            params=file.rule_params,
        )
        if settings.fail_on not in FAIL_ON_CHOICES:
            raise DpoDoctorError(f"--fail-on must be one of {', '.join(FAIL_ON_CHOICES)}, not {settings.fail_on!r}")
        if settings.beta is not None and not settings.beta > 0:
            raise DpoDoctorError(f"--beta must be a positive number, not {settings.beta}")
        return settings

    @property
    def diagnosis(self) -> DiagnoseSettings:
        """The part of these settings the rules read (the gate's ``fail_on`` is applied to their findings later)."""
        return DiagnoseSettings(beta=self.beta, select=self.select, ignore=self.ignore, params=self.params)


def check(
    paths: Paths = ".",
    *,
    beta: float | None = None,
    fail_on: str | None = None,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    config: Path | str | None = None,
    use_config: bool = True,
    metric_map: dict[str, str] | None = None,
    require_metrics: str | Iterable[str] = (),
    exit_zero: bool = False,
    jobs: int | None = 1,
    cache: bool | Path | str = False,
    progress: bool = False,
) -> Report:
    """Load every run under ``paths``, diagnose each, and return the report (with the gate's exit code).

    ``require_metrics``: canonical metric names a gate relies on; a run that logs one of them in neither split is
    unusable input (exit 2), so a gate cannot pass because nothing was read. ``exit_zero``: report, but never
    exit 1 (unreadable input still exits 2).

    Settings come from the arguments, else from the project config (``config`` names the file; otherwise it is
    discovered from the first path upward, then from the current directory; ``use_config=False`` skips it), else
    from the defaults (fail on errors, β from each run's own config).

    ``jobs``, ``cache``, ``progress``: as for :func:`load_all`; each run is diagnosed in the process that read it,
    and a cached run's diagnosis under the same settings is cached too.
    """
    paths = as_paths(paths)
    settings = CheckSettings.resolve(
        paths, fail_on=fail_on, beta=beta, select=select, ignore=ignore, config=config, use_config=use_config
    )
    fail_on = settings.fail_on
    diagnosis = settings.diagnosis
    loaded = load_all(paths, metric_map=metric_map, jobs=jobs, cache=cache, progress=progress, diagnosis=diagnosis)
    if not loaded.runs and loaded.problems:
        first = loaded.problems[0]
        if len(loaded.problems) == 1:
            raise first
        raise DpoDoctorError(f"{first.reason} (and {len(loaded.problems) - 1} more unreadable input(s))", first.path)
    if not loaded.runs:
        where = ", ".join(str(p) for p in paths)
        raise DpoDoctorError(
            f"no training run found (looked for logs with DPO metrics in these formats: "
            f"{', '.join(r.name for r in READERS)})",
            where,
        )
    reports = loaded.reports
    if reports is None:
        from dpodoctor.checks import diagnose_run

        reports = [diagnose_run(run, settings=diagnosis) for run in loaded.runs]
    problems = [str(p) for p in loaded.problems]
    known = set(KEY_MAP.values())
    required = [m.strip() for m in _strings(require_metrics) if m.strip()]
    for run in loaded.runs:
        missing = [m for m in required if not (run.has(m, "train") or run.has(m, "eval"))]
        if missing:
            unknown = [m for m in missing if m not in known]
            hint = f" ({', '.join(unknown)}: {metric_names_hint(unknown)})" if unknown else ""
            problems.append(
                f"{run.path}: run {run.name} does not log required metric(s) {', '.join(missing)} "
                f"in train or eval (--require-metrics){hint}"
            )
    return Report(
        runs=reports,
        fail_on=fail_on,
        problems=problems,
        ignored=loaded.ignored,
        warnings=loaded.warnings,
        exit_zero=exit_zero,
    )
