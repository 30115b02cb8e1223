"""How fast `dpodoctor check` is at sweep scale, against the tools people use today. Not part of the test suite.

Install the peers first (tbparse for TensorBoard, psutil for peak memory), in a venv without the ``[trl]`` extra
(it brings pyarrow, which pandas then imports: ~30 MB more memory before any log is read)::

    python3 -m venv .bench && .bench/bin/pip install -e '.[bench]'
    .bench/bin/python benchmarks/bench.py                 # the default sizes (tbparse alone takes minutes)
    .bench/bin/python benchmarks/bench.py --smoke         # tiny sizes, seconds (CI runs this)

What it does, in one run (inputs are generated once under ``--data`` and reused when the sizes match):

1. **TensorBoard sweep**: ``--runs`` runs x ``--steps`` steps written with the tensorboard package's own
   ``EventFileWriter``, as transformers' TensorBoardCallback writes them (13 ``train/`` scalars per step, 13
   ``eval/`` scalars every ``--eval-every`` steps, the ``args`` text summary first, the end-of-training summary
   last). Times ``dpodoctor check SWEEP --format json --output FILE`` end to end (a fresh process: load, rules,
   report) with no cache, then with an empty cache (filling it), then again (warm), and ``tbparse``'s
   ``SummaryReader(SWEEP).scalars`` loading the same sweep; prints the ratio and dpodoctor's peak memory.
2. **stdout**: a ``--stdout-mb`` MB console log as transformers prints it (metric dicts between tqdm redraws),
   read by dpodoctor's stdout reader and by a plain line-by-line regex reader.
3. **SwanLab**: a swanlab 0.10 offline run (``run-<id>.swanlab``: the documented LevelDB-log framing around
   protobuf ``Record`` messages, written by this script) of ``--swanlab-steps`` steps, read by ``dpodoctor check``
   and by a plain Python loop (struct framing + a straightforward protobuf wire decoder building per-record dicts).
4. **Scaling**: ``dpodoctor check`` (no cache) on 3 sweep sizes in steps and 3 in runs.
5. ``--evaluate``: the design options for reading event files, on one run's file: protobuf per record with the
   pure-Python header CRC (the reference), protobuf with a C CRC32C (the ``crc32c`` package), the numpy fast path
   dpodoctor uses, and TensorBoard's Rust data server ("rustboard", over gRPC) on the whole sweep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRAIN_TAGS = [
    "loss",
    "grad_norm",
    "learning_rate",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
    "num_tokens",
    "epoch",
]
EVAL_TAGS = [
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
]
INSTALL_HINT = "pip install -e '.[bench]'  (tbparse, psutil)"


# ----------------------------------------------------------------------------------------------- synthetic curves


def curves(steps: int, seed: int, kind: str) -> dict[str, np.ndarray]:
    """One run's train metrics per step: a healthy DPO run, or one of two broken kinds (so the rules have work)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    r = 1.0 - np.exp(-t / max(50.0, steps / 5))
    beta = 0.1
    if kind == "healthy":
        chosen = beta * 2.0 * r + rng.normal(0, beta * 0.5, steps)
        rejected = -beta * 4.0 * r + rng.normal(0, beta * 0.5, steps)
        loss = math.log(2) - 0.2 * r + rng.normal(0, 0.1, steps)
    elif kind == "lr_too_low":
        chosen = rng.normal(0, 1e-4, steps)
        rejected = rng.normal(0, 1e-4, steps)
        loss = math.log(2) + rng.normal(0, 1e-4, steps)
    else:  # collapse: both log-probabilities fall, loss goes to 0
        chosen = -beta * 20.0 * r + rng.normal(0, beta * 0.5, steps)
        rejected = -beta * 60.0 * r + rng.normal(0, beta * 0.5, steps)
        loss = math.log(2) * (1 - r) + np.abs(rng.normal(0, 0.02, steps))
    margins = chosen - rejected
    acc = np.clip(0.5 + 0.4 * r + rng.normal(0, 0.1, steps), 0, 1)
    return {
        "loss": loss,
        "grad_norm": np.abs(rng.normal(5, 1, steps)),
        "learning_rate": 5e-7 * (1 - t / steps),
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/accuracies": acc,
        "rewards/margins": margins,
        "logps/chosen": -200 + chosen / beta,
        "logps/rejected": -220 + rejected / beta,
        "logits/chosen": rng.normal(-1, 0.1, steps),
        "logits/rejected": rng.normal(-1.1, 0.1, steps),
        "num_tokens": t * 4096,
        "epoch": t / steps * 3,
    }


