"""Saying which steps a run logged twice, when a reader merges several files of one run.

Why: a resumed run writes a new file (a second TensorBoard event file, a second SwanLab record file) that starts
again from its last checkpoint, so the steps between that checkpoint and the crash are in both files. The readers
keep the later file's values (the run that went on from there), which is right, but silently overwriting is not:
the report says which steps were logged twice and which values were kept.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["repeated_steps_notes"]

_MAX_RANGES = 4  # ranges named per note; the rest are counted


def _ranges(steps: np.ndarray, repeated: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive entries of the sorted unique ``steps`` whose ``repeated`` flag is set."""
    if not repeated.any():
        return []
    edges = np.diff(np.concatenate(([0], repeated.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(steps[a]), int(steps[b])) for a, b in zip(starts, stops, strict=True)]


def _describe(ranges: list[tuple[int, int]]) -> str:
    shown = [f"{a}" if a == b else f"{a}–{b}" for a, b in ranges[:_MAX_RANGES]]
    more = len(ranges) - _MAX_RANGES
    text = ", ".join(shown) + (f" and {more} more range{'s' if more > 1 else ''}" if more > 0 else "")
    single = len(ranges) == 1 and ranges[0][0] == ranges[0][1]
    return f"step {text} was" if single else f"steps {text} were"


def repeated_steps_notes(
    parts: Sequence[tuple[str, Sequence[Hashable] | np.ndarray, Sequence[int] | np.ndarray]],
) -> list[str]:
    """One note per file that logs a (series, step) an earlier file logged too, in the order the files are merged.

    ``parts``: (label, series of each point, step of each point) per file, in merge order (the later file wins).
    A series is whatever names one curve in that reader (a tag, a key); a step logged for different series in two
    files (train in one, eval in the other) is not a repeat.
    """
    if len(parts) < 2:
        return []
    notes: list[str] = []
    seen: dict[Hashable, np.ndarray] = {}  # series -> sorted unique steps of the files merged so far
    labels_before: list[str] = []
    for label, series, steps in parts:
        steps = np.asarray(steps, dtype=np.int64)
        series_arr = np.asarray(series)
        file_steps: dict[Hashable, np.ndarray] = {}
        if len(steps):
            names, inverse = np.unique(series_arr, return_inverse=True)
            for i, name in enumerate(names.tolist()):
                file_steps[name] = np.unique(steps[inverse.reshape(-1) == i])
        repeated_steps: list[np.ndarray] = []
        for name, own in file_steps.items():
            before = seen.get(name)
            if before is not None:
                repeated_steps.append(own[np.isin(own, before, assume_unique=True)])
        if repeated_steps and (both := np.unique(np.concatenate(repeated_steps))).size:
            all_steps = np.unique(np.concatenate(list(file_steps.values())))
            ranges = _ranges(all_steps, np.isin(all_steps, both, assume_unique=True))
            earlier = ", ".join(labels_before)
            notes.append(
                f"{_describe(ranges)} logged twice ({earlier}, then {label}); the later file's values are used"
            )
        for name, own in file_steps.items():
            before = seen.get(name)
            seen[name] = own if before is None else np.union1d(before, own)
        labels_before.append(label)
    return notes
