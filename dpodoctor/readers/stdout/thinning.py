"""The point budget of one console log: above it, the scan keeps every ``stride``-th train dict (and what the rules
need besides), so the memory of a read is bounded whatever the log's size (issue 17, defect 7).

Why thin at all: a run is one frame of every point (18 bytes a point), built from the scan's records (8 bytes a
value, ~40 bytes of bookkeeping a record). A TRL log that prints 13 metrics every 10 steps holds ~13,000 points a
MB, so the whole ``check`` grew ~0.29 MiB per MB of log and passed 400 MiB near 800 MB. Nothing of the text is kept
(the file is streamed in chunks), so what must be bounded is the points.

How: the scan's cost (its values, plus :data:`RECORD_POINTS` for each record's bookkeeping) is checked after each
chunk. Once it passes the budget (:data:`MAX_POINTS`, or ``$DPODOCTOR_STDOUT_MAX_POINTS``), the stride doubles
(1, 2, 4, ...) until the cost is at most half the budget, each time re-thinning what is held; the chunks that
follow are thinned at the current stride when the budget is met again. A train dict's *ordinal* (how many train
dicts came before it in the file) decides, so thinning twice at stride ``s`` is thinning once at ``2s``, and each
record is looked at a bounded number of times: time stays linear in the log, memory within the budget (the cost
after a pass is at most half of it, so passes are at least half a budget of new values apart). When the file ends
(or a live tail is read), what came since the last pass is thinned too, so the end of a curve is as dense as the
rest.

What is kept, always:

- every dict that is not a train dict (eval, the end-of-training summary), the train dict before each (an eval
  dict without a step of its own takes the step of the train dict before it) and the one after a summary (a new
  run in the same file starts there);
- the train dicts whose ordinal is a multiple of the stride (the *regular* ones; the first among them), and the last
  dict read (the file's last, once the read ends);
- a dict with a crash marker after it, and the two dicts around an epoch that goes back (a second run appended);
- in each *stretch* (the ``stride`` train dicts from one regular dict to the next), up to
  :data:`OUTLIERS_PER_STRETCH` train dicts holding a non-finite value (DPO001 reads any NaN) or a loss/grad_norm
  more than :data:`OUTLIER_SIGMAS` times the curve's step-to-step noise away from the straight line between the
  stretch's regular dict and the next one, the largest first, each with the dicts on both sides of it (so an
  isolated blip stays isolated: outliers of one stretch kept alone would sit side by side and look sustained).

Why a regular stride and not every metric's extremes of every stretch: the rules judge curves by robust levels and
noise (rolling medians, MADs of residuals, Theil-Sen slopes over a fraction of the points), which a regular
sample of a long curve keeps, and its steps stay evenly spaced, so windows of points still span equal steps. Each
metric's minimum and maximum of every stretch would make most kept points extremes: the noise the rules measure
would be that of the extremes (several times the batch noise), hiding the spikes they look for and raising
alarms about noise. What a stride alone would lose is a short event between two regular dicts: a NaN (DPO001), a
loss spike (DPO102: a centred median of three, so two consecutive kept points must show it) or a grad_norm spike
or absurd value (DPO602), a zero loss (DPO106). Those stand far outside the batch noise, and are kept as outliers,
up to three of each stretch (a spike of up to three logged steps between two regular dicts keeps all three); a
longer one is seen through the regular dicts inside it.

Why uniform from the first dict and not only from where the budget was met: a curve half at full density and half
thinned would have windows of points that span different numbers of steps, and the rules' windows count points.

What is not thinned: the step table and the `name: value` lines of other loops (they are read only when a log has
no metric dicts), and eval dicts (rare: one per evaluation). So the eval dicts, and the train dict kept before
each, still grow with the log; when they alone hold more than half the budget, the next pass waits until the held
cost has doubled, which keeps the time linear while the memory grows with them.
"""

from __future__ import annotations

import os
from array import array
from typing import Final, Protocol

import numpy as np

from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers.stdout.grammar import SUMMARY, TRAIN, KeyInfo

__all__ = ["BUDGET_ENV", "MAX_POINTS", "OUTLIERS_PER_STRETCH", "OUTLIER_SIGMAS", "RECORD_POINTS", "Thinning"]

