"""CRC-32C (Castagnoli), the checksum TFRecord frames every record with: the one implementation the reader uses.

Why the ``google-crc32c`` package when it is installed: its C code (hardware CRC instructions where the CPU has them)
checks a buffer in about 0.1 µs plus 0.05 ns a byte, where a Python loop over a table takes about 0.1 µs a byte; it
imports in 5 ms (the ``crc32c`` package takes 60 ms, mostly ``importlib.metadata``, and is slower below 1 MB).
Without it the same table-driven CRC runs in Python for one buffer and in numpy for many 8-byte headers at once,
which is all the reader needs on its fast path: it checks the 8 length bytes of each record, not the data.

Record framing (little endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

__all__ = ["MASK_DELTA", "crc32c", "masked_crc32c", "masked_header_crcs"]

MASK_DELTA: Final = 0xA282EAD8
_POLY: Final = 0x82F63B78  # Castagnoli, reflected


def _table() -> np.ndarray:
    """The 256-entry byte table of the reflected Castagnoli polynomial, built once at import."""
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> np.uint32(1)) ^ np.uint32(_POLY), crc >> np.uint32(1)).astype(np.uint32)
    return crc


TABLE: Final = _table()
_TABLE_INTS: Final = tuple(int(x) for x in TABLE)


def _crc32c_python(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE_INTS
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _c_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return None
    if getattr(google_crc32c, "implementation", "c") != "c":
        return None  # its pure-Python fallback is no faster than ours
    value: Callable[[bytes], int] = google_crc32c.value
    return value


_C_CRC32C: Final = _c_crc32c()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``zlib`` has only the other CRC-32): C when ``google-crc32c`` is installed."""
    if _C_CRC32C is not None:
        return _C_CRC32C(bytes(data))
    return _crc32c_python(data)


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores (rotated and offset so a CRC of CRC-bearing data is not degenerate)."""
    return _mask(crc32c(data))


def masked_header_crcs(headers: np.ndarray) -> np.ndarray:
    """The masked CRC of each row of a ``(n, 8)`` uint8 matrix (the length bytes of n candidate records), all at once:
    the same table, one byte position per numpy step. Used where there are many headers to check (every record of a
    file, every offset of a stretch of garbage the reader resynchronises past), so one C call per row would cost more.
    """
    crc = np.full(len(headers), 0xFFFFFFFF, dtype=np.uint32)
    for k in range(8):
        crc = TABLE[(crc ^ headers[:, k]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(MASK_DELTA)  # uint32: wraps as C does