KINDS = ["healthy", "healthy", "lr_too_low", "healthy", "collapse"]


# ----------------------------------------------------------------------------------------------- TensorBoard sweep


def _fast_crc_in_writer() -> str:
    """tensorboard's RecordWriter checksums every record in pure Python (about 10 µs each); when the crc32c package
    is installed the writer is given its C function instead (same values), so generating the sweep takes minutes
    less. The records, framing and protobufs are still the tensorboard package's own."""
    try:
        import crc32c as c_crc
    except ImportError:
        return "tensorboard's pure-Python CRC"
    from tensorboard.summary.writer import record_writer

    def masked_crc32c(data: bytes) -> int:
        x = c_crc.crc32c(data)
        return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    record_writer.masked_crc32c = masked_crc32c
    return "crc32c's C CRC"


def write_tb_run(run_dir: Path, steps: int, eval_every: int, seed: int, finished: bool = True) -> int:
    """One run as transformers' TensorBoardCallback writes it; returns the number of scalars written."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.plugins.text import plugin_data_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    _fast_crc_in_writer()
    logdir = run_dir / "runs" / "Nov24_00-00-00_bench"
    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir), max_queue_size=1000, flush_secs=30)
    wall = 1.79e9 + seed * 1e5
    args = {"output_dir": str(run_dir), "learning_rate": 5e-7, "beta": 0.1, "loss_type": "sigmoid", "seed": seed}
    text_meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="text", content=plugin_data_pb2.TextPluginData(version=0).SerializeToString()
        )
    )
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=[json.dumps(args, indent=2).encode()],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
    )
    writer.add_event(
        event_pb2.Event(
            wall_time=wall,
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="args/text_summary", metadata=text_meta, tensor=tensor)]
            ),
        )
    )
    data = curves(steps, seed, KINDS[seed % len(KINDS)])
    columns = [data[k].astype(np.float32).tolist() for k in TRAIN_TAGS]
    tags = [f"train/{k}" for k in TRAIN_TAGS]
    rng = np.random.default_rng(seed + 1000)
    count = 0
    Event, Summary, Value = event_pb2.Event, summary_pb2.Summary, summary_pb2.Summary.Value
    add = writer.add_event
    for i in range(steps):
        step = i + 1
        wall += 0.5
        for tag, col in zip(tags, columns, strict=True):
            add(Event(wall_time=wall, step=step, summary=Summary(value=[Value(tag=tag, simple_value=col[i])])))
        count += len(tags)
        if eval_every and step % eval_every == 0:
            wall += 2.0
            j = i
            for k in EVAL_TAGS:
                v = float(data[k][j]) if k in data else float(abs(rng.normal(10, 1)))
                if k == "loss":
                    v += 0.02
                add(Event(wall_time=wall, step=step, summary=Summary(value=[Value(tag=f"eval/{k}", simple_value=v)])))
            add(Event(wall_time=wall, step=step, summary=Summary(value=[Value(tag="train/epoch", simple_value=1.0)])))
            count += len(EVAL_TAGS) + 1
    if finished:
        for k, v in (
            ("train_runtime", steps * 0.5),
            ("train_samples_per_second", 64.0),
            ("train_steps_per_second", 2.0),
            ("total_flos", 1e15),
            ("train_loss", 0.5),
        ):
            add(Event(wall_time=wall, step=steps, summary=Summary(value=[Value(tag=f"train/{k}", simple_value=v)])))
            count += 1
    writer.close()
    return count


def _write_tb_run_job(item: tuple[str, int, int, int]) -> int:
    path, steps, eval_every, seed = item
    return write_tb_run(Path(path), steps, eval_every, seed)


def make_sweep(folder: Path, runs: int, steps: int, eval_every: int, jobs: int) -> dict[str, Any]:
    """The sweep under ``folder`` (reused when a previous run of this script made the same one)."""
    stamp = folder / "sweep.json"
    spec = {"runs": runs, "steps": steps, "eval_every": eval_every, "version": 2}
    if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
        return json.loads(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    items = [(str(folder / f"run-{i:03d}"), steps, eval_every, i) for i in range(runs)]
    started = time.perf_counter()
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(max(1, jobs)) as pool:
        counts = pool.map(_write_tb_run_job, items)
    info = {
        "spec": spec,
        "scalars": int(sum(counts)),
        "bytes": sum(p.stat().st_size for p in folder.rglob("*tfevents*")),
        "seconds": time.perf_counter() - started,
        "crc": _fast_crc_in_writer(),
    }
    stamp.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------------------------- measuring


class Sampler:
    """Peak RSS of a process and of its whole tree (workers included), sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_main = 0
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                main = proc.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                break
            self.peak_main = max(self.peak_main, main)
            self.peak_tree = max(self.peak_tree, tree)
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_cli(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m dpodoctor ARGS`` in a fresh process; wall time, CPU time (its workers included), exit code and
    peak memory."""
    before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpodoctor", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Sampler(proc.pid) as sampler:
        _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"dpodoctor {' '.join(args)} exited {proc.returncode}: {err.strip()[-2000:]}")
    return {
        "seconds": seconds,
        "cpu": _children_cpu() - before,
        "exit": proc.returncode,
        "rss_main": sampler.peak_main,
        "rss_tree": sampler.peak_tree,
    }


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and their waited-for children: the workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LAST_CPU = {"seconds": 0.0}


def run_python(code: str, *argv: str) -> float:
    """Run a snippet in a fresh interpreter (so each reader pays its own imports); its own timing line is read.
    The process's CPU seconds are left in LAST_CPU."""
    before = _children_cpu()
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, check=False, timeout=7200
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-2000:])
    LAST_CPU["seconds"] = _children_cpu() - before
    match = re.search(r"SECONDS ([0-9.eE+-]+)", proc.stdout)
    if not match:
        raise RuntimeError(proc.stdout[-2000:])
    return float(match.group(1))


