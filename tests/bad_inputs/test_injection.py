"""Injection: text from a log (run names, metric keys, values, SwanLab config) is shown as data in every output,
and nothing from a log is ever evaluated, unpickled or imported.

Why: a log is written by whatever ran the training, and a report ends up in a terminal (escape sequences move the
cursor, retitle the window, plant hyperlinks), in a CI annotation (a line starting ``::`` is a workflow command), in a
PR comment (Markdown, HTML), in JUnit XML and in an HTML artifact. The reporters escape each of these; this test
drives hostile text through the real command line into every one.
"""

from __future__ import annotations

import json
import re
import tokenize
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dpodoctor
from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.reporters import FORMATS
from dpodoctor.reporters.text import render_text
from tests.bad_inputs.builders import event_file, swanlab_run, tfrecord
from tests.bad_inputs.builders import scalar_event as tb_scalar

# Rich markup, a rich hyperlink, an SGR colour, an OSC 8 hyperlink, a bell, a GitHub workflow command on a new
# line, HTML/XML specials and a table pipe.
HOSTILE = (
    "[red]R[/red][link=http://evil.example]L[/link]\x1b[31mANSI\x1b[0m\x1b]8;;http://evil.example\x07OSC\x1b]8;;\x07"
    "\x07\n::error::pwned\r\n<script>alert(1)</script>&amp;|x"
)
# What must not appear in any output: the log's escape sequences and bell. Nor may any line of a report other than
# the github format's annotations start with ``::``, which a CI runner reading stdout obeys as a workflow command.
FORBIDDEN = ("\x1b]8", "\x1b[31mANSI", "\x07")
MARK = "[red]R["  # the start of the rich markup, as it must appear: literally
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
GITHUB_LINE = re.compile(r"^::(error|warning|notice)( [^:\r\n]*)?::[^\r\n]*$")


def _name(text: str) -> str:
    """A folder name carrying the hostile text (only ``/`` and NUL are impossible in a POSIX file name)."""
    return text.replace("/", "∕")


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs: JSONL with hostile keys and values under a hostile folder name; TensorBoard with a hostile tag;
    SwanLab with a hostile β in its config.yaml."""
    root = tmp_path_factory.mktemp("hostile")
    jsonl = root / _name(f"run{HOSTILE}")
    jsonl.mkdir()
    lines = []
    for step in range(1, 61):
        row = {"step": step, "loss": 0.69 - step / 300, "rewards/margins": step / 60, "rewards/accuracies": 0.6}
        row[f"train/{HOSTILE}"] = 1.0
        row["note"] = HOSTILE
        if step == 30:
            row["loss"] = float("nan")
        lines.append(json.dumps(row))
    (jsonl / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    tb = root / "tb" / "runs" / "x"
    tb.mkdir(parents=True)
    extra = b"".join(tfrecord(tb_scalar(f"train/{HOSTILE}", s, 1.0)) for s in range(1, 9))
    (tb / "events.out.tfevents.1700000000.host.1.0").write_bytes(event_file(40, runtime=False).data + extra)

    swan = root / "swan" / "swanlog" / "run-20260101_000000-abcdefgh"
    (swan / "files").mkdir(parents=True)
    (swan / "run-abcdefgh.swanlab").write_bytes(swanlab_run(40).data)
    quoted = HOSTILE.replace("'", "''").replace("\n", " ").replace("\r", " ")
    (swan / "files" / "config.yaml").write_text(f"beta:\n  desc: ''\n  sort: 1\n  value: '{quoted}'\n", "utf-8")
    return root


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_log_text_is_data_in_every_format(hostile_tree: Path, fmt: str) -> None:
    result = CliRunner().invoke(app, ["check", str(hostile_tree), "-f", fmt, "--no-config", "--no-cache"])
    assert result.exit_code in (0, 1), result.output
    out = result.stdout
    for bad in FORBIDDEN:
        assert bad not in out, (fmt, bad)
    assert not UNSAFE.search(out), (fmt, UNSAFE.search(out))
    # No line a CI runner would obey, in any format but github's own annotations.
    commands = [line for line in out.splitlines() if line.lstrip().startswith("::")]
    assert not commands if fmt != "github" else all(GITHUB_LINE.match(line) for line in commands), fmt
    if fmt == "text":
        assert MARK in out and "[link=http:" in out  # markup shown, not applied
    elif fmt == "json":
        doc = json.loads(out)
        assert any(MARK in run["name"] for run in doc["runs"])
        assert not UNSAFE.search(json.dumps(doc, ensure_ascii=False))  # not even behind \u escapes
    elif fmt == "jsonl":
        for line in out.splitlines():
            assert not UNSAFE.search(json.dumps(json.loads(line), ensure_ascii=False))
    elif fmt == "github":
        for line in out.splitlines():
            assert GITHUB_LINE.match(line), line
    elif fmt == "junit":
        root = ET.fromstring(out)
        assert any(MARK in (suite.get("name") or "") for suite in root.iter("testsuite"))
    elif fmt in ("html", "markdown"):
        assert "<script" not in out and "&lt;script" in out  # shown as text, never a tag
        if fmt == "html":
            tags = _start_tags(out)
            assert "script" not in tags and "iframe" not in tags


def test_terminal_report_with_colour_shows_markup_and_strips_escapes(hostile_tree: Path) -> None:
    """The coloured text report (what a terminal gets): rich markup in a name is shown literally, the log's own
    escape sequences and hyperlinks are gone, and only the report's styling remains."""
    report = api.check([hostile_tree], use_config=False)
    out = render_text(report, width=120, color=True, plots=True)
    for bad in FORBIDDEN:
        assert bad not in out, bad
    assert MARK in out
    assert "\x1b]" not in out  # no OSC sequence at all (titles, hyperlinks, clipboard)
    assert not re.search(r"\x1b(?!\[[0-9;]*m)", out)  # only SGR colours, which the report itself sets


