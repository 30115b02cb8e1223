"""The one error type dpodoctor raises on purpose.

Why one type: the CLI turns it into a one-line message and exit code 2, and anything else reaching the top level is
an internal bug. Readers must raise only this (with the file and the reason) on bad input.
"""

from __future__ import annotations

from pathlib import Path


class DpoDoctorError(Exception):
    """Bad input or bad usage: names the file (when there is one) and the reason, in one line."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class ReadError(DpoDoctorError):
    """A log file could not be read or parsed."""


class NoMetricsError(ReadError):
    """A file in a known container format that holds no DPO metrics.

    Why a subclass: when the user names the file it is an error, but a ``notes.txt`` met while walking a sweep
    folder is simply not a log, and the walk lists it as ignored instead of failing the check.
    """
