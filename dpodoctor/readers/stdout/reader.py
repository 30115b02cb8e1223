"""The registered stdout reader, and the live tail of one console log (``StdoutReader.follow``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

from dpodoctor.errors import ReadError
from dpodoctor.readers import ReadResult, register, wandb_run
from dpodoctor.readers.stdout import scan as scan_module
from dpodoctor.readers.stdout.pasted import sniff_content
from dpodoctor.readers.stdout.runs import results_from_scan
from dpodoctor.readers.stdout.scan import ChunkFeeder, scan_file
from dpodoctor.readers.stdout_config import apply_text_config

__all__ = ["StdoutFollower", "StdoutReader", "StdoutTail", "read_file_runs"]

_SUFFIXES: Final = frozenset({".log", ".out", ".txt"})


def read_file_runs(path: Path) -> list[ReadResult]:
    """Every run in one file: dict lines first, else a step table, else `name: value` lines; with the settings
    (β, loss type) the text states."""
    scan = scan_file(path)
    results = results_from_scan(scan, path, release=True)  # the scan is not read again
    size = scan.size
    del scan
    if size >= scan_module.TRIM_AFTER:
        scan_module.return_freed_heap()  # what the scan and the frame build freed, before the diagnosis runs
    apply_text_config(results, path)
    return results


@register
class StdoutReader:
    """Reads captured stdout/stderr: metric dicts printed amid tqdm output, a printed step table, or the
    `name: value` lines of a custom training loop."""

    name: ClassVar[str] = "stdout"
    priority: ClassVar[int] = 10

    def sniff(self, path: Path) -> bool:
        """By name for ``*.log``/``*.out``/``*.txt``/``stdout*`` (console captures have no magic bytes); any other
        file by a bounded look at its first bytes (:func:`~dpodoctor.readers.stdout.pasted.sniff_content`: a log pasted
        into a ``.md`` or the comments of a ``.py``).

        SwanLab's own files under ``swanlog/`` (metric logs ``logs/*/*.log``, ``debug.log``) and W&B's
        (``debug*.log``, ``files/requirements.txt``) are not console output and are refused; only their console
        captures are read.
        """
        parts = path.parts
        if "swanlog" in parts and "console" not in parts[parts.index("swanlog") :]:
            return False
        if wandb_run.is_wandb_internal_log(path):
            return False
        if path.suffix.lower() not in _SUFFIXES and not path.name.lower().startswith("stdout"):
            return sniff_content(path)
        return path.is_file()

    def run_root(self, path: Path) -> Path:
        """The file's folder, except that SwanLab's console capture (``<run>/swanlog/run-*/console/*.log``)
        belongs to ``<run>``: it duplicates the train.log written there. W&B's (``files/output.log``) belongs to
        the run of its record file.

        A SwanLab run folder copied or renamed away from ``swanlog/`` (``<any>/run-*/console/*.log``, known by its
        ``files/swanlab-metadata.json``) keeps its console capture, debug log and files with that run folder, which
        is the SwanLab reader's run too: one run, not a second, stdout one.
        """
        if (root := wandb_run.console_root(path)) is not None:
            return root
        for parent in path.parents:
            if parent.name == "swanlog":
                return parent.parent
        run = path.parent.parent
        if run.name.startswith("run-") and (run / "files" / "swanlab-metadata.json").is_file():
            return run
        return path.parent

    def read(self, paths: list[Path]) -> ReadResult:
        """The first run of the richest log (see read_runs); when the file holds several runs, a note says so.

        Why the first and not an error: a caller that wants one run still gets a correct one, and discovery calls
        read_runs, which returns them all.
        """
        runs = self.read_runs(paths)
        first = runs[0]
        if len(runs) > 1:
            first.notes.append(
                f"the file holds {len(runs)} runs appended one after another; this is the first "
                "(read_runs returns each)"
            )
        return first

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """Every run of the log; given several logs (a train.log and its SwanLab console copy), the one with most
        rows, its runs labelled ``run1``, ``run2``, ... when it holds more than one.

        Why not concatenate: the stdout files of one run folder are copies of each other far more often than
        consecutive pieces, and merging copies would only duplicate points.
        """
        if not paths:
            raise ReadError("no files given to the stdout reader")
        found: list[tuple[Path, list[ReadResult]]] = []
        first_error: ReadError | None = None
        for path in map(Path, paths):
            try:
                found.append((path, read_file_runs(path)))
            except ReadError as exc:
                first_error = first_error or exc
        if not found:
            assert first_error is not None
            raise first_error
        found.sort(key=lambda item: (-sum(len(r.frame) for r in item[1]), "swanlog" in item[0].parts))
        best_path, best = found[0]
        if len(found) > 1:
            skipped = ", ".join(str(p) for p, _ in found[1:])
            for result in best:
                result.notes.append(f"read {best_path}; also found {skipped} (same run, not read)")
        return best

    def follow(self) -> StdoutFollower:
        """A follower for ``dpodoctor watch``: reads only the lines appended since the last update."""
        return StdoutFollower()


class StdoutTail:
    """Follows one console log that a running trainer is still writing: each :meth:`poll` scans only the bytes
    appended since the last one.

    Why it can: the scan behind :class:`StdoutReader` is fed chunk by chunk and keeps parsed records, never text, so
    it can simply be fed more later, through the same chunk loop (:class:`~.scan.ChunkFeeder`). Steps are derived
    again from the records (cheap: no text is re-read), since a later progress bar can settle the step of an
    earlier dict.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self._feeder = ChunkFeeder()

    def poll(self) -> int:
        """Scan the complete lines appended since the last poll; returns the number of bytes read.

        A file that became shorter than what was read (rewritten, or a new run started with ``>``) is scanned again
        from the start. Raises :class:`ReadError` when it cannot be read.
        """
        try:
            if self.path.stat().st_size < self.offset:
                self._reset()
            read = 0
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                while raw := handle.read(scan_module.CHUNK):
                    read += len(raw)
                    self._feeder.push(raw)
        except OSError as exc:
            raise ReadError(f"cannot read the file: {exc.strerror or exc}", self.path) from exc
        self.offset += read
        return read

    def results(self) -> list[ReadResult]:
        """Every run in the lines scanned so far, as ``StdoutReader.read_runs`` would give them for this file.

        Raises :class:`NoMetricsError` while no metric line has arrived yet.
        """
        scan = self._feeder.scan
        scan.thinning.finish(scan)  # the lines read since the last thinning pass, thinned as the rest
        results = results_from_scan(scan, self.path)
        apply_text_config(results, self.path)
        return results


class StdoutFollower:
    """Live following of one run's console log (the reader's ``follow()``): a :class:`StdoutTail` per file, reading
    from the offset each file was read to. Discovery may later pick a different, larger copy of the same run (a
    train.log beside its SwanLab console capture); the tail of each file is kept, so switching costs no re-read.
    """

    def __init__(self) -> None:
        self.tails: dict[Path, StdoutTail] = {}
        self.current: Path | None = None

    def update(self, files: list[Path]) -> bool:
        """Read what is new in the first file (the one discovery ranks first); True when something changed."""
        path = files[0]
        tail = self.tails.get(path)
        if tail is None:
            tail = self.tails[path] = StdoutTail(path)
        switched = path != self.current
        self.current = path
        return tail.poll() > 0 or switched

    def results(self) -> list[ReadResult]:
        """The runs of the followed file; raises ReadError/NoMetricsError like ``read_runs``."""
        if self.current is None:
            raise ReadError("the stdout follower was asked for results before any file was given")
        return self.tails[self.current].results()
