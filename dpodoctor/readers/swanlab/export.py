"""Reader for the metric files SwanLab's cloud and APIs export (no run folder, just a CSV or JSON file).

The shapes, all recognised by their header or first bytes, never by name alone:

* **Cloud CSV export** (``POST /house/metrics/scalar/export``, documented in swanlab 0.10.3
  ``api/helper/extractor.py``; and the legacy per-key ``GET /experiment/{cuid}/column/csv`` of swanlab 0.7.20
  ``api/deprecated/experiment.py``): ``step,{exp}-{key}_step,{exp}-{key}_timestamp,...``. Despite its name the
  ``_step`` column holds the **value**; the timestamp is unix milliseconds. One file can hold several experiments,
  so :meth:`SwanLabExportReader.read_runs` returns one run per experiment, labelled with its name.
* **OpenApi DataFrame CSV** (``DataFrame.to_csv()`` of ``OpenApi().get_metrics()``, 0.6–0.7, an inner join over
  keys; or of ``Api().run().metrics()``, 0.7.8+, an outer join): index ``step``, columns ``<key>`` and
  ``<key>_timestamp``. pandas writes NaN as an empty cell, so an empty value with a timestamp is a NaN, and an
  empty value without one means the key was not logged at that step.
* **API JSON** (``swanlab api run metrics --all`` / ``Api().run(path).metrics(keys, all=True)``, swanlab >= 0.8):
  ``{"metricType", "list": [{"key", "metrics": [{"step", "value", "timestamp"}]}]}``; NaN is ``null``.
* **CSVWriter plugin** (``swanlab.plugin.writer.CSVWriter``, ``swanlab_runs.csv``): one row per run holding only
  the **last** value of each key, and no step. It is recognised so that naming it gives a clear answer, and then
  refused: a diagnosis needs curves, and a single point at an unknown step would make every trend rule either
  silent or wrong. The run's own ``swanlog/`` folder has the curves.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import KEY_MAP, SUMMARY_KEYS, split_key
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.swanlab.rundir import SUMMARY_PREFIX, SYSTEM_PREFIX, json_number, parse_time

__all__ = ["CSVWRITER_COLUMNS", "SwanLabExportReader", "classify_header", "split_experiment_key"]

# swanlab 0.10.3 plugin/writer/csv_writer.py _METADATA_COLUMNS: the first columns of swanlab_runs.csv.
CSVWRITER_COLUMNS: Final = ("run_id", "experiment_name", "description", "project", "workspace", "timestamp", "logdir")
_VALUE_SUFFIX: Final = "_step"  # cloud export: "{exp}-{key}_step" holds the value
_TIME_SUFFIX: Final = "_timestamp"
_HEAD_BYTES: Final = 64 * 1024
_MAX_HEADER_BYTES: Final = 1024 * 1024
_JSON_SNIFF_BYTES: Final = 16 * 1024
_MS_THRESHOLD: Final = 1e11  # unix seconds stay below this until the year 5138; milliseconds are above it

WIDE, FRAME, CSVWRITER = "cloud export", "OpenApi DataFrame", "CSVWriter"


def _first_line(path: Path) -> str | None:
    """The first line of a text file (at most 1 MB of it), or None when it cannot be read as text."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
            while b"\n" not in head and len(head) < _MAX_HEADER_BYTES:
                more = fh.read(_HEAD_BYTES)
                if not more:
                    break
                head += more
    except OSError:
        return None
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        return line.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def classify_header(columns: list[str]) -> str | None:
    """Which SwanLab CSV a header row belongs to, or None for any other CSV."""
    if tuple(columns[: len(CSVWRITER_COLUMNS)]) == CSVWRITER_COLUMNS:
        return CSVWRITER
    if len(columns) < 3 or columns[0] != "step" or len(columns) % 2 != 1:
        return None
    values, times = columns[1::2], columns[2::2]
    if not all(t.endswith(_TIME_SUFFIX) and len(t) > len(_TIME_SUFFIX) for t in times):
        return None
    stems = [t[: -len(_TIME_SUFFIX)] for t in times]
    if all(v == s + _VALUE_SUFFIX for v, s in zip(values, stems, strict=True)):
        return WIDE
    if all(v == s for v, s in zip(values, stems, strict=True)):
        return FRAME
    return None


def _known_key(key: str) -> bool:
    """A key that is clearly a metric name: a split prefix, or a name the metric table knows."""
    if key.startswith(("train/", "eval/", "eval_", SYSTEM_PREFIX, SUMMARY_PREFIX)):
        return True
    rest = split_key(key)[1]
    return rest in KEY_MAP or rest in SUMMARY_KEYS