def baseline_rss() -> int:
    """RSS of a fresh interpreter that has imported the CLI and read nothing."""
    code = "import dpodoctor.cli, psutil; print(psutil.Process().memory_info().rss)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        return int(proc.stdout.strip())
    except ValueError:
        return 0


TBPARSE = """
import sys, time
t = time.perf_counter()
from tbparse import SummaryReader
df = SummaryReader(sys.argv[1], extra_columns={"dir_name"}).scalars
print("ROWS", len(df))
print("SECONDS", time.perf_counter() - t)
"""


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def say(text: str = "") -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------------------------- stdout


def make_stdout(path: Path, megabytes: int, quoted: bool = False) -> dict[str, Any]:
    """A transformers/TRL console log: every logging step's dict printed with tqdm.write between bar redraws.

    ``quoted``: values as transformers 5.x prints them (``'loss': '0.6931'``, 4 significant digits); else as 4.x
    does (``'loss': 0.693147``)."""
    if path.is_file() and abs(path.stat().st_size - megabytes * 2**20) < 2**20:
        return {"bytes": path.stat().st_size}
    target = megabytes * 2**20
    total_steps = 10**6
    data = curves(total_steps, 3, "healthy")
    with path.open("w", encoding="utf-8") as out:
        out.write("***** Running training *****\n  Num examples = 64000\n  Total optimization steps = 1000000\n")
        written = 0
        step = 0
        while written < target:
            i = step
            step += 1
            if quoted:
                body = ", ".join(f"'{k}': '{float(data[k][i]):.4g}'" for k in TRAIN_TAGS)
            else:
                body = ", ".join(f"'{k}': {float(data[k][i]):.6g}" for k in TRAIN_TAGS)
            pct = step * 100 // total_steps
            bar = f"\r{pct:3d}%|{'█' * (pct // 10):<10}| {step}/{total_steps} [00:{step % 60:02d}<99:00:00,  2.00it/s]"
            chunk = "{" + body + "}\n" + bar * 3
            out.write(chunk)
            written += len(chunk.encode())
    return {"bytes": path.stat().st_size, "steps": step}


