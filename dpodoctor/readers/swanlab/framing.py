"""The record framing of SwanLab's run files: ``run-<id>.swanlab`` (0.8–0.10) and ``backup.swanlab`` (0.6–0.7).

Both are LevelDB-log files (https://github.com/google/leveldb/blob/main/doc/log_format.md) with SwanLab's own
7-byte file header and a plain zlib CRC-32 instead of LevelDB's masked CRC32C (swanlab 0.10.3
``sdk/internal/core_python/store/__init__.py``; 0.6/0.7 use the same writer with version byte 1)::

    file header:  b":SWL" | uint16 LE magic 0xE1D6 | uint8 version (1: JSON payloads, 2: protobuf payloads)
    chunk:        uint32 LE crc32(type byte + payload) | uint16 LE length | uint8 type | payload

Chunks live in 32768-byte blocks counted from the start of the file (header included). Fewer than 7 bytes left in
a block are zero padding. A record too big for the rest of its block is split FIRST / MIDDLE... / LAST.

Why a scan that stops instead of raising: SwanLab's writer buffers and flushes only on close, so a killed run
leaves a file that ends anywhere, often with a chunk header whose payload never reached the disk. Everything
before the first chunk that is short or fails its CRC is intact, and that is what a crash diagnosis needs.

Why a corrupt chunk in the middle does not end the scan: chunks never cross a 32 KiB block boundary, so the next
block starts with a chunk header again (LevelDB's own reader recovers the same way). A bad CRC, type, length or
padding with more of the file behind it skips to the next block and reads on; only damage in the last block (a torn
tail) stops the scan.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dpodoctor.errors import ReadError

__all__ = [
    "BLOCK_SIZE",
    "FILE_MAGIC",
    "HEADER_IDENT",
    "VERSION_JSON",
    "VERSION_PROTOBUF",
    "FrameScan",
    "has_swanlab_header",
    "scan_chunks",
    "scan_frames",
]

HEADER_IDENT: Final = b":SWL"
FILE_MAGIC: Final = 0xE1D6  # zlib.crc32(b"SwanLab") & 0xFFFF, per swanlab's store module
VERSION_JSON: Final = 1  # swanlab 0.6-0.7 backup.swanlab
VERSION_PROTOBUF: Final = 2  # swanlab 0.8-0.10 run-<id>.swanlab
_FILE_HEADER: Final = struct.Struct("<4sHB")
FILE_HEADER_SIZE: Final = _FILE_HEADER.size  # 7

BLOCK_SIZE: Final = 32768
_CHUNK_HEADER: Final = struct.Struct("<IHB")
CHUNK_HEADER_SIZE: Final = _CHUNK_HEADER.size  # 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# The CRC of a chunk covers its type byte first; precomputed as the seed of each type.
_TYPE_CRC: Final = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}

OS_EXIT_HINT: Final = "0 bytes: the run was killed before SwanLab wrote anything (os._exit?)"


def has_swanlab_header(head: bytes) -> bool:
    """True when ``head`` (at least the first 6 bytes of a file) starts with SwanLab's ident and magic."""
    return len(head) >= 6 and head[:4] == HEADER_IDENT and struct.unpack_from("<H", head, 4)[0] == FILE_MAGIC


@dataclass
class FrameScan:
    """The complete records of one run file, and where (if anywhere) the framing stopped making sense."""

    version: int
    size: int
    records: list[bytes] = field(default_factory=list)
    # Byte offset of the first chunk (or split record) that could not be used, and why; None for a clean end.
    stop_at: int | None = None
    stop_reason: str | None = None
    # Records whose chunks were out of order (a MIDDLE/LAST without FIRST, a FIRST not followed through).
    dropped: int = 0
    # Corrupt stretches skipped to the next block: (offset of the bad chunk, bytes skipped, why).
    skipped: list[tuple[int, int, str]] = field(default_factory=list)


