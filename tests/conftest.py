from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TRL = FIXTURES / "trl"
TRL_RUNS = sorted(p.name for p in TRL.iterdir() if p.is_dir())


@pytest.fixture
def trl() -> Path:
    return TRL


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI caches parsed runs; tests never write into the user's cache folder (nor read stale entries from it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPODOCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("dpodoctor-cache")))
        yield
