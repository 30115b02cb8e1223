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

from dpodoctor.readers.swanlab import config, framing, wire
from dpodoctor.readers.swanlab.export import SwanLabExportReader
from dpodoctor.readers.swanlab.rundir import SwanLabReader

__all__ = ["SwanLabExportReader", "SwanLabReader", "config", "framing", "wire"]
