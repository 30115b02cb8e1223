"""Reading one source into runs: the one path from a discovered source to :class:`~dpodoctor.model.Run`.

Why a module of its own: ``api`` (check, load), ``sweep`` (workers and the cache), ``live`` (watch) and the cache all
turn a reader's result into a Run the same way: the same fallback to the next source of the folder, the same names,
the same metric renaming, the same β lookup. Kept here, below all of them, so none imports another to reach it and
there is no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpodoctor.discovery import RunSource, primary_files
from dpodoctor.errors import DpoDoctorError, ReadError
from dpodoctor.model import NO_FRAME_YET, FrameLoader, LazyRun, Run, make_frame, points_in
from dpodoctor.readers import READERS, LazyReadResult, Reader, ReadResult, read_runs, reader_for
from dpodoctor.readers.hparams import find_beta, find_loss_settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FrameLoader", "LazyReadResult", "LazyRun", "PathArg", "Paths", "as_paths", "read_source", "run_from_result"]

PathArg = str | os.PathLike[str]
# What every function that takes paths accepts: one path (str or PathLike) or an iterable of them.
Paths = PathArg | Iterable[PathArg]


def as_paths(paths: Paths) -> list[Path]:
    """``paths`` as a list of :class:`Path`: one ``str``/``PathLike`` is one path, not an iterable of characters.

    Why: ``check("runs/")`` reads naturally, and iterating the string would walk ``r``, ``u``, ... and ``/``.
    """
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    if isinstance(paths, bytes):
        raise DpoDoctorError(f"paths must be str or os.PathLike, not bytes ({paths!r})")
    out = []
    for path in paths:
        if not isinstance(path, str | os.PathLike):
            raise DpoDoctorError(f"paths must be str or os.PathLike, not {type(path).__name__} ({path!r})")
        out.append(Path(path))
    return out


def read_source(
    source: RunSource,
    metric_map: dict[str, str] | None = None,
    read: Callable[[Reader, list[Path]], list[ReadResult]] = read_runs,
) -> list[Run]:
    """The runs of one source; when its files cannot be read, those of the next source in the same folder."""
    try:
        results = read(source.reader, source.files)
    except ReadError as exc:
        fallback = _fall_back(source, exc, read)
        if fallback is None:
            raise
        source, results = fallback
    return [run_from_result(source, result, metric_map) for result in results]


def _fall_back(
    source: RunSource, failed: ReadError, read: Callable[[Reader, list[Path]], list[ReadResult]]
) -> tuple[RunSource, list[ReadResult]] | None:
    """The next richest source of the run that reads, with a note saying what failed and what was read instead.

    Why: a run folder often holds the same metrics twice (trainer_state.json and the train.log of the console); a
    trainer killed while saving leaves the first unreadable while the second is whole. None when no other source
    of the folder reads (the first error stands).
    """
    by_reader: dict[str, list[Path]] = {}
    for path in source.others:
        reader = reader_for(path)
        if reader is not None and reader.name != source.reader.name:
            by_reader.setdefault(reader.name, []).append(path)
    for reader in READERS:
        if reader.name not in by_reader:
            continue
        used, unused = primary_files(reader, by_reader[reader.name])
        try:
            results = read(reader, used)
        except ReadError:
            continue
        what = failed.path or (source.files[0] if source.files else source.root)
        note = f"{what}: {failed.reason}; read {', '.join(map(str, used))} ({reader.name}) instead"
        for result in results:
            result.notes.insert(0, note)
        others = sorted({*source.files, *unused, *(p for p in source.others if p not in used)})
        return replace(source, reader=reader, files=used, others=others), results
    return None


def run_from_result(
    source: RunSource,
    result: ReadResult,
    metric_map: dict[str, str] | None = None,
    find: Callable[[RunSource], tuple[float, str] | None] = lambda source: find_beta(
        source.root, source.others, source.files
    ),
) -> Run:
    """The :class:`Run` of one reader result: named after its source, metrics renamed by ``metric_map``, and β
    looked up beside the logs (``find``) when the logs did not state it, and so are the loss settings of a launch
    YAML (LLaMA-Factory's ``pref_loss``, which none of its logs records) when the logs name no loss. ``watch`` builds
    its runs here too, so a live run is the run ``check`` would report."""
    beta, beta_source = result.beta, result.beta_source
    if beta is None and (found := find(source)) is not None:
        beta, beta_source = found
    config, notes = result.config, result.notes
    if not {"loss_type", "pref_loss"} & config.keys() and (launch := find_loss_settings(source.root)) is not None:
        settings, where = launch
        config = {**settings, **config}  # what the logs themselves say wins
        shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "stage")
        notes = [*notes, f"loss settings from {where} beside the logs: {shown}"]
    fields = _run_fields(source, result, beta, beta_source, config, notes)
    if isinstance(result, LazyReadResult):
        # The run shares the result's points and frame loader (the frame is built once, for both, when first read).
        state = result.__dict__
        points = points_in(state) if metric_map else None  # resolved only to rename: a warm check reads no point
        if metric_map and points is not None:
            run: Run = LazyRun(frame=NO_FRAME_YET, **fields)
            run.defer(None, points.renamed(metric_map))  # type: ignore[attr-defined]
            return run
        if not metric_map:
            run = LazyRun(frame=NO_FRAME_YET, **fields)
            run.__dict__.update({k: state[k] for k in ("_frame", "_frame_loader", "_points") if k in state})
            return run
    frame = _rename_metrics(result.frame, metric_map) if metric_map else result.frame
    return Run(frame=frame, **fields)


def _run_fields(
    source: RunSource,
    result: ReadResult,
    beta: float | None,
    beta_source: str | None,
    config: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    """Every field of the run of ``result`` but its frame."""
    return dict(
        name=f"{source.name}#{result.label}" if result.label else source.name,
        path=source.files[0] if source.explicit else source.root,
        source=source.reader.name,
        beta=beta,
        beta_source=beta_source,
        ended=result.ended,
        steps_derived=result.steps_derived,
        summary=result.summary,
        config=config,
        notes=notes,
        other_sources=source.others,
    )


def _rename_metrics(frame: pd.DataFrame, metric_map: dict[str, str]) -> pd.DataFrame:
    """Apply the user's ``--metric-map key=canonical``: a key the built-in table does not know keeps its own name
    in the frame, so renaming it afterwards maps it without touching any reader."""
    if not metric_map or frame.empty:
        return frame
    renamed = frame.copy()
    names = renamed["metric"].astype(str).map(lambda m: metric_map.get(m, m))
    renamed["metric"] = names
    return make_frame(renamed["split"].astype(str), names, renamed["step"], renamed["value"], renamed["wall_time"])