def test_swanlab_config_value_is_data(hostile_tree: Path) -> None:
    report = api.check([hostile_tree / "swan"], use_config=False)
    (rr,) = report.runs
    # PyYAML refuses the raw control characters (YAML forbids them; SwanLab's yaml.dump escapes them), so β's entry
    # is not read: the note names the key and the reason, without the hostile text.
    note = next(n for n in rr.run.notes if "could not parse beta" in n or "beta is not a finite number" in n)
    assert len(note) < 300  # a hostile value is quoted briefly, not pasted whole
    out = render_text(report, color=True)
    assert "\x1b]8" not in out and "\x07" not in out


def _start_tags(html: str) -> set[str]:
    tags: set[str] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            for name, _ in attrs:
                assert not name.startswith("on"), f"event handler attribute {name} on <{tag}>"

    Collect().feed(html)
    return tags


# ---------------------------------------------------------------- nothing from a log is ever executed

# (token sequence, why it is forbidden). Names are matched as code tokens, never inside strings or comments, so a
# docstring may say *why* a pickle is never opened.
_FORBIDDEN_CODE: list[tuple[tuple[str, ...], str]] = [
    (("eval", "("), "eval() of text"),
    (("exec", "("), "exec() of text"),
    (("compile", "("), "compile() of text"),
    (("__import__",), "__import__ of a name"),
    (("pickle",), "pickle can run code on load"),
    (("cPickle",), "pickle can run code on load"),
    (("_pickle",), "pickle can run code on load"),
    (("dill",), "dill can run code on load"),
    (("shelve",), "shelve is pickle"),
    (("marshal",), "marshal loads code objects"),
    (("import_module",), "importlib.import_module of a name"),
    (("allow_pickle", "=", "True"), "np.load(allow_pickle=True) unpickles"),
    (("torch", ".", "load"), "torch.load unpickles"),
    (("joblib",), "joblib unpickles"),
]


