"""The rule catalogue: the engine of :mod:`dpodoctor.rules` with every rule family registered into it.

One module per code family (integrity DPO0xx, loss DPO1xx, margins DPO2xx, ...), each registering its rules into
:data:`dpodoctor.rules.RULES` with the :func:`~dpodoctor.rules.rule` decorator when imported. Every module here is
imported (sorted by name; the table itself is ordered by code), so adding a rule family is one new module plus its
test, with no import line to edit.

Why the catalogue is here and not in :mod:`dpodoctor.rules`: the families import the engine, so the engine importing
the families would be an import cycle. Code that needs the full table (the API, the CLI, selectors, the report's
table) imports ``RULES`` and ``diagnose_run`` from this package, which guarantees every family is registered.
"""

from __future__ import annotations

from dpodoctor._plugins import import_submodules
from dpodoctor.rules import RULES, diagnose_run, select_rules

import_submodules(__name__, __path__)

__all__ = ["RULES", "diagnose_run", "select_rules"]
