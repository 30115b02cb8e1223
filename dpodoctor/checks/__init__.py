"""The rule catalogue, one module per code family (integrity DPO0xx, loss DPO1xx, margins DPO2xx, ...).

Importing this package registers every rule into :data:`dpodoctor.rules.RULES`; :mod:`dpodoctor.rules` keeps the
engine (registry, decorator, context, absorption of symptoms into causes) and imports this package at its end.
Every module here is imported (sorted by name; the table itself is ordered by code), so adding a rule family is one
new module plus its test, with no import line to edit.
"""

from __future__ import annotations

from dpodoctor._plugins import import_submodules

import_submodules(__name__, __path__)
