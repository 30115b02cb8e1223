"""The canonical run model every reader produces and every rule reads.

Why one long tidy frame (split, metric, step, value, wall_time): it is the shape that every source can be reduced to
without losing anything, it concatenates across resumed files, and a rule asks for one series with one filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dpodoctor.metrics import Split, canonical, is_summary_key

COLUMNS = ("split", "metric", "step", "value", "wall_time")


class Ended(str, Enum):
    """How the log ended, as far as the log itself can tell."""

    FINISHED = "finished"
    CRASHED = "crashed"
    TRUNCATED = "truncated"
    UNKNOWN = "unknown"


@dataclass
class Run:
    """One training run: its metrics table plus what the source said about it."""

    name: str
    path: Path
    source: str
    frame: pd.DataFrame
    beta: float | None = None
    beta_source: str | None = None
    ended: Ended = Ended.UNKNOWN
    steps_derived: bool = False
    summary: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    other_sources: list[Path] = field(default_factory=list)

    def series(self, metric: str, split: Split = "train") -> pd.Series:
        """Values of one metric in one split, indexed by step, sorted, NaN/inf kept (rules decide about them)."""
        f = self.frame
        sel = f[(f["split"] == split) & (f["metric"] == metric)]
        return pd.Series(sel["value"].to_numpy(), index=sel["step"].to_numpy(), name=metric).sort_index()

    def has(self, metric: str, split: Split = "train") -> bool:
        f = self.frame
        return bool(((f["split"] == split) & (f["metric"] == metric)).any())

    @property
    def metrics(self) -> list[tuple[str, str]]:
        """The (split, metric) pairs present, in a stable order."""
        pairs = self.frame[["split", "metric"]].drop_duplicates()
        return sorted((str(s), str(m)) for s, m in pairs.itertuples(index=False))

    @property
    def steps(self) -> int:
        """The last step seen in any split (0 for an empty run)."""
        return int(self.frame["step"].max()) if len(self.frame) else 0


class FrameBuilder:
    """Collects (raw key, step, value, wall_time) points and builds the tidy frame.

    Why a builder: readers see raw keys in arrival order; mapping keys, separating summary keys and keeping the
    last value of a repeated (split, metric, step) are the same for every reader, so they live here once.
    Values are stored in flat lists and converted to numpy columns once, never as per-point objects.
    """

    def __init__(self) -> None:
        self._split: list[str] = []
        self._metric: list[str] = []
        self._step: list[int] = []
        self._value: list[float] = []
        self._wall: list[float] = []
        self.summary: dict[str, float] = {}

    def add(self, raw_key: str, step: int, value: float, wall_time: float | None = None) -> None:
        if is_summary_key(raw_key):
            key = raw_key.split("/", 1)[1] if raw_key.startswith("train/") else raw_key
            self.summary[key] = float(value)
            return
        mapped = canonical(raw_key)
        if mapped is None:  # pragma: no cover - summary keys are handled above
            return
        split, metric = mapped
        self._split.append(split)
        self._metric.append(metric)
        self._step.append(int(step))
        self._value.append(float(value))
        self._wall.append(np.nan if wall_time is None else float(wall_time))

    def add_many(self, items: Iterable[tuple[str, float]], step: int, wall_time: float | None = None) -> None:
        for key, value in items:
            self.add(key, step, value, wall_time)

    def __len__(self) -> int:
        return len(self._value)

    def build(self) -> pd.DataFrame:
        """The tidy frame: sorted by split, metric, step; a repeated (split, metric, step) keeps the last value."""
        return make_frame(self._split, self._metric, self._step, self._value, self._wall)


def make_frame(
    split: Iterable[str],
    metric: Iterable[str],
    step: Iterable[int],
    value: Iterable[float],
    wall_time: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Build a canonical frame from columns (the one constructor, so dtypes are the same everywhere).

    Split and metric become categoricals first, so de-duplication and sorting work on small integer codes rather
    than on Python strings (one object per point would dominate the cost of a long log).
    """
    split_cat = pd.Categorical(split if isinstance(split, list | np.ndarray) else list(split))
    metric_cat = pd.Categorical(metric if isinstance(metric, list | np.ndarray) else list(metric))
    steps = np.asarray(step if isinstance(step, list | np.ndarray) else list(step), dtype=np.int64)
    values = np.asarray(value if isinstance(value, list | np.ndarray) else list(value), dtype=np.float64)
    n = len(values)
    walls = (
        np.full(n, np.nan)
        if wall_time is None
        else np.asarray(wall_time if isinstance(wall_time, list | np.ndarray) else list(wall_time), dtype=np.float64)
    )
    if not (len(split_cat) == len(metric_cat) == len(steps) == n == len(walls)):
        raise ValueError("make_frame: columns of different lengths")
    # keep="last" in arrival order: a resumed run that re-logs a step overwrites the earlier value.
    s_codes = split_cat.codes.astype(np.int64)
    m_codes = metric_cat.codes.astype(np.int64)
    order = np.lexsort((np.arange(n), steps, m_codes, s_codes))  # by split, metric, step, then arrival
    key_s, key_m, key_t = s_codes[order], m_codes[order], steps[order]
    last = np.ones(n, dtype=bool)
    if n > 1:
        same_next = (key_s[1:] == key_s[:-1]) & (key_m[1:] == key_m[:-1]) & (key_t[1:] == key_t[:-1])
        last[:-1] = ~same_next
    keep = order[last]
    frame = pd.DataFrame(
        {
            "split": pd.Categorical.from_codes(split_cat.codes[keep], categories=split_cat.categories),
            "metric": pd.Categorical.from_codes(metric_cat.codes[keep], categories=metric_cat.categories),
            "step": steps[keep],
            "value": values[keep],
            "wall_time": walls[keep],
        }
    )
    return frame


def empty_frame() -> pd.DataFrame:
    return make_frame([], [], [], [])