# Chosen from benchmarks/stdout_memory.py: unthinned, a 300 MB TRL log (3.9M values in 314k dicts: a cost of 5.3M)
# peaked at 208 MiB for the whole check, 600 MB at 302, 1200 MB at 476; with this bound the check peaks at 200-218
# MiB for all three, ~180 MiB under 400 MiB (room for a heavier import baseline, such as pyarrow's ~30 MiB).
MAX_POINTS: Final = 4_000_000
BUDGET_ENV: Final = "DPODOCTOR_STDOUT_MAX_POINTS"
# A record's bookkeeping in the scan (kind, layout, value offset, candidate bars, origin: ~40 bytes), counted as
# this many 8-byte values, so a log of one-metric dicts is bounded too.
RECORD_POINTS: Final = 4
OUTLIER_SIGMAS: Final = 4.0
OUTLIERS_PER_STRETCH: Final = 3
PRINTED_DIGITS: Final = 1e-3  # the smallest outlier, relative to the column's typical size (see _thresholds)
# The train metrics whose single points a rule reads (DPO102, DPO106, DPO602); any metric's non-finite value counts.
SPIKE_METRICS: Final = frozenset({"loss", "grad_norm"})
_MAD_OF_DIFFS: Final = 1.4826 / np.sqrt(2.0)  # σ of iid noise from the median |step-to-step difference|


class _Values(Protocol):
    offsets: array[int]

    def size(self) -> int: ...

    def flat(self) -> np.ndarray: ...


class Scan(Protocol):
    """What thinning reads of :class:`~dpodoctor.readers.stdout.scan.Scan` (a protocol: the scan module imports
    this one)."""

    kinds: list[int]
    infos: list[KeyInfo]
    crash_after: dict[int, bytes]

    @property
    def values(self) -> _Values: ...

    def epoch_array_of(self, lo: int) -> np.ndarray: ...

    def keep_records(self, lo: int, keep: np.ndarray) -> None: ...


