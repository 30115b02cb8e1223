"""The canonical run model every reader produces and every rule reads.

Why one long tidy frame (split, metric, step, value, wall_time): it is the shape that every source can be reduced to
without losing anything, it concatenates across resumed files, and a rule asks for one series with one filter.

Why a run may hold its points without that frame (:class:`Points`, a :class:`LazyRun`): the diagnosis and the
reports read a run curve by curve (:meth:`Run.arrays`), so a reader that gives numpy columns in the frame's order
(TensorBoard) and the cache leave the frame unbuilt, and pandas unimported, until something reads ``frame``; what
it then gets is exactly the frame the reader would have built.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dpodoctor.metrics import Split, canonical, is_summary_key

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    from dpodoctor._lazy import np, pd

COLUMNS = ("split", "metric", "step", "value", "wall_time")
T = TypeVar("T")


class Ended(str, Enum):
    """How the log ended, as far as the log itself can tell."""

    FINISHED = "finished"
    CRASHED = "crashed"
    TRUNCATED = "truncated"
    UNKNOWN = "unknown"


@dataclass
class Run:
    """One training run: its metrics table plus what the source said about it.

    ``frame`` is the one long tidy table every reader's run has. Read a curve with :meth:`arrays` (or
    :meth:`series`), :meth:`has`, :attr:`metrics` and :attr:`steps`: a run read from TensorBoard events or the cache
    (a :class:`LazyRun`) answers those from its :class:`Points` and builds ``frame`` only when it is read.
    """

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
        groups = self._groups()
        if groups is not None:
            start, stop = groups.get((split, metric), (0, 0))
            steps, values = self._read_only_slices(start, stop)
            # a group's steps are strictly increasing: already in order; views, not copies (a read-only view
            # cannot write into the frame even without pandas' copy-on-write)
            return pd.Series(values, index=pd.Index(steps, copy=False), name=metric, copy=False)
        f = self.frame
        sel = f[(f["split"] == split) & (f["metric"] == metric)]
        return pd.Series(sel["value"].to_numpy(), index=sel["step"].to_numpy(), name=metric).sort_index()

    def arrays(self, metric: str, split: Split = "train") -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of one metric in one split, in step order, NaN/inf kept: what :meth:`series` holds,
        without building a Series (the JSON and text reports summarise every curve of every run)."""
        groups = self._groups()
        if groups is not None:
            start, stop = groups.get((split, metric), (0, 0))
            return self._read_only_slices(start, stop)
        s = self.series(metric, split)
        return s.index.to_numpy(), s.to_numpy()

    def _read_only_slices(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of the step and value columns as read-only views of the frame.

        Why views: a copy of every curve for every rule doubled the diagnosis' peak memory on a huge log (a 600 MB
        console log peaked at 508 MiB). Why read-only: a rule that wrote into its curve would otherwise change the
        frame every later rule and report reads (pandas 2 without copy-on-write shares the buffer); now it raises.
        """
        steps, values = self._columns()
        step_view, value_view = steps[start:stop], values[start:stop]
        step_view.flags.writeable = False
        value_view.flags.writeable = False
        return step_view, value_view

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        """The frame's step and value columns as arrays, read once per frame (a DataFrame column lookup costs
        tens of µs, and a run's curves are read dozens of times); a run made from its :class:`Points` has them
        without any frame."""
        points = points_in(self.__dict__)
        if points is not None:
            return points.step, points.value
        frame = self.frame
        cached = self.__dict__.get("_column_cache")
        if cached is not None and cached[0] is frame:
            return cached[1], cached[2]
        steps, values = frame["step"].to_numpy(), frame["value"].to_numpy()
        self.__dict__["_column_cache"] = (frame, steps, values)
        return steps, values

    def has(self, metric: str, split: Split = "train") -> bool:
        groups = self._groups()
        if groups is not None:
            return (split, metric) in groups
        f = self.frame
        return bool(((f["split"] == split) & (f["metric"] == metric)).any())

    def _groups(self) -> dict[tuple[str, str], tuple[int, int]] | None:
        """Row range of each (split, metric) of a frame sorted as :func:`make_frame` leaves it, built once.

        Why: rules ask for a series or its presence about a hundred times per run, and filtering a frame of
        hundreds of thousands of rows each time costs more than the rules themselves. A frame that is not in
        make_frame's order (built by hand) gets None, and the filters above are used. A run made from its
        :class:`Points` has them already, and builds no frame.
        """
        points = points_in(self.__dict__)
        if points is not None:
            return points.groups
        frame = self.frame
        cached = self.__dict__.get("_group_cache")
        if cached is not None and cached[0] is frame:
            return cached[1]
        groups: dict[tuple[str, str], tuple[int, int]] | None = None
        split_col, metric_col = frame.get("split"), frame.get("metric")
        if (
            isinstance(split_col, pd.Series)
            and isinstance(metric_col, pd.Series)
            and isinstance(split_col.dtype, pd.CategoricalDtype)
            and isinstance(metric_col.dtype, pd.CategoricalDtype)
        ):
            # the Categoricals themselves (a column lookup costs ~50 µs under copy-on-write, an accessor more)
            split_cat, metric_cat = split_col.array, metric_col.array
            assert isinstance(split_cat, pd.Categorical) and isinstance(metric_cat, pd.Categorical)
            s, m = split_cat.codes, metric_cat.codes
            t = self._columns()[0]
            ordered = bool(split_cat.categories.is_monotonic_increasing) and bool(
                metric_cat.categories.is_monotonic_increasing
            )
            if ordered:
                # plain lists: indexing a pandas Index costs ~15 µs a label
                s_names = [str(x) for x in split_cat.categories]
                m_names = [str(x) for x in metric_cat.categories]
                groups = _row_ranges(s, s_names, m, m_names, t)
        self.__dict__["_group_cache"] = (frame, groups)
        return groups

    @property
    def metrics(self) -> list[tuple[str, str]]:
        """The (split, metric) pairs present, in a stable order (from the row ranges when the frame has them: a
        drop_duplicates over millions of rows builds several full-length index arrays)."""
        groups = self._groups()
        if groups is not None:
            return sorted(groups)
        pairs = self.frame[["split", "metric"]].drop_duplicates()
        return sorted((str(s), str(m)) for s, m in pairs.itertuples(index=False))

    @property
    def steps(self) -> int:
        """The last step seen in any split (0 for an empty run)."""
        points = points_in(self.__dict__)
        if points is not None:
            return int(points.step.max()) if len(points.step) else 0
        if not len(self.frame):
            return 0
        return int(self._columns()[0].max())  # the cached column: a pandas reduction costs ~0.3 ms a call


def _row_ranges(
    s: np.ndarray, s_names: list[str], m: np.ndarray, m_names: list[str], t: np.ndarray, checked: bool = False
) -> dict[tuple[str, str], tuple[int, int]] | None:
    """The row range of each (split, metric) of points given as codes into sorted labels, or None when the rows are
    not strictly increasing by (split, metric, step) (not make_frame's order, or a repeated point). ``checked``: the
    caller has just put them in that order (the test is skipped).

    The codes stay in their small dtype and every comparison gives a bool array: a run of millions of points would
    otherwise need several int64 copies of them at once.
    """
    n = len(s)
    if not n:
        return {}
    same = (s[1:] == s[:-1]) & (m[1:] == m[:-1])
    if not checked:
        if not ((s >= 0).all() and (m >= 0).all()):
            return None
        s_up, m_up, t_up = s[1:] > s[:-1], m[1:] > m[:-1], t[1:] > t[:-1]
        if not bool((s_up | ((s[1:] == s[:-1]) & (m_up | ((m[1:] == m[:-1]) & t_up)))).all()):
            return None
    starts = np.flatnonzero(np.r_[True, ~same])
    bounds = np.r_[starts, n].tolist()
    # plain Python ints and strs: a numpy scalar costs ~100 ns a use, and a label lookup by one more
    s_at, m_at = s[starts].tolist(), m[starts].tolist()
    return {
        (s_names[i], m_names[j]): (bounds[k], bounds[k + 1]) for k, (i, j) in enumerate(zip(s_at, m_at, strict=True))
    }


def _sorted_labels(labels: tuple[str, ...] | list[str]) -> bool:
    return all(type(x) is str for x in labels) and all(a < b for a, b in itertools.pairwise(labels))


class Points:
    """A run's points as numpy columns, in the order :func:`make_frame` leaves a frame (sorted by split, metric,
    step; no repeated point; split and metric as integer codes into their sorted labels, all present), with the
    row range of each (split, metric).

    Why: the diagnosis and the reports read a run one curve at a time (:meth:`Run.arrays`), and a frame of those
    columns costs importing pandas (~0.45 s) and ~2 ms a run to build, for nothing unless something reads the
    frame itself (a plot, the sparklines, a Python user): then :meth:`to_frame` builds exactly the frame the
    reader would have built. ``category_dtypes`` keeps the dtype a cached frame's categories had (None: the one
    pandas infers from the labels, which every built-in constructor gives).
    """

    __slots__ = (
        "category_dtypes",
        "groups",
        "metric",
        "metric_labels",
        "split",
        "split_labels",
        "step",
        "value",
        "wall_time",
    )

    def __init__(
        self,
        split: np.ndarray,
        split_labels: tuple[str, ...],
        metric: np.ndarray,
        metric_labels: tuple[str, ...],
        step: np.ndarray,
        value: np.ndarray,
        wall_time: np.ndarray,
        groups: dict[tuple[str, str], tuple[int, int]],
        category_dtypes: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.split, self.split_labels = split, split_labels
        self.metric, self.metric_labels = metric, metric_labels
        self.step, self.value, self.wall_time = step, value, wall_time
        self.groups = groups
        self.category_dtypes = category_dtypes

    def __len__(self) -> int:
        return len(self.value)

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @classmethod
    def from_codes(
        cls,
        split_codes: np.ndarray,
        split_labels: list[str],
        metric_codes: np.ndarray,
        metric_labels: list[str],
        step: np.ndarray,
        value: np.ndarray,
        wall_time: np.ndarray,
    ) -> Points:
        """:func:`frame_from_codes` without the frame: points in any order, as integer codes into label lists (one
        entry per distinct key, not per point; a label may repeat), sorted and de-duplicated as make_frame does
        (a repeated (split, metric, step) keeps its last value in arrival order)."""
        steps = np.asarray(step, dtype=np.int64)
        values = np.asarray(value, dtype=np.float64)
        walls = np.asarray(wall_time, dtype=np.float64)
        n = len(values)
        if not (len(split_codes) == len(metric_codes) == len(steps) == n == len(walls)):
            raise ValueError("Points.from_codes: columns of different lengths")
        coded: list[tuple[np.ndarray, tuple[str, ...]]] = []
        for codes, labels in ((split_codes, split_labels), (metric_codes, metric_labels)):
            # Kept in the reader's integer type, and remapped into the one pandas keeps: a run of millions of points
            # would otherwise hold several int64 copies (8 bytes a point each) at the read's peak of memory.
            codes = np.asarray(codes)
            if codes.dtype.kind not in "iu":
                codes = codes.astype(np.int64)
            # bincount, not unique: linear, and these are small non-negative codes
            present = np.flatnonzero(np.bincount(codes, minlength=len(labels))) if n else np.zeros(0, np.intp)
            names = sorted({labels[i] for i in present.tolist()})
            remap = np.full(max(len(labels), 1), -1, dtype=code_dtype(len(names)))
            for i in present.tolist():
                remap[i] = names.index(labels[i])
            coded.append((remap[codes], tuple(names)))
        (s, s_names), (m, m_names) = coded
        # keep="last" in arrival order: a resumed run that re-logs a step overwrites the earlier value.
        # int32 codes (not int64): _point_order's group numbers fit, and a long run's temporaries stay half the size.
        order, last = _point_order(s.astype(np.int32), m.astype(np.int32), steps)
        keep = order if last.all() else order[last]  # the usual case keeps every point: no second index array
        del order
        s, m, steps, values, walls = s[keep], m[keep], steps[keep], values[keep], walls[keep]
        groups = _row_ranges(s, list(s_names), m, list(m_names), steps, checked=True)  # sorted and de-duplicated
        assert groups is not None
        return cls(s, s_names, m, m_names, steps, values, walls, groups)

    @classmethod
    def from_sorted(
        cls,
        split_codes: np.ndarray,
        split_labels: list[str],
        metric_codes: np.ndarray,
        metric_labels: list[str],
        step: np.ndarray,
        value: np.ndarray,
        wall_time: np.ndarray,
        category_dtypes: tuple[str | None, str | None] = (None, None),
    ) -> Points | None:
        """Points already in make_frame's order (a cache entry's columns), checked: None when the labels are not
        sorted and distinct or the rows not strictly increasing by (split, metric, step)."""
        if not (_sorted_labels(split_labels) and _sorted_labels(metric_labels)):
            return None
        n = len(value)
        if not (len(split_codes) == len(metric_codes) == len(step) == n == len(wall_time)):
            return None
        if n and (int(split_codes.max()) >= len(split_labels) or int(metric_codes.max()) >= len(metric_labels)):
            return None
        groups = _row_ranges(split_codes, list(split_labels), metric_codes, list(metric_labels), step)
        if groups is None:
            return None
        return cls(
            split_codes,
            tuple(split_labels),
            metric_codes,
            tuple(metric_labels),
            step,
            value,
            wall_time,
            groups,
            category_dtypes,
        )

    def renamed(self, metric_map: dict[str, str]) -> Points:
        """These points with metrics renamed by ``metric_map`` (``--metric-map key=canonical``), as
        ``make_frame`` would rebuild them: two names mapped to one merge, a repeated step keeping the later row."""
        if not metric_map or not len(self):
            return self
        labels = [metric_map.get(m, m) for m in self.metric_labels]
        return Points.from_codes(
            self.split, list(self.split_labels), self.metric, labels, self.step, self.value, self.wall_time
        )

    def to_frame(self) -> pd.DataFrame:
        """The canonical frame of these points: exactly the frame :func:`frame_from_codes` (or the cache entry they
        came from) gives."""
        cats = []
        for codes, labels, dtype in (
            (self.split, self.split_labels, self.category_dtypes[0]),
            (self.metric, self.metric_labels, self.category_dtypes[1]),
        ):
            cat_dtype = (
                _categories(labels) if dtype is None else pd.CategoricalDtype(pd.Index(list(labels), dtype=dtype))
            )
            cats.append(pd.Categorical.from_codes(codes, dtype=cat_dtype))
        return pd.DataFrame(
            {"split": cats[0], "metric": cats[1], "step": self.step, "value": self.value, "wall_time": self.wall_time},
            copy=False,  # the columns are the points' own arrays: no second copy
        )


class Once(Generic[T]):
    """Computes a value once, on the first call, and keeps it: shared by a result and the run made from it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build: Callable[[], T] | None = build
        self._value: T | None = None

    def __call__(self) -> T:
        if self._build is not None:
            self._value, self._build = self._build(), None
        return self._value  # type: ignore[return-value]  # set above, whatever T is (None included)


