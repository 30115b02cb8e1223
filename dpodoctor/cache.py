"""An on-disk cache of parsed runs, so a gate that re-checks an unchanged sweep after every job skips the parsing.

What is stored: for each run source (reader + files), what its reader returned (every :class:`ReadResult`: the frame's
columns, notes, ended, β, config, summary, label); and, for a reader that declares ``incremental_decode``
(TensorBoard), each input file's decoded columns (:class:`~dpodoctor.readers.tensorboard.FileDecode`), so a file that
grew (a run still training) is decoded only from the end of the last complete record read before.

When an entry is used: the entry's key names the dpodoctor version, :data:`CACHE_FORMAT` and a fingerprint of the
package's own source files (an edited reader in a development checkout must not serve stale results); its metadata
lists every file the read depended on with its size and modification time (``st_mtime_ns``): the inputs, every
other file the reader opened while reading (recorded through an audit hook, so a reader needs no cache code of its
own), and the folders around them (a file that appears beside a run, such as a config, changes its folder's time).
Anything that differs is a miss, and the source is read again.

Why not pickle: the logs are untrusted and so is a cache folder that another process could write. Entries are
``.bin`` files of our own plain layout (see :func:`_write_entry`): a JSON header, then raw little-endian numeric
arrays, never objects (one file per entry, replaced atomically, so a reader never sees half an entry). Everything
read back is checked (dtypes, lengths, code ranges, JSON types); an entry that fails a check is a miss. A result
whose metadata JSON cannot carry exactly (a tuple, a numpy scalar, a non-string key in a config) is simply not
cached, so a cached result is always exactly the fresh one.

Where: ``$DPODOCTOR_CACHE_DIR`` if set, else the user cache folder (``platformdirs.user_cache_dir("dpodoctor")``).

Trust (see the README's reliability section): the cache folder is used only when it is owned by the user and not
group- or world-writable, and its parent folders cannot be renamed under it by another user (owned by the user or
root, and not writable by others unless sticky, like ``/tmp``), the way ssh treats ``~/.ssh``; otherwise the check
runs without the cache and says why. Each entry must be owned by the user, not group- or world-writable, and carry a
keyed BLAKE2b MAC of its name and bytes. The key is ``$DPODOCTOR_CACHE_KEY`` if set (for CI: a secret), else a
random key in ``<cache folder>.key`` beside the folder (mode 0600), so a copy of the folder alone (a CI cache
restored from another branch) carries no key and none of its entries is used. What this cannot do: anyone who can
read the key (the user, root, a job given the secret) can forge entries; it protects verdicts from other users,
from copies of the folder and from damage, not from the user's own account.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import stat
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from dpodoctor.model import COLUMNS, Ended, Points, points_in
from dpodoctor.settings import DiagnoseSettings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:  # a warm check builds no frame: pandas is imported only when a frame is (see readers.LazyReadResult)
    from dpodoctor._lazy import np, pd

__all__ = [
    "CACHE_FORMAT",
    "ENV_DIR",
    "ENV_KEY",
    "RunCache",
    "cache_dir",
    "code_fingerprint",
    "dependency_stat",
    "record_dependencies",
]

CACHE_FORMAT: Final = 6  # 2: own .bin entries; 3: keyed MAC; 4: RunReport.to_dict; 5: + the run's JSON report entry;
# 6: a category dtype may be null (the one pandas infers: results written from a reader's Points, without pandas)
ENV_DIR: Final = "DPODOCTOR_CACHE_DIR"
ENV_KEY: Final = "DPODOCTOR_CACHE_KEY"
_MAC_SIZE: Final = 32
_WINDOW: Final = 65536  # bytes hashed at the start of an event file and before its resume offset
_MAX_META: Final = 64 * 1024 * 1024
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
# what pandas 2 / 3 infer for string categories; None: whichever this pandas infers (written from Points)
_CATEGORY_DTYPES: Final = frozenset({"object", "str", None})


def cache_dir() -> Path:
    """``$DPODOCTOR_CACHE_DIR``, else the user cache folder for dpodoctor."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dpodoctor", appauthor=False))


