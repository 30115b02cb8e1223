"""Reading SwanLab's ``files/config.yaml`` without a YAML library.

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

Why not PyYAML: it would be a new dependency for one file whose shape a writer we know produces, and a log is
untrusted input, so a parser that can only build dicts, lists and scalars is also the safe choice. This module
reads the block-style subset PyYAML emits: nested mappings and (indentless) sequences, plain, quoted, folded and
literal scalars, and ``{}``/``[]`` plus simple one-line flow collections. Anything else (anchors, tags, complex
flow) keeps its raw text. Each top-level key is parsed on its own, so one odd value costs that key, not β.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["ConfigError", "parse_config_yaml", "parse_yaml_subset", "unwrap_config"]

_INT_RE: Final = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")
_FLOAT_RE: Final = re.compile(r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+|[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?")
_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})
# YAML 1.1 booleans, as PyYAML's safe_load resolves them (which is why PyYAML quotes a string 'no').
_TRUE: Final = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE: Final = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})
_SPECIAL_FLOATS: Final = {
    ".inf": math.inf,
    ".Inf": math.inf,
    ".INF": math.inf,
    "+.inf": math.inf,
    "+.Inf": math.inf,
    "+.INF": math.inf,
    "-.inf": -math.inf,
    "-.Inf": -math.inf,
    "-.INF": -math.inf,
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
}
# Nesting deeper than this is not a config PyYAML wrote for a training run; refusing keeps recursion bounded.
_MAX_DEPTH: Final = 64


class ConfigError(ValueError):
    """The text is outside the YAML subset this module reads."""


class _Line:
    __slots__ = ("indent", "number", "text")

    def __init__(self, number: int, indent: int, text: str) -> None:
        self.number = number
        self.indent = indent
        self.text = text


def _lines(text: str) -> list[_Line]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.lstrip(" ")
        if not stripped.strip() or stripped.startswith("#"):
            continue
        if raw.startswith(("---", "...")) and raw.strip() in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(stripped)]:
            raise ConfigError(f"line {number}: tab in indentation")
        lines.append(_Line(number, len(raw) - len(stripped), stripped.rstrip()))
    return lines


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _quoted_end(text: str, quote: str) -> int:
    """Index of the closing quote of a quoted scalar starting at 0, or -1 when it is not closed on this line."""
    i = 1
    while i < len(text):
        ch = text[i]
        if quote == "'" and ch == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                i += 2
                continue
            return i
        if quote == '"':
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                return i
        i += 1
    return -1


def _split_key(text: str) -> tuple[str, str] | None:
    """``key: rest`` -> (key, rest); None when the line is not a mapping entry."""
    if text[:1] in ("'", '"'):
        end = _quoted_end(text, text[0])
        if end < 0:
            return None
        after = text[end + 1 :]
        if after == ":" or after.startswith(": "):
            return str(_scalar(text[: end + 1])), after[1:].strip()
        return None
    if text.startswith(("[", "{", "? ")):
        return None
    idx = text.find(": ")
    if idx < 0:
        if text.endswith(":"):
            return text[:-1].rstrip(), ""
        return None
    key = text[:idx].rstrip()
    if " #" in key:
        return None
    return key, text[idx + 2 :].strip()


def _unquote(text: str) -> str:
    quote = text[0]
    if quote == "'":
        return text[1:-1].replace("''", "'")
    try:
        value = json.loads(text)
    except ValueError:
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


def _flow(text: str) -> Any:
    """``{}``, ``[]`` and one-line flow collections of plain scalars; anything fancier keeps its raw text."""
    inner = text[1:-1].strip()
    if not inner:
        return {} if text[0] == "{" else []
    if any(ch in inner for ch in "[]{}'\"&*!|>"):
        return text
    parts = [p.strip() for p in inner.split(",")]
    if text[0] == "[":
        return [_scalar(p) for p in parts]
    result: dict[str, Any] = {}
    for part in parts:
        kv = _split_key(part)
        if kv is None:
            return text
        result[kv[0]] = _scalar(kv[1])
    return result


def _scalar(text: str) -> Any:
    """A one-line scalar, resolved as PyYAML's safe_load would for the values a training config holds."""
    text = text.strip()
    if text[:1] in ("'", '"') and len(text) >= 2 and _quoted_end(text, text[0]) == len(text) - 1:
        return _unquote(text)
    if " #" in text:  # a trailing comment after a plain scalar
        text = text.split(" #", 1)[0].rstrip()
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if _INT_RE.fullmatch(text):
        try:
            return int(text.replace("_", ""))
        except ValueError:  # beyond Python's 4300-digit limit for int(str): no config value, keep the text
            return text
    if _FLOAT_RE.fullmatch(text):
        try:
            return float(text.replace("_", ""))
        except ValueError:  # pragma: no cover - the regex only admits float() syntax
            return text
    if (text[:1], text[-1:]) in (("[", "]"), ("{", "}")):
        return _flow(text)
    return text


