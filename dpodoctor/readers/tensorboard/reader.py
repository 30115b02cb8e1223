"""Reader for TensorBoard event files (``events.out.tfevents.*``) as transformers' TensorBoardCallback writes.

Why decode the records ourselves: TensorFlow is far too heavy a dependency for reading a log, tbparse pulls in
more still, and TensorBoard's EventAccumulator samples (drops) points and hides truncation. The file format is
simple (TFRecord framing around ``Event`` protobufs, :mod:`.framing`), so a vectorised pass over the bytes
(:mod:`.decode`) gives every point, in order, and tells us exactly where a crashed run's file was cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.tensorboard.assemble import EMPTY, assemble, parse_args_text
from dpodoctor.readers.tensorboard.decode import (
    FileDecode,
    decode_event_bytes,
    decode_file,
    decode_reference,
)

__all__ = ["TensorBoardFollower", "TensorBoardReader", "order_key", "read_args_config"]


def _natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Digits compare as numbers: ``...0.9`` sorts before ``...0.10``, timestamps of any width order right."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses (a file name is whatever the disk holds).
    return tuple(
        (0, int(chunk), "") if chunk.isdecimal() else (1, 0, chunk) for chunk in re.split(r"(\d+)", name) if chunk
    )


def order_key(path: Path) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Files of a resumed run are read in name order: the name starts with the creation timestamp."""
    return _natural_key(path.name), str(path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc


@register
class TensorBoardReader:
    """Reads the event files of one run folder into one frame (a resumed run writes several files)."""

    name: ClassVar[str] = "tensorboard"
    priority: ClassVar[int] = 100
    # Every event file in a run folder belongs to the run (a resumed run writes a new file).
    multi_file: ClassVar[bool] = True
    # The event files alone decide the result (β and the config are in them), so they alone key its cache entry.
    cache_key_from_inputs: ClassVar[bool] = True
    # read(paths, decoded=...) resumes from each file's cached decode (a file that grew is decoded from its old end).
    incremental_decode: ClassVar[bool] = True

    def sniff(self, path: Path) -> bool:
        """Only the name: every TensorBoard writer names its files ``events.out.tfevents.*``."""
        return "tfevents" in path.name and path.is_file()

    def run_root(self, path: Path) -> Path:
        """``output_dir`` for the HF layout ``output_dir/runs/<date_host>/events...``, else the file's folder.

        Why go up past ``runs/``: a resumed transformers run logs to a new ``runs/<date_host>`` folder, and
        the output_dir is also where its train.log and trainer_state.json live, so it names the run.
        """
        folder = path.parent
        if folder.parent.name == "runs":
            return folder.parent.parent
        return folder

    def label(self, path: Path) -> str:
        """The file's name relative to its run root, for notes and ``beta_source``."""
        try:
            return path.relative_to(self.run_root(path)).as_posix()
        except ValueError:  # pragma: no cover - run_root is always an ancestor
            return path.name

    def read(self, paths: list[Path], decoded: Callable[[Path], FileDecode] | None = None) -> ReadResult:
        """Read all event files of one run, oldest name first, into one frame.

        The records are decoded by :mod:`.decode` (numpy for the usual scalar record, protobuf for the rest); the
        result is exactly :meth:`read_reference`'s. ``decoded`` maps a file to its :class:`~.decode.FileDecode`
        (the cache passes one that reuses earlier reads).
        """
        if not paths:
            raise ReadError("no event files given")
        files = sorted(paths, key=order_key)
        decode = decoded or decode_file
        decodes = [decode(path) for path in files]
        if any(d.damaged for d in decodes):
            # A damaged file: the reference decode resynchronises past corrupt headers and names the byte offset of
            # every bad record. Damage is rare, so its speed does not matter.
            return self.read_reference(files)
        if all(d.size == 0 for d in decodes):
            raise ReadError(EMPTY, files[0] if len(files) == 1 else files[0].parent)
        return assemble(files, [self.label(p) for p in files], decodes)

    def read_reference(self, paths: list[Path]) -> ReadResult:
        """:meth:`read` with protobuf parsing every record and the framing walked one record at a time: the
        definition the fast path is tested against (``tests/test_speed_paths.py``)."""
        if not paths:
            raise ReadError("no event files given")
        files = sorted(paths, key=order_key)
        decodes = [decode_reference(_read_bytes(path), path) for path in files]
        return assemble(files, [self.label(p) for p in files], decodes)

    def follow(self) -> TensorBoardFollower:
        """A follower for ``dpodoctor watch``: each update decodes only the records appended since the last."""
        return TensorBoardFollower(self)


class TensorBoardFollower:
    """The event files of one run folder, each followed from the end of its last complete record.

    Why offsets and not a re-read: a live view polls every few seconds, and re-reading a long run's file each time
    would cost more as the run grows. TFRecord framing makes the boundary exact: a record the writer has only half
    flushed is read again, whole, next time. Results come from the same assembler as :meth:`TensorBoardReader.read`,
    so a live view says what ``check`` says of the same bytes, a cut last record included (reported truncated).
    """

    def __init__(self, reader: TensorBoardReader) -> None:
        self.reader = reader
        self.decodes: dict[Path, FileDecode] = {}

    def offset(self, path: Path) -> int:
        """Where the next update of ``path`` starts reading (the end of its last complete record)."""
        decode = self.decodes.get(path)
        return decode.consumed if decode is not None else 0

    def update(self, files: list[Path]) -> bool:
        """Decode what each file gained since the last update; True when anything changed. A file shorter than what
        was read (rewritten, or replaced by a new run) is read again from the start. Raises :class:`ReadError` when
        a file cannot be read or is not an event file."""
        changed = False
        for path in files:
            old = self.decodes.get(path)
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
            if old is not None and size == old.size:
                continue
            if old is None or size < old.consumed:
                self.decodes[path] = decode_file(path)
            else:
                self.decodes[path] = old.extend(decode_file(path, start=old.consumed))
            changed = True
        for path in set(self.decodes) - set(files):
            del self.decodes[path]
            changed = True
        return changed

    def results(self) -> list[ReadResult]:
        """The run as read so far. Raises :class:`NoMetricsError` while no file holds a scalar yet."""
        files = sorted(self.decodes, key=order_key)
        if not files:
            raise NoMetricsError("no event files yet")
        decodes = [self.decodes[path] for path in files]
        try:
            if any(d.damaged for d in decodes):
                return [self.reader.read_reference(files)]
            return [assemble(files, [self.reader.label(p) for p in files], decodes)]
        except NoMetricsError:
            raise
        except ReadError as exc:
            if exc.reason.startswith("no scalar summaries found"):
                raise NoMetricsError(exc.reason, exc.path) from exc
            raise


def read_args_config(path: Path, max_bytes: int = 4 << 20) -> dict[str, Any] | None:
    """The config JSON of a file's first ``args`` text summary, reading at most ``max_bytes`` from the start.

    Why a separate, bounded read: transformers writes the args summary right after the file header, so when
    another source of the same run (its stdout log) lacks β, the first records of the event file are enough.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes)
    except OSError:
        return None
    try:
        decode = decode_event_bytes(data, path)
        if decode.damaged:
            decode = decode_reference(data, path)
    except ReadError:
        return None
    if not decode.args:
        return None
    return parse_args_text(decode.args[0], path.name, [])
