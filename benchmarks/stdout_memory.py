"""Peak memory and speed of ``dpodoctor check`` on a huge console log (issue 17, defect 7). Not part of the test suite.

Why a script and not a test: memory and time depend on the machine and its load; a timed unit test would be flaky
and prove nothing. This writes a realistic transformers/TRL console log of ``--mb`` megabytes into ``--data``
(default ``/tmp``), runs ``dpodoctor check LOG --no-cache --format json --output FILE`` in a fresh process, samples
the resident memory of that process and all its children every 20 ms, and prints the peak (the sum over the process
tree at each sample, and the kernel's own per-process maximum) and the throughput. With ``--sizes`` it runs several
sizes, so the time per MB can be compared (it should stay flat: the scan is linear).

The log, as ``python train.py > train.log 2>&1`` of a TRL DPOTrainer leaves it: a tqdm redraw (``\\r``) for every
optimizer step, the metric dict every ``--log-every`` steps (13 keys, as TRL 0.x prints them), an evaluation bar and
its metric dict every 500 steps, and now and then a warning line. The metric dicts are what the reader keeps; the
rest is what it must stream through without keeping.

    python benchmarks/stdout_memory.py                    # one 600 MB log
    python benchmarks/stdout_memory.py --sizes 150 600    # linearity: MB/s at two sizes
    python benchmarks/stdout_memory.py --sizes 300 600 1200 --data /tmp/logs   # the bound: a flat peak

Measured on the 2-core shared machine (load 4-7, so the seconds are only indicative; the memory is not):

    session 1, before (main, 1413d23):  600.3 MB log (606765 metric dicts):  37.3 s, peak RSS 1261.4 MiB
    session 1, after:                    600.3 MB log:                        87.6 s, peak RSS  526.4 MiB
    session 2, before (main, 2546d58):  300.1 MB: 19.2 s, peak 321.8 MiB;  600.3 MB: 35.5 s, peak 510.0 MiB
    session 2, after (stdout branch):   300.1 MB: 15.6 s (9.8 CPU-s), peak 313.0 MiB;
                                        600.3 MB: 38.0 s (17.0 CPU-s), peak 512.9 MiB

    session 2, main after merging the stdout reader and the rules' read-only views (0f80b91), load 1.2:
                                        300.1 MB: 17.8 s (12.0 CPU-s), peak 247.0 MiB;
                                        600.3 MB: 29.1 s (19.3 CPU-s), peak 334.7 MiB

The end-to-end peak did not move on the stdout branch alone because it is the diagnosis', not the reader's. Per
phase, in one process, on the 600 MB log (7.78M points; the frame is 18 bytes a point, 133 MiB): imports 78 MiB; the
read (``read_file_runs``) peaked at 488 MiB before and 296 MiB after; the diagnosis then peaks at 508 MiB, because its
curve summaries keep a copy of every curve (``curve.summarize_arrays``: ``steps[keep]``/``values[keep]`` even when
all are finite; 126 MiB held by the report) and ``Run.series``/``Run.arrays`` copy each series they return. With
those three returning views instead (a 7-line change outside the reader; golden reports unchanged), the whole
check peaks at 321 MiB on 600 MB and 226 MiB on 300 MB (main with the same change: 472 MiB, in the read).

The peak still grows with the number of points (the frame holds them all): about 0.32 MiB per MB of such a log.

    session 3, bounded branch (the reader thins train dicts above 4,000,000 points, dpodoctor/readers/stdout/
    thinning.py), then main (0424252) right after it on the same logs, load ~2 (peak: process tree, sampled):
                  main (before)                           bounded (after)
        300.1 MB: 11.2 CPU-s (26.9 MB per CPU-s), 208 MiB;  10.3 CPU-s (29.1 MB per CPU-s), 200 MiB, every 4th
        600.3 MB: 22.0 CPU-s (27.3 MB per CPU-s), 302 MiB;  18.2 CPU-s (33.0 MB per CPU-s), 218 MiB, every 8th
       1200.1 MB: 41.7 CPU-s (28.8 MB per CPU-s), 476 MiB;  33.3 CPU-s (36.0 MB per CPU-s), 212 MiB, every 16th
    (after, the kernel's maximum RSS of the check's process: 204, 218, 218 MiB.) The peak no longer grows with the
    log: the scan holds at most the budget (values, plus 4 a dict for its bookkeeping), thinned in passes whenever
    it passes it, and the frame is built from what is held. What still grows is the eval dicts (never thinned) and
    the train dict kept before each: 1/51 of this log's dicts, ~6 MB of frame per GB of log. The time per MB is
    flat to falling (the fixed cost of imports and of diagnosing one run is spread over more MB; the scan is linear
    and a thinning pass touches each held dict a bounded number of times). The verdict (DPO601, the loss constant to
    4 digits from step ~10% on) is the same at every size; its first step moved by one at 600 MB (59,488 -> 59,489).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import child_env, dpodoctor_command, run_measured

TRAIN_KEYS = (
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
    "nll_loss",
    "epoch",
)


def write_log(path: Path, megabytes: int, log_every: int) -> dict[str, int]:
    """Write the log (reused when one of this size is already there). Returns its size, steps and metric dicts."""
    target = megabytes * 10**6
    if path.is_file() and abs(path.stat().st_size - target) < 10**6:
        return {"bytes": path.stat().st_size}
    total = 10**7
    dicts = 0
    step = 0
    buffered: list[str] = []
    written = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("***** Running training *****\n  Num examples = 640000\n  Total optimization steps = 10000000\n")
        while written < target:
            step += 1
            pct = step * 100 // total
            bar = (
                f"\r{pct:3d}%|{'█' * (pct // 10):<10}| {step}/{total} "
                f"[{step // 3600:02d}:{step // 60 % 60:02d}:{step % 60:02d}<99:00:00,  2.00it/s]"
            )
            buffered.append(bar)
            if step % log_every == 0:
                r = 1 - math.exp(-step / 20000)
                chosen, rejected = 0.3 * r, -0.5 * r
                values = {
                    "loss": math.log(2) - 0.4 * r,
                    "grad_norm": 1.5 - 0.5 * r,
                    "learning_rate": 5e-7,
                    "rewards/chosen": chosen,
                    "rewards/rejected": rejected,
                    "rewards/accuracies": 0.5 + 0.4 * r,
                    "rewards/margins": chosen - rejected,
                    "logps/chosen": -120.0 + 5 * r,
                    "logps/rejected": -130.0 - 10 * r,
                    "logits/chosen": -0.5,
                    "logits/rejected": -0.45,
                    "nll_loss": 1.2,
                    "epoch": step / 40000,
                }
                buffered.append("\n{" + ", ".join(f"'{k}': {values[k]:.6g}" for k in TRAIN_KEYS) + "}\n")
                dicts += 1
            if step % 500 == 0:
                buffered.append(
                    "".join(f"\r{p * 25:3d}%|{'█' * p:<4}| {p * 16}/64 [00:0{p}<00:00, 8.0it/s]" for p in range(5))
                )
                buffered.append(
                    f"\n{{'eval_loss': {math.log(2) - 0.3:.6g}, 'eval_rewards/accuracies': 0.8, "
                    f"'eval_rewards/margins': 0.7, 'eval_runtime': 4.2, 'epoch': {step / 40000:.6g}}}\n"
                )
                dicts += 1
            if step % 20000 == 0:
                buffered.append("\nUserWarning: None of the inputs have requires_grad=True. Gradients will be None\n")
            if len(buffered) > 4096:
                text = "".join(buffered)
                out.write(text)
                written += len(text.encode())
                buffered = []
        out.write("".join(buffered) + "\n{'train_runtime': 12345.6, 'train_loss': 0.4}\n")
    return {"bytes": path.stat().st_size, "steps": step, "dicts": dicts}


def measure(log: Path, output: Path) -> dict[str, float]:
    """Run the check in a fresh process; the peak of the process tree's summed RSS, sampled every 20 ms."""
    command = dpodoctor_command("check", str(log), "--no-cache", "--format", "json", "--output", str(output))
    try:
        result = run_measured(command, child_env())
    except RuntimeError as exc:
        raise SystemExit(f"dpodoctor check failed: {exc}") from None
    peaks = {"peak_tree": result["rss_tree"], "peak_kernel": result["rss_kernel"]}  # kernel: the largest process
    return {"seconds": result["seconds"], "cpu": result["cpu"], **peaks, "exit": result["exit"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[600], help="log sizes in MB (10**6 bytes)")
    parser.add_argument("--log-every", type=int, default=10, help="optimizer steps per metric dict")
    parser.add_argument("--data", type=Path, default=Path("/tmp"), help="where the logs are written")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for mb in args.sizes:
        log = args.data / f"dpodoctor-bench-{mb}mb-train.log"
        info = write_log(log, mb, args.log_every)
        size = log.stat().st_size
        result = measure(log, args.data / f"dpodoctor-bench-{mb}mb-report.json")
        rate = size / 1e6 / result["seconds"]
        print(
            f"{size / 1e6:7.1f} MB log ({info.get('dicts', '?')} metric dicts): {result['seconds']:6.1f} s, "
            f"{rate:5.1f} MB/s; CPU {result['cpu']:6.1f} s, {size / 1e6 / result['cpu']:5.1f} MB per CPU-s; "
            f"peak RSS {result['peak_tree'] / 2**20:6.1f} MiB (process tree, sampled), "
            f"{result['peak_kernel'] / 2**20:6.1f} MiB (largest process, kernel), exit {result['exit']}"
        )
        if not args.keep:
            log.unlink()
            (args.data / f"dpodoctor-bench-{mb}mb-report.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
