"""Readers for MLflow's two local tracking stores: the file store (``mlruns/``) and the SQLite store (``mlflow.db``).

Where the layouts come from (mlflow 3.17.2, ``mlflow/store/tracking/file_store.py`` and
``mlflow/store/tracking/sqlalchemy_store.py`` with ``mlflow/store/tracking/dbmodels/models.py``):

* File store: ``mlruns/<experiment id>/<run id>/`` with ``meta.yaml`` (``run_name``, ``status`` as the RunStatus
  number: 1 RUNNING, 2 SCHEDULED, 3 FINISHED, 4 FAILED, 5 KILLED; ``lifecycle_stage``), ``metrics/<key>`` with one
  ``<timestamp ms> <value> <step>`` line per point (a key holding ``/`` is a sub-folder path), ``params/<key>`` (the
  value as text) and ``tags/``. MLflow 3 only writes new file stores with ``MLFLOW_ALLOW_FILE_STORE=true``, but
  every older setup has one on disk.
* SQLite store (the default since MLflow 3): tables ``runs`` (``run_uuid``, ``name``, ``status`` as text,
  ``lifecycle_stage``), ``metrics`` (``key``, ``value``, ``timestamp``, ``step``, ``is_nan``, ``run_uuid``) and
  ``params`` (``key``, ``value``, ``run_uuid``). NaN is stored as 0 with ``is_nan`` set, ±inf as ±DBL_MAX.

transformers' ``MLflowCallback`` logs the trainer's dict as it is (``loss``, ``rewards/margins``, ``eval_loss``,
``train_runtime``) at ``state.global_step``, after replacing every character outside ``[0-9A-Za-z_-. :/]`` with ``_``;
TRL's keys contain none, so they map to the canonical metrics unchanged. The args and model config go to params.

Both stores are only read: files are opened for reading, the database through :mod:`.sqlite_ro`.
"""

from __future__ import annotations

import math
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, first_run, register
from dpodoctor.readers.hparams import beta_in
from dpodoctor.readers.sqlite_ro import columns, is_sqlite, open_readonly, tables

__all__ = ["MlflowFileStoreReader", "MlflowSqliteReader", "parse_param", "sanitize_key"]

# mlflow.entities.RunStatus numbers (file store) and names (SQL store).
_STATUS_NUMBERS: Final = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_MAX_METRIC_FILE: Final = 256 * 1024 * 1024
_MAX_PARAM_FILE: Final = 64 * 1024
_LINE_RE: Final = re.compile(r"^[ \t]*(-?[0-9]{1,20})[ \t]+(\S{1,64})(?:[ \t]+(-?[0-9]{1,20}))?[ \t]*$")
_META_RE: Final = re.compile(r"^([A-Za-z_]{1,40}):[ \t]?(.{0,1000})$", re.M)
_SANITIZE_RE: Final = re.compile(r"[^0-9A-Za-z_\-. :/]")
_DBL_MAX: Final = sys.float_info.max


def sanitize_key(key: str) -> str:
    """The metric name transformers' MLflowCallback logs for a trainer key (its own substitution)."""
    return _SANITIZE_RE.sub("_", key)


def parse_param(text: str) -> Any:
    """A param value as MLflow stores it (always text): a number when it is one, True/False/None, else the text."""
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text in ("None", ""):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _ended(status: str | None, where: str, notes: list[str]) -> Ended:
    if status == "FINISHED":
        return Ended.FINISHED
    if status in ("FAILED", "KILLED"):
        notes.append(f"{where}: MLflow run status {status}")
        return Ended.CRASHED
    if status in ("RUNNING", "SCHEDULED"):
        notes.append(f"{where}: MLflow run status {status}: the run is still going, or died before end_run()")
        return Ended.TRUNCATED
    return Ended.UNKNOWN


