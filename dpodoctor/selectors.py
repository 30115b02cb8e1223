"""Rule selectors: what ``--select``, ``--ignore``, ``explain`` and the config's ``select``/``ignore`` accept.

Why a module of its own: every report prints a rule's name next to its code (``DPO103 loss-collapse``), so people
type the name back, as ruff accepts both. One function turns a code, a code prefix (any case) or a rule name into
the code prefix the rule table is filtered by, and every entry point (CLI, config file, Python API) goes through
it, so they cannot disagree about what a selector means.
"""

from __future__ import annotations

from collections.abc import Iterable

from dpodoctor.checks import RULES
from dpodoctor.errors import DpoDoctorError
from dpodoctor.rules import Rule


def find_rule(value: str) -> Rule | None:
    """The rule named by a full code (any case) or by its name (``DPO103``, ``dpo103``, ``loss-collapse``)."""
    text = value.strip()
    rule = RULES.get(text.upper())
    if rule is not None:
        return rule
    return next((r for r in RULES.values() if r.name == text.lower()), None)


def rule_selector(value: str, option: str = "--select") -> str:
    """The code prefix that a selector stands for: a code or prefix as given (upper-cased), a name as its code.

    Raises :class:`DpoDoctorError` naming ``option`` for anything that selects no rule, so a typo cannot silently
    loosen a gate.
    """
    text = value.strip()
    prefix = text.upper()
    if prefix and any(code.startswith(prefix) for code in RULES):
        return prefix
    rule = find_rule(text)
    if rule is not None:
        return rule.code
    raise DpoDoctorError(f"{option}: unknown rule code, prefix or name {value!r} (see `dpodoctor rules`)")


def rule_selectors(values: Iterable[str], option: str = "--select") -> list[str]:
    """:func:`rule_selector` of each non-empty value, in order."""
    return [rule_selector(v, option) for v in values if v.strip()]
