"""What a healthy run of *this* setup should look like: loss family, training phase and noise, per run.

Why: thresholds written for sigmoid DPO logged every 10 steps with a batch of 8 misjudge everything else. An IPO run
starts at 1/(4β²), not ln 2; a hinge run may sit at exactly 0 by design; CPO/SimPO/ORPO rewards are β·logp with no
reference, so they start far below 0; a log cut while the learning rate is still warming up says nothing about
whether the run learns; an accuracy averaged over one pair can only be 0 or 1. The rules ask this module what to
expect instead of assuming the seed's setup.

Sources, in order: the run's config (``loss_type``, ``loss_weights``, ``label_smoothing``, ``rpo_alpha``,
``use_weighting``, LLaMA-Factory's ``pref_loss``/``pref_ftx``/``dpo_label_smoothing``, batch sizes, ``max_steps``,
warm-up), then the logged keys (ORPO's ``log_odds_ratio``, KTO's ``kl``, an SFT ``nll_loss``), then the curves
themselves (rewards that are β × logps have no reference). The starting losses are TRL 1.16's formulas
(``DPOTrainer.compute_loss``) evaluated where the policy equals the reference (every log-ratio 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dpodoctor import stats
from dpodoctor.curveseries import Curve, common_steps
from dpodoctor.metrics import LN2
from dpodoctor.model import Ended, Run

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np

# Loss types whose value at the start is −log σ(0) = ln 2 and that fall toward 0 as the margin grows: the "stuck at
# ln 2" and "collapsed to 0" readings of the sigmoid loss apply to them.
SIGMOID_LIKE = frozenset({"sigmoid", "robust", "aot", "aot_unpaired", "sigmoid_norm"})
# Loss types implemented by reference-free trainers (CPO, SimPO, ORPO): rewards are β·logp, negative from the start.
REFERENCE_FREE = frozenset({"simpo", "orpo", "cpo"})


def start_loss(loss_type: str, beta: float, label_smoothing: float = 0.0) -> float | None:
    """TRL's loss of one term when policy == reference (all log-ratios 0); None when it depends on the data
    (an NLL term) or the type is unknown."""
    if loss_type in SIGMOID_LIKE or loss_type in ("simpo", "cpo"):
        return LN2
    table = {
        "hinge": 1.0,  # relu(1 − β·0)
        "ipo": 1.0 / (4.0 * beta * beta),  # (0 − 1/(2β))²
        "sppo_hard": 0.5 / (beta * beta),  # (0 − 0.5/β)² + (0 + 0.5/β)²
        "nca_pair": 2.0 * LN2,  # −log σ(0) − ½ log σ(0) − ½ log σ(0)
        "bco_pair": 2.0 * LN2,
        "apo_zero": 1.0,  # (1 − σ(0)) + σ(0)
        "apo_down": 1.0,
        "discopop": LN2 / 2.0 + 0.5,  # σ(0)·e⁰ + (1 − σ(0))·ln 2
        "kto": 0.5,  # 1 − σ(β(0 − z₀)) with the KL estimate z₀ ≈ 0, per side weighted 1
    }
    if loss_type in table:
        return table[loss_type]
    if loss_type == "exo_pair" and 0 < label_smoothing < 1:
        eps = label_smoothing
        return -LN2 - 0.5 * math.log(eps * (1 - eps))
    return None


START_FORMULA = {
    "sigmoid": "ln 2",
    "robust": "ln 2",
    "aot": "ln 2",
    "aot_unpaired": "ln 2",
    "sigmoid_norm": "ln 2",
    "simpo": "ln 2",
    "cpo": "ln 2",
    "hinge": "1",
    "ipo": "1/(4β²)",
    "sppo_hard": "0.5/β²",
    "nca_pair": "2 ln 2",
    "bco_pair": "2 ln 2",
    "apo_zero": "1",
    "apo_down": "1",
    "discopop": "ln 2/2 + 1/2",
    "kto": "½ per side",
    "exo_pair": "−ln 2 − ½ ln(ε(1−ε))",
}


def loss_floor(loss_type: str, label_smoothing: float = 0.0) -> float | None:
    """The lowest value the term can reach; None when unbounded below (robust DPO goes negative by design)."""
    if loss_type == "robust":
        return None
    if loss_type in ("sigmoid", "aot", "aot_unpaired") and 0 < label_smoothing < 0.5:
        eps = label_smoothing  # conservative DPO: the optimum is at β·margin = ln((1−ε)/ε), where loss = H(ε)
        return -(eps * math.log(eps) + (1 - eps) * math.log(1 - eps))
    return 0.0


@dataclass(frozen=True)
class LossFamily:
    """The loss a run optimises, as far as its config and keys tell.

    ``terms``: (loss type, weight) pairs as TRL combines them. ``start``: the expected first loss (None: unknown,
    e.g. an NLL term). ``floor``: the lowest reachable loss (None: unbounded below). ``sigmoid_like``: the loss is the
    sigmoid DPO loss up to a constant weight, so ln 2 means "no preference learned" and ~0 means saturation.
    ``reference_based``: rewards are β·log(π/π_ref) and start at 0. ``has_accuracy``: the trainer logs a reward
    accuracy. ``extra_term``: the logged loss includes a term the preference metrics do not see (SFT/NLL, pref_ftx).
    ``margin_target_nats``: where the margin settles by design (cDPO's ln((1−ε)/ε)). ``source``: what said so.
    """

    name: str
    terms: tuple[tuple[str, float], ...]
    start: float | None
    floor: float | None
    sigmoid_like: bool
    reference_based: bool
    has_accuracy: bool
    extra_term: bool
    margin_target_nats: float | None
    source: str
    assumed: bool = False

    @property
    def start_text(self) -> str:
        """How the expected start is computed, for messages: ``ln 2 for sigmoid``, ``1/(4β²) for ipo``."""
        if self.start is None:
            return "unknown: the loss includes an NLL/SFT term whose size depends on the data"
        parts = [f"{w:g}×{START_FORMULA.get(t, '?')}" if w != 1 else START_FORMULA.get(t, "?") for t, w in self.terms]
        return f"{' + '.join(parts)} for {self.name}"

    @property
    def zero_is_normal(self) -> bool:
        """A loss of exactly 0 is reachable by design (hinge, IPO-like squares, APO): not saturation."""
        return not self.sigmoid_like and self.floor == 0.0 and not self.extra_term


@dataclass(frozen=True)
class Phase:
    """Where in its schedule the log ends: planned steps, fraction done, and whether the learning rate was still
    warming up. ``too_early`` is the verdict the rules honour: trends of such a log are not judged."""

    last_step: int
    planned_steps: int | None
    fraction_done: float | None  # of max_steps, or of num_train_epochs by the logged epoch
    warming_up: bool
    first_lr: float | None
    last_lr: float | None
    peak_lr: float | None
    too_early: bool
    reason: str


@dataclass(frozen=True)
class Noise:
    """How noisy a logged point is: the logging interval, the batch size when the config says it, and the
    quantisation of the logged accuracy (1 / pairs per logged value) read from the values themselves."""

    interval: int
    batch_size: int | None
    accuracy_quantum: float | None  # e.g. 1.0 when every logged accuracy is 0 or 1 (batch 1, logged every step)

    @property
    def coarse_accuracy(self) -> bool:
        """True when one logged accuracy averages so few pairs (≤ 4) that its median is meaningless."""
        return self.accuracy_quantum is not None and self.accuracy_quantum >= 0.25


@dataclass(frozen=True)
class Expectations:
    beta: float
    family: LossFamily
    phase: Phase
    noise: Noise
    notes: tuple[str, ...] = field(default_factory=tuple)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _types(value: Any) -> list[str]:
    """``loss_type`` as TRL accepts it: a string, a list, or a comma-separated string (from a command line)."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return [t.strip().strip("'\"").lower() for t in text.split(",") if t.strip().strip("'\"")]
    if isinstance(value, list | tuple):
        return [str(v).strip().lower() for v in value if str(v).strip()]
    return []


