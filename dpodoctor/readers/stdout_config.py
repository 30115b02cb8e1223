"""β and the DPO loss settings, read from the text of a console log itself.

Why: a ``train.log`` often states its own configuration before the first metric line, and a log pasted alone has
nothing beside it to look β up in. The shapes read, each for the keys in :data:`KEYS` only:

* the command line, as a launcher or ``set -x`` echoes it: ``--beta=0.1``, ``--beta 0.1``, ``--loss_type sigmoid``;
* an argparse ``Namespace(..., beta=0.1, loss_type='sigmoid', ...)`` and a dataclass repr such as TRL's
  ``DPOConfig(..., beta=0.1, loss_type=['sigmoid', 'sft'], loss_weights=[1.0, 1.0], ...)`` (one ``key=value`` per
  entry, on one line or one per line as transformers prints TrainingArguments);
* YAML and JSON dumps: LLaMA-Factory's ``pref_beta: 0.1`` / ``pref_loss: sigmoid``, ``"beta": 0.1``.

The first statement of each key wins (a config is printed before training starts). Only the first
:data:`CONFIG_BYTES` bytes are searched, with one bounded regex: linear, and nothing is evaluated.
LLaMA-Factory's names are also given the names the rules read: ``pref_beta`` is β, ``pref_loss`` the ``loss_type``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Final

__all__ = ["CONFIG_BYTES", "KEYS", "config_from_file", "config_from_text"]

CONFIG_BYTES: Final = 2 * 1024 * 1024
KEYS: Final = (
    "beta",
    "pref_beta",
    "dpo_beta",
    "loss_type",
    "pref_loss",
    "label_smoothing",
    "rpo_alpha",
    "loss_weights",
    "pref_ftx",
)
_NUMERIC: Final = frozenset({"beta", "pref_beta", "dpo_beta", "label_smoothing", "rpo_alpha", "pref_ftx"})
_ALIASES: Final = {"pref_beta": "beta", "dpo_beta": "beta", "pref_loss": "loss_type"}

_VALUE: Final = (
    rb"""(\[[^\[\]\r\n]{0,200}\]|'[^'\r\n]{0,100}'|"[^"\r\n]{0,100}"|[-+0-9.eE]{1,32}|[A-Za-z_][\w.-]{0,40})"""
)
# What follows a key: `=`/`:` (after an optional closing quote), or on the command line also blanks.
_ASSIGN_RE: Final = {
    key: re.compile(re.escape(key.encode()) + rb"""['"]?[ \t]{0,4}[=:][ \t]{0,4}""" + _VALUE) for key in KEYS
}
_CLI_RE: Final = {key: re.compile(re.escape(key.encode()) + rb"(?:=|[ \t]{1,4})" + _VALUE) for key in KEYS}
_WORD: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_NUMBER_RE: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if _NUMBER_RE.fullmatch(text):
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number) and number.is_integer() and not any(c in text for c in ".eE"):
            return int(number)
        return number
    return {"True": True, "true": True, "False": False, "false": False, "None": None, "null": None}.get(text, text)


def _value(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if text.startswith("["):
        inner = text[1:-1].strip()
        return [_scalar(part) for part in inner.split(",") if part.strip()] if inner else []
    return _scalar(text)


def config_from_text(text: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the text states, and for each the statement it came from (``--beta=0.1``, ``beta=0.1``)."""
    config: dict[str, Any] = {}
    said: dict[str, str] = {}
    found: list[tuple[int, str, re.Match[bytes], str]] = []
    for key in KEYS:
        # bytes.find, not one regex over the text: the keys are rare, and a regex tried at every position of a
        # multi-MB log costs more than the rest of the read
        at = text.find(key.encode())
        while at >= 0:
            before = text[at - 1] if at else 0x20
            after = at + len(key)
            if after < len(text) and text[after] in _WORD:
                pass  # `beta1`, `loss_type_x`: another name
            elif at >= 2 and text[at - 2 : at] == b"--":
                if (m := _CLI_RE[key].match(text, at)) is not None:
                    found.append((at, key, m, "--"))
            elif before not in _WORD and before != 0x2D and (m := _ASSIGN_RE[key].match(text, at)) is not None:
                found.append((at, key, m, ""))
            at = text.find(key.encode(), after)
    for _, key, match, dashes in sorted(found, key=lambda item: item[0]):
        if key in config:
            continue
        value = _value(match.group(1))
        if key in _NUMERIC and not ((isinstance(value, int | float) and not isinstance(value, bool)) or value is None):
            continue  # `beta: high` in prose is not a setting
        config[key] = value
        said[key] = dashes + match.group(0).decode("utf-8", errors="replace")
    for alias, name in _ALIASES.items():
        if alias in config and name not in config:
            config[name] = config[alias]
            said[name] = said[alias]
    return config, said


def config_from_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`config_from_text` of the first :data:`CONFIG_BYTES` bytes of ``path`` (empty when unreadable)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(CONFIG_BYTES)
    except OSError:
        return {}, {}
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or head.count(b"\x00") > len(head) // 4:
        from dpodoctor.readers.textio import detect_wide_encoding

        found = detect_wide_encoding(head)
        if found is None:
            return {}, {}
        codec, skip = found
        head = head[skip:].decode(codec, errors="replace").encode("utf-8")
    return config_from_text(head)


def beta_from(config: dict[str, Any]) -> float | None:
    """A positive finite β from a config read here."""
    value = config.get("beta")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def apply_text_config(results: list[Any], path: Path) -> None:
    """Give each reader result of ``path`` the settings its text states (its own config keys win), and β when the
    result has none. Why here and not in discovery: β stated by the log itself beats one found beside it."""
    config, said = config_from_file(path)
    if not config:
        return
    beta = beta_from(config)
    for result in results:
        result.config = {**config, **result.config}
        if result.beta is None and beta is not None:
            result.beta, result.beta_source = beta, f"{path.name}: {said['beta']}"
