"""The stdout reader streams a log in bounded chunks (issue 17, defect 7): where the chunks fall never changes what is
read, and the text held at once is bounded whatever the file's size. (The memory and speed on a 600 MB log are
measured by ``benchmarks/stdout_memory.py``, not here: no timed unit tests.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor.readers import ReadResult
from dpodoctor.readers import stdout as so
from dpodoctor.readers.stdout import scan as scanning
from tests.conftest import FIXTURES

LOGS = sorted(p for p in FIXTURES.rglob("*.log") if p.is_file() and so.StdoutReader().sniff(p))
LOGS = [p for p in LOGS if p.stat().st_size > 4096][:6]


def _read(path: Path, chunk: int) -> list[ReadResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanning, "CHUNK", chunk)
        return so.StdoutReader().read_runs([path])


WHOLE = {path: _read(path, 1 << 30) for path in LOGS}  # one chunk: the file read whole


@settings(max_examples=25, deadline=None, derandomize=True)
@given(index=st.integers(0, len(LOGS) - 1), chunk=st.integers(1, 70_000))
def test_any_chunk_size_reads_what_the_whole_file_read_gives(index: int, chunk: int) -> None:
    path = LOGS[index]
    got, whole = _read(path, chunk), WHOLE[path]
    assert len(got) == len(whole)
    for a, b in zip(got, whole, strict=True):
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert (a.notes, a.ended, a.steps_derived, a.summary, a.label) == (
            b.notes,
            b.ended,
            b.steps_derived,
            b.summary,
            b.label,
        )


def test_the_text_held_at_once_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log of 40 chunks (lines of every kind, and one line longer than a chunk) is never held whole: each scan
    step sees at most a chunk plus the carried-over unfinished line (itself capped)."""
    chunk = 64 * 1024
    monkeypatch.setattr(scanning, "CHUNK", chunk)
    line = "{'loss': 0.6931, 'grad_norm': 1.0, 'learning_rate': 5e-07, 'rewards/margins': 0.01, 'epoch': 0.01}\n"
    bar = "\r 10%|█         | 100/1000 [00:10<01:30, 10.0it/s]"
    body = (bar * 3 + line) * (40 * chunk // (len(bar) * 3 + len(line)))
    path = tmp_path / "train.log"
    path.write_text(body[: len(body) // 2] + "x" * (3 * chunk) + "\n" + body[len(body) // 2 :])
    seen: list[int] = []
    feed = scanning.Scan.feed

    def spy(self: scanning.Scan, text: bytes, end: int, maybe_table: bool) -> None:
        seen.append(len(text))
        feed(self, text, end, maybe_table)

    monkeypatch.setattr(scanning.Scan, "feed", spy)
    [result] = so.StdoutReader().read_runs([path])
    assert len(seen) >= 40 and max(seen) <= chunk + scanning.MAX_CARRY + 1
    assert len(result.frame.query("metric == 'loss'")) == body.count("'loss'")
