"""The settings a diagnosis depends on, as one typed, frozen value.

Why a module of its own, below the rules and the API: the CLI and :func:`dpodoctor.check` resolve these settings
(arguments over the project config over the defaults), worker processes receive them (so they must pickle), the
cache keys a stored diagnosis by them, and :func:`dpodoctor.rules.diagnose_run` applies them. One frozen value that
all of them import from here cannot lose a field or its type on the way, as an untyped keyword dict could.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DiagnoseSettings"]


@dataclass(frozen=True)
class DiagnoseSettings:
    """What the rules are told: β (None: each run's own), which rules run, and per-rule parameter overrides.

    ``select``/``ignore`` are code prefixes as :func:`dpodoctor.selectors.rule_selectors` returns them (None: no
    filter). ``params`` maps a rule code to its parameter overrides; it is copied on creation, so the caller's dict
    changing later cannot change a diagnosis (or its cache key) after the fact.
    """

    beta: float | None = None
    select: Sequence[str] | None = None  # stored as a tuple
    ignore: Sequence[str] | None = None  # stored as a tuple
    params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "select", _codes(self.select))
        object.__setattr__(self, "ignore", _codes(self.ignore))
        object.__setattr__(self, "params", {code: dict(values) for code, values in self.params.items()})

    def __hash__(self) -> int:  # the params dict is not hashable; its frozen contents are
        frozen = tuple(sorted((code, tuple(sorted(values.items()))) for code, values in self.params.items()))
        return hash((self.beta, self.select, self.ignore, frozen))

    def rule_params(self) -> dict[str, dict[str, float]]:
        """A fresh copy of the overrides, in the shape the rules' context reads."""
        return {code: dict(values) for code, values in self.params.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, dicts): what the cache's key of a diagnosis names."""
        return {
            "beta": self.beta,
            "select": None if self.select is None else list(self.select),
            "ignore": None if self.ignore is None else list(self.ignore),
            "params": self.rule_params(),
        }


def _codes(values: Iterable[str] | None) -> tuple[str, ...] | None:
    """A selector list as a tuple (immutable); a lone string is one selector, not its characters."""
    if values is None:
        return None
    return (values,) if isinstance(values, str) else tuple(values)
