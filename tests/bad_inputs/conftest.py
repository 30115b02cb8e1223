"""Shared setup of the bad-input suite: the hypothesis profiles of the fuzz tests and an isolated cache folder.

Why profiles selected by an environment variable: CI runs every fuzz test on a small, derandomised sample (fast and
reproducible), while ``tools/fuzz smoke|long|full`` (``DPODOCTOR_FUZZ=smoke|long|full``) runs 150, 2,000 or 10,000
fresh examples per reader. A number (``DPODOCTOR_FUZZ=500``) runs that many, for a quick local look. The profiles
are only *registered* globally; the fuzz tests apply :data:`FUZZ_SETTINGS` themselves, so loading this file changes
no other test's settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# function_scoped_fixture: the autouse cache fixture below is meant to be shared by every example of a test.
_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]

settings.register_profile(
    "dpodoctor-ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=_HEALTH, print_blob=True
)
# derandomize=False said outright: with CI set, Hypothesis's own CI profile (the parent of every new profile) replays
# the same inputs, and the named fuzz runs exist to try fresh ones.
settings.register_profile(
    "dpodoctor-full",
    max_examples=10_000,
    deadline=None,
    derandomize=False,
    suppress_health_check=_HEALTH,
    print_blob=True,
)


# Examples per reader test (the end-to-end tests run a tenth) of the named runs of ``tools/fuzz``: ``smoke`` is about
# two minutes on two cores (fresh random inputs each time, unlike the derandomised default), ``long`` is the
# pre-release run that finishes on two cores (tools/fuzz splits it over two processes), ``full`` is 10,000.
NAMED_RUNS = {"smoke": 150, "long": 2_000}


def _profile() -> settings:
    chosen = os.environ.get("DPODOCTOR_FUZZ", "").strip().lower()
    if chosen == "full":
        return settings.get_profile("dpodoctor-full")
    if chosen in NAMED_RUNS:
        return settings(settings.get_profile("dpodoctor-full"), max_examples=NAMED_RUNS[chosen])
    if chosen.isdigit() and int(chosen) > 0:
        return settings(settings.get_profile("dpodoctor-full"), max_examples=int(chosen))
    return settings.get_profile("dpodoctor-ci")


FUZZ_SETTINGS: settings = _profile()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point dpodoctor's cache (``DPODOCTOR_CACHE_DIR``, when the cache exists) at a temporary folder.

    Why: these tests feed hostile and half-written files; a cache shared with the user's real one could serve a
    stale answer or keep the garbage around after the test.
    """
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DPODOCTOR_CACHE_DIR", str(cache))
    yield cache