def _weights(value: Any, n: int) -> list[float]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        nums = [_number(p) for p in parts]
    elif isinstance(value, list | tuple):
        nums = [_number(v) for v in value]
    else:
        nums = []
    if len(nums) == n and all(x is not None for x in nums):
        return [float(x) for x in nums]  # type: ignore[arg-type]
    return [1.0] * n


def _config(run: Run) -> dict[str, Any]:
    """The run's config, flattened one level (a nested ``args``/``training_args`` dict is read as well)."""
    out: dict[str, Any] = {}
    for value in run.config.values():
        if isinstance(value, dict):
            for k, v in value.items():
                out.setdefault(str(k), v)
    out.update({str(k): v for k, v in run.config.items() if not isinstance(v, dict)})
    return out


def _logged(run: Run) -> set[str]:
    return {m for _, m in run.metrics}


def _finite(run: Run, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and finite values of a train metric, in step order, read from ``run.arrays`` (no pandas object: these
    are read once per run for every run of a sweep)."""
    steps, values = run.arrays(metric)
    values = values.astype(float, copy=False)
    keep = np.isfinite(values)
    return (steps, values) if keep.all() else (steps[keep], values[keep])


def _one_per_step(steps: np.ndarray) -> bool:
    """True when the steps strictly increase (what every reader's frame gives; a hand-built one may repeat)."""
    return len(steps) < 2 or bool((steps[1:] > steps[:-1]).all())


def _reference_free_from_curves(run: Run, beta: float) -> bool:
    """CPO/SimPO/ORPO log rewards = β·logps (no reference): then rewards/chosen tracks β × logps/chosen exactly
    and sits far below 0 from the first log, where a reference-based reward starts at 0."""
    if not (run.has("chosen") and run.has("logps_chosen")):
        return False
    c_steps, c_values = _finite(run, "chosen")
    lp_steps, lp_values = _finite(run, "logps_chosen")
    if _one_per_step(c_steps) and _one_per_step(lp_steps):
        if len(c_steps) == len(lp_steps) and bool((c_steps == lp_steps).all()):
            cv, lv = c_values, lp_values  # logged at the same steps (the usual case): what the intersection gives
        else:  # the steps both logged, in step order, and each one's value there
            _, in_c, in_lp = np.intersect1d(c_steps, lp_steps, assume_unique=True, return_indices=True)
            cv, lv = c_values[in_c], lp_values[in_lp]
    else:  # a hand-built frame with a repeated step: every value logged at a step both logged (as pandas' label
        # look-up on the intersection of the two step indexes gives them)
        c, lp = Curve(c_steps, c_values), Curve(lp_steps, lp_values)
        common = common_steps(c, lp)
        cv, lv = c.at_steps(common), lp.at_steps(common)
    if len(cv) < 1:  # no step both logged
        return False
    ok = np.abs(lv) > 1e-6
    if not ok.any():
        return False
    ratio = cv[ok] / lv[ok]
    spread = float(np.ptp(ratio)) if len(ratio) > 1 else 0.0
    level = stats.median(ratio)
    return level > 0 and spread <= 0.02 * level + 1e-9 and stats.median(cv[ok]) < -0.5 * beta


def loss_family(run: Run, beta: float) -> LossFamily:
    """The loss family of a run, from its config, then its keys, then its curves."""
    cfg = _config(run)
    keys = _logged(run)
    eps = _number(cfg.get("label_smoothing")) or _number(cfg.get("dpo_label_smoothing")) or 0.0
    rpo = _number(cfg.get("rpo_alpha")) or 0.0
    ftx = _number(cfg.get("pref_ftx")) or 0.0
    types = _types(cfg.get("loss_type"))
    source = f"config loss_type={cfg['loss_type']}" if types else ""
    if not types and isinstance(cfg.get("pref_loss"), str):
        types = _types(cfg["pref_loss"])  # LLaMA-Factory: sigmoid, hinge, ipo, kto_pair, orpo, simpo
        types = ["kto" if t == "kto_pair" else t for t in types]
        source = f"config pref_loss={cfg['pref_loss']}"
    if "cpo_alpha" in cfg or "simpo_gamma" in cfg:
        # CPOConfig (CPO, SimPO): its loss_type names the preference term, but the rewards are β·logp, no reference
        simpo = "simpo" in types
        source = f"config: CPOConfig (cpo_alpha), loss_type={cfg.get('loss_type')}"
        types = ["simpo" if simpo else "cpo"]
    if not types:
        if keys & {"log_odds_ratio", "log_odds_chosen", "odds_ratio_loss"}:
            types, source = ["orpo"], "keys: ORPO's log_odds_ratio / odds_ratio_loss"
        elif "kl" in keys and "accuracy" not in keys:
            types, source = ["kto"], "keys: KTO's kl, no reward accuracy"
        elif _reference_free_from_curves(run, beta):
            types, source = ["cpo"], "curves: rewards/chosen = β × logps/chosen from the first log (no reference)"
    assumed = not types
    if assumed:
        types, source = ["sigmoid"], "assumed sigmoid DPO (TRL's default): the log names no loss_type"
    weights = _weights(cfg.get("loss_weights"), len(types))
    terms = list(zip(types, weights, strict=True))
    cpo_alpha = _number(cfg.get("cpo_alpha"))
    extra = "sft" in types or rpo > 0 or ftx > 0 or "orpo" in types or bool(cpo_alpha)
    extra |= bool(keys & {"sft_loss", "odds_ratio_loss"}) or ("nll_loss" in keys and cpo_alpha != 0.0)
    starts = [start_loss(t, beta, eps) for t, _ in terms]
    start: float | None = None
    if not extra and all(s is not None for s in starts):
        start = sum(w * s for (_, w), s in zip(terms, starts, strict=True))  # type: ignore[operator,misc]
    if cfg.get("use_weighting") is True:
        start = None  # WPO multiplies each pair's loss by its (small) likelihood weight
    floors = [loss_floor(t, eps) for t, _ in terms]
    floor: float | None = None
    if all(f is not None for f in floors):
        floor = sum(w * f for (_, w), f in zip(terms, floors, strict=True))  # type: ignore[operator,misc]
    pref = [t for t, _ in terms if t != "sft"]
    sigmoid_like = bool(pref) and all(t in SIGMOID_LIKE or t in ("simpo", "cpo") for t in pref) and not extra
    reference_based = not any(t in REFERENCE_FREE for t in types)
    has_accuracy = not (pref and all(t == "kto" for t in pref))
    target = math.log((1 - eps) / eps) if 0 < eps < 0.5 and any(t in ("sigmoid", "robust") for t in pref) else None
    name = "+".join(f"{t}×{w:g}" if w != 1 else t for t, w in terms)
    if rpo > 0:
        name += f"+nll×{rpo:g} (rpo_alpha)"
    if ftx > 0:
        name += f"+sft×{ftx:g} (pref_ftx)"
    if eps > 0:
        name += f" (label_smoothing={eps:g})"
    return LossFamily(
        name=name,
        terms=tuple(terms),
        start=start,
        floor=floor,
        sigmoid_like=sigmoid_like,
        reference_based=reference_based,
        has_accuracy=has_accuracy,
        extra_term=extra,
        margin_target_nats=target,
        source=source,
        assumed=assumed,
    )


def _int(cfg: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        x = _number(cfg.get(key))
        if x is not None and x > 0:
            return int(x)
    return None


def phase(run: Run) -> Phase:
    """Where the log ends in the run's schedule.

    Too early to judge: a log that did not finish while the learning rate was still rising at its end (warm-up not
    over, read from the logged learning rate, or from warmup_steps/warmup_ratio in the config), or that covers under
    5% of the planned steps. Trends of such a log describe the warm-up, not the training.
    """
    cfg = _config(run)
    last = run.steps
    planned = _int(cfg, "max_steps", "total_steps")
    fraction = last / planned if planned else None
    planned_epochs = _number(cfg.get("num_train_epochs"))
    last_epoch: float | None = None
    if run.has("epoch"):
        epochs = _finite(run, "epoch")[1]
        last_epoch = float(epochs[-1]) if len(epochs) else None
    if fraction is None and planned_epochs and planned_epochs > 0 and last_epoch is not None:
        # max_steps=-1 (train by epochs): the logged epoch against the planned epochs is the fraction done
        fraction = last_epoch / planned_epochs
    lr = _finite(run, "learning_rate")[1] if run.has("learning_rate") else None
    first_lr = last_lr = peak_lr = None
    warming = False
    if lr is not None and len(lr):
        values = lr
        first_lr, last_lr, peak_lr = float(values[0]), float(values[-1]), float(values.max())
        tail = values[-max(2, len(values) // 4) :]
        rising_at_end = len(values) >= 2 and bool(np.all(np.diff(tail) >= 0)) and tail[-1] > tail[0]
        warming = rising_at_end and last_lr >= peak_lr
    warmup_steps = _int(cfg, "warmup_steps")
    ratio = _number(cfg.get("warmup_ratio"))
    if warmup_steps is None and ratio and planned:
        warmup_steps = int(ratio * planned)
    if warmup_steps and last < warmup_steps:
        warming = True
    reasons = []
    if warming:
        lr_text = f" ({last_lr:.2g} and rising)" if last_lr is not None else ""
        reasons.append(f"the learning rate is still warming up at the last log{lr_text}")
    if fraction is not None and fraction < 0.05:
        planned_text = f"{planned} planned steps" if planned else f"{planned_epochs:g} planned epochs"
        reasons.append(f"the log covers {last} steps, {fraction:.0%} of {planned_text}")
    # a finished run is judged whatever its schedule did (a warm-up longer than the run is the run's setup)
    too_early = run.ended is not Ended.FINISHED and (warming or (fraction is not None and fraction < 0.05))
    return Phase(last, planned, fraction, warming, first_lr, last_lr, peak_lr, too_early, "; ".join(reasons))


def _quantum(values: Iterable[float]) -> float | None:
    """The spacing of logged accuracies (1/pairs per logged value), when they sit on a coarse grid."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    arr = arr[np.isfinite(arr)]
    if len(arr) < 3 or arr.min() == arr.max():
        return None  # a constant accuracy (a dead run's 0.0) says nothing about how many pairs it averages
    grids = arr[None, :] * np.array([[1.0], [2.0], [3.0], [4.0]])  # row p-1: the values times p pairs
    nearest = np.round(grids)
    if np.isfinite(grids).all():
        # np.allclose(grid, nearest, atol=1e-6) of each row, as numpy computes it for finite values (rtol 1e-5)
        close = (np.abs(grids - nearest) <= 1e-6 + 1e-5 * np.abs(nearest)).all(axis=1).tolist()
    else:  # values so large that a multiple overflows: allclose's own handling of infinities
        close = [np.allclose(grid, near, atol=1e-6) for grid, near in zip(grids, nearest, strict=True)]
    for pairs, on_grid in enumerate(close, start=1):
        if on_grid:
            return 1.0 / pairs
    return None


def noise(run: Run) -> Noise:
    cfg = _config(run)
    loss_steps = _finite(run, "loss")[0] if run.has("loss") else None
    if loss_steps is not None and len(loss_steps) > 1:
        interval = int(stats.median(np.diff(loss_steps)))
    else:
        interval = _int(cfg, "logging_steps") or 0
    batch = _int(cfg, "per_device_train_batch_size", "train_batch_size", "batch_size")
    acc = _finite(run, "accuracy")[1] if run.has("accuracy") else None
    quantum = _quantum(acc) if acc is not None else None
    return Noise(interval, batch, quantum)


def expect(run: Run, beta: float) -> Expectations:
    """The expectations the rules judge ``run`` against, at the β in use."""
    family = loss_family(run, beta)
    return Expectations(beta=beta, family=family, phase=phase(run), noise=noise(run))
