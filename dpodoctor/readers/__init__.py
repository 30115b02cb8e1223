"""The reader registry.

Each reader knows one log format and nothing about DPO. It offers a cheap ``sniff(path)`` (name and first bytes
only), says which run folder a file belongs to (``run_root``), and turns the files of one run into a
:class:`ReadResult` whose frame is the canonical tidy table. Adding a format is one module (or subpackage) in this
package that calls :func:`register`, plus its test: every module here that the catalogue below does not name is
imported when the package is (see :mod:`dpodoctor._plugins`), so a new reader needs no other edit.

Why a catalogue of the built-in readers (:data:`BUILT_IN`): importing every reader module costs ~0.1 s of CPU (regex
tables, protobuf classes, YAML), a fifth of checking one small run, while a folder usually holds one or two formats.
Each built-in reader is listed with its name, priority and a test on the file's *name* that accepts at least every
file its ``sniff`` accepts; the registry holds a stand-in for it (:class:`_Deferred`) and imports the module only when
a file's name passes that test (or when something asks the reader for more than its name). A test imports every
module and checks the catalogue against the readers themselves (name, priority, tool folders, and the name test
against ``sniff`` on every fixture file).

What else a reader can do, it declares (see :class:`Reader`): live following (``follow``), whether its input files
alone key its cache entry (``cache_key_from_inputs``), whether the cache may keep its per-file decodes
(``incremental_decode``), and which folders are its tool's own (``tool_folders``). ``live``, ``cache`` and
``discovery`` ask the reader; none of them knows a reader by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from dpodoctor._plugins import import_own, import_submodules
from dpodoctor.model import NO_FRAME_YET, Ended, FrameLoader, LazyFrame, Once, Points

if TYPE_CHECKING:
    import pandas as pd


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


class LazyReadResult(LazyFrame, ReadResult):
    """A :class:`ReadResult` whose frame is built when first read: from a cache entry's checked columns, or from the
    :class:`~dpodoctor.model.Points` a reader gives instead of a frame (TensorBoard), which the run made from it
    reads its curves from (no pandas until something reads the frame)."""

    @classmethod
    def deferred(
        cls, loader: FrameLoader | None, points: Points | Once[Points | None] | None = None, **fields: Any
    ) -> LazyReadResult:
        """A result whose frame ``loader`` builds (``points.to_frame`` when None), its curves read from ``points``
        (or from what a :class:`~dpodoctor.model.Once` gives when first needed)."""
        result = cls(frame=NO_FRAME_YET, **fields)
        result.defer(loader, points)
        return result

    @classmethod
    def from_points(cls, points: Points, **fields: Any) -> LazyReadResult:
        """A result of these points (its frame: ``points.to_frame()``, built when first read)."""
        return cls.deferred(None, points, **fields)


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


def _suffix(path: Path) -> str:
    return path.suffix.lower()


@dataclass(frozen=True)
class Listed:
    """A built-in reader as the catalogue knows it before its module is imported.

    ``claims`` looks at the path's name (and its folders' names) only, never at the disk, and must accept every file
    the reader's ``sniff`` accepts: a file it refuses is never shown to that reader."""

    module: str
    name: str
    priority: int
    claims: Callable[[Path], bool]
    tool_folders: tuple[str, ...] = ()


