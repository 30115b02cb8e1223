"""The fuzz targets: one per reader (and per kind of file a reader opens), with the real files they mutate.

Why a module of its own: the fuzz tests, the regression tests (minimised inputs found by the fuzzer) and the
partial-file tests all need "put these bytes where reader X looks, and read them the way discovery would", and
that must be the same code, or a regression test would not replay what the fuzzer saw.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dpodoctor.errors import DpoDoctorError
from dpodoctor.model import COLUMNS
from dpodoctor.readers import ReadResult, get_reader, read_runs
from dpodoctor.readers.hparams import find_beta
from tests.bad_inputs.builders import swanlab_run

FIXTURES: Final = Path(__file__).resolve().parent.parent / "fixtures"
TRL: Final = FIXTURES / "trl"
SWANLAB: Final = FIXTURES / "swanlab"
RUN_DIR: Final = "swanlog/run-20260101_000000-fuzzfuzz"
TRACKERS: Final = FIXTURES / "trackers"
WANDB_DIR: Final = "wandb/offline-run-20260101_000000-fuzzfuzz"
MLFLOW_RUN: Final = "mlruns/0/0123456789abcdef0123456789abcdef"


def _files(pattern: str, base: Path = FIXTURES, limit: int = 6) -> tuple[Path, ...]:
    """Up to ``limit`` fixture files matching a glob: enough variety for mutations, few enough to load fast."""
    found = sorted(p for p in base.glob(pattern) if p.is_file() and p.stat().st_size > 0)
    return tuple(found[:limit])


def _jsonl_seed() -> bytes:
    """A JSONL metrics log as a custom callback writes it, built from a real run's log_history."""
    history = json.loads((TRL / "healthy" / "trainer_state.json").read_bytes())["log_history"]
    return b"".join(json.dumps(entry).encode() + b"\n" for entry in history[:120])


def _llamafactory_seed() -> bytes:
    """LLaMA-Factory's trainer_log.jsonl shape (current_steps/total_steps), from the same history."""
    history = json.loads((TRL / "healthy" / "trainer_state.json").read_bytes())["log_history"]
    lines = []
    for entry in history[:120]:
        line = {"current_steps": entry.get("step"), "total_steps": 400, "loss": entry.get("loss")}
        if "rewards/accuracies" in entry:
            line["accuracy"] = entry["rewards/accuracies"]
        line.update({"lr": entry.get("learning_rate"), "epoch": entry.get("epoch"), "elapsed_time": "0:01:03"})
        lines.append(json.dumps({k: v for k, v in line.items() if v is not None}).encode() + b"\n")
    return b"".join(lines)


def _csv_seed() -> bytes:
    """A wide metrics CSV (pandas' to_csv of TensorBoard scalars), with pandas' nameless index column."""
    history = json.loads((TRL / "healthy" / "trainer_state.json").read_bytes())["log_history"]
    keys = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]
    rows = [",step," + ",".join(f"train/{k}" for k in keys)]
    for i, entry in enumerate(history[:120]):
        rows.append(f"{i},{entry.get('step')}," + ",".join(str(entry.get(k, "")) for k in keys))
    return ("\n".join(rows) + "\n").encode()


def swanlab_record_file() -> bytes:
    """A small valid layout-A record file, beside a fuzzed ``files/config.yaml`` so the run reaches the code that
    reads it."""
    return swanlab_run(40).data


@dataclass(frozen=True)
class Target:
    """Where fuzzed bytes go and which reader reads them."""

    name: str
    reader: str
    relpath: str
    seeds: tuple[Path, ...] = ()
    built_seeds: tuple[Callable[[], bytes], ...] = ()
    # Valid files written beside the fuzzed one (relative path -> bytes), so the reader gets past them.
    beside: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    # A header a good share of the arbitrary inputs start with, so random bytes get past the first check.
    magic: bytes = b""

    def seed_bytes(self) -> list[bytes]:
        return [p.read_bytes() for p in self.seeds] + [build() for build in self.built_seeds]