class FrameLoader(Once["pd.DataFrame"]):
    """Builds a frame once, on the first call, and keeps it: shared by a result and the run made from it."""


def points_in(state: dict[str, Any]) -> Points | None:
    """The :class:`Points` kept in a run's or result's ``__dict__`` (None: none, or a cache entry whose rows turned
    out not to be in make_frame's order): a deferred :class:`Once` is resolved, and kept, on first use.

    Why deferred: a warm JSON check takes every run's report from the cache and never reads its points; checking
    the order of each run's rows would be most of its per-run cost.
    """
    points = state.get("_points")
    if isinstance(points, Once):
        points = state["_points"] = points()
    return points


NO_FRAME_YET: Any = None  # what a lazy result or run is made with: the frame setter ignores it


class LazyFrame:
    """``frame`` built on first use by a :class:`FrameLoader` (mixed into ``ReadResult`` and :class:`Run`), and the
    :class:`Points` it is built from when there are any (``_points``), which the run's curves are read from.

    Why: a check reads each run one curve at a time and reports it from those curves; building a pandas frame for
    each run (and importing pandas at all) was most of a warm re-check, and ~0.45 s of import plus ~2 ms a run of a
    cold one. Whatever reads ``frame`` (a plot, ``--require-metrics``, the text report's sparklines, a Python user)
    gets the very frame the reader would have built. Setting ``frame`` replaces the points too.
    """

    @property
    def frame(self) -> pd.DataFrame:
        state = self.__dict__
        frame = state.get("_frame")
        if frame is None:
            frame = state["_frame"] = state.pop("_frame_loader")()
        return frame

    @frame.setter
    def frame(self, value: pd.DataFrame | None) -> None:
        if value is not None:
            self.__dict__["_frame"] = value
            self.__dict__.pop("_frame_loader", None)
            self.__dict__.pop("_points", None)

    def defer(self, loader: FrameLoader | None, points: Points | Once[Points | None] | None = None) -> None:
        """Take the frame from ``loader`` when first read (from ``points`` when no loader is given), and the curves
        from ``points`` (a :class:`Once` that gives them, or None, when first needed)."""
        if points is not None:
            self.__dict__["_points"] = points
        if loader is None:
            assert isinstance(points, Points)
            loader = FrameLoader(points.to_frame)
        self.__dict__["_frame_loader"] = loader

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (sent back from a worker, saved by a user) with its points and no frame when it has points and
        its frame was never read (rebuilt from them on the other side), else with its frame; never with a loader."""
        if "_frame" not in self.__dict__ and points_in(self.__dict__) is None:
            self.frame  # noqa: B018 - builds it
        return {k: v for k, v in self.__dict__.items() if k != "_frame_loader"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        points = state.get("_points")
        if "_frame" not in state and isinstance(points, Points):
            self.__dict__["_frame_loader"] = FrameLoader(points.to_frame)


class LazyRun(LazyFrame, Run):
    """A :class:`Run` whose frame is built when first read: from a cache entry, or from the points of a reader that
    gives :class:`Points` (TensorBoard)."""


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

    def series_since(self, start: int) -> tuple[list[str], list[int]]:
        """The "split/metric" and step of each point added since ``len(self)`` was ``start`` (for a reader that
        merges files and says which steps two of them both logged: :mod:`dpodoctor.readers.overlap`)."""
        series = [f"{s}/{m}" for s, m in zip(self._split[start:], self._metric[start:], strict=True)]
        return series, self._step[start:]

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
    return _frame(split_cat, metric_cat, steps, values, walls)


@functools.lru_cache(maxsize=256)
def _categories(names: tuple[str, ...]) -> pd.CategoricalDtype:
    """The categorical dtype of these labels, built once: building one checks and hashes its labels (about 80 µs),
    twice per run, while the runs of a sweep share a few label sets (a reader's frame costs ~0.3 ms less a run)."""
    return pd.CategoricalDtype(pd.Index(names))


def frame_from_codes(
    split_codes: np.ndarray,
    split_labels: list[str],
    metric_codes: np.ndarray,
    metric_labels: list[str],
    step: np.ndarray,
    value: np.ndarray,
    wall_time: np.ndarray,
) -> pd.DataFrame:
    """:func:`make_frame` for a reader that already holds integer codes into label lists (one entry per distinct
    key, not per point). The result is identical to ``make_frame`` on the spelled-out strings: the categories are
    the labels present, sorted, exactly as ``pd.Categorical`` would infer them (:meth:`Points.from_codes`, whose
    points a reader can keep instead, building the frame only when something reads it)."""
    return Points.from_codes(split_codes, split_labels, metric_codes, metric_labels, step, value, wall_time).to_frame()


def code_dtype(labels: int) -> type[np.signedinteger]:
    """The integer type pandas keeps a categorical's codes in for this many labels (so codes built in it are taken
    as they are, without a converted copy)."""
    for dtype in (np.int8, np.int16, np.int32):
        if labels < np.iinfo(dtype).max:
            return dtype
    return np.int64


def frame_from_sorted(
    split_codes: np.ndarray,
    split_labels: list[str],
    metric_codes: np.ndarray,
    metric_labels: list[str],
    step: np.ndarray,
    value: np.ndarray,
) -> pd.DataFrame:
    """The frame :func:`make_frame` would build, for a reader that already holds its points in make_frame's order
    (sorted by split, metric, step; no repeated point), with labels sorted and all present, and no wall times.

    Why: sorting millions of points needs several full-length temporaries beside the frame; a reader that can
    produce the order itself (the stdout reader, series by series) builds the columns once. The wall_time column
    is one NaN broadcast over the rows: it carries nothing, so it costs no memory (it is read-only, like any
    column a caller should not write to).
    """
    n = len(value)
    return pd.DataFrame(
        {
            "split": pd.Categorical.from_codes(split_codes, categories=pd.Index(split_labels)),
            "metric": pd.Categorical.from_codes(metric_codes, categories=pd.Index(metric_labels)),
            "step": np.asarray(step, dtype=np.int64),
            "value": np.asarray(value, dtype=np.float64),
            "wall_time": np.broadcast_to(np.float64(np.nan), (n,)),
        },
        copy=False,
    )


def last_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One series' points in step order, a repeated step keeping its last value (as :func:`make_frame` keeps it):
    a stable sort only when the steps are out of order, then the last of each run of equal steps."""
    if len(steps) > 1 and bool((steps[1:] < steps[:-1]).any()):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
    if len(steps) > 1:
        last = np.ones(len(steps), dtype=bool)
        last[:-1] = steps[1:] != steps[:-1]
        if not last.all():
            steps, values = steps[last], values[last]
    return steps, values


def frame_from_series(series: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> pd.DataFrame:
    """:func:`make_frame` for points already grouped by (split, metric): each series as pieces of (arrival key,
    step, value) arrays, where the arrival key orders the points as they were logged.

    Why: a reader that gathers whole columns at once (a trainer_state.json's log_history, key by key) would
    otherwise spell out a string per point and sort millions of them; here each series is put in step order on its
    own (arrival order kept among equal steps, the last one wins, as in make_frame) and written once. The result
    equals make_frame's, without wall times.
    """
    split_labels = sorted({s for s, _ in series})
    metric_labels = sorted({m for _, m in series})
    total = sum(len(steps) for pieces in series.values() for _, steps, _ in pieces)
    split_col = np.empty(total, dtype=code_dtype(len(split_labels)))
    metric_col = np.empty(total, dtype=code_dtype(len(metric_labels)))
    step_col = np.empty(total, dtype=np.int64)
    value_col = np.empty(total, dtype=np.float64)
    at = 0
    for split, metric in sorted(series):
        pieces = series[(split, metric)]
        if len(pieces) == 1:
            _, steps, values = pieces[0]
        else:
            order = np.argsort(np.concatenate([arrival for arrival, _, _ in pieces]), kind="stable")
            steps = np.concatenate([s for _, s, _ in pieces])[order]
            values = np.concatenate([v for _, _, v in pieces])[order]
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        steps, values = last_per_step(steps, values)
        n = len(steps)
        split_col[at : at + n] = split_labels.index(split)
        metric_col[at : at + n] = metric_labels.index(metric)
        step_col[at : at + n] = steps
        value_col[at : at + n] = values
        at += n
    return frame_from_sorted(
        split_col[:at], split_labels, metric_col[:at], metric_labels, step_col[:at], value_col[:at]
    )


def _point_order(s_codes: np.ndarray, m_codes: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The permutation that sorts points by (split, metric, step, arrival), and for the points in that order,
    whether each is the last of its (split, metric, step).

    Why not always one lexsort: readers deliver each series in step order, so sorting by (split, metric) alone,
    stably, is usually enough, and numpy sorts 16-bit keys stably with a radix sort in linear time (several times
    faster than a lexsort over millions of points). When some series is not in step order, the full lexsort runs.
    """
    n = len(steps)
    last = np.ones(n, dtype=bool)
    if n < 2:
        return np.arange(n), last
    width = int(m_codes.max()) + 2
    group = (s_codes + 1) * width + (m_codes + 1)
    if int(group.min()) >= 0 and int(group.max()) < 2**15:
        order = np.argsort(group.astype(np.int16), kind="stable")
        g, t = group[order], steps[order]
        same_group = g[1:] == g[:-1]
        if not (same_group & (t[1:] < t[:-1])).any():
            last[:-1] = ~(same_group & (t[1:] == t[:-1]))
            return order, last
    order = np.lexsort((np.arange(n), steps, m_codes, s_codes))
    g, t = group[order], steps[order]
    last[:-1] = ~((g[1:] == g[:-1]) & (t[1:] == t[:-1]))
    return order, last


def _frame(
    split_cat: pd.Categorical[Any],
    metric_cat: pd.Categorical[Any],
    steps: np.ndarray,
    values: np.ndarray,
    walls: np.ndarray,
) -> pd.DataFrame:
    n = len(values)
    if not (len(split_cat) == len(metric_cat) == len(steps) == n == len(walls)):
        raise ValueError("make_frame: columns of different lengths")
    # keep="last" in arrival order: a resumed run that re-logs a step overwrites the earlier value.
    # int32 codes (not int64): _point_order's group numbers fit, and a long run's temporaries stay half the size.
    order, last = _point_order(split_cat.codes.astype(np.int32), metric_cat.codes.astype(np.int32), steps)
    keep = order if last.all() else order[last]  # the usual case keeps every point: no second index array
    del order
    frame = pd.DataFrame(
        {
            "split": pd.Categorical.from_codes(split_cat.codes[keep], dtype=split_cat.dtype),
            "metric": pd.Categorical.from_codes(metric_cat.codes[keep], dtype=metric_cat.dtype),
            "step": steps[keep],
            "value": values[keep],
            "wall_time": walls[keep],
        },
        copy=False,  # the columns are fresh arrays (gathered above): no second copy
    )
    return frame


def empty_frame() -> pd.DataFrame:
    return make_frame([], [], [], [])
