"""When a check uses worker processes (sweep.worker_count): only where they can win."""

from __future__ import annotations

import pytest

from dpodoctor import sweep

BIG = 100 * 2**20


def test_small_work_or_a_single_source_stays_in_one_process() -> None:
    assert sweep.worker_count(4, 10, sweep.PARALLEL_MIN_BYTES - 1) == 1
    assert sweep.worker_count(4, 1, BIG) == 1
    assert sweep.worker_count(1, 10, BIG) == 1


def test_an_explicit_jobs_is_an_upper_bound_whatever_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "_busy_cpus", lambda: 64)
    assert sweep.worker_count(3, 10, BIG) == 3
    assert sweep.worker_count(3, 2, BIG) == 2  # never more workers than sources


@pytest.mark.parametrize(("cpus", "busy", "expected"), [(2, 0, 2), (2, 1, 1), (2, 8, 1), (8, 3, 5), (8, 0, 8)])
def test_the_default_uses_only_the_cpus_the_load_leaves_idle(
    monkeypatch: pytest.MonkeyPatch, cpus: int, busy: int, expected: int
) -> None:
    monkeypatch.setattr(sweep, "default_jobs", lambda: cpus)
    monkeypatch.setattr(sweep, "_busy_cpus", lambda: busy)
    assert sweep.worker_count(None, 100, BIG) == expected


def test_many_small_runs_are_work_enough_and_a_few_are_not() -> None:
    """A run's diagnosis has a fixed cost (RUN_BYTES): 600 runs of 100 KB are worth workers, 6 of them are not."""
    small = 100_000
    many = 600 * small * 2 + 600 * sweep.RUN_BYTES
    few = 6 * small * 2 + 6 * sweep.RUN_BYTES
    assert few < sweep.PARALLEL_MIN_BYTES <= many
    assert sweep.worker_count(2, 6, few) == 1
    assert sweep.worker_count(2, 600, many) == 2


def test_the_load_signal_is_what_runs_now_besides_this_process() -> None:
    """/proc/stat's procs_running counts this process itself while it reads the file: at most the others remain."""
    busy = sweep._busy_cpus()
    assert isinstance(busy, int) and busy >= 0


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_batches_keep_the_order_and_cover_every_source(workers: int) -> None:
    sizes = {i: (50_000_000 if i < 3 else 80_000) for i in range(600)}
    order = sorted(sizes, key=lambda i: -sizes[i])
    cut = sweep.batches(order, sizes, workers)
    assert [i for batch in cut for i in batch] == order
    assert all(batch and len(batch) <= sweep.BATCH_MAX_SOURCES for batch in cut)
    assert cut[:3] == [[0], [1], [2]], "the large sources travel alone"
    even = {i: 80_000 for i in range(600)}
    cut = sweep.batches(list(even), even, workers)
    assert len(cut) >= sweep.BATCHES_PER_WORKER * workers, "enough batches to share between the workers"
    assert len(cut) <= 600 // 10, "and far fewer tasks than sources"
