from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TRL = FIXTURES / "trl"
TRL_RUNS = sorted(p.name for p in TRL.iterdir() if p.is_dir())


@pytest.fixture
def trl() -> Path:
    return TRL