def scan_frames(data: bytes, path: Path) -> FrameScan:
    """Split a SwanLab run file into its record payloads, stopping quietly at the first torn or corrupt chunk.

    Raises :class:`ReadError` only when the file has no valid header: empty (the process died before the first
    flush), shorter than the header, or not a SwanLab file at all.
    """
    size = len(data)
    if size == 0:
        raise ReadError(OS_EXIT_HINT, path)
    if size < FILE_HEADER_SIZE:
        raise ReadError(f"only {size} bytes: the file header (7 bytes) was cut, no record was written", path)
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if ident != HEADER_IDENT or magic != FILE_MAGIC:
        raise ReadError("not a SwanLab run file (bad file header at byte 0)", path)
    if version not in (VERSION_JSON, VERSION_PROTOBUF):
        raise ReadError(
            f"SwanLab run file version {version}: dpodoctor reads version 1 (swanlab 0.6-0.7) and 2 (0.8-0.10)",
            path,
        )
    return scan_chunks(data, FrameScan(version=version, size=size), FILE_HEADER_SIZE)


def scan_chunks(data: bytes, scan: FrameScan, offset: int) -> FrameScan:
    """The chunk loop of :func:`scan_frames`, from ``offset`` (just after a file header) to the end of ``data``.

    Why separate: W&B's ``.wandb`` files use the same framing (a 7-byte header of their own, 32 KiB blocks, a
    zlib CRC-32 seeded with the type byte), so its reader checks its own header and reuses this loop.
    """
    size = len(data)
    records = scan.records
    pending: list[bytes] | None = None
    pending_at = 0
    unpack = _CHUNK_HEADER.unpack_from
    crc32 = zlib.crc32
    resynced = False  # just skipped to a block start: the continuation chunks of a record cut by the damage follow
    while offset < size:
        left = BLOCK_SIZE - offset % BLOCK_SIZE
        bad: str | None = None
        if left < CHUNK_HEADER_SIZE:
            # Block trailer: zero padding (the file may also end inside it).
            pad = data[offset : min(offset + left, size)]
            if pad.count(0) == len(pad):
                offset += left
                continue
            bad = "bad block padding"
        elif size - offset < CHUNK_HEADER_SIZE:
            scan.stop_at, scan.stop_reason = offset, "incomplete chunk header"
            break
        else:
            checksum, length, chunk_type = unpack(data, offset)
            seed = _TYPE_CRC.get(chunk_type)
            start = offset + CHUNK_HEADER_SIZE
            stop = start + length
            if chunk_type == 0 and length == 0 and checksum == 0:
                bad = "zero-filled tail"
            elif seed is None:
                bad = f"unknown chunk type {chunk_type}"
            elif length > left - CHUNK_HEADER_SIZE:
                bad = "chunk crosses a block boundary"
            elif stop > size:
                scan.stop_at, scan.stop_reason = offset, "incomplete chunk (its payload never reached the disk)"
                break
            elif crc32(data[start:stop], seed) != checksum:
                bad = "chunk checksum mismatch"
        if bad is not None:
            resume = offset + left  # the next block
            if resume >= size or (bad == "zero-filled tail" and data.count(0, offset) == size - offset):
                scan.stop_at, scan.stop_reason = offset, bad  # damage in the last block: a torn tail
                break
            scan.skipped.append((offset, resume - offset, bad))
            if pending is not None:
                scan.dropped += 1
                pending = None
            offset, resynced = resume, True
            continue
        payload = data[start:stop]
        if chunk_type == FULL:
            if pending is not None:
                scan.dropped += 1
                pending = None
            records.append(payload)
            resynced = False
        elif chunk_type == FIRST:
            if pending is not None:
                scan.dropped += 1
            pending, pending_at = [payload], offset
            resynced = False
        elif pending is None:  # MIDDLE or LAST without its FIRST
            if not resynced:  # after a skip, the rest of the record the damage cut is already counted
                scan.dropped += 1
            resynced = resynced and chunk_type == MIDDLE
        elif chunk_type == MIDDLE:
            pending.append(payload)
        else:
            pending.append(payload)
            records.append(b"".join(pending))
            pending = None
        offset = stop
    if pending is not None and scan.stop_at is None:
        # The file ends between the chunks of one record: the record was being written when the process died.
        scan.stop_at, scan.stop_reason = pending_at, "record split over chunks is missing its LAST chunk"
    return scan