def split_experiment_key(names: list[str]) -> list[tuple[str, str]]:
    """``{exp}-{key}`` -> (exp, key) for every column stem of a cloud export.

    Why a heuristic: experiment names and keys may both contain ``-``, and the export joins them with one. For each
    stem the leftmost ``-`` after which a recognisable key starts wins (``dpo-offline-train/loss`` -> ``dpo-offline``,
    ``train/loss``); a stem with no recognisable key is split after the longest experiment name found for the others,
    else at its first ``-``.
    """
    found: list[tuple[str, str] | None] = []
    for name in names:
        pick = None
        for pos, ch in enumerate(name):
            if ch == "-" and pos + 1 < len(name) and _known_key(name[pos + 1 :]):
                pick = (name[:pos], name[pos + 1 :])
                break
        found.append(pick)
    experiments = sorted({f[0] for f in found if f is not None}, key=len, reverse=True)
    result: list[tuple[str, str]] = []
    for name, pick in zip(names, found, strict=True):
        if pick is None:
            exp = next((e for e in experiments if name.startswith(e + "-") and len(name) > len(e) + 1), None)
            if exp is not None:
                pick = (exp, name[len(exp) + 1 :])
            elif "-" in name:
                head, tail = name.split("-", 1)
                pick = (head, tail)
            else:
                pick = ("", name)
        result.append(pick)
    return result


def _wall(raw: Any) -> float | None:
    """A timestamp cell or field: unix milliseconds (as SwanLab's cloud writes them), seconds, or ISO-8601."""
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return parse_time(text)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            number = float(raw)
        except OverflowError:  # a JSON integer beyond float range is no time
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return number / 1000.0 if abs(number) >= _MS_THRESHOLD else number


def _cell_value(cell: str, has_time: bool) -> float | None:
    """A value cell: a number or NaN/inf spelling; empty means NaN when the point has a timestamp, else absent."""
    text = cell.strip()
    if not text:
        return math.nan if has_time else None
    if text.lower() in ("null", "none"):
        return math.nan
    return json_number(text)


def _step(cell: Any) -> int | None:
    if isinstance(cell, bool):
        return None
    try:
        number = float(cell)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond float range
        return None
    if not math.isfinite(number) or not number.is_integer() or abs(number) > 2**62:
        return None
    return int(number)


@dataclass
class _Points:
    """The points of one experiment in one file."""

    builder: FrameBuilder = field(default_factory=FrameBuilder)
    notes: list[str] = field(default_factory=list)


def _add(points: _Points, key: str, step: int, value: float, wall: float | None) -> None:
    if key.startswith(SYSTEM_PREFIX) or key in ("train/global_step", "global_step"):
        return
    if key.startswith(SUMMARY_PREFIX):
        points.builder.summary[key[len(SUMMARY_PREFIX) :]] = value
        return
    points.builder.add(key, step, value, wall)


