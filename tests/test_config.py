"""Project configuration: discovery, precedence, per-rule thresholds, and errors that name the unknown key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dpodoctor import api
from dpodoctor.config import discover, load_file
from dpodoctor.errors import DpoDoctorError
from tests.conftest import TRL


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding one real run (lr_too_low: DPO101) two levels down."""
    shutil.copytree(TRL / "lr_too_low" / "runs", tmp_path / "sweeps" / "run-a" / "runs")
    return tmp_path


def codes(report: api.Report) -> list[str]:
    return [f.code for r in report.runs for f in r.findings]


def test_pyproject_table_is_discovered_upward_from_the_checked_path(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.dpodoctor]\nignore = ["DPO101"]\n')
    monkeypatch.chdir("/")
    report = api.check([project / "sweeps" / "run-a"])
    assert "DPO101" not in codes(report)
    # with the cause ignored, its symptoms are no longer folded into it: they are reported on their own
    assert {"DPO301", "DPO202"} <= set(codes(report))


def test_dpodoctor_toml_wins_over_pyproject_in_the_same_folder(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.dpodoctor]\nfail-on = "never"\n')
    (project / "dpodoctor.toml").write_text('fail-on = "info"\n')
    config = discover([project / "sweeps"])
    assert config.fail_on == "info" and config.path == project / "dpodoctor.toml"


def test_falls_back_to_the_current_directory(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / "dpodoctor.toml").write_text("beta = 0.5\n")
    monkeypatch.chdir(elsewhere)
    assert discover([project]).beta == 0.5


def test_per_rule_threshold_changes_the_verdict(project: Path) -> None:
    run = project / "sweeps" / "run-a"
    assert codes(api.check([run], use_config=False)) == ["DPO101"]
    # no tolerance at all: lr_too_low's loss (0.6932, not 0.6931) is no longer "at ln 2", so DPO101 stays silent
    # and the symptoms it would have absorbed are reported on their own
    (project / "dpodoctor.toml").write_text("[rules.DPO101]\ntolerance = 0.0\n")
    assert "DPO101" not in codes(api.check([run])) and "DPO301" in codes(api.check([run]))
    # the gate: fail-on from the file, overridden by the argument
    (project / "dpodoctor.toml").write_text('fail-on = "never"\n')
    assert api.check([run]).exit_code == 0
    assert api.check([run], fail_on="error").exit_code == 1


def test_cli_arguments_override_the_file(project: Path) -> None:
    (project / "dpodoctor.toml").write_text('select = ["DPO1"]\nbeta = 0.5\n')
    report = api.check([project / "sweeps" / "run-a"], select=["DPO3"], beta=0.2)
    assert report.runs[0].checked and all(code.startswith("DPO3") for code in report.runs[0].checked)
    assert report.runs[0].beta_used == 0.2


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("selcet = ['DPO1']\n", "selcet"),
        ("select = ['DPO9']\n", "DPO9"),
        ("[rules.DPO999]\nx = 1\n", "DPO999"),
        ("[rules.DPO101]\ntolerence = 0.1\n", "tolerence"),
        ("fail-on = 'sometimes'\n", "sometimes"),
        ("beta = -1\n", "beta"),
        ("[rules.DPO101]\ntolerance = 'wide'\n", "tolerance"),
        ("select = [\n", "not valid TOML"),
    ],
)
def test_unknown_or_bad_settings_are_errors_that_name_them(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "dpodoctor.toml"
    path.write_text(text)
    with pytest.raises(DpoDoctorError) as err:
        load_file(path)
    assert named in str(err.value) and str(path) in str(err.value)


def test_pyproject_without_the_table_is_not_a_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n# see [tool.dpodoctor] in the docs\n')
    assert discover([tmp_path], cwd=tmp_path).path is None
    with pytest.raises(DpoDoctorError, match=r"no \[tool\.dpodoctor\]"):
        load_file(tmp_path / "pyproject.toml")


def test_unknown_select_code_on_the_api_is_an_error(project: Path) -> None:
    with pytest.raises(DpoDoctorError, match="DPO9"):
        api.check([project], select=["DPO9"], use_config=False)
