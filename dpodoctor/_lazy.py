"""numpy and pandas, imported on first use instead of when a dpodoctor module is imported.

Why: ``dpodoctor rules``, ``explain``, ``--help`` and ``--version`` import the rule catalogue (every check module,
the engine, the curve helpers) but never compute anything, and pandas alone takes 0.4–1 s to import, numpy 0.1–0.2 s:
several times the whole command. The modules on that path write ``np.…`` and ``pd.…`` as usual; the names are
bound to the stand-ins below, which import the real module the first time one of its attributes is read and then
hold its attributes, so later look-ups cost what a module's do. Type checkers see the real modules (the stand-ins
are bound only outside ``TYPE_CHECKING``), and nothing enters ``sys.modules`` before the first use, so a command
that never computes never imports them.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name`` until an attribute of it is read, then imports it and takes its attributes."""

    def __init__(self, name: str, load: Callable[[], types.ModuleType]) -> None:
        super().__init__(name)
        self._lazy_target = name
        self._lazy_load = load
        self._lazy_loaded = False

    def __getattr__(self, attribute: str) -> Any:
        # Reached only for names not yet copied: the first use, or a submodule the module itself loads lazily.
        module = self._lazy_load()
        if not self._lazy_loaded:
            self.__dict__.update(module.__dict__)
            self._lazy_loaded = True
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_target!r}>"


def _numpy() -> types.ModuleType:
    import numpy

    return numpy


def _pandas() -> types.ModuleType:
    import pandas

    return pandas


np = LazyModule("numpy", _numpy)
pd = LazyModule("pandas", _pandas)
