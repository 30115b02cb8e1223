"""Reading SwanLab's (and W&B's) ``files/config.yaml`` with PyYAML's safe loader.

SwanLab writes the run config with PyYAML's ``yaml.dump`` in block style, each key as
``{desc: '', sort: <n>, value: <the value>}``::

    beta:
      desc: ''
      sort: 165
      value: 0.1
    report_to:
      desc: ''
      sort: 93
      value:
      - tensorboard
      - swanlab

Why PyYAML: the file is written by PyYAML, so PyYAML's own loader reads every value exactly as it was dumped, where a
hand-written subset had to re-implement scalars, block scalars, wrapped lines and flow collections (325 lines) and
still kept anchors, tags and complex flow as raw text. A log is untrusted input: the loader is PyYAML's safe one
(``SafeLoader``, in C when libyaml is there), which builds only dicts, lists and scalars, never objects, with two
changes so a config stays plain data: a date stays its text, and an integer beyond ``int(str)``'s digit limit keeps
its text instead of raising. Each top-level key is parsed on its own, so one odd value costs that key, not β.
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml
from yaml.constructor import SafeConstructor

__all__ = ["ConfigError", "parse_config_yaml", "parse_yaml", "unwrap_config"]

_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class ConfigError(ValueError):
    """The text is not YAML that the safe loader reads."""


class _ConfigSafeLoader(_BASE):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader, minus the timestamp resolver (a date stays text), with integers kept as text when
    Python refuses to convert them (more than 4300 digits)."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BASE.yaml_implicit_resolvers.items()
    }


def _int_or_text(loader: SafeConstructor, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:  # beyond Python's 4300-digit limit for int(str): no config value, keep the text
        return loader.construct_scalar(node)


_ConfigSafeLoader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def _reason(exc: Exception) -> str:
    """One line saying where and why PyYAML stopped (its messages span several lines, with a caret)."""
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def parse_yaml(text: str) -> Any:
    """One YAML document read with the safe loader. Raises :class:`ConfigError` (one line) for anything else."""
    try:
        return yaml.load(text, Loader=_ConfigSafeLoader)  # a SafeLoader subclass: plain types only
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(_reason(exc)) from None


def parse_config_yaml(text: str) -> tuple[dict[str, Any], list[str]]:
    """Every top-level key of a SwanLab ``config.yaml`` and its raw entry; plus the keys that could not be parsed.

    Why key by key: the top-level keys always start at column 0, so splitting there first means a value the loader
    refuses loses only its own key. A file the loader reads whole (the usual case) is read in one pass.
    """
    try:
        whole = parse_yaml(text)
    except ConfigError:
        whole = None
    if isinstance(whole, dict):
        return {str(k): v for k, v in whole.items()}, []
    blocks: list[list[str]] = []
    for raw in text.splitlines():
        if raw[:1] not in ("", " ", "#", "-", "\t") or (raw.startswith("-") and not raw.startswith(("- ", "---"))):
            blocks.append([raw])
        elif blocks:
            blocks[-1].append(raw)
    result: dict[str, Any] = {}
    failed: list[str] = []
    for block in blocks:
        try:
            parsed = parse_yaml("\n".join(block))
        except ConfigError as exc:
            failed.append(f"{block[0].split(':', 1)[0]} ({exc})")
            continue
        if isinstance(parsed, dict):
            result.update({str(k): v for k, v in parsed.items()})
        else:
            failed.append(f"{block[0][:40]} (not a mapping)")
    return result, failed


def unwrap_config(entries: dict[str, Any]) -> dict[str, Any]:
    """SwanLab's ``{desc, sort, value}`` wrappers -> the plain config; other entries are kept as they are."""
    return {
        key: entry["value"] if isinstance(entry, dict) and "value" in entry and "sort" in entry else entry
        for key, entry in entries.items()
    }
