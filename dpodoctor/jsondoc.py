"""Encoding the JSON report: the standard library's bytes, at orjson's speed; and each run's entry encoded once.

Why an encoder of our own making (:func:`dumps_indented`): with ``indent`` the standard library encodes in Python,
one generator per nesting level, and a sweep's document (600 runs: 19.6 MB, 1.1 M values) took 2.1 s to encode and
2 s more for the two passes that clean its text and replace NaN. orjson (Rust, wheels for every platform) encodes
the same document in 0.03-0.06 s; what it writes differently (some floats) is fixed on its bytes, so the document
is byte for byte the standard library's (the golden reports check it), and whatever orjson cannot take exactly, or
a document whose text needs cleaning, goes the standard way.

Why below the reporters: the cache stores each run's entry (:func:`run_fragment`) with its diagnosis, and the
reporters sit above the cache (``compare`` calls the API).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from dpodoctor.cleaning import clean_data
from dpodoctor.report import run_document
from dpodoctor.results import RunReport

__all__ = ["dumps_indented", "run_fragment", "strict"]

# Where orjson's floats are not Python's repr: exponents ("1e-7", "1e16" for "1e-07", "1e+16"), and the decimals it
# writes for 1e-5 <= |x| < 1e-4 ("0.00001" for "1e-05"). Found by these two literal-led patterns (fast scans).
_FLOAT_CANDIDATES: Final = (re.compile(rb"e[-+0-9]"), re.compile(rb"0\.0000"))
_FLOAT: Final = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?")
# Bytes that can start what :func:`clean` removes, as an encoder writes it (controls as escapes, DEL, C1 controls,
# U+FFFE/U+FFFF); lone surrogates make orjson refuse the document. A document without them needs no cleaning.
_OTHER_BYTES: Final = bytes(range(256)).translate(None, delete=b"\\\x7f\xc2\xef")
_UNCLEAN: Final = (  # each led by a literal, so a scan costs a few ms on a 20 MB document
    (b"\\", re.compile(rb"\\[bfu]")),
    (b"\x7f", re.compile(rb"\x7f")),
    (b"\xc2", re.compile(rb"\xc2[\x80-\x9f]")),
    (b"\xef", re.compile(rb"\xef\xbf[\xbe\xbf]")),
)


def strict(value: Any) -> Any:
    """NaN and ±inf are not JSON: write them as null so strict parsers (jq, JS) accept the document."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def dumps_indented(value: Any, *, clean: bool = False) -> str:
    """``json.dumps(strict(value), indent=2, ensure_ascii=False, allow_nan=False)`` (with ``clean``: of
    :func:`~dpodoctor.reporters.common.clean_data` of it), byte for byte, in a fraction of its time."""
    fast = _orjson_indented(value, clean)
    if fast is not None:
        return fast
    data = strict(clean_data(value) if clean else value)
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)


def _orjson_indented(value: Any, clean: bool) -> str | None:
    """The document through orjson, or None where its output would differ from the standard library's in more than
    the floats fixed here: orjson missing, a value it refuses (a lone surrogate, an integer beyond 64 bits, a key
    that is not a string, a numpy scalar, nesting past 254), or, with ``clean``, text that cleaning would change.
    orjson writes NaN and ±inf as null, as :func:`strict` does, and escapes strings as ``ensure_ascii=False``."""
    try:
        import orjson  # type: ignore[import-not-found]  # (where it is not installed)
    except ImportError:
        return None
    options = orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    try:
        out = orjson.dumps(value, option=options)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    if clean and _may_be_unclean(out):
        return None  # some text holds what clean() removes (or an escaped backslash before b/f/u): the slow way
    return _python_floats(out).decode()


def _may_be_unclean(out: bytes) -> bool:
    """Whether some string of the encoded document holds a character :func:`clean` removes (rarely a false alarm:
    an escaped backslash before ``b``, ``f`` or ``u``)."""
    rare = out.translate(None, delete=_OTHER_BYTES)
    return any(byte in rare and pattern.search(out) for byte, pattern in _UNCLEAN)


def _python_floats(out: bytes) -> bytes:
    """orjson's document with every float written as Python's ``repr`` writes it (which is what json does).

    A float token is the last thing on its line after a space (``"key": 1e-7,`` or a list item): no string can end a
    line with a digit, since JSON strings hold no raw newline and end with a quote. Each token is replaced by the
    repr of the float it parses to, which is the same float (both write the shortest round-trip digits)."""
    hits = sorted({m.start() for pattern in _FLOAT_CANDIDATES for m in pattern.finditer(out)})
    if not hits:
        return out
    pieces: list[bytes] = []
    written: dict[bytes, bytes] = {}
    done = 0
    size = len(out)
    for hit in hits:
        if hit < done:
            continue
        start = out.rfind(b" ", 0, hit) + 1  # indented output: a value follows a space, or starts the document
        end = out.find(b"\n", hit)
        end = size if end == -1 else end
        stop = end - 1 if out[end - 1 : end] == b"," else end
        token = out[start:stop]
        if start < done:
            continue
        python = written.get(token)
        if python is None:
            if not _FLOAT.fullmatch(token) or not (b"." in token or b"e" in token):
                continue
            python = written[token] = repr(float(token)).encode()
        pieces += (out[done:start], python)
        done = stop
    pieces.append(out[done:])
    return b"".join(pieces)


def run_fragment(r: RunReport) -> str:
    """The run's entry of the cleaned JSON document (:func:`~dpodoctor.reporters.json.render_json_clean`), encoded
    as it sits in the document (an item of the top-level ``runs`` list: every line after the first indented by
    four spaces), once per report. Why kept: the cache stores it with the diagnosis (:meth:`RunCache.store_diagnosis
    <dpodoctor.cache.RunCache.store_diagnosis>`), so a warm re-check splices each run's stored text into the document
    and neither derives a curve summary nor encodes a value again."""
    text = r.__dict__.get("_json_fragment")
    if text is None:
        alone = dumps_indented(run_document(r), clean=True)
        text = r.__dict__["_json_fragment"] = alone.replace("\n", "\n" + RUN_INDENT)
    return text


RUN_INDENT: Final = "    "  # a run's entry in the document: inside the top-level object, inside its runs list