_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """The dpodoctor version, the cache format and the name, size and time of every module of the package."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        from dpodoctor._version import __version__

        h = hashlib.sha256(f"{__version__}\0{CACHE_FORMAT}".encode())
        for path in sorted(_PACKAGE_DIR.rglob("*.py")):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"\0{path.relative_to(_PACKAGE_DIR).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        _FINGERPRINT = f"{__version__}-{CACHE_FORMAT}-{h.hexdigest()[:16]}"
    return _FINGERPRINT


# ---------------------------------------------------------------------------------------------- file dependencies

# Active recordings, innermost last: (the paths seen, whether folder listings count too). Every active recording
# sees every event, so a sweep's recording (opens and listings) includes what a run's read (opens only) recorded.
_RECORDING: list[tuple[set[str], bool]] = []
_HOOKED = False
_LISTINGS: Final = frozenset({"os.scandir", "os.listdir"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDING and (event == "open" or event in _LISTINGS) and args:
        path = args[0]
        if isinstance(path, str | bytes | os.PathLike):
            name = os.fsdecode(path)
            for seen, listings in _RECORDING:
                if listings or event == "open":
                    seen.add(name)


@contextlib.contextmanager
def _record_opens(listings: bool = False) -> Iterator[set[str]]:
    """The paths of every file opened inside the block (the interpreter's ``open`` audit event), and with
    ``listings`` of every folder listed (``os.scandir``, ``os.listdir``: what a glob or a walk decided from)."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)  # cannot be removed; it does nothing while no recording is active
        _HOOKED = True
    opened: set[str] = set()
    _RECORDING.append((opened, listings))
    try:
        yield opened
    finally:
        _RECORDING.pop()


def record_dependencies() -> contextlib.AbstractContextManager[set[str]]:
    """Every file opened and every folder listed inside the block (see :class:`SweepState`)."""
    return _record_opens(listings=True)


def _stat(path: Path) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [str(path), int(st.st_size), int(st.st_mtime_ns)]


def _loads(data: memoryview) -> Any:
    """JSON that ``json.dumps(allow_nan=True)`` wrote: orjson where it can (3x faster on the 2 MB header of a
    600-run sweep entry), ``json`` for what orjson refuses (NaN and infinities, which it does not read)."""
    try:
        import orjson
    except ImportError:
        return json.loads(bytes(data))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data))


def dependency_stat(path: str) -> list[Any]:
    """What a whole-sweep entry remembers of a file or folder it depended on: [path, size, mtime_ns, ctime_ns,
    inode, mode], or [path, None] when it did not exist. Stricter than a run's entry (size and mtime): the change
    time catches a file replaced or touched back to its old time, the mode a file made unreadable (which decides
    whether the walk reads it), the inode a folder swapped under the same name."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns), int(st.st_ino), int(st.st_mode)]


def _ignored_dependency(path: Path, root: Path) -> bool:
    """Files a read opens that are not input: the cache itself and Python's own modules. (Temporary copies, such as
    SwanLab's private copy of its SQLite index, are gone after the read and are dropped as missing.)"""
    text = str(path)
    return (
        path.suffix in (".py", ".pyc", ".so")
        or text.startswith(str(root))
        or text.startswith(sys.prefix)
        or text.startswith(sys.base_prefix)
    )


# ---------------------------------------------------------------------------------------------- JSON exactness


def _exact_json(value: Any, depth: int = 0) -> bool:
    """True when ``json.loads(json.dumps(value))`` gives back the same value with the same types."""
    if depth > 200:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return True  # repr round-trips every float, NaN and ±inf included (json allows them in Python)
    if type(value) is list:
        return all(_exact_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _exact_json(v, depth + 1) for k, v in value.items())
    return False


