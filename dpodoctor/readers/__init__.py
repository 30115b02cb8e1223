"""The reader registry.

Each reader knows one log format and nothing about DPO. It offers a cheap ``sniff(path)`` (name and first bytes
only), says which run folder a file belongs to (``run_root``), and turns the files of one run into a
:class:`ReadResult` whose frame is the canonical tidy table. Adding a format is one module that calls
:func:`register`, plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pandas as pd

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

    # Optional: a reader whose files can hold several runs (runs appended to one stdout file, a multi-experiment
    # export) also defines ``read_runs(paths) -> list[ReadResult]``, each result with a distinct ``label``.
    # Discovery calls it when present; see :func:`read_runs`.


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


# Importing the modules registers them.
from dpodoctor.readers import (  # noqa: E402, F401
    csvlog,
    jsonl,
    llamafactory,
    mlflow_store,
    stdout,
    swanlab,
    tensorboard,
    trackio_db,
    trainer_state,
    wandb_run,
)