def _code_tokens(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every code token of a source file: names, operators, numbers; no strings or comments."""
    with path.open("rb") as handle:
        tokens = tokenize.tokenize(handle.readline)
        return [(t.start[0], t.string) for t in tokens if t.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER)]


# Our own loaders, each a subclass of PyYAML's safe loader (checked below by test_our_yaml_loaders_are_safe_loaders).
_SAFE_LOADER_SUBCLASSES = ("_ConfigSafeLoader",)
# The one file that imports modules by a computed name: the names of the package's own modules (pkgutil over its
# __path__), so a new reader or rule family registers itself; never a name from a log.
_IMPORTS_OWN_MODULES = "_plugins.py"


def _yaml_loads(tokens: list[tuple[int, str]]) -> list[int]:
    """Lines of ``yaml.load(`` calls whose arguments do not name SafeLoader (``yaml.safe_load`` is fine)."""
    lines = []
    for i in range(len(tokens) - 3):
        if [t for _, t in tokens[i : i + 4]] == ["yaml", ".", "load", "("]:
            depth, j, safe = 0, i + 3, False
            while j < len(tokens):
                text = tokens[j][1]
                depth += text in "([{"
                depth -= text in ")]}"
                safe = safe or text in ("SafeLoader", "CSafeLoader", *_SAFE_LOADER_SUBCLASSES)
                if depth == 0:
                    break
                j += 1
            if not safe:
                lines.append(tokens[i][0])
    return lines


def test_package_source_never_evaluates_unpickles_or_imports_log_data() -> None:
    package = Path(dpodoctor.__file__).parent
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        tokens = _code_tokens(path)
        texts = [t for _, t in tokens]
        for pattern, why in _FORBIDDEN_CODE:
            n = len(pattern)
            for i in range(len(texts) - n + 1):
                if tuple(texts[i : i + n]) != pattern:
                    continue
                if pattern == ("import_module",) and path.name == _IMPORTS_OWN_MODULES:
                    continue
                if pattern[0] in ("eval", "exec", "compile") and i > 0 and texts[i - 1] == ".":
                    continue  # re.compile(...), a method named eval on some object: not the builtin
                found.append(f"{path.relative_to(package)}:{tokens[i][0]}: {why}")
        found += [f"{path.relative_to(package)}:{line}: yaml.load without SafeLoader" for line in _yaml_loads(tokens)]
        for line, text in tokens:
            if text == "importlib" and path.name != _IMPORTS_OWN_MODULES:
                source = path.read_text(encoding="utf-8").splitlines()[line - 1]
                if not re.search(
                    r"from importlib import (resources|metadata)\b|importlib\.(resources|metadata)", source
                ):
                    found.append(f"{path.relative_to(package)}:{line}: importlib other than package data/metadata")
    assert not found, "\n".join(found)


def test_our_yaml_loaders_are_safe_loaders() -> None:
    """A loader the scan accepts builds plain types only: PyYAML's SafeConstructor, not the full or unsafe one."""
    import yaml
    from yaml.constructor import FullConstructor, SafeConstructor

    from dpodoctor.readers.swanlab import config

    for name in _SAFE_LOADER_SUBCLASSES:
        loader = getattr(config, name)
        assert issubclass(loader, SafeConstructor) and not issubclass(loader, FullConstructor)
        with pytest.raises(yaml.constructor.ConstructorError):
            yaml.load("!!python/object/apply:os.system ['true']", Loader=loader)
    with pytest.raises(config.ConfigError):
        config.parse_yaml("!!python/object/apply:os.system ['true']")


def test_the_source_scan_catches_what_it_is_meant_to(tmp_path: Path) -> None:
    """The scanner itself, on a file that does everything forbidden (and mentions pickle only in a comment)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle  # loads\nx = eval(s)\nyaml.load(t)\nyaml.load(t, Loader=yaml.SafeLoader)\n"
        "np.load(p, allow_pickle=True)\nre.compile('a')\n# eval( pickle in a comment\ns = 'exec('\n",
        encoding="utf-8",
    )
    tokens = _code_tokens(bad)
    texts = [t for _, t in tokens]
    assert _yaml_loads(tokens) == [3]
    assert "pickle" in texts and texts.count("eval") == 1 and "exec" not in texts
    assert ("allow_pickle", "=", "True") in {tuple(texts[i : i + 3]) for i in range(len(texts) - 2)}