@register
class SwanLabExportReader:
    """Reads SwanLab's exported metric files: cloud CSV, OpenApi DataFrame CSV, API JSON (and refuses CSVWriter's)."""

    name: ClassVar[str] = "swanlab-export"
    # Below the run-folder reader: an export is a copy of what a run folder holds, at most.
    priority: ClassVar[int] = 45
    # Every export file in a folder is read (each is a run of its own, or several): none is a copy of another.
    multi_file: ClassVar[bool] = True

    def sniff(self, path: Path) -> bool:
        """By header: a CSV whose first row is one of SwanLab's export layouts, or a JSON object that starts like
        the metrics API's answer. Other CSV and JSON files are left alone."""
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".json") or not path.is_file():  # a FIFO or device would block the read below
            return False
        if suffix == ".csv":
            line = _first_line(path)
            if line is None:
                return False
            try:
                columns = next(csv.reader(io.StringIO(line)), [])
            except csv.Error:
                return False
            return classify_header(columns) is not None
        if suffix == ".json":
            try:
                with path.open("rb") as fh:
                    head = fh.read(_JSON_SNIFF_BYTES)
            except OSError:
                return False
            head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
            return head.startswith(b"{") and (b'"metricType"' in head or b'"experimentId"' in head)
        return False

    def run_root(self, path: Path) -> Path:
        """An export stands alone: the file's folder."""
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        """The first run in the files (see :meth:`read_runs` for all of them)."""
        results = self.read_runs(paths)
        if len(results) > 1:
            others = ", ".join(str(r.label) for r in results[1:])
            results[0].notes.append(f"these files hold {len(results) - 1} more run(s) ({others}), not read here")
        return results[0]

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """One run per (file, experiment). Labels: the experiment name for a one-file multi-experiment export,
        ``<file name>`` or ``<file name>:<experiment>`` when several files are read together."""
        files = sorted(map(Path, paths))
        if not files:
            raise ReadError("no SwanLab export files given")
        results: list[ReadResult] = []
        failed: list[ReadError] = []
        for path in files:
            try:
                per_file = self._read_file(path)
            except ReadError as exc:
                failed.append(exc)
                continue
            for label, result in per_file:
                if len(files) > 1:
                    result.label = f"{path.name}:{label}" if label else path.name
                else:
                    result.label = label
                results.append(result)
        if not results:
            raise failed[0]
        for error in failed:
            results[0].notes.append(f"not read: {error}")
        return results

    # ------------------------------------------------------------------ one file

    def _read_file(self, path: Path) -> list[tuple[str | None, ReadResult]]:
        suffix = path.suffix.lower()
        groups = {None: self._read_json(path)} if suffix == ".json" else self._read_csv(path)
        results: list[tuple[str | None, ReadResult]] = []
        for label, points in groups.items():
            if len(points.builder) == 0:
                continue
            results.append(
                (
                    label,
                    ReadResult(
                        frame=points.builder.build(),
                        ended=Ended.UNKNOWN,
                        steps_derived=False,
                        summary=dict(points.builder.summary),
                        notes=points.notes,
                    ),
                )
            )
        if not results:
            raise NoMetricsError("SwanLab export with no scalar points", path)
        if len(results) == 1:  # a single run needs no label
            return [(None, results[0][1])]
        return results

    @staticmethod
    def _rows(path: Path) -> Iterator[list[str]]:
        try:
            with path.open("r", encoding="utf-8-sig", newline="") as fh:
                yield from csv.reader(fh)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ReadError(f"cannot read CSV ({exc})", path) from exc

    def _read_csv(self, path: Path) -> dict[str | None, _Points]:
        rows = self._rows(path)
        header = next(rows, None)
        kind = classify_header(header) if header else None
        if kind is None or header is None:
            raise ReadError("not a SwanLab export (unknown CSV header)", path)
        if kind == CSVWRITER:
            where = ""
            logdir_col = header.index("logdir")
            for row in rows:
                if len(row) > logdir_col and row[logdir_col].strip():
                    where = f" (its logdir column names {row[logdir_col].strip()})"
                    break
            raise NoMetricsError(
                "SwanLab CSVWriter export (swanlab_runs.csv): one row per run with only the final value of each "
                "metric and no steps, so there are no curves to diagnose; check the run's swanlog/ folder instead"
                + where,
                path,
            )
        stems = [c[: -len(_TIME_SUFFIX)] for c in header[2::2]]
        pairs = split_experiment_key(stems) if kind == WIDE else [("", stem) for stem in stems]
        groups: dict[str | None, _Points] = {}
        targets = [groups.setdefault(exp, _Points()) for exp, _ in pairs]
        keys = [key for _, key in pairs]
        bad = empty_nan = 0
        width = len(header)
        for row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            step = _step(row[0])
            if step is None or len(row) > width:
                bad += 1
                continue
            row = row + [""] * (width - len(row))
            for i, key in enumerate(keys):
                cell, time_cell = row[1 + 2 * i], row[2 + 2 * i]
                wall = _wall(time_cell)
                value = _cell_value(cell, bool(time_cell.strip()))
                if value is None:
                    if cell.strip():
                        bad += 1
                    continue
                if not cell.strip():
                    empty_nan += 1
                _add(targets[i], key, step, value, wall)
        for points in groups.values():
            if bad:
                points.notes.append(f"{path.name}: skipped {bad} unreadable row(s) or cell(s)")
            if empty_nan:
                points.notes.append(
                    f"{path.name}: {empty_nan} empty value cell(s) with a timestamp read as NaN "
                    f"(the {kind} CSV writes NaN as an empty cell)"
                )
        return groups

    def _read_json(self, path: Path) -> _Points:
        try:
            obj = json.loads(path.read_bytes())
        except OSError as exc:
            raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
        except (ValueError, RecursionError) as exc:
            raise ReadError(f"not valid JSON ({exc})", path) from exc
        entries = obj.get("list") if isinstance(obj, dict) else None
        if not isinstance(entries, list):
            raise ReadError("SwanLab metrics JSON without a 'list' of keys", path)
        points = _Points()
        bad = 0
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                bad += 1
                continue
            metrics = entry.get("metrics")
            if not isinstance(metrics, list):
                bad += 1
                continue
            key = entry["key"]
            for item in metrics:
                if not isinstance(item, dict):
                    bad += 1
                    continue
                step = _step(item.get("step", item.get("index")))
                raw = item["value"] if "value" in item else item.get("data")
                value = json_number(raw)  # null -> NaN: the API writes NaN as null
                if step is None or value is None:
                    bad += 1
                    continue
                _add(points, key, step, value, _wall(item.get("timestamp", item.get("create_time"))))
        if bad:
            points.notes.append(f"{path.name}: skipped {bad} malformed entr(y/ies)")
        return points
