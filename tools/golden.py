"""Snapshot every fixture's JSON report, so a change meant to keep behaviour can prove that it did.

Why: restructuring (readers split into packages, settings typed, the cache's serializer replaced) and speed work must
leave every verdict, step, number and message as it was. `tests/test_golden_reports.py` compares each fixture's
report with the snapshot in `tests/fixtures/golden/`; a change that means to alter a report regenerates it with

    python -m tools.golden --update

and the diff of `tests/fixtures/golden/` in the commit shows, and reviews, exactly what changed.

Cases: every run folder under the fixture groups (checked as a user would, so discovery picks the source), plus each
other source found beside a run (`train.log`, `trainer_state.json`, `swanlog/`, tracker folders) checked on its own, so
every reader's output is pinned and not only the preferred one's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
GROUPS = ("trl", "corpus", "diagnosis", "swanlab", "trackers")


def cases() -> list[Path]:
    """The fixture paths whose reports are pinned, relative to the repository root, sorted."""
    from dpodoctor.discovery import discover

    found: set[Path] = set()
    for group in GROUPS:
        base = FIXTURES / group
        if not base.is_dir():
            continue
        for case in sorted(p for p in base.iterdir() if p.is_dir()):
            found.add(case)
            for source in discover([case], []):
                # Each other source once, by its top-level entry in the case folder (a whole swanlog/, not every
                # file inside it), so each reader is pinned without a snapshot per chunk file.
                for other in source.others:
                    if other.exists() and other.is_relative_to(case):
                        found.add(case / other.relative_to(case).parts[0])
    return sorted(p.relative_to(ROOT) for p in found)


def golden_name(case: Path) -> str:
    """The snapshot's file name: the path below tests/fixtures with / turned into __."""
    return "__".join(case.relative_to("tests/fixtures").parts) + ".json"


def report_of(case: Path) -> dict[str, Any]:
    """The JSON document of ``dpodoctor check CASE`` (no project config, no cache), or the error it raised."""
    import dpodoctor
    from dpodoctor.errors import DpoDoctorError

    try:
        return dpodoctor.check([case], use_config=False, cache=False, jobs=1).to_dict()
    except DpoDoctorError as exc:
        return {"error": str(exc)}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the snapshots (and delete stale ones)")
    args = parser.parse_args(argv)
    import os

    os.chdir(ROOT)  # reports carry paths relative to the checkout
    wanted = {golden_name(c): c for c in cases()}
    changed = 0
    GOLDEN.mkdir(exist_ok=True)
    for name, case in wanted.items():
        text = render(report_of(case))
        target = GOLDEN / name
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old != text:
            changed += 1
            print(f"{'updated' if args.update else 'differs'}: {case}")
            if args.update:
                target.write_text(text, encoding="utf-8")
    for stale in sorted(set(p.name for p in GOLDEN.glob("*.json")) - set(wanted)):
        changed += 1
        print(f"{'removed' if args.update else 'stale'}: {stale}")
        if args.update:
            (GOLDEN / stale).unlink()
    print(f"{len(wanted)} cases, {changed} {'updated' if args.update else 'differ'}")
    return 0 if args.update or not changed else 1


if __name__ == "__main__":
    sys.exit(main())
