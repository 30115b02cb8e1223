"""What a practitioner expects of a CLI and of a Python API (issue 18, points 1 and 2): --version, shell completion,
rule names wherever codes are accepted, plain flags, useful messages; paths as str, PathLike or a list of them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dpodoctor
from dpodoctor import api
from dpodoctor.checks import RULES
from dpodoctor.cli import app
from dpodoctor.errors import DpoDoctorError
from dpodoctor.metrics import KEY_MAP
from dpodoctor.selectors import find_rule, rule_selector
from tests.conftest import TRL

runner = CliRunner()


def codes_of(*args: str) -> tuple[int, list[str]]:
    """Exit code and finding codes of `dpodoctor check ARGS --format json`."""
    result = runner.invoke(app, ["check", *args, "--format", "json", "--no-config"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    doc = json.loads(result.stdout)
    return result.exit_code, [f["code"] for r in doc["runs"] for f in r["findings"]]


# ------------------------------------------------------------------------------------------ --version, completion


def test_version_prints_the_package_version() -> None:
    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0
        assert result.stdout == f"dpodoctor {dpodoctor.__version__}\n"


def test_completion_can_be_shown_and_installed() -> None:
    help_text = runner.invoke(app, ["--help"], terminal_width=200).stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    # The shell is detected from the process tree (shellingham), so the command runs under bash, as the entry
    # point `dpodoctor` (the name the script completes).
    entry = "import sys; sys.argv[0] = 'dpodoctor'; from dpodoctor.cli import main; main()"
    script = subprocess.run(
        ["bash", "-c", f"{shlex.quote(sys.executable)} -c {shlex.quote(entry)} --show-completion; true"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
    )
    assert "_DPODOCTOR_COMPLETE=complete_bash" in script.stdout, script.stdout + script.stderr
    assert "complete -o default -F _dpodoctor_completion dpodoctor" in script.stdout


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of ``words`` (typer's completion protocol, as the installed
    script calls it)."""
    env = {"_DPODOCTOR_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = runner.invoke(app, [], prog_name="dpodoctor", env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_completion_offers_commands_rule_codes_and_names() -> None:
    assert "explain" in complete("dpodoctor ex")
    assert complete("dpodoctor explain loss-c") == ["loss-collapse"]
    assert complete("dpodoctor explain DPO10") == [code for code in RULES if code.startswith("DPO10")]
    assert complete("dpodoctor check --select DPO1,margin-f") == ["DPO1,margin-flat"]
    assert "--exit-zero" in complete("dpodoctor check --exit")


# ------------------------------------------------------------------------------------------ rule names


def test_explain_takes_a_rule_name_as_it_takes_the_code() -> None:
    by_name = runner.invoke(app, ["explain", "loss-collapse"])
    by_code = runner.invoke(app, ["explain", "DPO103"])
    assert by_name.exit_code == 0 and by_name.stdout == by_code.stdout
    assert by_name.stdout.startswith("DPO103 loss-collapse (warning)")
    unknown = runner.invoke(app, ["explain", "loss-colapse"])
    assert unknown.exit_code == 2 and "unknown rule code or name 'loss-colapse'" in unknown.stderr


def test_select_and_ignore_take_names_codes_and_prefixes_mixed() -> None:
    overfit, stuck = str(TRL / "overfit"), str(TRL / "lr_too_low")
    assert codes_of(overfit) == (0, ["DPO103"])
    assert codes_of(overfit, "--select", "loss-collapse") == (0, ["DPO103"])
    assert "DPO103" not in codes_of(overfit, "--ignore", "loss-collapse")[1]  # its folded symptoms may show
    assert codes_of(stuck, "--select", "DPO3,loss-stuck-ln2") == (1, ["DPO101"])
    assert "DPO101" not in codes_of(stuck, "--select", "dpo1, margin-flat", "--ignore", "loss-stuck-ln2")[1]
    _, found = codes_of(stuck, "--select", "margin-flat,accuracy-chance")
    assert "DPO101" not in found and set(found) <= {"DPO202", "DPO301"}
    bad = runner.invoke(app, ["check", stuck, "--select", "DPO1,loss-stuk"])
    assert bad.exit_code == 2 and "--select: unknown rule code, prefix or name 'loss-stuk'" in bad.stderr


def test_every_rule_name_selects_exactly_its_rule() -> None:
    for code, rule in RULES.items():
        assert rule_selector(rule.name) == code and find_rule(rule.name) is rule and find_rule(code.lower()) is rule
    assert rule_selector("dpo1") == "DPO1"
    with pytest.raises(DpoDoctorError, match="unknown rule code, prefix or name"):
        rule_selector("")


def test_the_config_file_takes_rule_names(tmp_path: Path) -> None:
    config = tmp_path / "dpodoctor.toml"
    config.write_text('ignore = ["loss-collapse"]\n', encoding="utf-8")
    result = runner.invoke(app, ["check", str(TRL / "overfit"), "--config", str(config), "--format", "json"])
    assert result.exit_code == 0
    assert "DPO103" not in [f["code"] for f in json.loads(result.stdout)["runs"][0]["findings"]]
    config.write_text('select = ["loss-colapse"]\n', encoding="utf-8")
    result = runner.invoke(app, ["check", str(TRL / "overfit"), "--config", str(config)])
    assert result.exit_code == 2 and "'select': unknown rule code, prefix or name 'loss-colapse'" in result.stderr


# ------------------------------------------------------------------------------------------ flags and messages


@pytest.mark.parametrize("command", ["check", "compare", "watch"])
def test_flags_show_no_value_in_the_help(command: str) -> None:
    text = runner.invoke(app, [command, "--help"], terminal_width=200).stdout
    assert "<bool>" not in text and "BOOLEAN" not in text
    assert re.search(r"--(exit-zero|normalize-beta|fail-fast)\b", text)


def test_a_word_after_a_flag_is_not_taken_for_a_path() -> None:
    result = runner.invoke(app, ["check", str(TRL / "healthy"), "--exit-zero", "true"])
    assert result.exit_code == 2
    assert "true: no such file or directory; flags such as --exit-zero take no value" in result.stderr
    assert runner.invoke(app, ["check", str(TRL / "healthy"), "--exit-zero", "--no-plots"]).exit_code == 0


def test_require_metrics_lists_the_metric_names() -> None:
    result = runner.invoke(app, ["check", str(TRL / "healthy"), "--require-metrics", "loss,margin"])
    assert result.exit_code == 2
    line = result.stderr
    assert "margin: not a canonical metric name; did you mean margins?" in line
    assert all(name in line for name in set(KEY_MAP.values()))
    assert "dpodoctor/metrics.py" not in line


# ------------------------------------------------------------------------------------------ the Python API


class Where(os.PathLike):
    """A PathLike that is not a Path (as a project's own path type would be)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)


@pytest.mark.parametrize(
    "paths",
    [
        str(TRL / "lr_too_low"),
        TRL / "lr_too_low",
        Where(TRL / "lr_too_low"),
        [str(TRL / "lr_too_low")],
        (Where(TRL / "lr_too_low"),),
        str((TRL / "lr_too_low").resolve()),
    ],
    ids=["str", "Path", "PathLike", "list-of-str", "tuple-of-PathLike", "absolute-str"],
)
def test_check_takes_a_path_or_a_list_of_paths(paths: object) -> None:
    report = dpodoctor.check(paths, use_config=False)  # type: ignore[arg-type]
    assert [rr.run.name for rr in report.runs] == ["lr_too_low"]
    assert [f.code for f in report.runs[0].findings] == ["DPO101"] and report.exit_code == 1
    assert [r.name for r in api.load_all(paths).runs] == ["lr_too_low"]  # type: ignore[arg-type]


def test_compare_and_watch_take_a_single_path_too() -> None:
    from dpodoctor.compare import compare
    from dpodoctor.live import Tailer

    assert [rr.run.name for rr in compare(str(TRL / "healthy")).runs] == ["healthy"]
    assert [r.name for r in Tailer(str(TRL / "healthy")).poll().runs] == ["healthy"]


def test_selectors_from_python_may_be_one_string() -> None:
    report = dpodoctor.check(TRL / "overfit", select="DPO2,loss-collapse", use_config=False)
    assert [f.code for f in report.runs[0].findings] == ["DPO103"]
    run = dpodoctor.load(TRL / "overfit")[0]
    assert "DPO103" not in [f.code for f in dpodoctor.diagnose(run, ignore="loss-collapse")]


def test_a_path_that_is_not_a_path_is_refused_in_one_line() -> None:
    with pytest.raises(DpoDoctorError, match=r"paths must be str or os\.PathLike, not int"):
        dpodoctor.check([TRL / "healthy", 3])  # type: ignore[list-item]


def test_an_entry_that_cannot_be_examined_is_skipped_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walking a tree with entries even root may not stat (/proc/1/cwd in a container) or open ends in a report
    and a warning naming the entry, not in a raw PermissionError."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.log").write_bytes((TRL / "healthy" / "train.log").read_bytes())
    (tmp_path / "secret.log").write_text("{'loss': 0.69}\n", encoding="utf-8")
    from dpodoctor import discovery

    sniff = discovery.reader_for

    def refusing(path: Path) -> object:
        if path.name == "secret.log":
            raise PermissionError(13, "Permission denied", str(path))
        return sniff(path)

    monkeypatch.setattr(discovery, "reader_for", refusing)
    # from inside the folder: the piped report crops a warning line at 100 columns, and pytest-xdist's deeper
    # temporary path made "<tmp_path>/secret.log: skipped" longer than that
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", ".", "--no-config", "--no-plots"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("run  (stdout:")
    assert "secret.log: skipped" in result.stdout and "Traceback" not in result.output
    assert f"{tmp_path / 'secret.log'}: skipped (Permission denied)" in api.load_all(str(tmp_path)).warnings


def test_a_link_even_root_cannot_follow_is_skipped(tmp_path: Path) -> None:
    try:
        os.stat("/proc/1/cwd")
    except PermissionError:
        pass
    else:
        pytest.skip("this machine lets the test process stat /proc/1/cwd")
    (tmp_path / "train.log").write_bytes((TRL / "healthy" / "train.log").read_bytes())
    (tmp_path / "cwd").symlink_to("/proc/1/cwd")
    result = runner.invoke(app, ["check", str(tmp_path.resolve()), "--no-config", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "cwd: skipped" in result.stdout
    assert any(w.startswith(f"{tmp_path.resolve() / 'cwd'}: skipped") for w in api.load_all(tmp_path).warnings)
