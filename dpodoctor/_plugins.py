"""Importing every module of one of our own packages, so a reader or a rule family registers itself by existing.

Why a module of its own: it is the one place in dpodoctor that imports a module by a computed name, so the source scan
(tests/bad_inputs/test_injection.py) allows exactly this file. The names come only from the package's own folder
(``pkgutil.iter_modules`` over its ``__path__``), never from a log, a config or the command line.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Collection, Iterable


def import_submodules(package: str, path: Iterable[str], skip: Collection[str] = ()) -> None:
    """Import every module and subpackage of ``package`` (found in its ``__path__``), sorted by name so the order of
    registration never depends on the file system; names starting with ``_`` are private helpers and skipped, and so
    are the names in ``skip`` (modules the package imports itself when needed: the reader catalogue's)."""
    for module in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if not module.name.startswith("_") and module.name not in skip:
            importlib.import_module(f"{package}.{module.name}")


def import_own(package: str, name: str) -> None:
    """Import the module ``name`` of our own ``package`` (a name written in dpodoctor's source: the reader
    catalogue's, :data:`dpodoctor.readers.BUILT_IN`), when the registry first needs that reader."""
    importlib.import_module(f"{package}.{name}")