def _result(builder: FrameBuilder, params: dict[str, Any], ended: Ended, where: str, notes: list[str]) -> ReadResult:
    if len(builder) == 0:
        raise NoMetricsError("no metrics logged in this MLflow run", where)
    beta = beta_in(params)
    return ReadResult(
        frame=builder.build(),
        beta=beta,
        beta_source=f"{where}: params" if beta is not None else None,
        ended=ended,
        summary=dict(builder.summary),
        config=params,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------- file store


def _run_dir(path: Path) -> Path | None:
    """``mlruns/<exp>/<run>/`` for its ``meta.yaml`` (or any file below it), when it has a ``metrics/`` folder."""
    for folder in (path.parent, *list(path.parents)[1:6]):
        if (folder / "meta.yaml").is_file() and (folder / "metrics").is_dir():
            return folder
    return None


def _runs_in_store(store: Path) -> int:
    count = 0
    try:
        for exp in store.iterdir():
            if not exp.is_dir() or exp.name.startswith("."):
                continue
            for run in exp.iterdir():
                if (run / "meta.yaml").is_file() and (run / "metrics").is_dir():
                    count += 1
    except OSError:
        return 0
    return count


def _read_meta(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return {}
    return {m.group(1): m.group(2).strip().strip("'\"") for m in _META_RE.finditer(text)}


@register
class MlflowFileStoreReader:
    """Reads one run of an MLflow file store: ``mlruns/<experiment>/<run>/``."""

    name: ClassVar[str] = "mlflow"
    priority: ClassVar[int] = 55
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """A run's ``meta.yaml`` beside a ``metrics/`` folder (the run's other files are read through it)."""
        return path.name == "meta.yaml" and (path.parent / "metrics").is_dir() and path.is_file()

    def run_root(self, path: Path) -> Path:
        """The run folder; the folder around ``mlruns/`` when the store holds this run only (there the trainer's
        other logs are, so they are one run)."""
        run = path.parent
        store = run.parent.parent
        if store.name == "mlruns" and _runs_in_store(store) == 1:
            return store.parent
        return run

    def read(self, paths: list[Path]) -> ReadResult:
        if not paths:
            raise ReadError("no MLflow files given")
        run = _run_dir(paths[0])
        if run is None:
            raise ReadError("not an MLflow run folder (no meta.yaml beside a metrics/ folder)", paths[0])
        meta = _read_meta(run / "meta.yaml")
        notes: list[str] = []
        where = f"{run.parent.name}/{run.name}"
        if "run_id" not in meta and "status" not in meta:
            notes.append(f"{where}/meta.yaml: holds no run fields (run_id, status): how the run ended is unknown")
        if meta.get("lifecycle_stage") == "deleted":
            notes.append(f"{where}: the run is deleted in MLflow (lifecycle_stage: deleted)")
        builder = FrameBuilder()
        bad = 0
        metrics = run / "metrics"
        for file in sorted(p for p in metrics.rglob("*") if p.is_file()):
            key = file.relative_to(metrics).as_posix()
            try:
                if file.stat().st_size > _MAX_METRIC_FILE:
                    notes.append(f"{where}: metrics/{key} is larger than {_MAX_METRIC_FILE >> 20} MB, not read")
                    continue
                text = file.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise ReadError(f"cannot read metric file ({exc.strerror or exc})", file) from exc
            lines = text.splitlines()
            if text and not text.endswith(("\n", "\r")):
                # MLflow ends every line with a line break: a last line without one was cut while it was written
                # (`<timestamp> <value>` alone would otherwise read as a point at step 0)
                notes.append(f"{where}: metrics/{key}: last line cut mid-write (torn tail), not read")
                lines = lines[:-1]
            for line in lines:
                match = _LINE_RE.match(line)
                if match is None:
                    bad += line.strip() != ""
                    continue
                try:
                    value = float(match.group(2))
                except ValueError:
                    bad += 1
                    continue
                step = int(match.group(3)) if match.group(3) is not None else 0
                builder.add(key, step, value, int(match.group(1)) / 1000.0)
        if bad:
            notes.append(f"{where}: skipped {bad} metric line(s) that are not '<timestamp> <value> <step>'")
        params: dict[str, Any] = {}
        params_dir = run / "params"
        if params_dir.is_dir():
            for file in sorted(p for p in params_dir.rglob("*") if p.is_file()):
                try:
                    if file.stat().st_size <= _MAX_PARAM_FILE:
                        params[file.relative_to(params_dir).as_posix()] = parse_param(
                            file.read_text(encoding="utf-8", errors="replace")
                        )
                except OSError:
                    continue
        status = meta.get("status")
        named = _STATUS_NUMBERS.get(int(status)) if status and status.isdigit() else status
        return _result(builder, params, _ended(named, where, notes), str(run), notes)


# ---------------------------------------------------------------------------------------------------- SQLite store


def _is_mlflow_schema(path: Path) -> bool:
    try:
        with open_readonly(path, snapshot=False) as conn:
            names = tables(conn)
            return {"runs", "metrics", "params", "experiments"} <= names and "run_uuid" in columns(conn, "metrics")
    except (ReadError, sqlite3.Error, ValueError):  # a sniff answers yes or no, whatever the file holds
        return False


def _sql_value(value: Any, is_nan: Any) -> float | None:
    if is_nan:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if value >= _DBL_MAX:
        return math.inf
    if value <= -_DBL_MAX:
        return -math.inf
    return value


@register
class MlflowSqliteReader:
    """Reads every run of an MLflow SQLite tracking database (``mlflow.db``)."""

    name: ClassVar[str] = "mlflow-sqlite"
    priority: ClassVar[int] = 55
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """An SQLite file (by its header) whose schema is MLflow's (``runs``, ``metrics`` with ``run_uuid``, ...)."""
        return path.suffix.lower() in (".db", ".sqlite", ".sqlite3") and is_sqlite(path) and _is_mlflow_schema(path)

    def run_root(self, path: Path) -> Path:
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        return first_run(self.read_runs(paths))

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """One result per run that logged metrics, labelled with the run's name when there are several."""
        if not paths:
            raise ReadError("no MLflow database given")
        path = paths[0]
        with open_readonly(path) as conn:
            try:
                run_cols = columns(conn, "runs")
                metric_cols = columns(conn, "metrics")
                if not {"run_uuid"} <= run_cols or not {"key", "value", "step", "run_uuid"} <= metric_cols:
                    raise ReadError("not an MLflow tracking database (no runs/metrics tables of MLflow's)", path)
                wanted = [c for c in ("run_uuid", "name", "status", "lifecycle_stage", "start_time") if c in run_cols]
                order = " ORDER BY start_time, run_uuid" if "start_time" in run_cols else " ORDER BY run_uuid"
                query = f"SELECT {', '.join(wanted)} FROM runs{order}"
                runs = [dict(zip(wanted, row, strict=True)) for row in conn.execute(query)]
                nan_col = "is_nan" if "is_nan" in metric_cols else "0"
                time_col = "timestamp" if "timestamp" in metric_cols else "NULL"
                results: list[ReadResult] = []
                for run in runs:
                    uuid = run["run_uuid"]
                    label = str(run.get("name") or uuid)
                    where = f"{path.name}: run {label}"
                    notes: list[str] = []
                    if run.get("lifecycle_stage") == "deleted":
                        notes.append(f"{where} is deleted in MLflow (lifecycle_stage: deleted)")
                    builder = FrameBuilder()
                    rows = conn.execute(
                        f"SELECT key, value, step, {time_col}, {nan_col} FROM metrics WHERE run_uuid = ? "
                        "ORDER BY step, timestamp",
                        (uuid,),
                    )
                    for key, value, step, stamp, is_nan in rows:
                        number = _sql_value(value, is_nan)
                        if number is None or not isinstance(key, str) or not isinstance(step, int):
                            continue
                        wall = stamp / 1000.0 if isinstance(stamp, int) else None
                        builder.add(key, step, number, wall)
                    if len(builder) == 0:
                        continue
                    params = {
                        str(k): parse_param(str(v))
                        for k, v in conn.execute("SELECT key, value FROM params WHERE run_uuid = ?", (uuid,))
                    }
                    status = run.get("status")
                    result = _result(builder, params, _ended(status, where, notes), where, notes)
                    result.label = label
                    results.append(result)
            except sqlite3.Error as exc:  # a damaged database
                raise ReadError(f"cannot read the MLflow database ({exc})", path) from exc
        if not results:
            raise NoMetricsError("no MLflow run in this database logged metrics", path)
        if len(results) == 1:
            results[0].label = None
        else:
            _unique_labels(results)
        return results


def _unique_labels(results: list[ReadResult]) -> None:
    """Run names need not be unique in a tracker; labels must be (they name the runs in the report)."""
    seen: dict[str, int] = {}
    for result in results:
        label = result.label or "run"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            result.label = f"{label}~{seen[label]}"
