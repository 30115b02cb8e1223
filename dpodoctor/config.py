"""Project configuration: ``[tool.dpodoctor]`` in ``pyproject.toml``, or a ``dpodoctor.toml``.

Why a file: a CI gate's thresholds belong with the project, reviewed like code, not in a long command line. The
file can set ``select``/``ignore`` (codes or prefixes, like ruff), ``fail-on``, ``beta`` and per-rule thresholds
(``[tool.dpodoctor.rules.DPO101] tolerance = 0.02``). Options on the command line override it. Anything the file
says that dpodoctor does not know is an error that names it: a typo in a gate must not silently loosen it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpodoctor.checks import RULES
from dpodoctor.errors import DpoDoctorError
from dpodoctor.results import FAIL_ON_CHOICES
from dpodoctor.selectors import rule_selectors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KEYS = ("select", "ignore", "fail-on", "beta", "rules")
# a real table header at the start of a line (a comment or a string mentioning it does not count)
_TABLE_HEADER = re.compile(r"^[ \t]*\[tool\.dpodoctor[\].]", re.M)


@dataclass
class Config:
    """What a configuration file says; None means "not set" so command-line defaults apply."""

    path: Path | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    fail_on: str | None = None
    beta: float | None = None
    rule_params: dict[str, dict[str, float]] = field(default_factory=dict)


def _codes(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DpoDoctorError(f"'{key}' must be a list of rule codes, prefixes or names", path)
    try:  # codes, prefixes or rule names, as on the command line
        return rule_selectors(value, f"'{key}'")
    except DpoDoctorError as exc:
        raise DpoDoctorError(exc.reason, path) from None


def parse(table: dict[str, Any], path: Path) -> Config:
    """Validate one ``[tool.dpodoctor]`` table (or a dpodoctor.toml document)."""
    config = Config(path=path)
    for key in table:
        if key not in KEYS:
            raise DpoDoctorError(f"unknown key {key!r} (known: {', '.join(KEYS)})", path)
    if "select" in table:
        config.select = _codes(table["select"], "select", path)
    if "ignore" in table:
        config.ignore = _codes(table["ignore"], "ignore", path)
    if "fail-on" in table:
        value = table["fail-on"]
        if value not in FAIL_ON_CHOICES:
            raise DpoDoctorError(f"'fail-on' must be one of {', '.join(FAIL_ON_CHOICES)}, not {value!r}", path)
        config.fail_on = value
    if "beta" in table:
        value = table["beta"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise DpoDoctorError(f"'beta' must be a positive number, not {value!r}", path)
        config.beta = float(value)
    rules = table.get("rules", {})
    if not isinstance(rules, dict):
        raise DpoDoctorError("'rules' must be a table of [rules.DPOxxx] tables", path)
    for code, params in rules.items():
        rule = RULES.get(code)
        if rule is None:
            raise DpoDoctorError(f"[rules.{code}]: unknown rule code", path)
        if not isinstance(params, dict):
            raise DpoDoctorError(f"[rules.{code}] must be a table of thresholds", path)
        for name, value in params.items():
            if name not in rule.params:
                known = ", ".join(rule.params) or "none"
                raise DpoDoctorError(f"[rules.{code}]: unknown threshold {name!r} (known: {known})", path)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DpoDoctorError(f"[rules.{code}] {name} must be a number, not {value!r}", path)
        config.rule_params[code] = {k: float(v) for k, v in params.items()}
    return config


def load_file(path: Path) -> Config:
    """Read a config file named by the user: a dpodoctor.toml, or a pyproject.toml's [tool.dpodoctor]."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DpoDoctorError(f"cannot read config ({exc.strerror or exc})", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DpoDoctorError(f"not valid TOML ({exc})", path) from None
    if path.name == "pyproject.toml":
        table = document.get("tool", {}).get("dpodoctor")
        if table is None:
            raise DpoDoctorError("has no [tool.dpodoctor] table", path)
        return parse(table, path)
    return parse(document, path)


def _found_in(folder: Path) -> Path | None:
    candidate = folder / "dpodoctor.toml"
    if candidate.is_file():
        return candidate
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            text = pyproject.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if _TABLE_HEADER.search(text):
            return pyproject
    return None


def discover(paths: list[Path], cwd: Path | None = None) -> Config:
    """The config for a check: from the first checked path upward, then from the current directory upward.

    An empty Config (nothing set) when no file is found.
    """
    starts = [p.resolve() for p in paths[:1]] + [(cwd or Path.cwd()).resolve()]
    for start in starts:
        folder = start if start.is_dir() else start.parent
        for candidate in (folder, *folder.parents):
            found = _found_in(candidate)
            if found is not None:
                return load_file(found)
    return Config()
