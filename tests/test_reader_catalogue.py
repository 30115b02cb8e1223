"""The reader catalogue (``dpodoctor.readers.BUILT_IN``) says of each built-in reader what the reader itself says.

Why: the registry imports a built-in reader's module only when a file's name passes the catalogue's name test, so a
name test narrower than the reader's ``sniff``, or a priority that differs from the class's, would silently change
which reader reads a file. Checked against the readers themselves, with every module imported, on every fixture file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpodoctor.readers import BUILT_IN, NO_READER, READERS, get_reader

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for top in ("tests/fixtures", "examples") for p in (ROOT / top).rglob("*") if p.is_file())


@pytest.mark.parametrize("listed", BUILT_IN, ids=lambda listed: listed.name)
def test_catalogue_entry_is_what_the_reader_says(listed: object) -> None:
    reader = get_reader(listed.name)  # type: ignore[attr-defined]
    assert type(reader).__module__ == f"dpodoctor.readers.{listed.module}"  # type: ignore[attr-defined]
    assert reader.priority == listed.priority  # type: ignore[attr-defined]
    assert tuple(getattr(reader, "tool_folders", ())) == listed.tool_folders  # type: ignore[attr-defined]


def test_registry_order_is_richest_first_and_names_are_unique() -> None:
    priorities = [r.priority for r in READERS]
    assert priorities == sorted(priorities, reverse=True)
    names = [r.name for r in READERS]
    assert len(names) == len(set(names))
    assert names[: len(BUILT_IN)] == [listed.name for listed in BUILT_IN]


@pytest.mark.parametrize("listed", BUILT_IN, ids=lambda listed: listed.name)
def test_name_test_accepts_every_fixture_file_the_reader_sniffs(listed: object, tmp_path: Path) -> None:
    # Generic JSON lines have no fixture run of their own (their tests write them): three spellings of one here.
    lines = '{"step": 1, "loss": 0.69, "rewards/margins": 0.0}\n{"step": 2, "loss": 0.6, "rewards/margins": 0.1}\n'
    extra = [tmp_path / name for name in ("m.jsonl", "M.NDJSON", "metrics.json")]
    for path in extra:
        path.write_text(lines, encoding="utf-8")
    reader = get_reader(listed.name)  # type: ignore[attr-defined]
    sniffed = [p for p in [*FILES, *extra] if reader.sniff(p)]
    refused = [p for p in sniffed if not listed.claims(p)]  # type: ignore[attr-defined]
    assert not refused, refused[:5]
    assert sniffed, "no file of this format to check the name test on"


def test_importing_the_registry_imports_no_reader_and_helpers_register_none() -> None:
    code = (
        "import importlib, json, sys\n"
        "import dpodoctor.readers as r\n"
        "before = sorted(m for m in sys.modules if m.startswith('dpodoctor.readers.'))\n"
        "for name in sorted(r.NO_READER):\n"
        "    importlib.import_module('dpodoctor.readers.' + name)\n"
        "print(json.dumps({'before': before, 'names': [e.name for e in r.READERS], "
        "'loaded': [e.name for e in r.READERS if getattr(e, 'instance', True) is not None]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout)
    assert out["before"] == []  # no reader module until a file needs it
    assert out["names"] == [listed.name for listed in BUILT_IN]  # the helpers registered nothing
    assert len(NO_READER) == 6
