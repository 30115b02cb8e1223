"""Where β sits in a run's config: the keys trainers use for it, and how a config states it.

Why a module of its own, below every reader: the TensorBoard reader finds β in the ``args`` summary it decodes, the
tracker readers in their stored params, and :mod:`dpodoctor.readers.hparams` in the configs beside a log. All of them
must read a config the same way, and none of them should import another to do it.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["BETA_KEYS", "beta_in"]

BETA_KEYS: Final = ("beta", "pref_beta", "dpo_beta")


def beta_in(config: dict[str, Any]) -> float | None:
    """A positive finite β under one of the usual keys, at the top level or one level down."""
    for key in BETA_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**1023) < value < 2**1023:
            continue  # beyond float range: math.isfinite would raise OverflowError
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    for value in config.values():
        if isinstance(value, dict):
            nested = beta_in({k: v for k, v in value.items() if not isinstance(v, dict)})
            if nested is not None:
                return nested
    return None
