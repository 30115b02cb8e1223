"""Reader for metric tables saved as CSV: a user's ``pandas.to_csv`` of TensorBoard scalars, or tbparse output.

Two layouts are read:

* **wide**: a ``step`` column (or ``Step``, ``global_step``, ``train/global_step``) and one column per metric,
  ``step,train/loss,train/rewards/margins,...``. pandas writes its index as a nameless first column and NaN as an
  empty cell, so nameless columns are ignored and empty cells are *missing* (no point), not NaN.
* **long** (tidy), as tbparse writes: ``step,tag,value`` (plus ``wall_time`` and, for several runs, ``dir_name``).
  The tag is the raw key; with several ``dir_name`` values, each is a run of its own (see ``read_runs``).

Why :mod:`csv` and not pandas: quoting rules are the csv module's job, rows are streamed, and a cell that is not a
number (``"n/a"``, a timestamp) is skipped instead of turning the whole column into strings. ``nan`` written as
text is NaN, as the user wrote it. A field beyond the csv module's limit (128 KB) stops the read with a note: the
rows before it are kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import is_dpo_metric
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.jsonl import SNIFF_BYTES, cell_number, content_hint, step_number

__all__ = ["CsvReader"]

_SUFFIXES: Final = {".csv": ",", ".tsv": "\t"}
# Step columns, compared lowercased; the first present wins.
_STEP_COLUMNS: Final = ("step", "global_step", "train/global_step", "trainer/global_step", "_step")
_WALL_COLUMNS: Final = ("wall_time", "wall time", "_timestamp", "timestamp")
# Columns of the long layout, and the ones that name the run in it.
_TAG: Final = "tag"
_VALUE: Final = "value"
_RUN_COLUMNS: Final = ("dir_name", "run")


@dataclass
class _Layout:
    """Which column is what, worked out from the header."""

    step: int
    wall: int | None = None
    tag: int | None = None
    value: int | None = None
    run: int | None = None
    metrics: list[tuple[int, str]] = field(default_factory=list)  # wide layout: (column index, raw key)

    @property
    def long(self) -> bool:
        return self.tag is not None and self.value is not None


def _layout(header: list[str]) -> _Layout | None:
    """The layout of a header, or None when it has no step column or nothing to read."""
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    step = next((lowered.index(s) for s in _STEP_COLUMNS if s in lowered), None)
    if step is None:
        return None
    layout = _Layout(step=step)
    layout.wall = next((lowered.index(w) for w in _WALL_COLUMNS if w in lowered), None)
    if _TAG in lowered and _VALUE in lowered:
        layout.tag, layout.value = lowered.index(_TAG), lowered.index(_VALUE)
        layout.run = next((lowered.index(r) for r in _RUN_COLUMNS if r in lowered), None)
        return layout
    skip = {step, layout.wall}
    for i, name in enumerate(names):
        if i in skip or not name or name.startswith("Unnamed: ") or name.lower() in _STEP_COLUMNS:
            continue
        layout.metrics.append((i, name))
    if not any(is_dpo_metric(name) for _, name in layout.metrics):
        return None
    return layout


def _dialect_delimiter(path: Path) -> str:
    return _SUFFIXES.get(path.suffix.lower(), ",")


def _header(path: Path) -> list[str] | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return None
    text = head.decode("utf-8-sig", errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    if not first or len(first) >= SNIFF_BYTES - 1:
        return None
    try:
        return next(csv.reader([first], delimiter=_dialect_delimiter(path)))
    except (csv.Error, StopIteration):
        return None


@dataclass
class _Collected:
    """Points of one run (one dir_name in the long layout)."""

    builder: FrameBuilder = field(default_factory=FrameBuilder)
    rows: int = 0


@register
class CsvReader:
    """Reads a CSV/TSV of metrics: wide (a column per metric) or long (step, tag, value)."""

    name: ClassVar[str] = "csv"
    priority: ClassVar[int] = 20
    multi_file: ClassVar[bool] = False

    def sniff(self, path: Path) -> bool:
        """A ``.csv``/``.tsv`` whose header has a step column and a known metric column (or tag and value)."""
        if path.suffix.lower() not in _SUFFIXES or not path.is_file():
            return False
        header = _header(path)
        return header is not None and _layout(header) is not None

    def run_root(self, path: Path) -> Path:
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        """The run in the file; for a long table of several runs, the first, with a note (see read_runs)."""
        runs = self.read_runs(paths)
        if len(runs) > 1:
            names = ", ".join(str(r.label) for r in runs)
            runs[0].notes.append(f"the file holds {len(runs)} runs ({names}); read here: {runs[0].label}")
        return runs[0]

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """One result per run in the file: a long table's ``dir_name`` values, else the one run."""
        if not paths:
            raise ReadError("no files given to the csv reader")
        path = Path(paths[0])
        header = _header(path)
        layout = _layout(header) if header is not None else None
        if layout is None:
            raise NoMetricsError(
                "no step column with metric columns (or tag and value) in the header" + content_hint(path), path
            )
        runs: dict[str, _Collected] = {}
        skipped_cells = bad_rows = 0
        stop_note: str | None = None
        try:
            with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
                reader = csv.reader(handle, delimiter=_dialect_delimiter(path))
                next(reader, None)  # the header
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        stop_note = f"stopped reading at line {reader.line_num}: {exc}"
                        break
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    cells = self._row(row, layout)
                    if cells is None:
                        bad_rows += 1
                        continue
                    run, step, wall, items, skipped = cells
                    skipped_cells += skipped
                    collected = runs.setdefault(run, _Collected())
                    collected.rows += 1
                    collected.builder.add_many(items, step, wall)
        except OSError as exc:
            raise ReadError(f"cannot read the file: {exc.strerror or exc}", path) from exc

        results: list[ReadResult] = []
        for run, collected in runs.items():
            builder = collected.builder
            if len(builder) == 0 and not builder.summary:
                continue
            notes = [f"read the {'long (step, tag, value)' if layout.long else 'wide'} CSV layout"]
            if skipped_cells:
                notes.append(f"skipped {skipped_cells} cell(s) that are not numbers")
            if bad_rows:
                notes.append(f"skipped {bad_rows} row(s) without a valid step")
            if stop_note:
                notes.append(stop_note)
            results.append(
                ReadResult(
                    frame=builder.build(),
                    ended=Ended.FINISHED if "train_runtime" in builder.summary else Ended.UNKNOWN,
                    steps_derived=False,
                    summary=dict(builder.summary),
                    notes=notes,
                    label=(run or "(no name)") if len(runs) > 1 else None,
                )
            )
        if not results:
            raise NoMetricsError("no numeric metric values found", path)
        return results

    @staticmethod
    def _row(row: list[str], layout: _Layout) -> tuple[str, int, float | None, list[tuple[str, float]], int] | None:
        """(run, step, wall time, (raw key, value) items, cells skipped) of one row; None without a valid step."""
        if layout.step >= len(row):
            return None
        step = step_number(row[layout.step].strip())
        if step is None:
            return None
        wall = cell_number(row[layout.wall].strip()) if layout.wall is not None and layout.wall < len(row) else None
        items: list[tuple[str, float]] = []
        skipped = 0
        if layout.long:
            assert layout.tag is not None and layout.value is not None
            if max(layout.tag, layout.value) >= len(row):
                return None
            tag, text = row[layout.tag].strip(), row[layout.value].strip()
            run = row[layout.run].strip() if layout.run is not None and layout.run < len(row) else ""
            if tag and text:
                value = cell_number(text)
                if value is None:
                    skipped += 1
                else:
                    items.append((tag, value))
            return run, step, wall, items, skipped
        for index, key in layout.metrics:
            if index >= len(row):
                continue
            text = row[index].strip()
            if not text:
                continue  # pandas' NaN: the metric was not logged at this step
            value = cell_number(text)
            if value is None:
                skipped += 1
            else:
                items.append((key, value))
        return "", step, wall, items, skipped