# The built-in readers, richest first (ties in the order they registered when every module was imported).
BUILT_IN: tuple[Listed, ...] = (
    Listed("tensorboard.reader", "tensorboard", 100, lambda p: "tfevents" in p.name),
    Listed("wandb_run", "wandb", 60, lambda p: p.name.endswith(".wandb") or p.name == "wandb-summary.json"),
    Listed("mlflow_store", "mlflow", 55, lambda p: p.name == "meta.yaml"),
    Listed("mlflow_store", "mlflow-sqlite", 55, lambda p: _suffix(p) in (".db", ".sqlite", ".sqlite3")),
    Listed("trackio_db", "trackio", 55, lambda p: _suffix(p) == ".db"),
    Listed(
        "swanlab.rundir",
        "swanlab",
        50,
        lambda p: p.name.endswith(".swanlab") or (p.name.endswith(".log") and p.parent.parent.name == "logs"),
        ("swanlog",),
    ),
    Listed("swanlab.export", "swanlab-export", 45, lambda p: _suffix(p) in (".csv", ".json")),
    Listed("trainer_state", "trainer_state", 40, lambda p: _suffix(p) == ".json"),
    Listed("llamafactory", "llamafactory", 30, lambda p: _suffix(p) == ".jsonl"),
    Listed("jsonl", "jsonl", 20, lambda p: _suffix(p) in (".jsonl", ".ndjson", ".json")),
    Listed("csvlog", "csv", 20, lambda p: _suffix(p) in (".csv", ".tsv")),
    Listed("stdout.reader", "stdout", 10, lambda p: True),  # by name, or by content for a log pasted anywhere
)


# The modules of this package that hold no reader (the readers' shared helpers): imported by whoever uses them.
NO_READER: frozenset[str] = frozenset({"beta", "hparams", "overlap", "sqlite_ro", "stdout_config", "textio"})


class _Deferred:
    """Stands in :data:`READERS` for a built-in reader whose module is not imported yet: it answers ``name``,
    ``priority`` and ``tool_folders`` itself, refuses in ``sniff`` any file whose name the reader could not accept,
    and imports the module for anything else (then behaves as the reader: every other attribute is the reader's).
    Pickled, it is the reader itself (a worker process gets the real one)."""

    def __init__(self, listed: Listed) -> None:
        self.listed = listed
        self.name = listed.name
        self.priority = listed.priority
        self.tool_folders = listed.tool_folders
        self.instance: Reader | None = None

    def load(self) -> Reader:
        if self.instance is None:
            import_own(__name__, self.listed.module)  # its @register sets self.instance
            if self.instance is None:
                raise RuntimeError(f"{__name__}.{self.listed.module} registered no reader {self.name!r}")
        return self.instance

    def sniff(self, path: Path) -> bool:
        return self.listed.claims(path) and self.load().sniff(path)

    def __getattr__(self, attribute: str) -> Any:
        # Reached only for what __init__ did not set: the reader's own members.
        if attribute.startswith("__") or attribute in ("listed", "instance"):
            raise AttributeError(attribute)
        return getattr(self.load(), attribute)

    def __reduce__(self) -> tuple[Any, ...]:
        return get_reader, (self.name,)

    def __repr__(self) -> str:
        return f"<{self.name} reader, {'loaded' if self.instance is not None else 'not imported yet'}>"


READERS: list[Reader] = [cast("Reader", _Deferred(listed)) for listed in BUILT_IN]


def register(reader_cls: type) -> type:
    """Class decorator: instantiate the reader and add it to the registry (kept sorted, richest first). A built-in
    reader takes its place behind its stand-in; its class must say what the catalogue says of it."""
    instance = reader_cls()
    for entry in READERS:
        if entry.name != instance.name:
            continue
        if isinstance(entry, _Deferred) and entry.instance is None:
            listed = entry.listed
            if (listed.priority, listed.tool_folders) != (instance.priority, getattr(instance, "tool_folders", ())):
                raise ValueError(f"reader {instance.name!r}: its priority or tool folders differ from the catalogue")
            entry.instance = instance
            return reader_cls
        raise ValueError(f"reader {instance.name!r} registered twice")
    READERS.append(instance)
    READERS.sort(key=lambda r: -r.priority)
    return reader_cls


def loaded(reader: Reader) -> Reader:
    """The reader itself for a registry entry (a stand-in imports its module): what callers keep and compare."""
    return reader.load() if isinstance(reader, _Deferred) else reader


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
            return loaded(reader)
    return None


def get_reader(name: str) -> Reader:
    for reader in READERS:
        if reader.name == name:
            return loaded(reader)
    raise KeyError(name)


# Every other module of this package registers its reader on import: a new reader needs no list (dpodoctor._plugins).
import_submodules(__name__, __path__, skip={*(listed.module.split(".")[0] for listed in BUILT_IN), *NO_READER})