PLAIN_STDOUT = r"""
import re, sys, time
t = time.perf_counter()
dict_re = re.compile(r"\{'[^{}\r\n]*\}")
pair_re = re.compile(r"'([^']+)': ([-+0-9.eEnaif]+)")
keys, values, rows = [], [], 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as handle:
    for line in handle:
        for match in dict_re.finditer(line):
            rows += 1
            for key, value in pair_re.findall(match.group(0)):
                keys.append(key)
                values.append(float(value))
print("POINTS", len(values), rows)
print("SECONDS", time.perf_counter() - t)
"""

DPODOCTOR_STDOUT = """
import sys, time
from pathlib import Path
from dpodoctor.readers.stdout import StdoutReader
t = time.perf_counter()  # after the imports: the reader's own speed (the end-to-end check below includes them)
results = StdoutReader().read_runs([Path(sys.argv[1])])
print("POINTS", sum(len(r.frame) for r in results))
print("SECONDS", time.perf_counter() - t)
"""


# ----------------------------------------------------------------------------------------------- SwanLab


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint((number << 3) | wire)
    if wire == 0:
        return key + _varint(int(payload))  # type: ignore[arg-type]
    assert isinstance(payload, bytes)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _timestamp(t: float) -> bytes:
    seconds = int(t)
    nanos = round((t - seconds) * 1e9)
    return _field(1, 0, seconds) + (_field(2, 0, nanos) if nanos else b"")


