"""Finding the runs under the paths a user gives.

Why a separate step: readers only know formats. Deciding that ``out/runs/<date>/events...``, ``out/train.log`` and
``out/swanlog/...`` are one run, which source to read for it, and what to call it, is the same for every reader.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers import READERS, Reader, loaded, reader_for, tool_folders


@dataclass
class RunSource:
    """The files to read for one run, with the reader that reads them and the other sources found beside them."""

    name: str
    root: Path
    reader: Reader
    files: list[Path]
    others: list[Path] = field(default_factory=list)
    explicit: bool = False  # the user named the file itself


# What each kind of file would need to hold to be read, so a refusal names what is missing.
_MISSING_BY_SUFFIX = {
    ".json": "no per-step metrics (a trainer_state.json log_history, a raw_log_history, a SwanLab metrics export, or "
    "JSON lines with a step); a file of end-of-training totals such as train_results.json has none",
    ".jsonl": "no JSON lines with a step (or current_steps) and a DPO metric",
    ".csv": "no step column next to a DPO metric column (or a SwanLab export header)",
    ".tsv": "not a format dpodoctor reads (CSV needs commas and a step column)",
}


def _refusal(path: Path) -> str:
    """One line saying why an explicitly named file is not read."""
    known = ", ".join(r.name for r in READERS)
    missing = _MISSING_BY_SUFFIX.get(path.suffix.lower())
    if missing:
        return f"not read: {missing} (formats read: {known})"
    return f"not a log format dpodoctor reads (formats read: {known})"


def _walk(top: Path, warnings: list[str], visited: set[str] | None = None) -> list[Path]:
    """Every readable regular file below ``top``, sorted. Symlinked folders are followed once each (a sweep's
    ``latest -> run-7`` link is common) and a folder already seen is skipped, so a symlink loop cannot hang the
    walk. Unreadable folders and files and broken links are skipped with a warning naming them. ``visited``
    collects every folder and file the walk looked at (what a cached result of the walk depends on)."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def onerror(exc: OSError) -> None:
        warnings.append(f"{exc.filename}: skipped, cannot list folder ({exc.strerror or exc})")

    for dirpath, dirnames, filenames in os.walk(top, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            warnings.append(f"{dirpath}: skipped ({exc.strerror or exc})")
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            warnings.append(f"{dirpath}: skipped, a symlink loop or a second link to a folder already walked")
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        if visited is not None:
            visited.add(dirpath)
            visited.update(os.path.join(dirpath, name) for name in filenames)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                _classify(path, found, warnings)
            except OSError as exc:  # /proc and other special trees refuse even a stat of some entries
                warnings.append(f"{path}: skipped ({exc.strerror or exc})")
    return found


def _dedupe(files: list[Path], seen: dict[tuple[int, int], Path], warnings: list[str]) -> list[Path]:
    """``files`` without those that are the same file as one already kept (a symlink or hard link to it, here or
    under an earlier path): ``ln -s run1/trainer_state.json link.json`` must not make a second run.

    Where one file is reached under several names, the name that is not a symlink is kept (the run is named after
    its real folder); the others are skipped with a warning naming the file they repeat. Order is kept.
    """
    identity: dict[Path, tuple[int, int]] = {}
    for path in files:
        try:
            st = os.stat(path)
        except OSError:  # vanished since the walk: the reader will say so
            continue
        identity[path] = (st.st_dev, st.st_ino)
    for path in sorted(identity, key=lambda p: (p.is_symlink(), len(p.parts), str(p))):
        seen.setdefault(identity[path], path)
    kept = []
    for path in files:
        key = identity.get(path)
        if key is not None and seen[key] != path:
            warnings.append(f"{path}: skipped, the same file as {seen[key]} (a link to it)")
            continue
        kept.append(path)
    return kept


def _classify(path: Path, found: list[Path], warnings: list[str]) -> None:
    """Add ``path`` to ``found`` when it is a readable regular file, else say in ``warnings`` why it is skipped."""
    if path.is_symlink() and not path.exists():
        warnings.append(f"{path}: skipped, broken symlink")
    elif path.is_file():
        if os.access(path, os.R_OK):
            found.append(path)
        else:
            warnings.append(f"{path}: skipped, permission denied")
    elif (kind := _special(path)) is not None:
        # Never opened: reading a FIFO blocks until a writer comes, a device may never end.
        warnings.append(f"{path}: skipped, not a regular file ({kind})")


def _sniff(path: Path, warnings: list[str]) -> Reader | None:
    """The reader for a walked file; a file that cannot be opened after all (a procfs entry, a file removed
    meanwhile) is skipped with a warning instead of ending the whole walk."""
    try:
        return reader_for(path)
    except OSError as exc:
        warnings.append(f"{path}: skipped ({exc.strerror or exc})")
        return None


def _special(path: Path) -> str | None:
    """What kind of non-regular, non-folder file ``path`` is (a FIFO, a device, a socket), or None (a folder, a
    regular file, or a path that vanished meanwhile). ``os.stat`` never opens the file, so it cannot block."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return None


def _size(path: Path) -> int:
    """The file's size; -1 when it vanished (or became unreadable) since the walk listed it."""
    try:
        return path.stat().st_size
    except OSError:
        return -1


class _Resolver:
    """``Path.resolve()`` (``os.path.realpath``) of many paths under the same folders, each folder resolved once.

    Why: realpath checks every component of a path for a link (one ``lstat`` each), and the runs of a sweep share all
    but their last one or two components: 600 runs cost 600 x 6 lstats where 600 + 6 do. A component is resolved
    as realpath resolves it (its folder's real path, then itself if it is a link), so the result is the same."""

    def __init__(self) -> None:
        self.known: dict[Path, Path] = {}

    def __call__(self, path: Path) -> Path:
        found = self.known.get(path)
        if found is not None:
            return found
        parent = path.parent
        if parent == path or path.name in ("", "..") or not path.is_absolute():
            real = path.resolve()  # the root, a ".." or a relative path: realpath itself
        else:
            candidate = self(parent) / path.name
            real = candidate.resolve() if os.path.islink(candidate) else candidate
        self.known[path] = real
        return real


def _name(root: Path, arg: Path, resolve: _Resolver | None = None) -> str:
    """The run's name: its folder relative to the path the user gave (``resolve``: a resolver shared by the runs
    under one path, so their common folders are resolved once)."""
    real = resolve or _Resolver()
    resolved = real(arg.absolute())
    try:
        rel = real(root.absolute()).relative_to(resolved)
    except ValueError:
        return root.name or str(root)
    return str(rel) if str(rel) != "." else (resolved.name or str(arg))


def primary_files(reader: Reader, files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Which of a reader's files make up the run. Multi-file formats (TensorBoard: resumed runs) read them all;
    single-file formats read the one outside the readers' tool folders (SwanLab's swanlog/ holds a copy of the
    console log), then the largest."""
    if getattr(reader, "multi_file", False):
        return files, []
    folders = tool_folders()
    ranked = sorted(files, key=lambda p: (not folders.isdisjoint(p.parts), -_size(p), str(p)))
    return ranked[:1], ranked[1:]


def discover(paths: list[Path], warnings: list[str] | None = None, visited: set[str] | None = None) -> list[RunSource]:
    """Group the files under ``paths`` into runs. Raises DpoDoctorError for a path that does not exist.

    Files and folders the walk had to skip are appended to ``warnings`` ("path: why"). ``visited`` collects every
    path given and every folder and file walked: the result depends on nothing else (but the files a reader's
    ``sniff`` opens, which the sweep cache records as they are opened).
    """
    warnings = [] if warnings is None else warnings
    sources: list[RunSource] = []
    seen_files: dict[tuple[int, int], Path] = {}  # (device, inode) -> the path a file is read under
    for arg in paths:
        if visited is not None:
            visited.add(str(arg))
        if not arg.exists():
            reason = "broken symlink" if arg.is_symlink() else "no such file or directory"
            raise DpoDoctorError(reason, arg)
        if not arg.is_dir() and (kind := _special(arg)) is not None:
            raise DpoDoctorError(f"not a regular file ({kind}): dpodoctor reads log files and folders", arg)
        if arg.is_file():
            if not os.access(arg, os.R_OK):
                raise DpoDoctorError("permission denied", arg)
            reader = reader_for(arg)
            if reader is None:
                raise DpoDoctorError(_refusal(arg), arg)
            if _dedupe([arg], seen_files, warnings) == []:
                continue
            sources.append(RunSource(_name(reader.run_root(arg), arg.parent), arg.parent, reader, [arg], explicit=True))
            continue
        groups: dict[Path, dict[str, list[Path]]] = {}
        for path in _dedupe(_walk(arg, warnings, visited), seen_files, warnings):
            reader = _sniff(path, warnings)
            if reader is not None:
                groups.setdefault(reader.run_root(path), {}).setdefault(reader.name, []).append(path)
        resolve = _Resolver()
        for root in sorted(groups):
            by_reader = groups[root]
            best = loaded(next(r for r in READERS if r.name in by_reader))
            used, unused = primary_files(best, by_reader[best.name])
            others = unused + [p for name, files in by_reader.items() if name != best.name for p in files]
            sources.append(RunSource(_name(root, arg, resolve), root, best, used, sorted(others)))
    return sources