def budget_from_env() -> int:
    """The budget: ``$DPODOCTOR_STDOUT_MAX_POINTS`` when set (tests, or a machine with less memory), else
    :data:`MAX_POINTS`."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return MAX_POINTS
    try:
        budget = int(raw.replace("_", ""))
    except ValueError:
        budget = 0
    if budget < 100:
        raise DpoDoctorError(f"{BUDGET_ENV} must be a whole number of points of at least 100, not {raw!r}")
    return budget


class Thinning:
    """The thinning state of one scan: the stride, and where each held record came from."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget_from_env() if budget is None else budget
        self.stride = 1
        self._trigger = self.budget  # the held cost above which the next pass runs
        self._origin = np.zeros(0, dtype=np.int64)  # the origins of the records before fresh_start
        self._fresh_start = 0  # records from here on are held unthinned, their origins consecutive
        self._fresh_origin = 0
        self.dropped_points = 0
        self.dropped_records = 0
        self._thresholds: dict[int, np.ndarray] = {}  # id(KeyInfo) -> a per-value outlier threshold

    @property
    def active(self) -> bool:
        """Whether any record was dropped."""
        return self.dropped_records > 0

    def origins(self, held: int) -> np.ndarray:
        """The origin of each of the ``held`` records."""
        fresh = np.arange(self._fresh_origin, self._fresh_origin + held - self._fresh_start, dtype=np.int64)
        return np.concatenate([self._origin, fresh]) if len(self._origin) else fresh

    def dropped_before(self, held: int) -> np.ndarray | None:
        """How many records were dropped before each held one (None when none was): every dropped record is a
        train dict, so a record's ordinal among the train dicts is its held ordinal plus this."""
        if not self.active:
            return None
        return self.origins(held) - np.arange(held, dtype=np.int64)

    def part(self, lo: int, hi: int, held: int) -> Thinning:
        """The state of the records ``lo:hi`` as a scan of their own (one run of a file that holds several)."""
        sub = Thinning(self.budget)
        sub.stride = self.stride
        if not self.active:  # nothing dropped: the part's origins are 0, 1, 2, ... as a fresh Thinning's
            return sub
        origin = self.origins(held)[lo:hi]
        sub._origin = origin - (origin[0] if len(origin) else 0)
        sub._fresh_start = hi - lo
        sub._fresh_origin = int(sub._origin[-1]) + 1 if len(origin) else 0
        sub.dropped_records = int(sub._fresh_origin - (hi - lo))
        return sub

    def cost(self, scan: Scan) -> int:
        return scan.values.size() + RECORD_POINTS * len(scan.kinds)

    def bound(self, scan: Scan) -> None:
        """Thin ``scan`` if its cost passed the budget (see the module's docstring). Called between chunks."""
        if self.cost(scan) <= self._trigger:
            return
        self._thin(scan, fresh=True)
        droppable = 1
        # Stop when no regular dict or outlier is left to drop (what is held is what is never dropped: eval dicts
        # and the dicts before them), or one stretch spans every dict read: doubling again would only cost a pass
        # over the records at every chunk.
        while self.cost(scan) > self.budget // 2 and droppable > 0 and self.stride <= self._fresh_origin:
            self.stride *= 2
            droppable = self._thin(scan, fresh=False)
        # When what is never dropped holds more than half the budget, the next pass waits until the held cost has
        # doubled: passes stay a constant factor apart and time linear (memory then grows with the eval dicts).
        self._trigger = max(self.budget, 2 * self.cost(scan))

    def finish(self, scan: Scan) -> None:
        """Thin what was read since the last pass, once the file has ended (or a live tail is read): without it
        the last half budget of a thinned log would be held whole, denser than the rest of the curve."""
        if self.stride > 1 and len(scan.kinds) > self._fresh_start:
            self._thin(scan, fresh=True)

    def _thin(self, scan: Scan, fresh: bool) -> int:
        """Thin the held records at the current stride: with ``fresh``, those read since the last pass (and the
        kept ones of the stretch they continue), else all. Returns how many of them are kept only as regular
        dicts or outliers (the first excepted): what a larger stride could still drop."""
        held = len(scan.kinds)
        droppable = held
        origins = self.origins(held)
        stride = self.stride
        if stride > 1:
            # Each record's train ordinal: the train dicts before it in the file (each dropped record was one).
            train = np.array(scan.kinds, dtype=np.int8) == TRAIN
            ordinals = np.cumsum(train) - train + (origins - np.arange(held))
            fresh_from = ordinals[self._fresh_start] if self._fresh_start < held else ordinals[-1] + 1
            lo = int(np.searchsorted(ordinals, (fresh_from // stride) * stride)) if fresh else 0
            keep, droppable = self._keep(scan, lo, ordinals[lo:], train[lo:])
            kept = lo + np.flatnonzero(keep)
            if len(kept) < held - lo:
                before = scan.values.size()
                scan.keep_records(lo, kept)
                self.dropped_points += before - scan.values.size()
                self.dropped_records += held - lo - len(kept)
                origins = np.concatenate([origins[:lo], origins[kept]])
        self._fresh_origin += held - self._fresh_start
        self._origin = origins
        self._fresh_start = len(scan.kinds)
        return droppable

    def _keep(self, scan: Scan, lo: int, ordinal: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, int]:
        """Which of the records ``lo:`` stay (see the module's docstring for why each), and how many stay only as
        regular dicts or outliers (not the first); ``ordinal``: each one's train ordinal, ``train``: whether it is a
        train dict."""
        keep = ~train
        keep[-1] = True
        other = ~train
        keep[:-1] |= other[1:]  # the train dict before an eval or summary dict
        after_summary = np.array(scan.kinds[max(lo - 1, 0) : lo - 1 + len(keep)], dtype=np.int8) == SUMMARY
        keep[len(keep) - len(after_summary) :] |= after_summary  # and the one after a summary: a new run
        for index in scan.crash_after:
            if index >= lo:
                keep[index - lo] = True
        # an epoch that goes back: the records on both sides (the record before lo is held, and compared)
        first = max(lo - 1, 0)
        epochs = scan.epoch_array_of(first)
        with np.errstate(invalid="ignore"):
            back = np.flatnonzero(epochs[1:] < epochs[:-1]) + 1 + first - lo
        keep[back[back >= 0]] = True
        keep[back[back >= 1] - 1] = True
        special = keep.copy()
        keep |= train & (ordinal % self.stride == 0)
        if (train & ~keep).any():
            self._keep_outliers(scan, lo, ordinal, train, keep)
        return keep, int(np.count_nonzero(keep & ~special & (ordinal > 0)))

    def _keep_outliers(self, scan: Scan, lo: int, ordinal: np.ndarray, train: np.ndarray, keep: np.ndarray) -> None:
        """Mark the outliers of each stretch (non-finite values, loss/grad_norm spikes) to keep, layout by layout."""
        infos = scan.infos
        layout = np.fromiter(map(id, infos[lo:]), dtype=np.uint64, count=len(ordinal))
        offsets = np.array(scan.values.offsets, dtype=np.int64)
        flat = scan.values.flat()
        for key in np.unique(layout[train]).tolist():
            rows = np.flatnonzero(train & (layout == key))
            info = infos[lo + int(rows[0])]
            width = int(offsets[lo + rows[0] + 1] - offsets[lo + rows[0]])
            if width == 0:
                continue
            # Column by column, not as a rows x width matrix: a pass runs while the budget's values are held.
            starts = offsets[lo + rows]
            finite = np.ones(len(rows), dtype=bool)
            for c in range(width):
                finite &= np.isfinite(flat[starts + c])
            score = np.where(finite, 0.0, np.inf)
            columns = [p for p, split, metric in info.rows if metric in SPIKE_METRICS and split == "train"]
            if columns:
                values = np.stack([flat[starts + c] for c in columns], axis=1)
                limits = self._thresholds.get(key)
                if limits is None:
                    limits = self._thresholds[key] = _thresholds(values)
                score = np.maximum(score, _deviation_score(values, ordinal[rows], self.stride, limits))
            chosen = np.flatnonzero((score > 1.0) & ~keep[rows])
            if not len(chosen):
                continue
            stretch = ordinal[rows][chosen] // self.stride
            order = np.lexsort((-score[chosen], stretch))
            ranked = stretch[order]
            rank = np.arange(len(order)) - np.searchsorted(ranked, ranked, side="left")
            outliers = rows[chosen[order[rank < OUTLIERS_PER_STRETCH]]]
            # With the dicts on both sides: a one-dict blip stays one (DPO102's median of three ignores it, as in the
            # full read), and two outliers of a stretch do not become neighbours that look like a sustained jump.
            keep[outliers] = True
            keep[np.maximum(outliers - 1, 0)] = True
            keep[np.minimum(outliers + 1, len(keep) - 1)] = True


def _thresholds(values: np.ndarray) -> np.ndarray:
    """Per column: how far from the line between two regular dicts a point must be to be an outlier.

    :data:`OUTLIER_SIGMAS` times the batch noise, estimated from the median step-to-step difference of the points
    read before any thinning (robust to the spikes themselves, and to a trend, which moves a point far less than
    the noise between two logged steps). At least :data:`PRINTED_DIGITS` of the column's typical size: a curve
    without noise (a constant learning rate, a loss that has settled) would otherwise make its last printed digit
    an outlier in every stretch (transformers 5 prints 4 significant digits), and no rule reads a change that small
    (DPO102 wants a jump of 0.1).
    """
    limits = np.empty(values.shape[1])
    for c in range(values.shape[1]):
        column = values[:, c]
        finite = column[np.isfinite(column)]
        diffs = np.abs(np.diff(finite))
        sigma = _MAD_OF_DIFFS * float(np.median(diffs)) if len(diffs) else 0.0
        scale = float(np.median(np.abs(finite))) if len(finite) else 0.0
        limits[c] = max(OUTLIER_SIGMAS * sigma, PRINTED_DIGITS * scale, 1e-12)
    return limits


def _deviation_score(values: np.ndarray, ordinal: np.ndarray, stride: int, limits: np.ndarray) -> np.ndarray:
    """Each row's largest distance, in thresholds, from the straight line between its stretch's first dict (the
    regular one, when it is of this layout) and the next stretch's (the last dict, for the last stretch), over the
    columns; 0 where that cannot be told.

    Why that line and not a fit over the stretch: a fit is pulled toward the spike it should reveal, and once a
    stretch is thinned it holds a handful of points, mostly outliers; the regular dicts are the unbiased ones.
    """
    stretch = ordinal // stride
    heads, anchor = np.unique(stretch, return_index=True)
    which = np.searchsorted(heads, stretch)
    left = anchor[which]
    # the last stretch read so far has no next one yet: its line ends at the last dict (kept: the last read)
    right = np.where(which + 1 < len(anchor), anchor[np.minimum(which + 1, len(anchor) - 1)], len(ordinal) - 1)
    t = ordinal.astype(np.float64)
    span = t[right] - t[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(span > 0, (t - t[left]) / np.where(span > 0, span, 1.0), 0.0)
        line = values[left] + (values[right] - values[left]) * fraction[:, None]
        distance = np.abs(values - line) / limits
    return np.nan_to_num(distance, nan=0.0, posinf=0.0).max(axis=1)
