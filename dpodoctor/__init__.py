"""dpodoctor: read the logs a DPO training run wrote and say whether the run was healthy.

The Python API is the CLI's API::

    import dpodoctor
    report = dpodoctor.check(["runs/"])          # -> Report, .exit_code as the CLI would exit
    runs = dpodoctor.load("runs/healthy")         # -> list[Run], each a tidy frame plus metadata
    findings = dpodoctor.diagnose(runs[0])        # -> list[Finding]

The names below are imported on first use (PEP 562), so ``import dpodoctor`` and the CLI's commands that read no
logs (``rules``, ``explain``, ``--help``) stay free of pandas and of the readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpodoctor._version import __version__
from dpodoctor.errors import DpoDoctorError, ReadError

if TYPE_CHECKING:
    from dpodoctor.api import check, diagnose, load, load_all
    from dpodoctor.checks import RULES
    from dpodoctor.model import Ended, Run
    from dpodoctor.report import Report
    from dpodoctor.results import Finding, RunReport, Severity

__all__ = [
    "RULES",
    "DpoDoctorError",
    "Ended",
    "Finding",
    "ReadError",
    "Report",
    "Run",
    "RunReport",
    "Severity",
    "__version__",
    "check",
    "diagnose",
    "load",
    "load_all",
]

_API = frozenset({"check", "diagnose", "load", "load_all"})
_MODEL = frozenset({"Ended", "Run"})
_RESULTS = frozenset({"Finding", "RunReport", "Severity"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from dpodoctor import api as home
    elif name in _MODEL:
        from dpodoctor import model as home  # type: ignore[no-redef]
    elif name in _RESULTS:
        from dpodoctor import results as home  # type: ignore[no-redef]
    elif name == "Report":
        from dpodoctor import report as home  # type: ignore[no-redef]
    elif name == "RULES":
        from dpodoctor import checks as home  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'dpodoctor' has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
