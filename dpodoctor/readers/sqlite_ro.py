"""Opening a tracker's SQLite database without ever writing beside it.

Why a module of its own: Trackio and MLflow keep their runs in SQLite, and SQLite writes next to a database even to
read it: a ``-shm`` file for a WAL database, a ``-journal`` rollback when it finds a hot journal, and a shared lock.
dpodoctor must change nothing in the user's folder, byte for byte. So:

* A database with no ``-wal`` beside it (or an empty one) is opened through the URI
  ``file:...?mode=ro&immutable=1``: SQLite then takes no lock and creates no file at all
  (https://www.sqlite.org/uri.html#uriimmutable).
* A database with a non-empty ``-wal`` holds committed rows in that file only (Trackio writes in WAL mode, and a
  live or killed writer leaves them there), which ``immutable`` would ignore. The database and its WAL are copied
  into a private temporary folder and the copy is opened; the copy is taken again when either file changed during
  it, so a live writer is read consistently (SQLite itself keeps only the WAL frames up to the last commit).
* A non-empty rollback ``-journal`` means a writer is in the middle of a transaction (or died in one): the pages
  on disk may be half written, and only a writer may roll them back. That database is refused, with that reason.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from dpodoctor.errors import ReadError

__all__ = ["SQLITE_MAGIC", "columns", "is_sqlite", "open_readonly", "tables"]

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_COPY_TRIES: Final = 5


def is_sqlite(path: Path) -> bool:
    """True when the file starts with SQLite's 16-byte header (a cheap sniff: one small read)."""
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _nonempty(path: Path) -> bool:
    sig = _signature(path)
    return sig is not None and sig[0] > 0


@contextlib.contextmanager
def open_readonly(path: Path, snapshot: bool = True) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the database at ``path`` that writes nothing beside it (see the module doc).

    ``snapshot=False`` never copies: the main file is opened immutable even beside a WAL (for a sniff, which only
    needs the schema, long since checkpointed into the main file, and must stay cheap).

    Raises :class:`ReadError` for a file that is not an SQLite database, a hot rollback journal, or a database
    that kept changing while it was copied.
    """
    if not is_sqlite(path):
        raise ReadError("not an SQLite database (no SQLite header)", path)
    journal = path.with_name(path.name + "-journal")
    if snapshot and _nonempty(journal):
        raise ReadError(
            f"a write is in progress ({journal.name} exists: a transaction is open or its writer died); "
            "dpodoctor reads only committed data without touching the file, so try again when the writer is done",
            path,
        )
    wal = path.with_name(path.name + "-wal")
    if not snapshot or not _nonempty(wal):
        conn = _connect(Path(path).resolve().as_uri() + "?mode=ro&immutable=1", path)
        try:
            yield conn
        finally:
            conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="dpodoctor-sqlite-") as tmp:
        copy = Path(tmp) / "db.sqlite"
        for _ in range(_COPY_TRIES):
            before = (_signature(path), _signature(wal))
            try:
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            except OSError as exc:
                raise ReadError(f"cannot copy the database to read it ({exc.strerror or exc})", path) from exc
            if (_signature(path), _signature(wal)) == before:
                break
        else:
            raise ReadError(
                f"the database kept changing while it was read ({_COPY_TRIES} tries): a writer is busy; try again",
                path,
            )
        conn = _connect(copy.as_uri() + "?mode=ro", path)
        try:
            yield conn
        finally:
            conn.close()


def _connect(uri: str, path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here, not later, on a damaged file
    except sqlite3.Error as exc:
        raise ReadError(f"not a readable SQLite database ({exc})", path) from exc
    return conn


def tables(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table``: readers select by name, because tracker schemas change between releases."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"bad table name {table!r}")
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
