"""Finding the runs under the paths a user gives.

Why a separate step: readers only know formats. Deciding that ``out/runs/<date>/events...``, ``out/train.log`` and
``out/swanlog/...`` are one run, which source to read for it, and what to call it, is the same for every reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers import READERS, Reader, reader_for


@dataclass
class RunSource:
    """The files to read for one run, with the reader that reads them and the other sources found beside them."""

    name: str
    root: Path
    reader: Reader
    files: list[Path]
    others: list[Path] = field(default_factory=list)
    explicit: bool = False  # the user named the file itself


def _walk(top: Path) -> list[Path]:
    """Every regular file below ``top``, sorted, not following symlinked folders (so loops cannot hang us)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return [p for p in found if p.is_file()]


def _name(root: Path, arg: Path) -> str:
    try:
        rel = root.resolve().relative_to(arg.resolve())
    except ValueError:
        return root.name or str(root)
    return str(rel) if str(rel) != "." else (arg.resolve().name or str(arg))


def _primary(reader: Reader, files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Which of a reader's files make up the run. Multi-file formats (TensorBoard: resumed runs) read them all;
    single-file formats read the one outside tool folders such as swanlog/, then the largest."""
    if getattr(reader, "multi_file", False):
        return files, []
    ranked = sorted(files, key=lambda p: ("swanlog" in p.parts, -p.stat().st_size, str(p)))
    return ranked[:1], ranked[1:]


def discover(paths: list[Path]) -> list[RunSource]:
    """Group the files under ``paths`` into runs. Raises DpoDoctorError for a path that does not exist."""
    sources: list[RunSource] = []
    for arg in paths:
        if not arg.exists():
            raise DpoDoctorError("no such file or directory", arg)
        if arg.is_file():
            reader = reader_for(arg)
            if reader is None:
                known = ", ".join(r.name for r in READERS)
                raise DpoDoctorError(f"not a log format dpodoctor reads (known: {known})", arg)
            sources.append(RunSource(_name(reader.run_root(arg), arg.parent), arg.parent, reader, [arg], explicit=True))
            continue
        groups: dict[Path, dict[str, list[Path]]] = {}
        for path in _walk(arg):
            reader = reader_for(path)
            if reader is not None:
                groups.setdefault(reader.run_root(path), {}).setdefault(reader.name, []).append(path)
        for root in sorted(groups):
            by_reader = groups[root]
            best = next(r for r in READERS if r.name in by_reader)
            used, unused = _primary(best, by_reader[best.name])
            others = unused + [p for name, files in by_reader.items() if name != best.name for p in files]
            sources.append(RunSource(_name(root, arg), root, best, used, sorted(others)))
    return sources
