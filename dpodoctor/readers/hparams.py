"""Where a run's hyperparameters live when its main log does not carry them.

Why: stdout logs and JSONL never print β, yet the rules state margin thresholds in log-ratio units (margin / β).
The same run folder usually holds β somewhere: the ``args`` text summary of its TensorBoard events, SwanLab's
``files/config.yaml``, or a JSON/YAML config beside the log. Reading it from there keeps the diagnosis of a
``train.log`` the same as that of the run's TensorBoard events. Only JSON and one-line ``key: number`` YAML
entries are read: configs are untrusted input, and ``training_args.bin`` is a pickle, which is never opened.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from dpodoctor.readers.beta import BETA_KEYS, beta_in

__all__ = ["BETA_KEYS", "JSON_NAMES", "beta_in", "find_beta"]

JSON_NAMES: Final = (
    "training_args.json",
    "trainer_config.json",
    "dpo_config.json",
    "args.json",
    "hparams.json",
    "config.json",
    "train_results.json",
    "all_results.json",
)
_YAML_BETA: Final = re.compile(
    r"^[ \t]{0,8}(pref_beta|dpo_beta|beta)[ \t]{0,4}:[ \t]{0,4}([-+0-9.eE]{1,32})[ \t]*$", re.M
)
_MAX_CONFIG_BYTES: Final = 2 * 1024 * 1024


def _read_text(path: Path) -> str | None:
    try:
        info = path.stat()
        # A FIFO or device named like a config (``*.yaml`` matched by a glob) would block the read or never end.
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_CONFIG_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _from_json(path: Path) -> float | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return beta_in(data) if isinstance(data, dict) else None


def _from_yaml(path: Path) -> float | None:
    text = _read_text(path)
    if text is None:
        return None
    for match in _YAML_BETA.finditer(text):
        try:
            value = float(match.group(2))
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            return value
    return None


def _listing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted ([] when it is not a folder one can list)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries)
    except OSError:
        return []


def _glob(root: Path, pattern: str, names: list[str] | None = None) -> list[Path]:
    """``sorted(root.glob(pattern))`` for a pattern of ``/``-separated name patterns, from one listing per folder
    (``names``: root's, when the caller has listed it already).

    Why not pathlib's glob: a run folder is searched with several patterns, and each glob lists the folder again and
    builds a selector chain (~50 µs each, a fifth of reading a small run); the names are matched the same way
    (``fnmatch``, case-insensitive only where the file system is), intermediate parts only as folders.
    """
    head, _, rest = pattern.partition("/")
    listed = _listing(root) if names is None else names
    matches = [name for name in listed if fnmatch.fnmatch(name, head)]
    if not rest:
        return [root / name for name in matches]
    found = []
    for name in matches:
        folder = root / name
        if folder.is_dir():
            found += _glob(folder, rest)
    return sorted(found)


def find_beta(root: Path, siblings: Iterable[Path] = (), read: Iterable[Path] = ()) -> tuple[float, str] | None:
    """β for a run whose main source did not log it, with where it was found (a path relative to ``root``).

    Looks, in order, at the TensorBoard events of the run (the ``args`` summary), JSON configs beside the log,
    then YAML configs (LLaMA-Factory's ``pref_beta``). SwanLab's ``config.yaml`` is found by the YAML pass too
    when given as a sibling. Returns None when nothing says.

    ``read`` are the files the run's own reader already decoded (its main source): whatever β they state is in the
    reader's result, so they are not opened again (the TensorBoard reader finds β in the one decode of each file).
    """
    from dpodoctor.readers.tensorboard import read_args_config

    def rel(path: Path) -> str:
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(path)

    candidates = [p for p in siblings if p.is_file()]
    is_dir = root.is_dir()
    names = _listing(root) if is_dir else []
    if is_dir:
        found = _glob(root, "events.out.tfevents.*", names) + _glob(root, "runs/*/events.out.tfevents.*", names)
        candidates += [p for p in found if p.is_file()]  # never open a FIFO or device: the read would block
    done = set(read)
    for path in dict.fromkeys(candidates):
        if "tfevents" in path.name and path not in done:
            config = read_args_config(path)
            beta = beta_in(config) if config else None
            if beta is not None:
                return beta, f"{rel(path)}: args text summary"
    if is_dir:
        present = set(names)
        for name in JSON_NAMES:
            path = root / name
            if name in present and path.is_file() and (beta := _from_json(path)) is not None:
                return beta, rel(path)
        yamls = (
            _glob(root, "*.yaml", names)
            + _glob(root, "*.yml", names)
            + _glob(root, "swanlog/run-*/files/config.yaml", names)
        )
        for path in yamls:
            if (beta := _from_yaml(path)) is not None:
                return beta, rel(path)
    return None


# The settings that decide which loss a run optimised (see dpodoctor.expectations), as a launcher's YAML names them:
# LLaMA-Factory's `pref_loss`/`pref_ftx`/`dpo_label_smoothing`, TRL's `loss_type`/`rpo_alpha`/`label_smoothing`.
LOSS_KEYS: Final = frozenset(
    {
        "pref_loss",
        "pref_ftx",
        "pref_beta",
        "dpo_label_smoothing",
        "simpo_gamma",
        "loss_type",
        "loss_weights",
        "label_smoothing",
        "rpo_alpha",
        "stage",
    }
)


def find_loss_settings(root: Path) -> tuple[dict[str, Any], str] | None:
    """The loss settings of the launch YAML beside a run (``llamafactory-cli train dpo.yaml`` keeps it next to its
    output), with the file's name; None when no YAML there names any.

    Why: LLaMA-Factory writes its own finetuning arguments (``pref_loss: ipo``, ``pref_ftx``) nowhere in the logs: its
    TensorBoard ``args`` summary holds transformers' TrainingArguments only. Without them an IPO or SFT-mixed run is
    judged as sigmoid DPO. Read with ``yaml.safe_load`` (plain types only: the file is untrusted), size-capped.
    """
    if not root.is_dir():
        return None
    import yaml

    names = _listing(root)
    for path in _glob(root, "*.yaml", names) + _glob(root, "*.yml", names):
        text = _read_text(path)
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        found = {str(k): v for k, v in data.items() if str(k) in LOSS_KEYS and isinstance(v, str | int | float)}
        if found.keys() - {"stage"}:
            return found, path.name
    return None
