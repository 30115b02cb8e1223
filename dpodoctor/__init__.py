"""dpodoctor: read the logs a DPO training run wrote and say whether the run was healthy.

The Python API is the CLI's API::

    import dpodoctor
    report = dpodoctor.check(["runs/"])          # -> Report, .exit_code as the CLI would exit
    runs = dpodoctor.load("runs/healthy")         # -> list[Run], each a tidy frame plus metadata
    findings = dpodoctor.diagnose(runs[0])        # -> list[Finding]
"""

from dpodoctor._version import __version__
from dpodoctor.api import check, diagnose, load, load_all
from dpodoctor.checks import RULES
from dpodoctor.errors import DpoDoctorError, ReadError
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
