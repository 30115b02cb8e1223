"""No writes: dpodoctor never creates or modifies anything inside the paths it checks.

Why: the checked folder is a training run's output, often on shared storage, sometimes still being written, and
it is evidence of what happened. A tool that left a cache file, a SQLite ``-wal`` beside SwanLab's index, a figure or
a touched timestamp there would change what the next reader sees. The cache lives in the user's cache folder
(``$DPODOCTOR_CACHE_DIR``, set to a temporary folder by this suite's conftest), figures go where ``--plot-dir`` says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpodoctor.cli import app
from dpodoctor.reporters import FORMATS
from tests.bad_inputs.builders import event_file, jsonl_log, stdout_log
from tests.conftest import FIXTURES, TRL


def _snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry below ``root``: its kind, mode, mtime and (for files) content hash. Symlinks are not followed."""
    entries: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                kind = "file"
            else:
                digest = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
                kind = "link" if stat.S_ISLNK(info.st_mode) else "dir"
            entries[str(path.relative_to(root))] = (kind, info.st_mode, info.st_mtime_ns, digest)
    return entries


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format dpodoctor reads, copied into one tree: TRL runs (TensorBoard, stdout, trainer_state, SwanLab run
    folders), SwanLab's local mode with its SQLite index (the one file SQLite would like to write beside), the
    export files, and JSONL, CSV and LLaMA-Factory logs."""
    root = tmp_path_factory.mktemp("checked")
    shutil.copytree(TRL / "healthy", root / "healthy", symlinks=True)
    for sample in ("local-0.10.3", "offline-crash-kill9-0.7.20"):
        shutil.copytree(FIXTURES / "swanlab" / sample, root / "swanlab" / sample, symlinks=True)
    (root / "export").mkdir()
    for name in ("api-run-metrics_all-true.json", "openapi-metrics-dataframe_outer-join.csv"):
        shutil.copy(FIXTURES / "swanlab" / "handmade-export" / name, root / "export" / name)
    (root / "custom").mkdir()
    (root / "custom" / "metrics.jsonl").write_bytes(jsonl_log(60))
    (root / "custom" / "metrics.csv").write_bytes(
        b"step,train/loss,train/rewards/margins\n"
        + b"".join(b"%d,%.3f,%.3f\n" % (s, 0.7 - s / 200, s / 50) for s in range(1, 61))
    )
    (root / "lf").mkdir()
    (root / "lf" / "trainer_log.jsonl").write_bytes(
        b"".join(b'{"current_steps": %d, "total_steps": 60, "loss": %.3f}\n' % (s, 0.7 - s / 200) for s in range(1, 61))
    )
    (root / "cut").mkdir()
    (root / "cut" / "events.out.tfevents.1700000000.host.1.0").write_bytes(event_file(30).data[:-7])
    (root / "cut" / "train.log").write_bytes(stdout_log(6)[:-9])
    # Read-only everything, as an archived run often is: a write would fail loudly instead of passing unnoticed.
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            (Path(dirpath) / name).chmod(0o444)
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the module: later commands read the runs from it, which is quicker and checks that a
    cache hit writes nothing into the tree either."""
    return tmp_path_factory.mktemp("shared-cache")


COMMANDS = [["check", "-f", fmt] for fmt in FORMATS] + [["check", "--plot-dir"], ["compare", "--plot-dir"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_checking_a_tree_writes_nothing_inside_it(
    tree: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("DPODOCTOR_CACHE_DIR", str(shared_cache))
    before = _snapshot(tree)
    plots = tmp_path / "plots"  # outside the checked tree
    args = [arg if arg != "--plot-dir" else f"--plot-dir={plots}" for arg in command]
    if command[0] == "compare":
        args += [str(tree / "healthy"), str(tree / "custom" / "metrics.jsonl"), "--no-plots"]
    else:
        args += [str(tree), "--no-config"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1, 2), result.output
    assert "internal error" not in result.output
    assert _snapshot(tree) == before
    if "--plot-dir" in command:
        assert any(plots.iterdir())  # the figures went where they were told
    assert tree not in shared_cache.parents and shared_cache not in tree.parents


def test_cache_is_used_and_lives_outside_the_tree(tree: Path, _private_cache: Path) -> None:
    """The default check uses the cache (when the package has one), and a second run reads from it; the cache folder
    is the one ``$DPODOCTOR_CACHE_DIR`` names, never the checked tree."""
    before = _snapshot(tree)
    for _ in range(2):
        result = CliRunner().invoke(app, ["check", str(tree), "-f", "json", "--no-config"])
        assert result.exit_code in (0, 1, 2), result.output
    assert _snapshot(tree) == before
    if os.environ.get("DPODOCTOR_CACHE_DIR") == str(_private_cache):
        written = [p for p in _private_cache.rglob("*") if p.is_file()]
        assert all(_private_cache in p.parents for p in written)
