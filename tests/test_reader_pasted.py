"""Logs pasted anywhere (Markdown, .py comments), dicts wrapped over lines, and the settings a log states itself."""

from __future__ import annotations

import io
import json
import pprint
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import api
from dpodoctor.readers import reader_for
from dpodoctor.readers.stdout import parse_metric_dict
from dpodoctor.readers.stdout.pasted import UnwrapReader, sniff_content, unwrap
from dpodoctor.readers.stdout_config import config_from_text

TRL = Path(__file__).parent / "fixtures" / "trl"
HEALTHY_LOG = TRL / "healthy" / "train.log"
HISTORY = json.loads((TRL / "healthy" / "trainer_state.json").read_text())["log_history"]
TRAIN_LOGS = [{k: v for k, v in e.items() if k != "step"} for e in HISTORY if "rewards/margins" in e]


def _dict_lines(path: Path) -> list[str]:
    """The metric dict lines of a real console log, as a person copies them out of a terminal."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return [m.group() for m in re.finditer(r"\{'[^{}\n]*\}", text) if "'loss'" in m.group()]


def test_a_log_pasted_into_markdown_reads_like_the_log(tmp_path: Path) -> None:
    lines = _dict_lines(HEALTHY_LOG)
    note = tmp_path / "notes" / "run-report.md"
    note.parent.mkdir()
    note.write_text("# What happened\n\nThe run looked fine; here is the log:\n\n```\n" + "\n".join(lines) + "\n```\n")
    assert reader_for(note).name == "stdout"  # type: ignore[union-attr]
    [pasted] = api.load_all([note]).runs
    [original] = api.load_all([HEALTHY_LOG]).runs
    for metric in ("loss", "margins", "accuracy"):
        assert pasted.series(metric).to_list() == original.series(metric).to_list()


def test_pprint_wrapped_dicts_in_python_comments_are_read(tmp_path: Path) -> None:
    script = tmp_path / "train_dpo.py"
    body = ["import trl", "", "# Output of the last run:"]
    for logs in TRAIN_LOGS:
        body += ["# " + line for line in pprint.pformat(logs, width=70, sort_dicts=False).splitlines()]
    body += ["", "def main() -> None:", "    pass", ""]
    script.write_text("\n".join(body))
    assert reader_for(script).name == "stdout"  # type: ignore[union-attr]
    [run] = api.load_all([script]).runs
    margins = run.series("margins")
    assert margins.to_list() == [logs["rewards/margins"] for logs in TRAIN_LOGS]
    assert len(run.series("loss")) == len(TRAIN_LOGS)


def test_one_dict_literal_in_code_is_not_a_log(tmp_path: Path) -> None:
    script = tmp_path / "callback.py"
    script.write_text("EXAMPLE = {'loss': 0.69, 'rewards/margins': 0.0}\n\n\ndef f():\n    return EXAMPLE\n")
    assert reader_for(script) is None
    readme = tmp_path / "README.md"
    readme.write_text("# A project\n\nNothing logged here {'lr': 1e-05}.\n")
    assert not sniff_content(readme)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"{'loss': 0.5}\n" * 10)
    assert not sniff_content(weights)


def test_a_dict_broken_over_lines_by_a_terminal_is_joined() -> None:
    text = (
        b"step 1\n"
        b"{'loss': 0.6931, 'grad_norm': 1.2,\n"
        b" 'rewards/margins': 0.01, 'epoch': 0.1}\n"
        b"{\n    'loss': 0.5,\n    'rewards/margins': 0.3,\n}\n"
        b"> {'loss': 0.4,\r\n>  'epoch': 1.0}\r\n"
    )
    joined, used = unwrap(text)
    assert used == len(text)
    dicts = [parse_metric_dict(line.decode()) for line in joined.splitlines() if line.strip(b"> ").startswith(b"{")]
    assert dicts == [
        {"loss": 0.6931, "grad_norm": 1.2, "rewards/margins": 0.01, "epoch": 0.1},
        {"loss": 0.5, "rewards/margins": 0.3},
        {"loss": 0.4, "epoch": 1.0},
    ]


def test_text_that_only_looks_wrapped_is_left_as_it_was() -> None:
    for text in (
        b"{'loss': 0.69,\nnot a key\n'x': 1}\n",
        b"{'a': 1,\n 'b': {'c': 2}}\n",
        b'config = {\n    "beta": 0.1\n}\n',
        b"{'open':\n",
    ):
        assert unwrap(text) == (text, len(text))


_KEYS = st.sampled_from(["loss", "grad_norm", "rewards/margins", "rewards/chosen", "epoch", "eval_loss"])
_VALUES = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6)


@settings(max_examples=150, deadline=None)
@given(
    dicts=st.lists(st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=6), min_size=1, max_size=8),
    width=st.integers(10, 120),
    prefix=st.sampled_from(["", "# ", "> ", "    ", "// "]),
    chunk=st.integers(1, 200),
    # no lone surrogates: a text file cannot hold them (the test writes UTF-8), so they are not log text
    noise=st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=60),
)
def test_wrapped_dicts_come_back_whole_however_the_text_is_chunked(
    dicts: list[dict[str, float]], width: int, prefix: str, chunk: int, noise: str
) -> None:
    lines: list[str] = [noise.replace("\r", " ").replace("\n", " ")]
    for logs in dicts:
        lines += [prefix + line for line in pprint.pformat(logs, width=width, sort_dicts=False).splitlines()]
    data = ("\n".join(lines) + "\n").encode()

    class Chunks:
        encoding = None

        def __init__(self) -> None:
            self.handle = io.BytesIO(data)

        def read(self, size: int) -> bytes:
            return self.handle.read(min(size, chunk))

    stream = UnwrapReader(Chunks())
    streamed = b"".join(iter(lambda: stream.read(chunk), b""))
    assert streamed == unwrap(data)[0]
    parsed = [parse_metric_dict(line.decode()) for line in streamed.splitlines() if b"{" in line]
    assert parsed == [dict(logs) for logs in dicts]


# ------------------------------------------------------------------------------------------ settings in the text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"+ accelerate launch train.py --beta=0.05 --loss_type sigmoid --adam_beta1 0.9\n", {"beta": 0.05}),
        (
            b"Namespace(adam_beta1=0.9, beta=0.2, loss_type='ipo', label_smoothing=0.1, rpo_alpha=None)\n",
            {"beta": 0.2, "loss_type": "ipo", "label_smoothing": 0.1, "rpo_alpha": None},
        ),
        (
            b"DPOConfig(\n_n_gpu=1,\nbeta=0.1,\nloss_type=['sigmoid', 'sft'],\nloss_weights=[1.0, 0.5],\n)\n",
            {"beta": 0.1, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
        ),
        (
            b"[INFO|parser.py] pref_beta: 0.15\npref_loss: simpo\npref_ftx: 0.0\n",
            {"beta": 0.15, "pref_beta": 0.15, "loss_type": "simpo", "pref_loss": "simpo", "pref_ftx": 0.0},
        ),
        (b'{"beta": 0.3, "loss_type": "hinge"}\n', {"beta": 0.3, "loss_type": "hinge"}),
        (b"the beta: high was wrong; beta1=3, adam_beta2=0.99\n", {}),
    ],
)
def test_settings_stated_in_the_text(text: bytes, expected: dict[str, object]) -> None:
    config, said = config_from_text(text)
    assert {k: config[k] for k in expected} == expected
    assert set(config) == set(expected) | ({"loss_type"} if "loss_type" in config else set())
    assert set(said) == set(config)


def test_beta_from_the_log_itself_is_used_and_named(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    header = "+ python train_dpo.py --beta 0.05 --loss_type sigmoid\n"
    log.write_text(header + HEALTHY_LOG.read_text(encoding="utf-8", errors="replace"))
    [run] = api.load_all([log]).runs
    assert run.beta == 0.05 and run.beta_source == "train.log: --beta 0.05"
    assert run.config["loss_type"] == "sigmoid"
