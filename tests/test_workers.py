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
