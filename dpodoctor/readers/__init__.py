"""The reader registry.

Each reader knows one log format and nothing about DPO. It offers a cheap ``sniff(path)`` (name and first bytes
only), says which run folder a file belongs to (``run_root``), and turns the files of one run into a
:class:`ReadResult` whose frame is the canonical tidy table. Adding a format is one module (or subpackage) in this
package that calls :func:`register`, plus its test: every module here is imported when the package is (see
:mod:`dpodoctor._plugins`), so there is no list of readers to edit.

What else a reader can do, it declares (see :class:`Reader`): live following (``follow``), whether its input files
alone key its cache entry (``cache_key_from_inputs``), whether the cache may keep its per-file decodes
(``incremental_decode``), and which folders are its tool's own (``tool_folders``). ``live``, ``cache`` and
``discovery`` ask the reader; none of them knows a reader by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pandas as pd

from dpodoctor._plugins import import_submodules
from dpodoctor.model import Ended


@dataclass
class ReadResult:
    """What a reader could learn from the files of one run."""

    frame: pd.DataFrame
    beta: float | None = None
    beta_source: str | None = None
    ended: Ended = Ended.UNKNOWN
    steps_derived: bool = False
    summary: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Names one of several runs found in the same files (see read_runs); None for the usual single run.
    label: str | None = None


class Reader(Protocol):
    """The interface every reader module implements."""

    name: ClassVar[str]
    # Higher is richer: when one run folder holds several formats, the highest one is read.
    priority: ClassVar[int]
    # True when several files of one run folder together make the run (TensorBoard: a resumed run writes a new
    # event file). False: a run is one file, and discovery picks the primary one.
    multi_file: ClassVar[bool]

    def sniff(self, path: Path) -> bool:
        """True when this file is (very likely) in this reader's format. Must be cheap: name and a few bytes."""
        ...

    def run_root(self, path: Path) -> Path:
        """The folder that identifies the run this file belongs to (files sharing it are one run)."""
        ...

    def read(self, paths: list[Path]) -> ReadResult:
        """Read the files of one run. Raises only :class:`dpodoctor.errors.ReadError`."""
        ...

    # Optional members (looked up with getattr, so a reader without them needs no code for them):
    #
    # ``read_runs(paths) -> list[ReadResult]``: the files can hold several runs (runs appended to one stdout file, a
    #     multi-experiment export), each result with a distinct ``label``. See :func:`read_runs`.
    # ``follow() -> Follower``: a live follower that reads only what is new (``dpodoctor watch``). Without it the
    #     run is read again whole whenever one of its files changes (:class:`WholeFileFollower`).
    # ``cache_key_from_inputs: ClassVar[bool]``: True when the reader reads nothing but its input files (checked in
    #     its code), so the cache need not watch the folders around them: a sweep folder's time changes whenever a
    #     run is added, and must not invalidate every other run of the sweep. Default False.
    # ``incremental_decode: ClassVar[bool]``: True when ``read(paths, decoded=...)`` accepts a function that gives
    #     each input file's decode (a :class:`dpodoctor.readers.tbfast.FileDecode`), so the cache keeps each file's
    #     decode and, when the file grew, decodes only from where the last read stopped. Default False.
    # ``tool_folders: ClassVar[tuple[str, ...]]``: folder names where this reader's tool keeps copies of files that
    #     other readers also read (SwanLab's ``swanlog/`` holds a copy of the console log). Discovery reads a
    #     single-file format's copy there only when there is no other. Default ().


class Follower(Protocol):
    """Live tailing of one run's files (``dpodoctor watch``): what a reader's ``follow()`` returns."""

    def update(self, files: list[Path]) -> bool:
        """Read only what is new in ``files`` (the run's files as discovery lists them now). True when something
        changed since the last call."""
        ...

    def results(self) -> list[ReadResult]:
        """The run(s) read so far. Raises :class:`~dpodoctor.errors.ReadError` (or ``NoMetricsError``) as ``read``."""
        ...


class WholeFileFollower:
    """The follower of a reader without ``follow()``: its run is read again whole, only when one of its files
    changed size or modification time.

    A database's ``-wal`` counts as one of its files: a WAL writer (Trackio) commits there, and the database file
    itself changes only at a checkpoint.
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.signature: tuple[tuple[str, int, int], ...] = ()
        self.cached: list[ReadResult] = []
        self.error: Exception | None = None

    def update(self, files: list[Path]) -> bool:
        from dpodoctor.errors import ReadError

        signature = []
        for path in [p for f in files for p in (f, f.with_name(f.name + "-wal"))]:
            try:
                st = path.stat()
            except OSError:
                continue
            signature.append((str(path), st.st_size, st.st_mtime_ns))
        if tuple(signature) == self.signature:
            return False
        self.signature = tuple(signature)
        try:
            self.cached, self.error = read_runs(self.reader, files), None
        except ReadError as exc:
            self.cached, self.error = [], exc
        return True

    def results(self) -> list[ReadResult]:
        if self.error is not None:
            raise self.error
        return self.cached


def follower_for(reader: Reader) -> Follower:
    """The reader's own follower (``follow()``), else one that re-reads the whole run when its files change."""
    follow = getattr(reader, "follow", None)
    return follow() if follow is not None else WholeFileFollower(reader)


def tool_folders() -> frozenset[str]:
    """Every registered reader's ``tool_folders``: where a copy of another format's file is not the primary one."""
    return frozenset(name for reader in READERS for name in getattr(reader, "tool_folders", ()))


READERS: list[Reader] = []


def register(reader_cls: type) -> type:
    """Class decorator: instantiate the reader and add it to the registry (kept sorted, richest first)."""
    instance = reader_cls()
    if any(r.name == instance.name for r in READERS):
        raise ValueError(f"reader {instance.name!r} registered twice")
    READERS.append(instance)
    READERS.sort(key=lambda r: -r.priority)
    return reader_cls


def read_runs(reader: Reader, paths: list[Path]) -> list[ReadResult]:
    """Every run in the files: ``reader.read_runs`` when the format can hold several, else the one ``read``."""
    many = getattr(reader, "read_runs", None)
    return list(many(paths)) if many is not None else [reader.read(paths)]


def first_run(results: list[ReadResult]) -> ReadResult:
    """What ``read`` returns for a file that holds several runs (a tracker's database): the first, with a note that
    says how many there are, so a caller of ``read`` alone never drops the others silently."""
    if len(results) > 1:
        results[0].notes.append(f"the database holds {len(results)} runs; this is the first (read_runs: all)")
    return results[0]


def reader_for(path: Path) -> Reader | None:
    """The richest reader whose sniff accepts this file, or None."""
    for reader in READERS:
        if reader.sniff(path):
            return reader
    return None


def get_reader(name: str) -> Reader:
    for reader in READERS:
        if reader.name == name:
            return reader
    raise KeyError(name)


# Every module of this package registers its reader on import: no list of readers to keep (dpodoctor._plugins).
import_submodules(__name__, __path__)