class _Parser:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.pos = 0

    def _peek(self) -> _Line | None:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def block(self, indent: int, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ConfigError("nesting too deep")
        line = self._peek()
        if line is None:
            return None
        if _is_item(line.text):
            return self.sequence(line.indent, depth)
        return self.mapping(line.indent, depth)

    def _continuation(self, parent_indent: int, first: str) -> str:
        """A scalar that PyYAML wrapped over several lines: the next lines indented deeper, joined by spaces."""
        parts = [first] if first else []
        while (nxt := self._peek()) is not None and nxt.indent > parent_indent:
            parts.append(nxt.text)
            self.pos += 1
        return " ".join(parts)

    def _block_scalar(self, header: str, parent_indent: int) -> str:
        lines = []
        while (nxt := self._peek()) is not None and nxt.indent > parent_indent:
            lines.append(nxt.text)
            self.pos += 1
        text = ("\n" if header.startswith("|") else " ").join(lines)
        return text if header.endswith("-") else text + "\n"

    def _value(self, rest: str, indent: int, depth: int) -> Any:
        """The value after ``key:`` or ``-`` at ``indent``: nested block, block scalar, or (wrapped) scalar."""
        if not rest:
            nxt = self._peek()
            if nxt is None:
                return None
            if nxt.indent > indent:
                return self.block(nxt.indent, depth + 1)
            if nxt.indent == indent and _is_item(nxt.text):
                return self.sequence(indent, depth + 1)  # PyYAML's indentless sequence under a key
            return None
        if rest[0] in "|>" and re.fullmatch(r"[|>][-+]?[0-9]?", rest):
            return self._block_scalar(rest, indent)
        if rest[0] in "&*!":
            return self._continuation(indent, rest)  # anchors, aliases and tags: kept as raw text
        nxt = self._peek()
        if nxt is not None and nxt.indent > indent:
            if rest[0] not in "'\"" and _split_key(nxt.text) is not None:
                # A plain scalar cannot go on with `key: value` (PyYAML: "mapping values are not allowed here").
                raise ConfigError(f"line {nxt.number}: mapping inside a plain scalar")
            return _scalar(self._continuation(indent, rest))
        return _scalar(rest)

    def mapping(self, indent: int, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        while (line := self._peek()) is not None and line.indent >= indent:
            if line.indent > indent or _is_item(line.text):
                raise ConfigError(f"line {line.number}: unexpected indentation")
            kv = _split_key(line.text)
            if kv is None:
                raise ConfigError(f"line {line.number}: expected 'key: value'")
            self.pos += 1
            key, rest = kv
            result[key] = self._value(rest, indent, depth)
        return result

    def sequence(self, indent: int, depth: int) -> list[Any]:
        result: list[Any] = []
        while (line := self._peek()) is not None and line.indent == indent and _is_item(line.text):
            rest = line.text[1:].strip()
            item_indent = indent + 2
            kv = _split_key(rest) if rest else None
            if kv is not None:
                # `- key: value` opens a mapping whose keys sit two columns in: re-read the line as one.
                self.lines[self.pos] = _Line(line.number, item_indent, rest)
                result.append(self.mapping(item_indent, depth + 1))
                continue
            self.pos += 1
            if rest.startswith("- "):
                raise ConfigError(f"line {line.number}: nested compact sequence")
            result.append(self._value(rest, indent, depth))
        return result


def parse_yaml_subset(text: str) -> Any:
    """Parse block-style YAML as PyYAML's ``yaml.dump`` writes it. Raises :class:`ConfigError` outside the subset."""
    lines = _lines(text)
    if not lines:
        return None
    parser = _Parser(lines)
    if lines[0].indent != 0:
        raise ConfigError(f"line {lines[0].number}: document does not start at column 0")
    value = parser.block(0, 0)
    if parser.pos != len(lines):
        raise ConfigError(f"line {lines[parser.pos].number}: unexpected text after the document")
    return value


def parse_config_yaml(text: str) -> tuple[dict[str, Any], list[str]]:
    """Every top-level key of a SwanLab ``config.yaml`` and its raw entry; plus the keys that could not be parsed.

    Why key by key: the top-level keys always start at column 0, so splitting there first means a value this
    subset does not understand loses only its own key.
    """
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
            parsed = parse_yaml_subset("\n".join(block))
        except (ConfigError, RecursionError) as exc:
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
