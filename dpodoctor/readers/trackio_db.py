"""Reader for Trackio's project databases: ``<TRACKIO_DIR or $HF_HOME/trackio>/<project>.db``.

Where the layout comes from (trackio 0.43.0, ``trackio/sqlite_storage.py``): one SQLite database per project, in
WAL mode, with

* ``metrics``: ``id``, ``run_id`` (newer releases), ``timestamp`` (ISO-8601 text), ``run_name``, ``step`` (Trackio's
  own counter of ``log`` calls), ``metrics`` (a JSON object; NaN and ±inf serialised as the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"``);
* ``configs``: ``run_id`` (newer), ``run_name``, ``config`` (a JSON object; Trackio's own keys start with ``_``).

Columns are selected by name because the schema grew between releases (``run_id``, ``log_id``, ``space_id``).

transformers' ``TrackioCallback`` logs ``train/<key>``/``eval/<key>`` plus ``train/global_step`` in each dict, like
W&B's callback: that is the trainer's step and is used as the step. It does not log the end-of-training totals
(``train_runtime``), and Trackio keeps no run status: a run whose last train step reached the config's
``max_steps`` is taken as finished, any other ends "unknown" (a run still writing looks the same as a killed one).

Several runs in one database are several runs (grouped by ``run_id`` where the column exists, else by name). The
database is only read, through :mod:`.sqlite_ro` (immutable, or a private copy when a ``-wal`` holds rows).
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any, ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, first_run, register
from dpodoctor.readers.hparams import beta_in
from dpodoctor.readers.sqlite_ro import columns, is_sqlite, open_readonly, tables
from dpodoctor.readers.swanlab.rundir import parse_time

__all__ = ["TrackioReader", "trackio_number"]

STEP_KEY: Final = "train/global_step"
_SKIP_KEYS: Final = frozenset({STEP_KEY, "global_step", "eval/global_step"})
_MAX_JSON: Final = 1 << 20
_SPECIAL: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def trackio_number(raw: Any) -> float | None:
    """A metric value as Trackio stores it: a JSON number, or one of its strings for NaN and ±inf."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:
            return None
    if isinstance(raw, str):
        return _SPECIAL.get(raw)
    return None


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str | bytes) or len(text) > _MAX_JSON:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_trackio_schema(path: Path) -> bool:
    try:
        with open_readonly(path, snapshot=False) as conn:
            if not {"metrics", "configs"} <= tables(conn):
                return False
            return {"run_name", "step", "metrics"} <= columns(conn, "metrics")
    except (ReadError, sqlite3.Error, ValueError):
        return False


def _ended(frame: Any, config: dict[str, Any]) -> Ended:
    """Trackio keeps no run status, but a run whose last train step reached the config's ``max_steps`` finished
    its training loop (the Trainer stops there). Anything else stays unknown: a run still writing looks the same
    as a killed one."""
    max_steps = config.get("max_steps")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps <= 0 or not len(frame):
        return Ended.UNKNOWN
    train = frame["step"][frame["split"] == "train"]
    return Ended.FINISHED if len(train) and int(train.max()) >= max_steps else Ended.UNKNOWN


@register
class TrackioReader:
    """Reads every run of a Trackio project database."""

    name: ClassVar[str] = "trackio"
    priority: ClassVar[int] = 55
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """A ``.db`` file with SQLite's header whose schema is Trackio's (``metrics`` with ``run_name``, ``step``
        and a ``metrics`` JSON column, and ``configs``)."""
        return path.suffix.lower() == ".db" and is_sqlite(path) and _is_trackio_schema(path)

    def run_root(self, path: Path) -> Path:
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        return first_run(self.read_runs(paths))

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        if not paths:
            raise ReadError("no Trackio database given")
        path = paths[0]
        try:
            with open_readonly(path) as conn:
                return self._read(conn, path)
        except sqlite3.Error as exc:
            raise ReadError(f"cannot read the Trackio database ({exc})", path) from exc

    def _read(self, conn: sqlite3.Connection, path: Path) -> list[ReadResult]:
        metric_cols = columns(conn, "metrics")
        if not {"run_name", "step", "metrics"} <= metric_cols:
            raise ReadError("not a Trackio database (its metrics table has no run_name/step/metrics)", path)
        by_id = "run_id" in metric_cols
        group = "run_id" if by_id else "run_name"
        stamp = "timestamp" if "timestamp" in metric_cols else "NULL"
        order = "id" if "id" in metric_cols else "rowid"
        builders: dict[str, FrameBuilder] = {}
        names: dict[str, str] = {}
        bad: dict[str, int] = {}
        query = f"SELECT {group}, run_name, step, metrics, {stamp} FROM metrics ORDER BY {order}"
        for key, run_name, step, text, when in conn.execute(query):
            key = str(key if key is not None else run_name)
            names.setdefault(key, str(run_name))
            builder = builders.setdefault(key, FrameBuilder())
            values = _json_object(text)
            if values is None:
                bad[key] = bad.get(key, 0) + 1
                continue
            trainer_step = trackio_number(values.get(STEP_KEY))
            if trainer_step is not None and math.isfinite(trainer_step):
                at = int(trainer_step)
            elif isinstance(step, int):
                at = step
            else:
                bad[key] = bad.get(key, 0) + 1
                continue
            wall = parse_time(when)
            for name, raw in values.items():
                if name in _SKIP_KEYS or name.startswith("_"):
                    continue
                value = trackio_number(raw)
                if value is not None:
                    builder.add(name, at, value, wall)
        configs = self._configs(conn, by_id)
        results: list[ReadResult] = []
        for key, builder in builders.items():
            if len(builder) == 0:
                continue
            label = names[key]
            config = configs.get(key) or configs.get(label) or {}
            frame = builder.build()
            ended = _ended(frame, config)
            notes = []
            if ended is Ended.UNKNOWN:
                notes.append(f"{path.name}: run {label}: Trackio records no run status; how the run ended is unknown")
            if bad.get(key):
                notes.append(f"{path.name}: run {label}: skipped {bad[key]} row(s) whose metrics are not a JSON object")
            beta = beta_in(config)
            results.append(
                ReadResult(
                    frame=frame,
                    beta=beta,
                    beta_source=f"{path.name}: configs ({label})" if beta is not None else None,
                    ended=ended,
                    summary=dict(builder.summary),
                    config=config,
                    notes=notes,
                    label=label,
                )
            )
        if not results:
            raise NoMetricsError("no Trackio run in this database logged numeric metrics", path)
        if len(results) == 1:
            results[0].label = None
        else:
            seen: dict[str, int] = {}
            for result in results:
                label = result.label or "run"
                seen[label] = seen.get(label, 0) + 1
                if seen[label] > 1:
                    result.label = f"{label}~{seen[label]}"
        return results

    @staticmethod
    def _configs(conn: sqlite3.Connection, by_id: bool) -> dict[str, dict[str, Any]]:
        """Each run's config without Trackio's own ``_`` keys, by run id (newer schema) and by run name."""
        config_cols = columns(conn, "configs")
        if not {"run_name", "config"} <= config_cols:
            return {}
        key_col = "run_id" if by_id and "run_id" in config_cols else "run_name"
        out: dict[str, dict[str, Any]] = {}
        for key, name, text in conn.execute(f"SELECT {key_col}, run_name, config FROM configs"):
            config = _json_object(text)
            if config is None:
                continue
            plain = {k: v for k, v in config.items() if isinstance(k, str) and not k.startswith("_")}
            out[str(key)] = plain
            out.setdefault(str(name), plain)
        return out
