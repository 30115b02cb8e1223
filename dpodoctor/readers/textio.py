"""Reading a text log as UTF-8 bytes, whatever encoding it was written in.

Why: the text readers match ASCII delimiters on raw bytes (see :mod:`.stdout`), which is exact for UTF-8 and for
the Latin-1/garbage bytes a crashed writer leaves, but finds nothing in UTF-16: PowerShell's ``>`` and
``Out-File``, and some Windows schedulers, write console captures as UTF-16 with a NUL byte beside every ASCII
character. Such a file is recognised by its byte-order mark or, without one, by that NUL pattern, and decoded chunk
by chunk (an incremental decoder, so a character split between chunks survives and the file is still streamed, never
held whole). Everything else passes through untouched, so the usual case costs nothing.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO, Final

__all__ = ["Utf8Reader", "detect_wide_encoding"]

# Byte-order marks, longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes looked at for the NUL pattern, and the shares that decide it: ASCII text in UTF-16-LE has a NUL at nearly
# every odd offset and almost none at even ones (the reverse for big endian). A binary file or an all-NUL file has
# NULs in both halves and is left alone.
_SNIFF: Final = 4096
_MOSTLY: Final = 0.4
_RARELY: Final = 0.05


def _nul_share(sample: bytes, start: int, step: int) -> float:
    part = sample[start::step]
    return part.count(0) / len(part) if part else 0.0


def detect_wide_encoding(head: bytes) -> tuple[str, int] | None:
    """(codec name, length of its byte-order mark) when ``head`` (the first bytes of a file) is UTF-16/32 text.

    A byte-order mark alone is not trusted: ``FF FE`` also starts plain garbage, and reading garbage as UTF-16 would
    turn the ASCII records that follow it into nonsense. So a marked file must also show (a weaker form of) the NUL
    pattern of mostly-ASCII text, as every log does: its keys, numbers and progress bars are ASCII.
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            sample = head[len(bom) : len(bom) + _SNIFF]
            if len(sample) < 8:
                return name, len(bom)
            if name == "utf-32-le":
                ok = _nul_share(sample, 3, 4) >= _MOSTLY and _nul_share(sample, 2, 4) >= _MOSTLY
            elif name == "utf-32-be":
                ok = _nul_share(sample, 0, 4) >= _MOSTLY and _nul_share(sample, 1, 4) >= _MOSTLY
            else:
                ok = _nul_share(sample, 1 if name == "utf-16-le" else 0, 2) >= _MOSTLY / 2
            return (name, len(bom)) if ok else None
    sample = head[: _SNIFF - _SNIFF % 2]
    if len(sample) < 4:
        return None
    even, odd = _nul_share(sample, 0, 2), _nul_share(sample, 1, 2)
    if odd >= _MOSTLY and even <= _RARELY:
        return "utf-16-le", 0
    if even >= _MOSTLY and odd <= _RARELY:
        return "utf-16-be", 0
    return None


class Utf8Reader:
    """A binary file's bytes as UTF-8: :meth:`read` hands out chunks, transcoded when the file is UTF-16/32.

    ``encoding`` names the codec used (None: the bytes were passed through). ``raw_offset`` counts the file's own
    bytes read so far, so a caller can name byte offsets of the file even when the text was transcoded.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._first: bytes | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self.encoding: str | None = None
        self.raw_offset = 0

    def read(self, size: int) -> bytes:
        """Up to about ``size`` bytes of UTF-8 (a transcoded chunk can be longer); b"" only at the end of the file."""
        while True:
            raw = self._handle.read(size)
            self.raw_offset += len(raw)
            skip = 0
            if self._first is None:
                self._first = raw
                found = detect_wide_encoding(raw)
                if found is not None:
                    self.encoding, skip = found
                    self._decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
            if self._decoder is None:
                return raw
            text = self._decoder.decode(raw[skip:], final=not raw)
            # A chunk can end inside a character, which the decoder keeps for the next one: read on rather than
            # hand out b"", which would mean the end of the file.
            if text or not raw:
                return text.encode("utf-8", errors="replace")
