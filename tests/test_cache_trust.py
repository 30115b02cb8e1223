"""The cache is not trusted blindly (issue 17, defect 3): an untrusted folder is refused like ssh refuses a
group-writable ``~/.ssh``, and every entry's owner, mode and keyed MAC are checked, so a blanked findings list or a
copied folder cannot flip a gate."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dpodoctor import api
from dpodoctor.cache import _MAC_SIZE, ENV_KEY, RunCache
from dpodoctor.discovery import discover
from tests.conftest import TRL

FAILING = TRL / "lr_too_low"


def _check(run: Path, cache: Path) -> api.Report:
    return api.check([run], use_config=False, cache=cache)


def _blank_findings(cache: Path) -> int:
    """What an attacker who can write the folder does: empty every stored diagnosis, keeping the file's owner and
    mode (rewriting the JSON body in place, after the MAC line is gone or kept)."""
    entries = sorted((cache / "diag").rglob("*.json"))
    for entry in entries:
        raw = entry.read_bytes()
        body = raw[:-_MAC_SIZE]  # the MAC is the last 32 bytes (binary: it may hold a "}" byte)
        header, nul, json_entry = body.partition(b"\0")  # the diagnosis, then the run's JSON report entry
        data = json.loads(header)
        data["findings"] = data["report"]["findings"] = []
        data["health"] = data["report"]["health"] = {}
        entry.write_bytes(json.dumps(data).encode() + nul + json_entry + raw[len(body) :])
    return len(entries)


@pytest.fixture
def failing_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FAILING, run)
    return run


def test_a_blanked_findings_list_does_not_pass_a_failing_gate(tmp_path: Path, failing_run: Path) -> None:
    cache = tmp_path / "cache"
    first = _check(failing_run, cache)
    assert first.exit_code == 1
    assert _blank_findings(cache) >= 1
    again = _check(failing_run, cache)
    assert again.exit_code == 1
    assert [f.code for f in again.runs[0].findings] == [f.code for f in first.runs[0].findings]


def test_a_changed_byte_in_a_runs_entry_is_a_miss(tmp_path: Path, failing_run: Path) -> None:
    cache = tmp_path / "cache"
    _check(failing_run, cache)
    [source] = discover([failing_run])
    assert RunCache(cache).lookup(source.reader, source.files) is not None
    for entry in (cache / "runs").rglob("*.bin"):
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0x01
        entry.write_bytes(bytes(data))
    assert RunCache(cache).lookup(source.reader, source.files) is None


def test_a_copy_of_the_folder_carries_no_key(tmp_path: Path, failing_run: Path) -> None:
    """A CI cache restored from another branch is a copy of the folder: its entries are not used, and the check's
    answer is the fresh one."""
    cache = tmp_path / "cache"
    fresh = _check(failing_run, cache)
    copy = tmp_path / "restored"
    shutil.copytree(cache, copy)
    [source] = discover([failing_run])
    assert RunCache(cache).lookup(source.reader, source.files) is not None
    assert RunCache(copy).lookup(source.reader, source.files) is None
    assert _check(failing_run, copy).exit_code == fresh.exit_code


def test_a_shared_key_from_the_environment_lets_a_copy_be_used(
    tmp_path: Path, failing_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, "a CI secret")
    cache = tmp_path / "cache"
    _check(failing_run, cache)
    shutil.copytree(cache, tmp_path / "restored")
    [source] = discover([failing_run])
    assert RunCache(tmp_path / "restored").lookup(source.reader, source.files) is not None
    monkeypatch.setenv(ENV_KEY, "another secret")
    assert RunCache(tmp_path / "restored").lookup(source.reader, source.files) is None


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="ownership and modes are POSIX")
def test_a_group_writable_cache_folder_is_refused_and_said(tmp_path: Path, failing_run: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o775)
    report = _check(failing_run, cache)
    assert report.exit_code == 1  # the check itself is unaffected
    assert any(w.startswith(f"cache not used: {cache}: group- or world-writable") for w in report.warnings)
    assert list(cache.iterdir()) == []  # nothing written into a folder others can write


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="ownership and modes are POSIX")
def test_a_group_writable_entry_and_a_shared_key_are_refused(tmp_path: Path, failing_run: Path) -> None:
    cache = tmp_path / "cache"
    _check(failing_run, cache)
    [source] = discover([failing_run])
    [entry] = (cache / "runs").rglob("*.bin")
    entry.chmod(0o664)
    assert RunCache(cache).lookup(source.reader, source.files) is None
    entry.chmod(0o600)
    assert RunCache(cache).lookup(source.reader, source.files) is not None
    key = cache.with_name("cache.key")
    key.chmod(0o644)
    store = RunCache(cache)
    assert store.refused is not None and "private" in store.refused
    assert store.lookup(source.reader, source.files) is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_an_entry_owned_by_someone_else_is_refused(tmp_path: Path, failing_run: Path) -> None:
    cache = tmp_path / "cache"
    _check(failing_run, cache)
    [source] = discover([failing_run])
    [entry] = (cache / "runs").rglob("*.bin")
    os.chown(entry, 4242, -1)
    assert RunCache(cache).lookup(source.reader, source.files) is None
    os.chown(cache, 4242, -1)
    assert "owned by uid 4242" in str(RunCache(cache).refused)
