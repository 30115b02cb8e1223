"""SwanLab support: the run folders SwanLab writes (every on-disk layout from 0.4 to 0.10) and its export files.

Two readers, because they answer different questions about where a run is:

* :class:`~dpodoctor.readers.swanlab.rundir.SwanLabReader` (``swanlab``) reads ``<logdir>/run-*/``: the record
  file (``run-<id>.swanlab`` or ``backup.swanlab``), local mode's ``logs/`` and ``runs.swanlab``, and
  ``files/config.yaml`` for β.
* :class:`~dpodoctor.readers.swanlab.export.SwanLabExportReader` (``swanlab-export``) reads the CSV/JSON files
  SwanLab's cloud and API export, which stand alone.

Nothing here imports swanlab: the formats are decoded from their bytes (see :mod:`.framing` and :mod:`.wire`), so
reading a log needs neither the logger nor its protobuf runtime. The file-format reference with samples is
``tests/fixtures/swanlab/README.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpodoctor.readers.swanlab import config, framing, wire

if TYPE_CHECKING:
    from dpodoctor.readers.swanlab.export import SwanLabExportReader
    from dpodoctor.readers.swanlab.rundir import SwanLabReader

__all__ = ["SwanLabExportReader", "SwanLabReader", "config", "framing", "wire"]


def __getattr__(name: str) -> Any:
    """The two reader classes, imported on first use: the W&B reader (hence the stdout reader) uses this package's
    framing, wire and config modules, and must not import both SwanLab readers with them (the reader registry
    imports each reader's module when a file's name could be its, see dpodoctor.readers.BUILT_IN)."""
    if name == "SwanLabExportReader":
        from dpodoctor.readers.swanlab.export import SwanLabExportReader

        return SwanLabExportReader
    if name == "SwanLabReader":
        from dpodoctor.readers.swanlab.rundir import SwanLabReader

        return SwanLabReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
