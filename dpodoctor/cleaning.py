"""Cleaning text that came from logs before a report embeds it: terminal escapes and characters no format carries.

Why a module of its own, below the reporters: every machine format strips the same escapes (see
:mod:`dpodoctor.reporters.common`, which re-exports these), and the cache stores each run's entry of the JSON report
already cleaned (:mod:`dpodoctor.jsondoc`), and the cache sits below the reporters.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["clean", "clean_data"]

# Terminal escape sequences, longest forms first: OSC/DCS/SOS/PM/APC strings (ESC ] ... BEL or ESC \, e.g. the OSC 8
# hyperlink), CSI (ESC [ ... final byte, and its 8-bit form 0x9B), then any other two-byte escape such as ESC ( B.
# An unterminated string keeps its text: only its ESC is dropped below, so a stray ESC cannot swallow a message.
# A string's body stops at the next introducer too: otherwise a log line of many unterminated introducers would make
# every one of them scan to the end of the text (quadratic time, minutes for a 1 MB key).
_ANSI = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\x90\x98\x9d\x9e\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]"
)
# What XML 1.0 cannot carry (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF), plus DEL and the C1
# controls, which terminals may act on. Stripped from every machine format, not only XML, so all formats agree.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean(text: object) -> str:
    """Log text made safe to embed: terminal escape sequences and characters no format can carry removed."""
    return _UNSAFE.sub("", _ANSI.sub("", str(text)))


def clean_data(value: Any) -> Any:
    """:func:`clean` applied to every string (keys too) of a JSON-like document; numbers and None unchanged."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k): clean_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_data(v) for v in value]
    return value