def _same_json(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN (what a round trip through JSON must preserve)."""
    if type(a) is float and type(b) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


# ---------------------------------------------------------------------------------------------- trust


class UntrustedCacheError(Exception):
    """The cache folder (or its key) is not safe to use: says which path and why."""


def _euid() -> int | None:
    """The effective user id; None where there is none (Windows: ownership is not checked there)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid() if geteuid is not None else None


def _writable_by_others(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def _check_folder(root: Path) -> None:
    """Raise :class:`UntrustedCacheError` unless ``root`` is the user's own, not writable by others, and no parent
    lets another user swap it (owned by the user or root; writable by others only when sticky, as ``/tmp``)."""
    me = _euid()
    if me is None:
        return
    st = os.stat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedCacheError(f"{root}: not a folder")
    if st.st_uid != me:
        raise UntrustedCacheError(f"{root}: owned by uid {st.st_uid}, not by you (uid {me})")
    if _writable_by_others(st.st_mode):
        raise UntrustedCacheError(f"{root}: group- or world-writable (mode {stat.S_IMODE(st.st_mode):o}; chmod go-w)")
    for parent in root.parents:
        st = os.stat(parent)
        if st.st_uid not in (me, 0):
            raise UntrustedCacheError(f"{parent}: a parent of the cache folder owned by uid {st.st_uid}")
        if _writable_by_others(st.st_mode) and not st.st_mode & stat.S_ISVTX:
            raise UntrustedCacheError(
                f"{parent}: a parent of the cache folder, writable by others without the sticky bit "
                f"(mode {stat.S_IMODE(st.st_mode):o})"
            )


def _own_file(st: os.stat_result) -> bool:
    """A cache file is used only when it is a regular file of the user's, not writable by anyone else."""
    me = _euid()
    return stat.S_ISREG(st.st_mode) and (me is None or (st.st_uid == me and not _writable_by_others(st.st_mode)))


def _load_key(root: Path) -> bytes:
    """The MAC key: ``$DPODOCTOR_CACHE_KEY``, else ``<root>.key`` beside the folder (created on first use)."""
    env = os.environ.get(ENV_KEY)
    if env:
        return hashlib.sha256(b"dpodoctor-cache-key\0" + env.encode("utf-8", "surrogateescape")).digest()
    path = root.with_name(root.name + ".key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(os.urandom(32).hex())
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UntrustedCacheError(f"{path}: cannot read the cache key ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
        st = os.fstat(handle.fileno())
        me = _euid()
        if me is not None and (st.st_uid != me or st.st_mode & 0o077):
            raise UntrustedCacheError(f"{path}: the cache key must be yours and private (mode 600)")
        text = handle.read(200).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UntrustedCacheError(f"{path}: not a dpodoctor cache key")
    return key


def _hasher(key: bytes, name: str, algorithm: str) -> Any:
    """The keyed hash of an entry, fed its file name already: BLAKE2b (``blake2b``), or HMAC-SHA256 (``sha256``)
    for the large whole-sweep entries, which OpenSSL computes 2-3x faster where the CPU has SHA instructions
    (22 MB: 18 ms against 40 ms on this project's machine)."""
    h: Any = (
        hashlib.blake2b(key=key[:64], digest_size=_MAC_SIZE)
        if algorithm == "blake2b"
        else hmac.new(key, digestmod=algorithm)
    )
    h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    return h


def _mac(key: bytes, name: str, data: bytes | bytearray | memoryview, algorithm: str = "blake2b") -> bytes:
    """Keyed hash of an entry's file name and bytes: a changed byte, or an entry moved to another name, fails."""
    h = _hasher(key, name, algorithm)
    h.update(data)
    return bytes(h.digest())


def _read_trusted(path: Path, key: bytes, limit: int, algorithm: str = "blake2b") -> bytearray | None:
    """The bytes of a cache file whose owner, mode and MAC check out (the MAC still at the end), else None.
    A bytearray: the arrays wrapped around it stay writable, as freshly decoded ones are."""
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if not _own_file(st) or not _MAC_SIZE <= st.st_size <= limit:
                return None
            raw = bytearray(st.st_size)
            if handle.readinto(raw) != st.st_size:
                return None
    except OSError:
        return None
    body, mac = memoryview(raw)[:-_MAC_SIZE], raw[-_MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, path.name, body, algorithm)):
        return None
    return raw


def _write_trusted(path: Path, key: bytes, blobs: list[bytes | memoryview], algorithm: str = "blake2b") -> None:
    """Write ``blobs`` and their MAC beside ``path`` (mode 600, folders 700) and rename the file into place."""
    for folder in (path.parent.parent, path.parent):  # <root>/<kind>/<xx>/: private whatever the umask
        folder.mkdir(mode=0o700, exist_ok=True)
    h = _hasher(key, path.name, algorithm)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for blob in blobs:
                handle.write(blob)
                h.update(blob)
            handle.write(h.digest())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------- npz entries


_MAGIC: Final = b"DPODOCTOR-CACHE\x00"
_HEAD: Final = struct.Struct("<16sQ")  # magic, length of the header JSON
_ALIGN: Final = 64
# The only array types an entry may hold (little-endian numbers and booleans): never objects, so never a pickle.
_DTYPES: Final = frozenset({"|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f4", "<f8"})


def _write_entry(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], key: bytes) -> None:
    """One entry file: the magic, the header JSON (the metadata, and each array's name, type, length and offset),
    then the arrays' raw bytes; written beside its place and renamed into it, so a reader never sees half of it.

    Why not .npz: a zip archive costs a CRC over every byte on both write and read, which was most of a warm
    re-check; these files are read with one read() and wrapped by numpy without a copy.
    """
    table: list[list[Any]] = []
    blobs: list[bytes | memoryview] = []
    offset = 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.ndim != 1 or array.dtype.str not in _DTYPES:
            raise ValueError(f"cache entry: unsupported array {name} ({array.dtype.str}, {array.ndim}-d)")
        table.append([name, array.dtype.str, len(array), offset])
        data = array.data.cast("B") if array.nbytes else b""
        pad = -len(data) % _ALIGN
        blobs.extend((data, b"\0" * pad))
        offset += len(data) + pad
    header = json.dumps({"meta": meta, "arrays": table}, allow_nan=True, separators=(",", ":")).encode()
    header += b" " * (-(len(header) + _HEAD.size) % _ALIGN)
    _write_trusted(path, key, [_HEAD.pack(_MAGIC, len(header)), header, *blobs])


def _read_entry(path: Path, key: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The metadata and arrays of an entry, or None when it is missing or not a well-formed entry.

    Everything is checked before use: the file's owner, mode and MAC (:func:`_read_trusted`), the magic, the
    header's size and JSON types, every array's type against
    :data:`_DTYPES` and its bytes against the file's length. The arrays are views of one buffer (no copy).
    """
    raw = _read_trusted(path, key, sys.maxsize)
    if raw is None:
        return None
    buffer = memoryview(raw)[:-_MAC_SIZE]
    size = len(buffer)
    if size < _HEAD.size:
        return None
    magic, header_len = _HEAD.unpack_from(buffer)
    if magic != _MAGIC or header_len > min(_MAX_META, size - _HEAD.size):
        return None
    start = _HEAD.size + header_len
    try:
        header = json.loads(bytes(buffer[_HEAD.size : start]))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict):
        return None
    table = header.get("arrays")
    if not isinstance(table, list):
        return None
    arrays: dict[str, np.ndarray] = {}
    for item in table:
        if not (
            isinstance(item, list)
            and len(item) == 4
            and type(item[0]) is str
            and item[1] in _DTYPES
            and all(type(v) is int and v >= 0 for v in item[2:])
        ):
            return None
        name, dtype, count, offset = item
        itemsize = np.dtype(dtype).itemsize
        if start + offset + count * itemsize > size or name in arrays:
            return None
        arrays[name] = np.frombuffer(buffer, dtype=dtype, count=count, offset=start + offset)
    return header["meta"], arrays


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """The canonical frame of checked columns: (codes, categories, dtype) for split and metric, arrays else."""
    built: dict[str, Any] = {}
    for col in ("split", "metric"):
        codes, cats, dtype = columns[col]
        built[col] = pd.Categorical.from_codes(
            codes, categories=pd.Index(cats) if dtype is None else pd.Index(cats, dtype=dtype)
        )
    built["step"] = columns["step"].astype(np.int64, copy=False)
    built["value"] = columns["value"].astype(np.float64, copy=False)
    built["wall_time"] = columns["wall_time"].astype(np.float64, copy=False)
    return pd.DataFrame(built)


def _frame_item(i: int, frame: pd.DataFrame, item: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    """Put result ``i``'s frame into ``item`` (rows, categories) and ``arrays`` (its columns); False when it is not
    the canonical frame (then the result is not cached)."""
    if (
        tuple(frame.columns) != COLUMNS
        or not isinstance(frame.index, pd.RangeIndex)
        or frame.index.start != 0
        or frame.index.step != 1
        or not all(isinstance(frame[c].dtype, pd.CategoricalDtype) for c in ("split", "metric"))
        or frame["step"].dtype != np.int64
        or frame["value"].dtype != np.float64
        or frame["wall_time"].dtype != np.float64
    ):
        return False
    item["rows"] = len(frame)
    for col in ("split", "metric"):
        cats = frame[col].cat.categories
        if not all(type(c) is str for c in cats):
            return False
        item[f"{col}_categories"] = list(cats)
        item[f"{col}_dtype"] = str(cats.dtype)
        arrays[f"{i}.{col}"] = frame[col].cat.codes.to_numpy()
    arrays[f"{i}.step"] = frame["step"].to_numpy()
    arrays[f"{i}.value"] = frame["value"].to_numpy()
    arrays[f"{i}.wall_time"] = frame["wall_time"].to_numpy()
    return True


def _array(arrays: dict[str, np.ndarray], name: str, kind: str, n: int | None = None) -> np.ndarray:
    arr = arrays.get(name)
    if arr is None or arr.ndim != 1 or arr.dtype.kind != kind or (n is not None and len(arr) != n):
        raise ValueError(name)
    return arr


# ---------------------------------------------------------------------------------------------- the cache


@dataclass
class _Pending:
    """Event-file decodes made during one read, stored once the read has succeeded."""

    path: Path
    stat: list[Any]
    decode: Any
    head: str
    tail: str


class RunCache:
    """Reads and writes cache entries under ``root`` (default: :func:`cache_dir`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_dir()).resolve()
        self.prefix = code_fingerprint()
        self.hits = 0
        self.misses = 0
        # Every file and folder the entries read or written through this cache depended on (see SweepState):
        # a whole-sweep entry depends on them too.
        self.depends: set[str] = set()
        # Why the cache is not used (an untrusted folder or key), or None. A refused cache reads and writes nothing.
        self.refused: str | None = None
        self._key = b""
        try:
            if not self.root.exists():
                self.root.mkdir(mode=0o700, parents=True)
            _check_folder(self.root)
            self._key = _load_key(self.root)
        except UntrustedCacheError as exc:
            self.refused = str(exc)
        except OSError as exc:
            self.refused = f"{self.root}: cannot use the cache folder ({exc.strerror or exc})"

    def _read(self, path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        return None if self.refused is not None else _read_entry(path, self._key)

    def _write(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if self.refused is None:
            _write_entry(path, meta, arrays, self._key)

    def _entry(self, kind: str, identity: Any) -> Path:
        digest = hashlib.sha256(json.dumps([self.prefix, identity]).encode()).hexdigest()
        return self.root / kind / digest[:2] / f"{digest}.bin"

    # ------------------------------------------------------------------ whole read results

    def read_runs(self, reader: Any, files: list[Path]) -> list[Any]:
        """``readers.read_runs(reader, files)``, from the cache when nothing it depended on changed."""
        return self.read_runs_keyed(reader, files)[0]

    def lookup(self, reader: Any, files: list[Path]) -> tuple[list[Any], str] | None:
        """The cached results of a source and their data key, or None (a miss reads nothing but the entry)."""
        files = [Path(os.path.abspath(f)) for f in files]
        entry = self._entry("runs", [reader.name, [str(f) for f in files]])
        return self._load_results(entry, reader.name, files)

    def read_runs_keyed(self, reader: Any, files: list[Path]) -> tuple[list[Any], str | None]:
        """:meth:`read_runs`, plus a key naming exactly the data read (None when the read could not be cached):
        the same key means the same results, which is what lets a diagnosis be cached too."""
        from dpodoctor.readers import read_runs

        files = [Path(os.path.abspath(f)) for f in files]
        entry = self._entry("runs", [reader.name, [str(f) for f in files]])
        cached = self._load_results(entry, reader.name, files)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        before = [_stat(f) for f in files]
        pending: list[_Pending] = []
        with _record_opens() as opened:
            if getattr(reader, "incremental_decode", False):
                results = [reader.read(files, decoded=lambda p: self._decoded(p, pending))]
            else:
                results = read_runs(reader, files)
        if any(s is None for s in before) or [_stat(f) for f in files] != before:
            return results, None  # an input changed while it was read: not a state worth remembering
        deps = self._dependencies(getattr(reader, "cache_key_from_inputs", False), files, opened)
        key = None
        with contextlib.suppress(OSError, ValueError):
            key = self._store_results(entry, reader.name, files, before, deps, results)
            self.depends.update(d[0] for d in [*before, *deps] if d is not None)
            finished = all(getattr(r, "ended", None) == Ended.FINISHED for r in results)
            for item in pending:
                if not finished:  # a finished run's files do not grow: the whole result above is enough
                    self._store_decode(item)
        return results, key

    def _dependencies(self, inputs_only: bool, files: list[Path], opened: set[str]) -> list[list[Any]]:
        """What the read depended on besides its inputs: the files it opened and, unless the reader reads only its
        inputs (``cache_key_from_inputs``), the folders around them."""
        inputs = {str(f) for f in files}
        paths: set[Path] = set()
        for name in opened:
            path = Path(os.path.abspath(name))
            if str(path) not in inputs and not _ignored_dependency(path, self.root):
                paths.add(path)
        if not inputs_only:  # the folders of the inputs and of what else was opened (not of a temporary, gone now:
            # its folder is the temp folder, which changes all the time and decides nothing the read found)
            paths |= {p.parent for p in [*files, *(q for q in paths if os.path.lexists(q))]}
        deps = [_stat(p) for p in sorted(paths)]
        return [d for d in deps if d is not None]  # a temporary file gone since: not a dependency

    @staticmethod
    def _data_key(meta: dict[str, Any]) -> str:
        return hashlib.sha256(
            json.dumps([meta["prefix"], meta["reader"], meta["files"], meta["deps"]]).encode()
        ).hexdigest()

    def _load_results(self, entry: Path, reader_name: str, files: list[Path]) -> tuple[list[Any], str] | None:
        got = self._read(entry)
        if got is None:
            return None
        meta, arrays = got
        try:
            if meta.get("prefix") != self.prefix or meta.get("reader") != reader_name:
                return None
            if meta.get("files") != [_stat(f) for f in files]:
                return None
            deps = meta.get("deps")
            if not isinstance(deps, list) or any(
                not (isinstance(d, list) and len(d) == 3 and isinstance(d[0], str)) or _stat(Path(d[0])) != d
                for d in deps
            ):
                return None
            results = [self._result(i, item, arrays) for i, item in enumerate(meta["results"])]
        except (ValueError, TypeError, KeyError, IndexError):
            return None
        self.depends.update(d[0] for d in [*meta["files"], *deps])
        return results, self._data_key(meta)

    @staticmethod
    def _result(i: int, item: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """Result ``i`` of an entry, every field and array checked now; its frame is built when first read."""
        from dpodoctor.model import FrameLoader, Once
        from dpodoctor.readers import LazyReadResult

        n = int(item["rows"])
        columns: dict[str, Any] = {}
        for col, cats_key in (("split", "split_categories"), ("metric", "metric_categories")):
            cats = item[cats_key]
            if not isinstance(cats, list) or not all(type(c) is str for c in cats) or len(set(cats)) != len(cats):
                raise ValueError(cats_key)
            codes = _array(arrays, f"{i}.{col}", "i", n)
            if n and (codes.min() < 0 or codes.max() >= len(cats)):
                raise ValueError(col)
            dtype = item[f"{col}_dtype"]
            if dtype not in _CATEGORY_DTYPES:
                raise ValueError(dtype)
            columns[col] = (codes, cats, dtype)
        columns["step"] = _array(arrays, f"{i}.step", "i", n)
        columns["value"] = _array(arrays, f"{i}.value", "f", n)
        columns["wall_time"] = _array(arrays, f"{i}.wall_time", "f", n)
        fields = {k: item[k] for k in ("beta", "beta_source", "steps_derived", "summary", "config", "notes", "label")}
        if not (
            (fields["beta"] is None or type(fields["beta"]) in (int, float))
            and (fields["beta_source"] is None or type(fields["beta_source"]) is str)
            and type(fields["steps_derived"]) is bool
            and type(fields["summary"]) is dict
            and type(fields["config"]) is dict
            and type(fields["notes"]) is list
            and all(type(x) is str for x in fields["notes"])
            and (fields["label"] is None or type(fields["label"]) is str)
        ):
            raise ValueError("fields")
        ended = Ended(item["ended"])
        (s_codes, s_cats, s_dtype), (m_codes, m_cats, m_dtype) = columns["split"], columns["metric"]
        # Its curves are read from its points without a frame when its rows are in make_frame's order (as every
        # built-in reader leaves them), checked when first needed: a warm JSON check reads no point of the run.
        points = Once(
            lambda: Points.from_sorted(
                s_codes,
                s_cats,
                m_codes,
                m_cats,
                columns["step"].astype(np.int64, copy=False),
                columns["value"].astype(np.float64, copy=False),
                columns["wall_time"].astype(np.float64, copy=False),
                (s_dtype, m_dtype),
            )
        )
        return LazyReadResult.deferred(FrameLoader(lambda: _frame(columns)), points, ended=ended, **fields)

    def _store_results(
        self,
        entry: Path,
        reader_name: str,
        files: list[Path],
        stats: list[Any],
        deps: list[list[Any]],
        results: list[Any],
    ) -> str | None:
        items: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        for i, r in enumerate(results):
            item: dict[str, Any] = {}
            points = points_in(r.__dict__)
            if points is not None and "_frame" not in r.__dict__:  # written from the points: no frame, no pandas
                item["rows"] = len(points)
                for col, labels, codes, dtype in (
                    ("split", points.split_labels, points.split, points.category_dtypes[0]),
                    ("metric", points.metric_labels, points.metric, points.category_dtypes[1]),
                ):
                    item[f"{col}_categories"] = list(labels)
                    item[f"{col}_dtype"] = dtype
                    arrays[f"{i}.{col}"] = codes
                arrays[f"{i}.step"] = points.step
                arrays[f"{i}.value"] = points.value
                arrays[f"{i}.wall_time"] = points.wall_time
            elif not _frame_item(i, r.frame, item, arrays):
                return None  # not the canonical frame: not cached
            item["ended"] = Ended(r.ended).value
            fields = {
                "beta": r.beta,
                "beta_source": r.beta_source,
                "steps_derived": r.steps_derived,
                "summary": r.summary,
                "config": r.config,
                "notes": r.notes,
                "label": r.label,
            }
            if not _exact_json(fields) or not _same_json(json.loads(json.dumps(fields)), fields):
                return None
            item.update(fields)
            items.append(item)
        meta = {"prefix": self.prefix, "reader": reader_name, "files": stats, "deps": deps, "results": items}
        if self.refused is not None:
            return None
        self._write(entry, meta, arrays)
        return self._data_key(meta)

    # ------------------------------------------------------------------ whole sweeps

    def load_sweep(self, identity: Any) -> tuple[dict[str, Any], str] | None:
        """The entry of a whole check named by ``identity`` (see :class:`dpodoctor.sweep.SweepState`): its
        metadata and its text, when every file and folder it lists (:func:`dependency_stat`) is unchanged.

        The entry is the metadata's JSON, a NUL byte, then the text (the runs' encoded JSON entries, which the
        metadata points into by character offsets): one read, one MAC, no array (so no numpy)."""
        if self.refused is not None:
            return None
        raw = _read_trusted(self._entry("sweep", identity).with_suffix(".json"), self._key, sys.maxsize, "sha256")
        if raw is None:
            return None
        body = memoryview(raw)[:-_MAC_SIZE]
        split = raw.find(b"\0", 0, len(body))  # JSON text holds no NUL byte: the metadata ends at the first
        if split < 0:
            return None
        try:
            meta = _loads(body[:split])
            text = str(body[split + 1 :], "utf-8")  # decoded in place: the text is most of the entry
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if type(meta) is not dict:
            return None
        deps = meta.get("deps")
        if meta.get("prefix") != self.prefix or meta.get("identity") != identity or type(deps) is not list:
            return None
        for dep in deps:
            if not (type(dep) is list and dep and type(dep[0]) is str) or dependency_stat(dep[0]) != dep:
                return None
        self.hits += 1
        return meta, text

    def store_sweep(self, identity: Any, meta: dict[str, Any], text: str, deps: list[list[Any]]) -> None:
        """Write the entry of a whole check (``meta`` must be exact JSON; ``text``: the runs' encoded entries)."""
        full = {**meta, "prefix": self.prefix, "identity": identity, "deps": deps}
        if self.refused is not None or not _exact_json(full):
            return
        header = json.dumps(full, allow_nan=True, separators=(",", ":")).encode()
        path = self._entry("sweep", identity).with_suffix(".json")
        with contextlib.suppress(OSError):
            _write_trusted(path, self._key, [header, b"\0", text.encode()], "sha256")

    def ignored(self, path: Path) -> bool:
        """Not a dependency of a read: the cache's own files and Python's modules."""
        return _ignored_dependency(path, self.root)

    # ------------------------------------------------------------------ diagnoses

    def diagnosis_key(
        self,
        data_key: str | None,
        index: int,
        run: Any,
        settings: DiagnoseSettings,
        metric_map: dict[str, str] | None = None,
    ) -> str | None:
        """A key for the diagnosis of ``run`` (result ``index`` of the data ``data_key``, its metrics renamed by
        ``metric_map``) under ``settings``, or None when something that the rules read cannot be named exactly."""
        if data_key is None:
            return None
        described = {
            "data": data_key,
            "index": index,
            "name": run.name,
            "path": str(run.path),
            "source": run.source,
            "beta": run.beta,
            "beta_source": run.beta_source,
            "ended": Ended(run.ended).value,
            "steps_derived": run.steps_derived,
            "summary": run.summary,
            "config": run.config,
            "notes": run.notes,
            "other_sources": [str(p) for p in run.other_sources],
            "settings": {**settings.to_dict(), "metric_map": metric_map},
        }
        if not _exact_json(described):
            return None
        return hashlib.sha256(json.dumps([self.prefix, described], sort_keys=True).encode()).hexdigest()

    def load_diagnosis(self, key: str | None, run: Any) -> Any:
        """The cached RunReport for ``run`` under ``key``, or None. The report is read back by
        :meth:`RunReport.from_dict <dpodoctor.results.RunReport.from_dict>`, which checks every field's type, and
        carries the run's entry of the JSON report stored with it (:func:`dpodoctor.jsondoc.run_fragment`):
        a warm ``--format json`` reads no point of the run and encodes nothing again."""
        from dpodoctor.results import RunReport

        if key is None or self.refused is not None:
            return None
        path = self.root / "diag" / key[:2] / f"{key}.json"
        try:
            raw = _read_trusted(path, self._key, _MAX_META)
            if raw is None:
                return None
            body = memoryview(raw)[:-_MAC_SIZE]
            split = raw.find(b"\0", 0, len(body))  # JSON text holds no NUL byte: the header ends at the first
            header, fragment = (body, None) if split < 0 else (body[:split], bytes(body[split + 1 :]).decode())
            data = json.loads(bytes(header))
            if type(data) is not dict or data.get("prefix") != self.prefix or data.get("key") != key:
                return None
            report = RunReport.from_dict(run, data["report"])
            if fragment is not None:
                if not (fragment.startswith("{\n") and fragment.endswith("\n    }")):
                    return None
                report.__dict__["_json_fragment"] = fragment
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None  # UnicodeDecodeError is a ValueError
        self.hits += 1
        return report

    def store_diagnosis(self, key: str | None, report: Any) -> None:
        """Remember a diagnosis (:meth:`RunReport.to_dict <dpodoctor.results.RunReport.to_dict>`, as the JSON report
        writes its findings), when every part of it survives JSON exactly, and after it (past a NUL byte) the run's
        entry of the JSON report (:func:`~dpodoctor.jsondoc.run_fragment`, made now once for both)."""
        from dpodoctor.jsondoc import run_fragment

        if key is None or self.refused is not None:
            return
        data = {"prefix": self.prefix, "key": key, "report": report.to_dict()}
        if not _exact_json(data):
            return
        text = json.dumps(data, allow_nan=True)
        if not _same_json(json.loads(text), data):
            return
        path = self.root / "diag" / key[:2] / f"{key}.json"
        with contextlib.suppress(OSError):
            _write_trusted(path, self._key, [text.encode(), b"\0", run_fragment(report).encode()])

    # ------------------------------------------------------------------ TensorBoard event files

    def _decoded(self, path: Path, pending: list[_Pending]) -> Any:
        """The decode of one event file: cached, extended by what it gained since, or read whole."""
        from dpodoctor.readers.tensorboard import decode as tbfast

        stat = _stat(path)
        got = self._read(self._entry("tbfile", str(path))) if stat is not None else None
        decode = None
        if got is not None and stat is not None:
            with contextlib.suppress(ValueError, TypeError, KeyError, IndexError, OSError):
                meta, arrays = got
                if meta.get("prefix") == self.prefix and meta.get("path") == str(path):
                    old = self._file_decode(meta, arrays)
                    if meta["stat"] == stat:
                        self.hits += 1
                        return old
                    consumed = old.consumed
                    if stat[1] >= consumed and self._digests(path, consumed) == (meta["head"], meta["tail"]):
                        decode = old.extend(tbfast.decode_file(path, start=consumed))
        if decode is None:
            decode = tbfast.decode_file(path)
        after = _stat(path)
        if after is not None and after[1] == decode.size:
            with contextlib.suppress(OSError):
                head, tail = self._digests(path, decode.consumed)
                pending.append(_Pending(path, after, decode, head, tail))
        return decode

    @staticmethod
    def _digests(path: Path, consumed: int) -> tuple[str, str]:
        """Hashes of the first bytes of the file and of the bytes just before ``consumed``: a file that grew keeps
        both; a file rewritten in place (a new run under the same name) does not."""
        with path.open("rb") as handle:
            head = handle.read(min(consumed, _WINDOW))
            start = max(0, consumed - _WINDOW)
            handle.seek(start)
            tail = handle.read(consumed - start)
        return hashlib.blake2b(head).hexdigest(), hashlib.blake2b(tail).hexdigest()

    def _store_decode(self, item: _Pending) -> None:
        d = item.decode
        meta = {
            "prefix": self.prefix,
            "path": str(item.path),
            "stat": item.stat,
            "head": item.head,
            "tail": item.tail,
            "size": d.size,
            "consumed": d.consumed,
            "records": d.records,
            "bad_records": d.bad_records,
            "stop_at": d.stop_at,
            "stop_reason": d.stop_reason,
            "tags": d.tags,
            "plugin_events": [list(e) for e in d.plugin_events],
            "args": d.args,
        }
        if not _exact_json(meta):
            return
        arrays = {"tag": d.tag, "step": d.step, "value": d.value, "wall": d.wall, "cond": d.cond}
        self._write(self._entry("tbfile", str(item.path)), meta, arrays)

    @staticmethod
    def _file_decode(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        from dpodoctor.readers.tensorboard import FileDecode

        tags = meta["tags"]
        if not isinstance(tags, list) or not all(type(t) is str for t in tags):
            raise ValueError("tags")
        tag = _array(arrays, "tag", "i")
        n = len(tag)
        if n and (tag.min() < 0 or tag.max() >= len(tags)):
            raise ValueError("tag")
        events = [(int(k), str(t), str(p)) for k, t, p in meta["plugin_events"]]
        args = meta["args"]
        if not all(a is None or type(a) is str for a in args):
            raise ValueError("args")
        ints = [meta[k] for k in ("size", "consumed", "records", "bad_records")]
        if not all(type(v) is int and v >= 0 for v in ints) or meta["consumed"] > meta["size"]:
            raise ValueError("counts")
        if not (meta["stop_at"] is None or type(meta["stop_at"]) is int) or not (
            meta["stop_reason"] is None or type(meta["stop_reason"]) is str
        ):
            raise ValueError("stop")
        return FileDecode(
            size=meta["size"],
            consumed=meta["consumed"],
            records=meta["records"],
            bad_records=meta["bad_records"],
            stop_at=meta["stop_at"],
            stop_reason=meta["stop_reason"],
            tags=list(tags),
            tag=tag.astype(np.int32, copy=False),
            step=_array(arrays, "step", "i", n).astype(np.int64, copy=False),
            value=_array(arrays, "value", "f", n).astype(np.float64, copy=False),
            wall=_array(arrays, "wall", "f", n).astype(np.float64, copy=False),
            cond=_array(arrays, "cond", "b", n),
            plugin_events=events,
            args=list(args),
        )


def cached_reader(cache: RunCache | None) -> Callable[[Any, list[Path]], list[Any]]:
    """``read_runs`` through ``cache``, or the plain one when there is none."""
    if cache is None:
        from dpodoctor.readers import read_runs

        return read_runs
    return cache.read_runs
