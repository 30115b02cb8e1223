"""A cut ``trainer_state.json`` keeps every complete entry and says where it was cut; a run whose richest source
cannot be read falls back to the next one in its folder, and says so (issue 17, defect 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import api
from dpodoctor.errors import ReadError
from dpodoctor.model import Ended
from dpodoctor.readers import get_reader
from tests.conftest import TRL

STATE = (TRL / "healthy" / "trainer_state.json").read_bytes()
HISTORY = json.loads(STATE)["log_history"]


def _entry_ends(raw: bytes) -> list[int]:
    """The byte offset just after each log_history entry of a whole file (by decoding it entry by entry)."""
    text = raw.decode()
    decoder = json.JSONDecoder()
    pos = text.index("[", text.index('"log_history"')) + 1
    ends = []
    for _ in HISTORY:
        while text[pos] in " \n\t,":
            pos += 1
        _, pos = decoder.raw_decode(text, pos)
        ends.append(len(text[:pos].encode()))
    return ends


ENDS = _entry_ends(STATE)


def _read_cut(tmp_path: Path, cut: int) -> tuple[int, list[str], Ended]:
    path = tmp_path / "trainer_state.json"
    path.write_bytes(STATE[:cut])
    result = get_reader("trainer_state").read([path])
    steps = sorted({int(s) for s in result.frame["step"]})
    return len(steps), result.notes, result.ended


def test_a_file_cut_inside_log_history_keeps_the_complete_entries_and_says_where(tmp_path: Path) -> None:
    cut = (ENDS[9] + ENDS[10]) // 2  # inside the 11th entry
    kept, notes, ended = _read_cut(tmp_path, cut)
    expected_steps = {e["step"] for e in HISTORY[:10]}
    assert kept == len(expected_steps)
    last = max(expected_steps)
    assert notes[0] == (
        f"trainer_state.json: not valid JSON, cut at byte {cut}, inside log_history: kept the 10 complete entries "
        f"before byte {ENDS[9]}, the last at step {last}"
    )
    assert ended is Ended.TRUNCATED


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cut=st.integers(ENDS[0], len(STATE) - 1))
def test_every_entry_complete_before_the_cut_is_kept(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    kept, _, _ = _read_cut(tmp_path_factory.mktemp("cut"), cut)
    complete = sum(end <= cut for end in ENDS)
    assert kept == len({e["step"] for e in HISTORY[:complete]})


def test_a_file_cut_before_its_first_entry_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_bytes(STATE[: ENDS[0] - 5])
    with pytest.raises(ReadError, match="not valid JSON"):
        get_reader("trainer_state").read([path])


def test_an_unreadable_state_falls_back_to_the_train_log_beside_it(tmp_path: Path) -> None:
    run = tmp_path / "healthy"
    run.mkdir()
    shutil.copy(TRL / "healthy" / "train.log", run / "train.log")
    (run / "trainer_state.json").write_bytes(STATE[: ENDS[0] - 5])  # nothing complete to keep
    report = api.check([tmp_path], use_config=False)
    assert report.problems == []
    [result] = report.runs
    assert result.run.source == "stdout" and result.run.name == "healthy"
    assert result.run.notes[0].startswith(f"{run / 'trainer_state.json'}: not valid JSON")
    assert result.run.notes[0].endswith(f"; read {run / 'train.log'} (stdout) instead")
    assert run / "trainer_state.json" in result.run.other_sources
    assert len(result.run.frame) > 0


def test_without_another_source_the_first_error_stands(tmp_path: Path) -> None:
    (tmp_path / "trainer_state.json").write_bytes(STATE[: ENDS[0] - 5])
    report = api.check([tmp_path, TRL / "healthy"], use_config=False)
    assert len(report.problems) == 1 and "not valid JSON" in report.problems[0]