def make_swanlab(folder: Path, steps: int) -> dict[str, Any]:
    """A swanlab 0.10 offline run folder: ``run-<id>.swanlab`` with StartRecord, ColumnRecords, ScalarRecords and a
    FinishRecord (field numbers from tests/fixtures/swanlab/README.md), in the LevelDB-log framing SwanLab writes."""
    run_dir = folder / "swanlog" / "run-20261124_000000-benchrun"
    record = run_dir / "run-benchrun.swanlab"
    stamp = folder / "swanlab.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("steps") == steps and record.is_file():
        return json.loads(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    (run_dir / "files").mkdir(parents=True)
    (run_dir / "files" / "config.yaml").write_text("beta:\n  desc: null\n  sort: 0\n  value: 0.1\n")
    payloads: list[bytes] = []
    num = 0

    def rec(body_field: int, body: bytes, t: float) -> None:
        nonlocal num
        num += 1
        payloads.append(_field(1, 0, num) + _field(2, 2, _timestamp(t)) + _field(body_field, 2, body))

    t0 = 1.79e9
    rec(10, _field(1, 2, b"dpodoctor-bench") + _field(4, 2, b"bench") + _field(10, 2, b"benchrun"), t0)
    data = curves(steps, 7, "healthy")
    keys = [f"train/{k}" for k in TRAIN_TAGS]
    for k in keys:
        rec(12, _field(1, 0, 1) + _field(2, 0, 1) + _field(3, 2, k.encode()), t0)
    cols = [data[k].tolist() for k in TRAIN_TAGS]
    encoded_keys = [_field(1, 2, k.encode()) for k in keys]
    for i in range(steps):
        step = i + 1
        t = t0 + step * 0.5
        ts = _field(4, 2, _timestamp(t))
        head = _field(2, 0, step) + _field(3, 0, 1) + ts
        for key, col in zip(encoded_keys, cols, strict=True):
            value = _field(5, 2, _field(1, 1, struct.pack("<d", col[i])))
            rec(13, key + head + value, t)
    rec(11, _field(1, 0, 1) + _field(3, 2, _timestamp(t0 + steps)), t0 + steps)
    with record.open("wb") as out:
        out.write(b":SWL" + struct.pack("<HB", 0xE1D6, 2))
        pos = 7
        block = 32768
        for payload in payloads:
            data_left = payload
            first = True
            while True:
                left = block - pos % block
                if left < 7:
                    out.write(b"\0" * left)
                    pos += left
                    continue
                room = left - 7
                piece, data_left = data_left[:room], data_left[room:]
                last = not data_left
                kind = 1 if first and last else 2 if first else 4 if last else 3
                crc = zlib.crc32(piece, zlib.crc32(bytes([kind])))
                out.write(struct.pack("<IHB", crc, len(piece), kind) + piece)
                pos += 7 + len(piece)
                first = False
                if last:
                    break
    info = {"steps": steps, "records": len(payloads), "scalars": steps * len(keys), "bytes": record.stat().st_size}
    stamp.write_text(json.dumps(info))
    return info


PLAIN_SWANLAB = r"""
import struct, sys, time, zlib
t = time.perf_counter()

def varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]; pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7

def fields(buf):
    out = {}
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]; pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos); value = buf[pos:pos + n]; pos += n
        elif wire == 5:
            value = buf[pos:pos + 4]; pos += 4
        else:
            raise ValueError(wire)
        out[number] = value
    return out

data = open(sys.argv[1], "rb").read()
pos, pending, records = 7, [], []
while pos + 7 <= len(data):
    left = 32768 - pos % 32768
    if left < 7:
        pos += left
        continue
    crc, length, kind = struct.unpack_from("<IHB", data, pos)
    payload = data[pos + 7:pos + 7 + length]
    if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
        break
    pos += 7 + length
    if kind == 1:
        records.append(payload)
    elif kind == 2:
        pending = [payload]
    else:
        pending.append(payload)
        if kind == 4:
            records.append(b"".join(pending))
points = []
for payload in records:
    rec = fields(payload)
    if 13 in rec:
        scalar = fields(rec[13])
        value = struct.unpack("<d", fields(scalar[5])[1])[0] if 5 in scalar else 0.0
        points.append({"key": scalar[1].decode(), "step": scalar.get(2, 0), "value": value})
print("POINTS", len(points))
print("SECONDS", time.perf_counter() - t)
"""


# ----------------------------------------------------------------------------------------------- design options


def evaluate_options(sweep: Path, info: dict[str, Any]) -> None:
    """Per-file decode options on one run's event file, and rustboard on the whole sweep."""
    from dpodoctor.readers.tensorboard import TensorBoardReader, assemble, decode_file

    files = sorted(sweep.rglob("*tfevents*"))
    one = files[0]
    reader = TensorBoardReader()
    say(
        f"\n== Design options: decoding one event file ({mb(one.stat().st_size)}, {info['scalars'] // len(files):,} "
        "scalars) =="
    )

    def best(fn: Any, repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    t_bytes = best(lambda: one.read_bytes())
    t_ref = best(lambda: reader.read_reference([one]), 1)
    say(f"  read the bytes                                            {t_bytes:8.3f} s")
    say(f"  protobuf per record, pure-Python header CRC (reference)   {t_ref:8.3f} s")
    try:
        import crc32c as c_crc
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2

        def upb_c_crc() -> int:
            data = one.read_bytes()
            pos, n, unpack = 0, 0, struct.Struct("<QI").unpack_from
            from_string = event_pb2.Event.FromString
            while pos + 12 <= len(data):
                length, crc = unpack(data, pos)
                x = c_crc.crc32c(data[pos : pos + 8])
                if (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF != crc:
                    break
                record = data[pos + 12 : pos + 12 + length]
                x = c_crc.crc32c(record)  # C is fast enough to check the data CRC too
                try:
                    event = from_string(record)
                except DecodeError:
                    pass
                else:
                    for value in event.summary.value:
                        if value.HasField("simple_value"):
                            n += 1
                pos += 16 + length
            return n

        t_c = best(upb_c_crc, 1)
        say(f"  upb protobuf per record + crc32c (C) header and data CRC  {t_c:8.3f} s  (framing+parse only)")
    except ImportError:
        say("  upb + crc32c: the crc32c package is not installed (pip install crc32c)")
    t_fast = best(lambda: assemble([one], [reader.label(one)], [decode_file(one)]))
    t_dec = best(lambda: decode_file(one))
    say(f"  numpy vectorised fast path + protobuf fallback (chosen)   {t_fast:8.3f} s  (decode {t_dec:.3f} s)")
    rustboard(sweep, info)


def rustboard(sweep: Path, info: dict[str, Any]) -> None:
    """TensorBoard's Rust data server on the whole sweep: time until every scalar has arrived over gRPC."""
    try:
        import grpc
        from tensorboard.data.proto import data_provider_pb2, data_provider_pb2_grpc
        from tensorboard_data_server import server_binary
    except ImportError as exc:
        say(f"  rustboard: not available ({exc})")
        return
    binary = server_binary()
    if binary is None:
        say("  rustboard: no server binary for this platform")
        return
    expected = info["scalars"]
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        started = time.perf_counter()
        server = subprocess.Popen(
            [
                str(binary),
                "--logdir",
                str(sweep),
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--reload",
                "once",
                "--samples-per-plugin",
                "scalars=all",
                "--host",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not port_file.is_file() or not port_file.read_text().strip():
                if time.perf_counter() - started > 60:
                    raise TimeoutError("no port file")
                time.sleep(0.01)
            port = int(port_file.read_text())
            channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 1 << 30)])
            stub = data_provider_pb2_grpc.TensorBoardDataProviderStub(channel)
            got = 0
            scalars_plugin = data_provider_pb2.PluginFilter(plugin_name="scalars")
            steps = info["spec"]["steps"]
            runs_expected = info["spec"]["runs"]
            while time.perf_counter() - started < 900:
                # Cheap listing first: read everything only once every run reports its last step.
                listing = stub.ListScalars(
                    data_provider_pb2.ListScalarsRequest(experiment_id="", plugin_filter=scalars_plugin)
                )
                done = len(listing.runs) >= runs_expected and all(
                    t.metadata.max_step >= steps for r in listing.runs for t in r.tags
                )
                if not done:
                    time.sleep(0.05)
                    continue
                runs = [r.run_name for r in listing.runs]
                tags = sorted({t.tag_name for r in listing.runs for t in r.tags})
                req = data_provider_pb2.ReadScalarsRequest(
                    experiment_id="",
                    plugin_filter=scalars_plugin,
                    run_tag_filter=data_provider_pb2.RunTagFilter(
                        runs=data_provider_pb2.RunFilter(names=runs), tags=data_provider_pb2.TagFilter(names=tags)
                    ),
                    downsample=data_provider_pb2.Downsample(num_points=10**9),
                )
                response = stub.ReadScalars(req)
                got = sum(len(t.data.step) for r in response.runs for t in r.tags)
                # Into numpy, as any consumer would; a repeated (tag, step) is kept once by rustboard, so fewer
                # points than were written can be the complete answer.
                [(np.asarray(t.data.step), np.asarray(t.data.value)) for r in response.runs for t in r.tags]
                break
            seconds = time.perf_counter() - started
            say(
                f"  rustboard (tensorboard_data_server over gRPC), whole sweep: {seconds:8.3f} s for {got:,} of "
                f"{expected:,} scalars (no args text, no truncation notes, TensorBoard's own step semantics)"
            )
        except Exception as exc:  # a benchmark side path: report and go on
            say(f"  rustboard: failed ({type(exc).__name__}: {exc})")
        finally:
            server.kill()
            server.wait()


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--stdout-mb", type=int, default=100)
    parser.add_argument("--swanlab-steps", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=None, help="--jobs for dpodoctor (default: CPU count)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dpodoctor-bench")
    parser.add_argument("--skip", action="append", default=[], choices=["tbparse", "stdout", "swanlab", "scaling"])
    parser.add_argument("--evaluate", action="store_true", help="also time the design options (rustboard, ...)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of dpodoctor check are the best of this many")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no peers: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.steps, args.stdout_mb, args.swanlab_steps = 2, 300, 1, 500
        args.skip = ["tbparse", "scaling"]
        args.repeat = 1
        args.data = args.data.with_name(args.data.name + "-smoke")
    args.data.mkdir(parents=True, exist_ok=True)
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []

    import dpodoctor

    say(f"dpodoctor {dpodoctor.__version__} benchmark  ({' '.join(sys.argv[1:]) or 'default sizes'})")
    say(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}"
    )
    try:
        import psutil

        say(f"memory: {mb(psutil.virtual_memory().total)}")
    except ImportError:
        say(f"psutil not installed: no peak memory ({INSTALL_HINT})")
    # pandas imports pyarrow whenever it is installed (TRL/datasets bring it): ~30 MB more before any data is read.
    probe = "import sys, dpodoctor.cli; print('pyarrow' in sys.modules)"
    arrow = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False)
    say(f"pyarrow imported by pandas in this environment: {arrow.stdout.strip() == 'True'}")

    # 1. TensorBoard sweep
    sweep = args.data / f"sweep-{args.runs}x{args.steps}"
    say(f"\n== TensorBoard sweep: {args.runs} runs x {args.steps:,} steps, eval every {args.eval_every} ==")
    info = make_sweep(sweep, args.runs, args.steps, args.eval_every, os.cpu_count() or 1)
    numeric = info["scalars"] * 24  # step int64 + value float64 + wall_time float64 per point
    say(
        f"  input: {info['scalars']:,} scalars in {mb(info['bytes'])} of event files "
        f"(written by tensorboard's EventFileWriter in {info['seconds']:.0f} s, {info['crc']}); numeric data "
        f"{mb(numeric)} (step, value, wall_time: 24 bytes a point)"
    )
    report = args.data / "report.json"
    with tempfile.TemporaryDirectory(prefix="dpodoctor-bench-cache-") as cache:
        env = {"DPODOCTOR_CACHE_DIR": cache}
        check = ["check", str(sweep), "--format", "json", "-o", str(report)]
        # Best of `repeat`: this machine's two cores are shared, and a neighbour's burst doubles a single timing.
        colds = [run_cli([*check, "--no-cache", *jobs], env) for _ in range(args.repeat)]
        fill = run_cli([*check, *jobs], env)
        warms = [run_cli([*check, *jobs], env) for _ in range(args.repeat)]
        serial = run_cli([*check, "--no-cache", "--jobs", "1"])
    cold = min(colds, key=lambda r: r["seconds"])
    warm = min(warms, key=lambda r: r["seconds"])
    summary = json.loads(report.read_text())["summary"]
    all_cold = ", ".join(f"{r['seconds']:.2f}" for r in colds)
    all_warm = ", ".join(f"{r['seconds']:.2f}" for r in warms)
    say(
        f"  dpodoctor check, no cache (load + rules + report)  {cold['seconds']:8.2f} s   best of [{all_cold}]; "
        f"exit {cold['exit']}, {summary['runs']} runs, {summary['errors']} errors / {summary['warnings']} warnings"
    )
    say(f"  dpodoctor check, no cache, --jobs 1                {serial['seconds']:8.2f} s")
    say(f"  dpodoctor check, empty cache (fills it)            {fill['seconds']:8.2f} s")
    say(
        f"  dpodoctor check, warm cache (re-check)             {warm['seconds']:8.2f} s   best of [{all_warm}]; "
        "target <= 1 s"
    )
    if cold["rss_main"]:
        base = baseline_rss()
        peak = max(r["rss_main"] for r in colds)
        say(
            f"  peak RSS, no cache: main process {mb(peak)} = {peak / numeric:.2f}x the numeric data (target < 2x), "
            f"of which {mb(base)} is the interpreter with dpodoctor's imports before any data "
            f"({(peak - base) / numeric:.2f}x for the data); with its workers {mb(max(r['rss_tree'] for r in colds))}; "
            f"--jobs 1: {mb(serial['rss_main'])}; warm re-check: {mb(max(r['rss_main'] for r in warms))}"
        )
    if "tbparse" not in args.skip:
        try:
            t_tb = run_python(TBPARSE, str(sweep))
        except RuntimeError as exc:
            say(f"  tbparse: not run ({str(exc).splitlines()[-1]}); install with {INSTALL_HINT}")
        else:
            cpu_tb = LAST_CPU["seconds"]
            say(
                f"  tbparse SummaryReader(sweep).scalars, load only   {t_tb:8.2f} s   ({cpu_tb:.1f} CPU-s, one process)"
            )
            say(
                f"  ratio: dpodoctor check end to end takes 1/{t_tb / cold['seconds']:.1f} of tbparse's load time "
                f"(target <= 1/20); warm re-check 1/{t_tb / warm['seconds']:.0f}"
            )
            say(
                f"  CPU time: dpodoctor check {cold['cpu']:.1f} CPU-s (all processes) = 1/{cpu_tb / cold['cpu']:.1f} "
                "of tbparse's (the wall-time ratio depends on free cores; this one does not)"
            )

    # 2. stdout
    if "stdout" not in args.skip:
        log = args.data / f"train-{args.stdout_mb}mb.log"
        made = make_stdout(log, args.stdout_mb)
        size = made["bytes"]
        say(f"\n== stdout: {mb(size)} console log (metric dicts between tqdm redraws) ==")
        readers = [run_python(DPODOCTOR_STDOUT, str(log)) for _ in range(args.repeat)]
        plains = [run_python(PLAIN_STDOUT, str(log)) for _ in range(args.repeat)]
        t_reader, t_plain = min(readers), min(plains)
        cli = run_cli(["check", str(log), "--format", "json", "-o", str(report), "--no-cache"])
        say(
            f"  dpodoctor stdout reader (read_runs, no imports)    {t_reader:8.2f} s   {size / 2**20 / t_reader:6.1f} "
            f"MB/s (target >= 50 MB/s); best of [{', '.join(f'{t:.2f}' for t in readers)}]"
        )
        say(
            f"  plain line-by-line regex reader (peer)             {t_plain:8.2f} s   "
            f"{size / 2**20 / t_plain:6.1f} MB/s; ratio {t_plain / t_reader:.2f}x"
        )
        quoted_log = args.data / f"train-{args.stdout_mb}mb-5x.log"
        quoted_size = make_stdout(quoted_log, args.stdout_mb, quoted=True)["bytes"]
        t_quoted = min(run_python(DPODOCTOR_STDOUT, str(quoted_log)) for _ in range(args.repeat))
        say(
            f"  the same as transformers 5.x prints it ('0.6931')  {t_quoted:8.2f} s   "
            f"{quoted_size / 2**20 / t_quoted:6.1f} MB/s (dpodoctor reader; the peer's regex reads no quoted value)"
        )
        say(
            f"  dpodoctor check end to end                         {cli['seconds']:8.2f} s   "
            f"ratio to the peer: {t_plain / cli['seconds']:.2f}x"
        )

    # 3. SwanLab
    if "swanlab" not in args.skip:
        folder = args.data / f"swanlab-{args.swanlab_steps}"
        made = make_swanlab(folder, args.swanlab_steps)
        record = next(folder.rglob("run-*.swanlab"))
        say(
            f"\n== SwanLab 0.10 offline run: {args.swanlab_steps:,} steps, {made['scalars']:,} scalars, "
            f"{mb(made['bytes'])} =="
        )
        cli = run_cli(["check", str(folder), "--format", "json", "-o", str(report), "--no-cache"])
        t_plain = run_python(PLAIN_SWANLAB, str(record))
        say(f"  dpodoctor check end to end                         {cli['seconds']:8.2f} s")
        say(
            f"  plain Python loop (struct framing + wire decoder)  {t_plain:8.2f} s   (peer; swanlab itself not "
            "installed)"
        )
        say(f"  ratio: {t_plain / cli['seconds']:.2f}x")

    # 4. scaling
    if "scaling" not in args.skip:
        say("\n== Scaling (dpodoctor check, no cache) ==")
        base = args.steps
        runs_dirs = sorted(p for p in sweep.iterdir() if p.is_dir())
        for n in sorted({max(1, args.runs // 4), max(1, args.runs // 2), args.runs}):
            r = run_cli(["check", *map(str, runs_dirs[:n]), "--format", "json", "-o", str(report), "--no-cache", *jobs])
            say(f"  {n:3d} runs x {base:,} steps: {r['seconds']:7.2f} s  ({r['seconds'] / n:.3f} s per run)")
        few = max(1, min(4, args.runs))
        for steps in sorted({max(100, base // 4), max(100, base // 2)}):
            small = args.data / f"sweep-{few}x{steps}"
            make_sweep(small, few, steps, args.eval_every, os.cpu_count() or 1)
            r = run_cli(["check", str(small), "--format", "json", "-o", str(report), "--no-cache", *jobs])
            say(f"  {few:3d} runs x {steps:,} steps: {r['seconds']:7.2f} s  ({r['seconds'] / few:.3f} s per run)")
        r = run_cli(["check", *map(str, runs_dirs[:few]), "--format", "json", "-o", str(report), "--no-cache", *jobs])
        say(f"  {few:3d} runs x {base:,} steps: {r['seconds']:7.2f} s  ({r['seconds'] / few:.3f} s per run)")

    if args.evaluate:
        evaluate_options(sweep, info)


if __name__ == "__main__":
    main()
