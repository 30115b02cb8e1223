"""Logs that were not saved as ``*.log``: pasted into a Markdown note, a ``.txt`` report, or the comments of a
``.py`` file, and metric dicts wrapped over several lines.

Why: people share a run by pasting its console output wherever they are writing (an issue, a notebook export, a
docstring), and ``pprint`` or an editor wraps a long dict::

    # {'loss': 0.6931, 'grad_norm': 1.23,
    #  'rewards/margins': 0.01, 'epoch': 0.1}

Two pieces, both bounded and linear:

* :func:`sniff_content`: whether a file of any name holds a training log, from its first :data:`SNIFF_BYTES`
  bytes: at least two metric dicts (one could be a literal in code) or a step-table header. Binary files (a NUL
  byte) and the usual weight/data formats are never read past their name.
* :class:`UnwrapReader`: a stream wrapper that joins a dict wrapped over lines back into one line, removing the
  comment or quote prefix of each continuation line (``#``, ``//``, ``>``, ``*``, ``;``), so the stdout reader's
  one-line dict scan sees it. A line that opens a dict without closing it is joined only when every following
  line up to the closing brace starts (after that prefix) with a quoted key or the brace: anything else is left
  exactly as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Protocol

__all__ = ["SNIFF_BYTES", "UnwrapReader", "sniff_content", "unwrap"]

SNIFF_BYTES: Final = 256 * 1024
_MAX_LINE: Final = 4096
_MAX_LINES: Final = 256  # continuation lines of one dict
_MAX_CARRY: Final = 1024 * 1024
# Names that are never a pasted log: weights, arrays, archives, images, databases, event files.
_NEVER: Final = frozenset(
    {
        ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".arrow", ".parquet", ".pkl", ".pickle",
        ".h5", ".onnx", ".gguf", ".zip", ".gz", ".tar", ".zst", ".xz", ".bz2", ".png", ".jpg", ".jpeg", ".gif",
        ".svg", ".pdf", ".db", ".sqlite", ".sqlite3", ".wandb", ".swanlab", ".so", ".whl", ".model", ".lock",
    }
)  # fmt: skip

# A line that opens a dict and does not close it: `{` then no brace up to the line break.
# The lookahead-and-backreference pair is an atomic group (which Python 3.10 lacks): a closed dict fails at its `}`
# without backtracking through its body, which halves the cost of this pass over an ordinary log.
_OPEN_RE: Final = re.compile(rb"\{(?=([^{}\r\n]{0,%d}))\1(\r\n|\n|\r)" % _MAX_LINE)
_PREFIXES: Final = (b"//", b"#", b">", b"*", b";")  # comment and quote marks before a continuation line
_METRIC_DICT_RE: Final = re.compile(rb"\{'[^{}\r\n]{0,%d}\}" % _MAX_LINE)
_TABLE_RE: Final = re.compile(rb"(?i)\bstep[ \t]{1,16}training[ \t]{1,16}loss\b")


def _join(buf: bytes, match: re.Match[bytes]) -> tuple[bytes, int] | bool | None:
    """The wrapped dict opened at ``match`` as one line, and where it ends in ``buf``; None when the lines after it
    are not a wrapped dict; False when ``buf`` ends before the dict closes (more text is needed to decide)."""
    head = match.group(1).strip()
    if head and not head.startswith(b"'"):
        return None
    parts = [b"{" + head]
    pos = match.end()
    for _ in range(_MAX_LINES):
        if pos >= len(buf):
            return False
        start = _continuation(buf, pos)
        if start is None:
            return None
        stop = _line_end(buf, start)
        if stop is None:
            return False
        if stop < 0:
            return None
        close = buf.find(b"}", start, stop)
        brace_open = buf.find(b"{", start, stop)
        if 0 <= brace_open < (close if close >= 0 else stop):
            return None  # a nested dict: not a flat metrics dict
        if close >= 0:
            piece, pos = buf[start : close + 1].strip(), close + 1
        else:
            piece, pos = buf[start:stop].strip(), _after_break(buf, stop)
        parts.append(piece)
        if piece.endswith(b"}"):
            joined = parts[0]
            for i, part in enumerate(parts[1:]):
                glue = b"" if part.startswith(b"}") or (i == 0 and parts[0] == b"{") else b" "
                joined += glue + part
            return joined, pos
    return None


def _continuation(buf: bytes, pos: int) -> int | None:
    """Where a continuation line's content (a quoted key or the closing brace) starts, after its indent and an
    optional comment/quote prefix; None when the line at ``pos`` is not one. Plain byte tests: no regex to run
    from every position of a hostile line."""

    def spaces(at: int, most: int) -> int:
        stop = min(len(buf), at + most)
        while at < stop and buf[at] in (0x20, 0x09):
            at += 1
        return at

    at = spaces(pos, 32)
    for prefix in _PREFIXES:
        if buf.startswith(prefix, at):
            at = spaces(at + len(prefix), 8)
            break
    return at if buf[at : at + 1] in (b"'", b"}") else None


def _line_end(buf: bytes, start: int) -> int | None:
    """Where the line holding ``start`` ends (its line break); -1 when it is longer than a dict line can be; None
    when ``buf`` ends first. Both searches are bounded, so each line costs its own length."""
    limit = start + _MAX_LINE + 2
    ends = [i for i in (buf.find(b"\n", start, limit), buf.find(b"\r", start, limit)) if i >= 0]
    if ends:
        return min(ends)
    return None if len(buf) < limit else -1


def _after_break(buf: bytes, stop: int) -> int:
    return stop + 2 if buf[stop : stop + 2] == b"\r\n" else stop + 1


def unwrap(buf: bytes, final: bool = True) -> tuple[bytes, int]:
    """``buf`` with every wrapped metric dict joined onto one line, and how much of ``buf`` that covers.

    With ``final`` False, a dict still open at the end of ``buf`` is not decided: the returned count stops before
    it, so the caller can feed that text again with what follows.
    """
    match = _OPEN_RE.search(buf)
    if match is None:
        return buf, len(buf)
    out: list[bytes] = []
    pos = 0
    while match is not None:
        joined = _join(buf, match)
        if joined is False:
            if not final:
                out.append(buf[pos : match.start()])
                return b"".join(out), match.start()
            joined = None
        if joined is None:
            match = _OPEN_RE.search(buf, match.end() - len(match.group(2)))
            continue
        text, end = joined  # type: ignore[misc]
        out.append(buf[pos : match.start()])
        out.append(text)
        pos = end  # the rest of the closing line follows as it was
        match = _OPEN_RE.search(buf, pos)
    out.append(buf[pos:])
    return b"".join(out), len(buf)


class _Stream(Protocol):
    encoding: str | None

    def read(self, size: int) -> bytes: ...


class UnwrapReader:
    """Wraps a byte stream (a :class:`~dpodoctor.readers.textio.Utf8Reader`) and joins wrapped dicts as they pass.

    Text is passed on up to its last line break; a dict still open there waits for the next read (at most
    :data:`_MAX_CARRY` bytes, then it is passed on as it is). Reads return b"" only at the end of the stream.
    """

    def __init__(self, inner: _Stream) -> None:
        self._inner = inner
        self._carry = b""

    @property
    def encoding(self) -> str | None:
        return self._inner.encoding

    def read(self, size: int) -> bytes:
        while True:
            raw = self._inner.read(size)
            if not raw:
                rest, self._carry = self._carry, b""
                return unwrap(rest)[0] if rest else b""
            buf = self._carry + raw
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            if cut == 0:
                if len(buf) > _MAX_CARRY:
                    self._carry = b""
                    return buf
                self._carry = buf
                continue
            # A dict open at the end waits for more text, unless that already makes too long a carry.
            text, used = unwrap(buf[:cut], final=len(buf) > _MAX_CARRY)
            self._carry = buf[used:]
            if text:
                return text


def sniff_content(path: Path) -> bool:
    """Whether ``path`` (any name) holds a training log, from its first :data:`SNIFF_BYTES` bytes."""
    if path.suffix.lower() in _NEVER or path.name.startswith("events.out.tfevents"):
        return False
    try:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    if b"\x00" in head[:8192]:
        return False
    from dpodoctor.readers.stdout.grammar import parse_metric_dict

    text = unwrap(head)[0]
    found = 0
    for match in _METRIC_DICT_RE.finditer(text):
        if parse_metric_dict(match.group().decode("utf-8", errors="replace")) is not None:
            found += 1
            if found >= 2:
                return True
    return _TABLE_RE.search(text) is not None
