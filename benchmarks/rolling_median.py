"""CPU cost of the long-curve rolling median (stats.rolling_median / stats.trailing_median), against pandas'.

Why a script of its own: the noise estimate of each long curve is a centred rolling median (window 101 over 10k
points), ~0.3 of the 2.5 CPU-s of a cold check of 6 runs x 10k steps while it was pandas'. This times, on the same
curve in the same process, what the long-curve branch did before (pandas' ``rolling(...).median()``), what it does
now (dpodoctor.rolling: bottleneck's ``move_median``, else a numpy sort of the windows), and the candidates that
were measured and dropped, each checked equal to pandas to the bit. Process CPU time, best of ``--repeat`` passes.

    PYTHONPATH=$PWD python -B benchmarks/rolling_median.py [--points 10000] [--window 101] [--repeat 5]

Writes nothing. The candidates show why the choice is a C double heap: only a structure updated point by point is
O(n log w), and in Python (the ``bisect.insort`` list, ~6 ms) or numpy (the sorted windows of the fallback, ~3 ms)
that costs more than pandas' skiplist. Measured once and not kept here: a numpy wavelet matrix over stable ranks
(11 ms), np.partition of the windows (slower than their sort), scipy.ndimage.median_filter (0.4 ms, but 0.7 s to
import, no truncated windows at the ends, no even windows or min_periods).
"""

from __future__ import annotations

import argparse
import bisect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.dont_write_bytecode = True  # no __pycache__ in the checkout for the dpodoctor modules imported below
sys.path.append(str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def cpu_ms(work: Callable[[], object], repeat: int, calls: int) -> float:
    """Best of ``repeat`` passes of ``calls`` calls, in CPU ms per call (process time: user + sys)."""
    work()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            work()
        best = min(best, time.process_time() - start)
    return 1000 * best / calls


def insort_centred(values: np.ndarray, window: int) -> np.ndarray:
    """The centred rolling median from one sorted Python list, updated with bisect (ties in step order)."""
    n, half = len(values), window // 2
    points = values.tolist()
    kept = sorted(points[:half])
    out = []
    for i in range(n):
        if i + half < n:
            bisect.insort(kept, points[i + half])
        if i - half - 1 >= 0:
            del kept[bisect.bisect_left(kept, points[i - half - 1])]
        mid = len(kept) // 2
        out.append(kept[mid] if len(kept) % 2 else (kept[mid] + kept[mid - 1]) / 2)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=101)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pandas as pd

    from dpodoctor import rolling, stats

    rng = np.random.default_rng(0)
    n, window = args.points, args.window
    values = np.cumsum(rng.normal(size=n)) * 0.01 + rng.normal(size=n)  # a noisy, drifting training curve

    def without_bottleneck(work: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with mock.patch.dict(sys.modules, {"bottleneck": None}):
                return work()

        return run

    def centred() -> np.ndarray:
        return pd.Series(values).rolling(window, center=True, min_periods=1).median().to_numpy()

    def trailing() -> np.ndarray:
        return pd.Series(values).rolling(window, min_periods=3).median().to_numpy()

    fallback = without_bottleneck(lambda: rolling.centred_median(values, window))
    cases: list[tuple[str, Callable[[], np.ndarray], int, np.ndarray]] = [
        ("pandas rolling(center=True).median() (before)", centred, 50, centred()),
        ("stats.rolling_median (now)", lambda: stats.rolling_median(values, window), 50, centred()),
        ("  its numpy fallback (no bottleneck)", fallback, 20, centred()),
        ("pandas rolling(min_periods=3).median() (before)", trailing, 50, trailing()),
        ("stats.trailing_median (now)", lambda: stats.trailing_median(values, window, 3), 50, trailing()),
        ("dropped: sorted Python list + bisect.insort", lambda: insort_centred(values, window), 5, centred()),
    ]  # fmt: skip
    try:
        import bottleneck
    except ImportError:
        print("bottleneck is not installed: 'now' is the numpy fallback")
    else:
        print(f"bottleneck {bottleneck.__version__}")
    print(f"{n} points, window {window}; CPU ms a call, best of {args.repeat}")
    for label, work, calls, want in cases:
        same = np.array_equal(work().view(np.int64), want.view(np.int64))
        print(f"  {label:50s} {cpu_ms(work, args.repeat, calls):8.3f} ms   equal to pandas to the bit: {same}")


if __name__ == "__main__":
    main()