TARGETS: Final[dict[str, Target]] = {
    t.name: t
    for t in (
        Target(
            "tensorboard",
            "tensorboard",
            "runs/Jan01_00-00-00_host/events.out.tfevents.1700000000.host.1.0",
            _files("*/runs/*/events.out.tfevents.*", TRL, 3),
            magic=struct.pack("<Q", 8) + b"\x00" * 4,
        ),
        Target(
            "stdout",
            "stdout",
            "train.log",
            _files("*/train.log", TRL, 3) + _files("*/_console_capture.txt", SWANLAB, 3),
        ),
        Target("trainer_state", "trainer_state", "trainer_state.json", _files("*/trainer_state.json", TRL, 2)),
        Target("jsonl", "jsonl", "metrics.jsonl", built_seeds=(_jsonl_seed,)),
        Target("llamafactory", "llamafactory", "trainer_log.jsonl", built_seeds=(_llamafactory_seed,)),
        Target("csv", "csv", "metrics.csv", built_seeds=(_csv_seed,)),
        Target(
            "swanlab_record",
            "swanlab",
            f"{RUN_DIR}/run-fuzzfuzz.swanlab",
            _files("*/swanlog/run-*/run-*.swanlab", TRL, 2) + _files("*/swanlog/run-*/run-*.swanlab", SWANLAB, 4),
            magic=b":SWL\xd6\xe1\x02",
        ),
        Target(
            "swanlab_backup",
            "swanlab",
            f"{RUN_DIR}/backup.swanlab",
            _files("*/swanlog/run-*/backup.swanlab", SWANLAB, 3),
            magic=b":SWL\xd6\xe1\x01",
        ),
        Target(
            "swanlab_logs",
            "swanlab",
            f"{RUN_DIR}/logs/1/1000.log",
            _files("*/swanlog/run-*/logs/1/1000.log", SWANLAB, 3),
        ),
        Target(
            "swanlab_config",
            "swanlab",
            f"{RUN_DIR}/files/config.yaml",
            _files("*/swanlog/run-*/files/config.yaml", TRL, 1)
            + _files("*/swanlog/run-*/files/config.yaml", SWANLAB, 2),
            beside={f"{RUN_DIR}/run-fuzzfuzz.swanlab": swanlab_record_file},
        ),
        Target(
            "wandb_record",
            "wandb",
            f"{WANDB_DIR}/run-fuzzfuzz.wandb",
            _files("*/wandb/offline-run-*/run-*.wandb", TRACKERS, 2),
            magic=b":W&B\xe1\xbe\x00",
        ),
        Target(
            "mlflow_metric",
            "mlflow",
            f"{MLFLOW_RUN}/metrics/rewards/margins",
            _files("all/mlruns/0/*/metrics/rewards/margins", TRACKERS, 1)
            + _files("all/mlruns/0/*/metrics/loss", TRACKERS, 1),
            beside={f"{MLFLOW_RUN}/meta.yaml": lambda: b"run_name: fuzz\nstatus: 3\n"},
        ),
        Target(
            "mlflow_meta",
            "mlflow",
            f"{MLFLOW_RUN}/meta.yaml",
            _files("all/mlruns/0/*/meta.yaml", TRACKERS, 1),
            beside={f"{MLFLOW_RUN}/metrics/loss": lambda: b"1700000000000 0.69 1\n1700000000100 0.68 2\n"},
        ),
        Target("trackio_db", "trackio", "project.db", _files("all/dpodoctor-fixture.db", TRACKERS, 1)),
        Target("mlflow_db", "mlflow-sqlite", "mlflow.db", _files("all/mlflow.db", TRACKERS, 1)),
        Target("swanlab_export_csv", "swanlab-export", "export.csv", _files("handmade-export/*.csv", SWANLAB, 4)),
        Target("swanlab_export_json", "swanlab-export", "export.json", _files("handmade-export/*.json", SWANLAB, 1)),
    )
}


def check_results(results: list[ReadResult]) -> None:
    """What every successful read must give: canonical frames and plain-text notes."""
    assert results, "read_runs returned no run and raised nothing"
    for result in results:
        assert tuple(result.frame.columns) == COLUMNS
        assert all(isinstance(note, str) for note in result.notes)


def read_target(target: Target, data: bytes, root: Path) -> list[ReadResult] | DpoDoctorError:
    """Write ``data`` where ``target``'s reader looks (below ``root``) and read it as discovery would.

    Returns the results, or the DpoDoctorError the reader raised. Any other exception propagates: that is the bug
    the fuzzer looks for. The sniff and run_root calls must not raise anything at all.
    """
    path = root / target.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    written = [path]
    for rel, build in target.beside.items():
        other = root / rel
        other.parent.mkdir(parents=True, exist_ok=True)
        other.write_bytes(build())
        written.append(other)
    reader = get_reader(target.reader)
    for file in written:
        reader.run_root(file)
    # The files the reader claims, as discovery would give them; the fuzzed file itself when it claims none (as when
    # a user names a file).
    files = [file for file in written if reader.sniff(file)] or [path]
    find_beta(path.parent, [path])
    try:
        results = read_runs(reader, files)
    except DpoDoctorError as exc:
        return exc
    check_results(results)
    return results


def replay(target_name: str, data: bytes) -> list[ReadResult] | DpoDoctorError:
    """:func:`read_target` in a fresh temporary folder (for regression tests of minimised inputs)."""
    tmp = Path(tempfile.mkdtemp(prefix="dpodoctor-fuzz-"))
    try:
        return read_target(TARGETS[target_name], data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
