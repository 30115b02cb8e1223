"""One logged curve as the rules read it: its steps and values, two numpy arrays, nothing else.

Why not a pandas Series: a run's rules read a few dozen curves of about a hundred points, and building, slicing and
indexing a Series costs tens of µs a call (most of a short run's diagnosis on a 600-run sweep), and importing
pandas costs ~0.4 s of a cold check. The rules need only positional slices, boolean masks and the two arrays: this
type holds exactly that. It is not a pandas emulation: it has no labels, no alignment and no reductions; a rule
that needs one writes it on :attr:`Curve.steps` / :attr:`Curve.values` with numpy (or asks :mod:`dpodoctor.stats`).

A curve's points are in step order (steps non-decreasing: a reader's run has one point a step, a hand-built frame
may repeat a step) and its arrays are never written to (they may be read-only views of the run's columns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


class Curve:
    """The points of one (split, metric) curve: ``steps`` (int) and ``values`` (float), same length, step order.

    ``curve[a:b]`` and ``curve[mask]`` select points by position (a slice, a boolean mask or an integer array), as
    ``Series.iloc`` does; a single integer is refused (read ``curve.steps[i]`` / ``curve.values[i]``), so no reader
    can mistake a position for a step.
    """

    __slots__ = ("steps", "values")

    steps: np.ndarray
    values: np.ndarray

    def __init__(self, steps: np.ndarray, values: np.ndarray) -> None:
        if len(steps) != len(values):
            raise ValueError(f"Curve: {len(steps)} steps but {len(values)} values")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "values", values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Curve is immutable (tried to set {name!r})")

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, where: slice | np.ndarray) -> Curve:
        if isinstance(where, int | np.integer):
            raise TypeError("Curve[int] is ambiguous (a position or a step?): read curve.steps[i] / curve.values[i]")
        return Curve(self.steps[where], self.values[where])

    def __repr__(self) -> str:
        return f"Curve({len(self)} points, steps {self.steps[:3].tolist()}…, values {self.values[:3].tolist()}…)"

    @property
    def first_step(self) -> int | None:
        return int(self.steps[0]) if len(self.steps) else None

    @property
    def last_step(self) -> int | None:
        return int(self.steps[-1]) if len(self.steps) else None

    def finite(self) -> Curve:
        """The points whose value is finite (NaN/±inf are DPO001's business, not a trend's); the curve itself when
        every point is (a boolean mask would copy both arrays, hundreds of times a run)."""
        values = self.values.astype(float, copy=False)
        keep = np.isfinite(values)
        if keep.all():
            return self if values is self.values else Curve(self.steps, values)
        return Curve(self.steps[keep], values[keep])

    def last_per_step(self) -> Curve:
        """One point a step, the last one logged at a repeated step (as every reader's run keeps it); the curve
        itself when no step repeats (only a hand-built frame repeats one)."""
        steps = self.steps
        if len(steps) < 2:
            return self
        new = steps[1:] != steps[:-1]
        if bool(new.all()):
            return self
        last = np.append(new, True)
        return Curve(steps[last], self.values[last])

    def at_steps(self, steps: np.ndarray) -> np.ndarray:
        """The values logged at ``steps`` (sorted, distinct), every value of a repeated step, in step order: what
        ``series[steps]`` gives on a Series indexed by step in step order (label look-up, duplicates kept)."""
        if len(steps) == len(self.steps) and bool((steps == self.steps).all()):
            return self.values
        return self.values[np.isin(self.steps, steps)]


def common_steps(*curves: Curve) -> np.ndarray:
    """The steps every curve logged, sorted and distinct: what chained ``Index.intersection`` gives on indexes in
    step order (pandas de-duplicates the result and keeps it in the first index's, sorted, order)."""
    common = curves[0].steps
    if len(common) > 1 and not bool((common[1:] > common[:-1]).all()):
        common = np.unique(common)
    for other in curves[1:]:
        common = np.intersect1d(common, other.steps)
    return common


__all__ = ["Curve", "common_steps"]
