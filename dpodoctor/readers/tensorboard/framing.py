"""Splitting an event file's bytes into records: the TFRecord framing, checked by the header CRC.

Two walks with one outcome. :func:`frame_records` is the fast one the reader uses: it finds the usual chain of records
without a Python loop and checks every header CRC at once. :func:`scan_records` is the reference: one record at a time,
and it resynchronises past corrupt stretches (:func:`next_header`), so a damaged file is read as far as it can be and
every stretch of damage is named by its byte offset.

Why only the header CRC is verified: it is 8 bytes per record, and it is what tells an event file from any other file
and catches a misaligned or corrupt length (which would otherwise make us read garbage as records). A corrupt payload
behind a good header fails protobuf parsing, which the reader reports.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from dpodoctor.errors import ReadError
from dpodoctor.readers.tensorboard.crc import masked_crc32c, masked_header_crcs

__all__ = ["HEADER_SIZE", "RECORD_OVERHEAD", "RecordScan", "frame_records", "next_header", "scan_records", "unaligned"]

_HEADER: Final = struct.Struct("<QI")  # length, masked CRC of the 8 length bytes
_LENGTH: Final = struct.Struct("<Q")
HEADER_SIZE: Final = 12
RECORD_OVERHEAD: Final = 16  # header + the data's CRC after it
_RESYNC_WINDOW: Final = 1 << 20
NOT_AN_EVENT_FILE: Final = "not a TensorBoard event file (bad record header at byte 0)"


@dataclass
class RecordScan:
    """The complete records of one file, and where (if anywhere) the framing stopped making sense.

    ``stop_at`` is the byte offset of the first record that could not be read; ``stop_reason`` says why
    (``"incomplete record"`` for a file cut short, ``"bad record header"`` for a corrupt length CRC with no valid
    header anywhere after it). ``skipped`` lists the corrupt stretches the scan resynchronised past: (offset of the
    bad header, bytes skipped to the next valid one). ``offsets`` holds the byte offset of each record.
    """

    records: list[bytes] = field(default_factory=list)
    size: int = 0
    stop_at: int | None = None
    stop_reason: str | None = None
    skipped: list[tuple[int, int]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def scan_records(data: bytes, path: Path) -> RecordScan:
    """Split the bytes of an event file into its record payloads, one at a time, resynchronising past damage.

    Raises :class:`ReadError` only when the very first complete header is wrong: then this is not an event file at
    all, whatever its name says.
    """
    scan = RecordScan(size=len(data))
    offset = 0
    end = len(data)
    unpack_header = _HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            scan.stop_at, scan.stop_reason = offset, "incomplete record"
            break
        length, length_crc = unpack_header(data, offset)
        if masked_crc32c(data[offset : offset + 8]) != length_crc:
            if offset == 0:
                raise ReadError(NOT_AN_EVENT_FILE, path)
            # Garbage in the middle (a torn write, a bad sector): the records after it are still whole.
            resume = next_header(data, offset + 1)
            if resume is None:
                scan.stop_at, scan.stop_reason = offset, "bad record header"
                break
            scan.skipped.append((offset, resume - offset))
            offset = resume
            continue
        start = offset + HEADER_SIZE
        stop = start + length
        if stop + 4 > end:
            scan.stop_at, scan.stop_reason = offset, "incomplete record"
            break
        scan.records.append(data[start:stop])
        scan.offsets.append(offset)
        offset = stop + 4
    return scan


def next_header(data: bytes, start: int) -> int | None:
    """The first offset at or after ``start`` where 12 bytes form a valid record header (8 length bytes, then the
    masked CRC-32C of them), or None.

    Why a header is a safe place to resume: a random 12-byte window passes the CRC with odds of 1 in 2**32, so a
    match is a real record boundary. Why numpy: garbage can be megabytes long; every candidate offset of a 1 MB
    window is checked at once.
    """
    last = len(data) - HEADER_SIZE  # the last offset where a whole header fits
    pos = start
    while pos <= last:
        stop = min(last + 1, pos + _RESYNC_WINDOW)
        u8 = np.frombuffer(data, dtype=np.uint8, count=stop - pos + HEADER_SIZE - 1, offset=pos)
        window = np.lib.stride_tricks.sliding_window_view(u8, HEADER_SIZE)
        masked = masked_header_crcs(window[:, :8])
        stored = window[:, 8:12].astype(np.uint32) << np.array([0, 8, 16, 24], dtype=np.uint32)
        hits = np.flatnonzero(masked == np.bitwise_or.reduce(stored, axis=1))
        if len(hits):
            return pos + int(hits[0])
        pos = stop
    return None


def unaligned(u8: np.ndarray, dtype: str) -> np.ndarray:
    """A view of the bytes ``u8`` whose element ``i`` is the number (of ``dtype``, little endian) in the bytes from
    ``i`` on: gathering ``view[positions]`` reads a whole field of every record in one 1-D take.

    Why: a 2-D gather of each record's bytes out of a sliding window costs about three times as much as one take of a
    typed element, and a field spread over bytes would then need putting back together. numpy reads unaligned
    elements correctly on every platform (its copy loops handle an array that is not aligned)."""
    size = np.dtype(dtype).itemsize
    count = max(len(u8) - size + 1, 0)
    return np.ndarray((count,), dtype=dtype, buffer=u8, offset=0, strides=(1,))


@functools.lru_cache(maxsize=4096)
def _length_crc(length: int) -> int:
    """The masked CRC a record header of this length stores (a file's records have a few distinct lengths)."""
    return masked_crc32c(_LENGTH.pack(length))


def _headers_ok(lengths: np.ndarray, crcs: np.ndarray) -> np.ndarray:
    """Whether each record's stored masked CRC matches its length. A file has few distinct lengths (one per tag name
    length, give or take the step's varint), so each distinct length is checksummed once."""
    if not len(lengths):
        return np.zeros(0, dtype=bool)
    top = int(lengths.max())
    if top < 1 << 20:
        as_index = lengths.astype(np.int64)
        present = np.flatnonzero(np.bincount(as_index, minlength=1))
        expected = np.zeros(top + 1, dtype=np.uint32)
        expected[present] = [_length_crc(n) for n in present.tolist()]
        return expected[as_index] == crcs
    distinct, inverse = np.unique(lengths, return_inverse=True)
    table = np.array([masked_crc32c(_LENGTH.pack(int(n))) for n in distinct], dtype=np.uint32)
    return table[inverse.ravel()] == crcs


def _chain(u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The offsets and lengths of the records that start ``u8`` and chain from byte 0, found without a Python loop
    (both empty when the first record is not of the usual kind).

    Candidates are the offsets whose 8 length bytes are below 2**24 and whose payload starts like an Event (0x09, the
    wall_time key): one comparison over the bytes, then a gather over the few offsets that pass. A candidate inside a
    record (a 0x09 byte in a value) is no record's end; such candidates are dropped until every one left is byte 0 or
    the end of another. What chains from byte 0 (each one's end is the next one's start) is exactly what the
    sequential walk visits; the walk goes on from the end of the chain, and every header CRC is checked either way.
    """
    empty = np.zeros(0, dtype=np.int64)
    n = len(u8) - 13  # candidates need 12 header bytes and the first payload byte
    if n < 1:
        return empty, empty
    cand = np.flatnonzero(u8[12 : n + 12] == 0x09)
    if not len(cand) or cand[0] != 0:
        return empty, empty
    lens = unaligned(u8, "<u8")[cand]
    small = lens < 1 << 24  # length bytes 3..7 zero
    cand, lens = cand[small], lens[small].astype(np.int64)
    ends = cand + RECORD_OVERHEAD + lens
    inside = ends <= len(u8)  # the last one may be cut: the walk decides what it is
    cand, lens, ends = cand[inside], lens[inside], ends[inside]
    if not len(cand) or cand[0] != 0:  # the first record is not of the usual kind, or is cut
        return empty, empty
    if len(cand) > 1 and not np.array_equal(cand[1:], ends[:-1]):
        for _ in range(8):  # drop candidates that no candidate ends at, until none is left to drop
            target = np.zeros(len(u8) + 1, dtype=bool)
            target[ends] = True
            target[0] = True
            keep = target[cand]
            if keep.all():
                break
            cand, lens, ends = cand[keep], lens[keep], ends[keep]
        broken = np.flatnonzero(cand[1:] != ends[:-1])
        if len(broken):  # the chain stops at a record of another kind: the walk takes over there
            k = int(broken[0]) + 1
            cand, lens = cand[:k], lens[:k]
    return cand, lens


def frame_records(buf: bytes, base: int, path: Path) -> tuple[np.ndarray, np.ndarray, int | None, str | None]:
    """Offsets and lengths of the complete records in ``buf`` (its first byte is byte ``base`` of the file), and where
    (relative to ``buf``) and why the framing stopped, exactly as :func:`scan_records` decides it for an undamaged
    file; at a bad header it stops (the reader then takes the reference walk, which resynchronises)."""
    u8 = np.frombuffer(buf, dtype=np.uint8)
    chain, chain_lens = _chain(u8)
    offsets: list[int] = []  # what the walk adds after the chain
    add = offsets.append
    end = len(buf)
    off = int(chain[-1] + RECORD_OVERHEAD + chain_lens[-1]) if len(chain) else 0  # the walk goes on from here
    pending = False
    short = False
    unpack = _LENGTH.unpack_from
    while off < end:
        if end - off < HEADER_SIZE:
            short = True
            break
        nxt = off + RECORD_OVERHEAD + unpack(buf, off)[0]
        if nxt > end:
            pending = True
            break
        add(off)
        off = nxt
    if pending:
        offsets.append(off)  # its header is whole: its CRC decides between a cut record and a bad header
    if offsets:
        walked = np.array(offsets, dtype=np.int64)
        offs = np.concatenate([chain, walked])
        # uint64: a pending record's length can be any 8 bytes; only whole records (small lengths) are returned
        lens = np.concatenate([chain_lens.astype(np.uint64), unaligned(u8, "<u8")[walked]])
    else:
        offs, lens = chain, chain_lens
    good = _headers_ok(lens, unaligned(u8, "<u4")[offs + 8])
    stop_at: int | None = None
    reason: str | None = None
    bad = np.flatnonzero(~good)
    if len(bad):
        k = int(bad[0])
        stop_at, reason = int(offs[k]), "bad record header"
        offs, lens = offs[:k], lens[:k]
    elif pending:
        stop_at, reason = off, "incomplete record"
        offs, lens = offs[:-1], lens[:-1]
    elif short:
        stop_at, reason = off, "incomplete record"
    if reason == "bad record header" and base + (stop_at or 0) == 0:
        raise ReadError(NOT_AN_EVENT_FILE, path)
    return offs, lens.astype(np.int64), stop_at, reason
