"""The DPO rules: the seed's reference table turned into checks with stable codes.

Each rule is a small function plus metadata, registered by :func:`rule` into :data:`RULES`, one table keyed by code
(``DPO`` and three digits, kept sorted, no duplicates). The docstring of each rule is its documentation page, with
the headings *What it detects / Why it matters / Likely causes / What to try / Example*; the likely cause and what
to try that a finding carries are read from those sections, so the page and the report cannot disagree.

Conventions every rule follows:

* Judge smoothed or robust summaries (medians, Theil–Sen, Kendall's tau), never single points: per-batch metrics
  jump ±0.2 from one logged step to the next.
* Rewards are β × log-ratio, so thresholds on rewards and margins are stated in log-ratio units (nats) and scaled by
  the β in use (:attr:`Context.beta`).
* A rule returns a :class:`Hit` or None. When one cause explains several symptoms, the rule for the cause lists the
  symptom rules in ``absorbs``; their findings are folded into its finding as corroborating evidence.
* The metrics cannot see label quality: wrong preference labels still give a healthy-looking curve. No rule may
  claim the labels are right.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dpodoctor import stats
from dpodoctor.metrics import CORE_METRICS, LN2, Split
from dpodoctor.model import Run
from dpodoctor.results import Finding, RunReport, Severity

CODE_RE = re.compile(r"^DPO\d{3}$")
DEFAULT_BETA = 0.1  # TRL's DPOConfig default, used (and said so) when the run does not log β
SECTIONS = ("What it detects", "Why it matters", "Likely causes", "What to try", "Example")
MIN_POINTS = 8  # fewer logged points than this cannot carry a trend


@dataclass
class Hit:
    """What a rule function reports; the registry turns it into a :class:`Finding`."""

    message: str
    first_step: int | None
    last_step: int | None
    evidence: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    split: Split | None = None
    severity: Severity | None = None  # overrides the rule's default severity
    cause: str | None = None  # overrides the page's "Likely causes" when the evidence tells them apart


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    metrics: tuple[str, ...]
    summary: str
    check: Callable[[Context], Hit | None]
    params: dict[str, float]
    absorbs: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        return _dedent(self.check.__doc__ or "")

    def section(self, heading: str) -> str:
        """One section of the rule's page, as a single paragraph."""
        return parse_sections(self.doc).get(heading, "")


RULES: dict[str, Rule] = {}


def rule(
    code: str,
    name: str,
    severity: Severity,
    summary: str,
    *,
    metrics: Iterable[str] = (),
    params: dict[str, float] | None = None,
    absorbs: Iterable[str] = (),
) -> Callable[[Callable[[Context], Hit | None]], Callable[[Context], Hit | None]]:
    """Register a rule function under ``code``. Refuses malformed or duplicate codes."""

    def decorate(func: Callable[[Context], Hit | None]) -> Callable[[Context], Hit | None]:
        if not CODE_RE.match(code):
            raise ValueError(f"rule code {code!r} does not match {CODE_RE.pattern}")
        if code in RULES:
            raise ValueError(f"rule code {code} registered twice")
        RULES[code] = Rule(code, name, severity, tuple(metrics), summary, func, dict(params or {}), tuple(absorbs))
        ordered = dict(sorted(RULES.items()))
        RULES.clear()
        RULES.update(ordered)
        return func

    return decorate


def _dedent(text: str) -> str:
    lines = text.expandtabs().splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    return "\n".join([lines[0].strip(), *(line[cut:] for line in lines[1:])]).strip() if lines else ""


def parse_sections(doc: str) -> dict[str, str]:
    """Split a rule page into its headed sections (heading line ending in ':')."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and stripped[:-1] in SECTIONS:
            current = stripped[:-1]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: " ".join(" ".join(v).split()) if k != "Example" else "\n".join(v).strip("\n") for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------------
# The context rules read: series access with the β in use and a few shared summaries computed once.
# --------------------------------------------------------------------------------------------------------------


class Context:
    """One run as the rules see it: finite series of the primary split, β, and cached summaries."""

    def __init__(self, run: Run, beta: float | None = None, params: dict[str, dict[str, float]] | None = None):
        self.run = run
        if beta is not None:
            self.beta, self.beta_note = float(beta), "given by the user"
        elif run.beta is not None and run.beta > 0:
            self.beta, self.beta_note = float(run.beta), f"from {run.beta_source or run.source}"
        else:
            self.beta = DEFAULT_BETA
            self.beta_note = "assumed (TRL's default): the log does not say; pass --beta to set it"
        self._params = params or {}
        self._cache: dict[tuple[str, str], pd.Series] = {}
        self.current: Rule | None = None

    def param(self, name: str) -> float:
        assert self.current is not None
        return self._params.get(self.current.code, {}).get(name, self.current.params[name])

    def split_for(self, metric: str) -> Split:
        """Seed rules judge the train curve; a run that logs a metric only at eval is judged on eval."""
        return "train" if self.run.has(metric, "train") else "eval"

    def raw(self, metric: str, split: Split | None = None) -> pd.Series:
        split = split or self.split_for(metric)
        key = (split, metric)
        if key not in self._cache:
            self._cache[key] = self.run.series(metric, split)
        return self._cache[key]

    def series(self, metric: str, split: Split | None = None) -> pd.Series:
        """Finite values of one metric, indexed by step."""
        return stats.finite(self.raw(metric, split))

    def has(self, metric: str) -> bool:
        return len(self.series(metric)) > 0

    def nats(self, reward: float) -> float:
        """A reward or margin in log-ratio units (reward / β)."""
        return reward / self.beta

    def late_median(self, metric: str) -> float:
        s = stats.late(self.series(metric))
        return float(np.median(s.to_numpy())) if len(s) else float("nan")

    def learning(self) -> tuple[bool, str]:
        """Is there evidence the preference is being learned, apart from the loss? (accuracy, margins in nats)"""
        parts: list[str] = []
        learning = False
        if self.has("accuracy"):
            acc = self.late_median("accuracy")
            parts.append(f"accuracy median {acc:.2f}")
            learning |= acc > 0.6
        if self.has("margins"):
            margin = self.late_median("margins")
            parts.append(f"margin median {margin:.4g} ({self.nats(margin):.2f} nats at β={self.beta:g})")
            learning |= self.nats(margin) > 0.5
        return learning, ", ".join(parts)

    def direction(self, metric: str) -> tuple[int, float]:
        """Where a reward went from its start: (+1 up / -1 down / 0 flat, change). Judged on levels, not points.

        Rewards start at 0 by construction (the policy starts as the reference), so the level reached in the last
        third, against the first points, is the trend. It counts only when it is large in nats and most of the
        last third lies on that side of the start.
        """
        s = self.series(metric)
        if len(s) < MIN_POINTS:
            return 0, 0.0
        start = stats.head(s, points=max(3, len(s) // 20))  # the first 5%: three points alone are too noisy
        end = stats.tail_level(s)
        change = end - start
        tail = s.to_numpy()[-max(1, len(s) // 3) :]
        side = stats.share(tail > start) if change > 0 else stats.share(tail < start)
        if abs(self.nats(change)) >= 0.5 and side >= 0.75:
            return (1 if change > 0 else -1), change
        return 0, change


def _span(series: pd.Series) -> tuple[int | None, int | None]:
    if len(series) == 0:
        return None, None
    return int(series.index[0]), int(series.index[-1])


def _r(x: float, digits: int = 4) -> float:
    """Round evidence numbers for people and JSON (NaN stays NaN-free: None)."""
    return float(f"{x:.{digits}g}") if np.isfinite(x) else x


# --------------------------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------------------------


@rule("DPO001", "nonfinite", Severity.ERROR, "NaN or ±inf in a core metric")
def nonfinite(ctx: Context) -> Hit | None:
    """NaN or ±inf values in loss, margins, accuracy or the rewards.

    What it detects:
        Any logged value of a core metric (loss, rewards/margins, rewards/accuracies, rewards/chosen,
        rewards/rejected), in train or eval, that is NaN or infinite.
    Why it matters:
        One non-finite loss poisons the optimizer state: the weights after it are usually garbage, and every
        later curve describes a broken model.
    Likely causes:
        A learning rate too high for the precision in use (fp16 overflow), log-probabilities of -inf from an
        empty or fully masked completion, or a division by zero in a custom loss.
    What to try:
        Lower the learning rate or enable gradient clipping (max_grad_norm), train in bf16 instead of fp16, and
        drop pairs whose completion is empty after truncation (check max_length/max_prompt_length).
    Example:
        loss   0.69 0.61 0.55  nan  nan  nan
    """
    bad: list[tuple[str, str, pd.Series]] = []
    for split in ("train", "eval"):
        for metric in CORE_METRICS:
            s = ctx.raw(metric, split)  # type: ignore[arg-type]
            mask = ~np.isfinite(s.to_numpy(dtype=float))
            if mask.any():
                bad.append((split, metric, s[mask]))
    if not bad:
        return None
    first = min(int(b[2].index[0]) for b in bad)
    last = max(int(b[2].index[-1]) for b in bad)
    worst_split, worst_metric, worst = min(bad, key=lambda b: int(b[2].index[0]))
    described = ", ".join(f"{split} {metric} ×{len(values)}" for split, metric, values in bad)
    return Hit(
        f"{worst_split} {worst_metric} is non-finite ({worst.iloc[0]}) from step {int(worst.index[0])}; "
        f"non-finite values: {described}",
        first,
        last,
        {"count": sum(len(b[2]) for b in bad), "first_step": first},
        metric=worst_metric,
        split=worst_split,  # type: ignore[arg-type]
    )


@rule(
    "DPO101",
    "loss-stuck-ln2",
    Severity.ERROR,
    "after the first ~10% of steps the loss stays near ln 2",
    metrics=("loss",),
    params={"tolerance": 0.02},
    absorbs=("DPO202", "DPO301"),
)
def loss_stuck_ln2(ctx: Context) -> Hit | None:
    """The loss stays at ln 2 ≈ 0.693: the model has not learned to prefer the chosen answers.

    What it detects:
        After the first 10% of the logged steps, the median loss is within `tolerance` (0.02, widened by the
        uncertainty the batch noise puts on a median) of ln 2 and the smoothed loss never clearly leaves that
        band, while neither accuracy (above 0.6) nor the margin (above 0.5 nats) shows learning. bf16 prints ln 2
        as 0.6914; the tolerance covers it.
    Why it matters:
        The sigmoid DPO loss is −log σ(margin); it equals ln 2 exactly when chosen and rejected are scored alike.
        A loss that stays there means the run spent its compute and changed nothing that matters.
    Likely causes:
        A learning rate far too low, parameters that are not trainable (frozen adapters, a wrong target_modules),
        or data that carries no preference signal (random or flipped labels, near-identical pairs).
    What to try:
        Check that the rewards move at all: if chosen and rejected stay at 0, raise the learning rate (5e-7 to
        5e-6 for full fine-tuning, around 5e-5 for LoRA) and confirm trainable parameters; if they move but do
        not separate, audit a sample of the pairs. Note that with a tiny β (0.01) the loss leaves ln 2 slowly
        while accuracy and the margin in nats still grow; this rule then stays silent.
    Example:
        loss   0.693 0.693 0.693 0.693 0.693 0.693   (lr=1e-9)
    """
    s = stats.late(ctx.series("loss"))
    if len(s) < MIN_POINTS:
        return None
    tol = ctx.param("tolerance")
    median = float(np.median(s.to_numpy()))
    # The band widens by the uncertainty of what is measured: at logging_steps=1 the batch noise (σ≈0.1) moves a
    # median of n points by about 1.25σ/√n, and a rolling median of w points by 1.25σ/√w.
    sigma = stats.noise_sigma(s)
    window = stats.window_for(len(s), 0.25)
    median_slack = 3 * 1.25 * sigma / np.sqrt(len(s))
    smooth_slack = 3 * 1.25 * sigma / np.sqrt(window)
    low = float(np.quantile(stats.smooth(s, window).to_numpy(), 0.1))
    if abs(median - LN2) > tol + median_slack or low < LN2 - 2 * tol - smooth_slack:
        return None
    learning, learning_text = ctx.learning()
    if learning:
        return None
    cause = None
    if ctx.has("chosen") and ctx.has("rejected"):
        moved = max(abs(ctx.nats(ctx.late_median("chosen"))), abs(ctx.nats(ctx.late_median("rejected"))))
        if moved < 0.05:
            cause = (
                "The policy is not moving away from the reference at all (chosen and rejected rewards stay at 0): "
                "the learning rate is far too low, or the parameters are not being trained."
            )
        else:
            cause = (
                "The policy moves (rewards change) but does not separate chosen from rejected: the data likely "
                "carries little preference signal (noisy, random or flipped labels, ambiguous pairs)."
            )
    first, last = _span(s)
    return Hit(
        f"loss stays at {median:.4f} (ln 2 = {LN2:.4f}) from step {first} to {last}"
        + (f"; no other sign of learning: {learning_text}" if learning_text else ""),
        first,
        last,
        {"loss_median": _r(median), "distance_from_ln2": _r(abs(median - LN2)), "tolerance": tol},
        cause=cause,
    )


@rule(
    "DPO102",
    "loss-spike",
    Severity.WARNING,
    "the loss drops, then spikes well above its recent level",
    metrics=("loss",),
    params={"sigmas": 5.0, "min_jump": 0.1},
)
def loss_spike(ctx: Context) -> Hit | None:
    """The loss fell, then jumped well above the level it had reached.

    What it detects:
        Once the loss is below its start, a stretch where the median of three consecutive points rises
        above the median of the preceding window by more than `sigmas` (5) times the batch noise and by at least
        `min_jump` (0.1). Single noisy batches do not count.
    Why it matters:
        A spike after progress means an update step threw the policy off: the model after the spike can be worse
        than the one before it, and repeated spikes usually end in divergence.
    Likely causes:
        A learning rate too high, a warm-up too short, unstable batches (very long or degenerate pairs), or no
        gradient clipping.
    What to try:
        Lower the learning rate (halve it), lengthen the warm-up, keep max_grad_norm at 1.0, and look at the
        batches logged at the spike's steps. Keep the checkpoint from before the spike.
    Example:
        loss   0.69 0.52 0.41 0.38 0.95 0.90 0.70 0.55
    """
    s = ctx.series("loss")
    n = len(s)
    if n < MIN_POINTS * 2:
        return None
    values = s.to_numpy()
    sigma = max(stats.noise_sigma(s), 1e-12)
    window = stats.window_for(n, 0.1, minimum=5)
    short = s.rolling(3, center=True, min_periods=3).median().to_numpy()
    baseline = s.rolling(window, min_periods=window).median().shift(2).to_numpy()
    # "drops, then spikes": the level before the jump must be below the start. The start is the median of the
    # first window, since three noisy points can sit anywhere.
    start = stats.head(s, points=window)
    threshold = max(ctx.param("sigmas") * sigma, ctx.param("min_jump"))
    jump = short - baseline
    spiking = (jump > threshold) & (baseline < start) & np.isfinite(jump)
    if not spiking.any():
        return None
    idx = np.flatnonzero(spiking)
    peak = int(idx[np.argmax(jump[idx])])
    # the contiguous stretch of spiking points around the peak
    lo = hi = peak
    while lo - 1 >= 0 and spiking[lo - 1]:
        lo -= 1
    while hi + 1 < n and spiking[hi + 1]:
        hi += 1
    steps = s.index.to_numpy()
    return Hit(
        f"loss jumped from {baseline[peak]:.3f} to {values[peak]:.3f} at step {int(steps[peak])} "
        f"({jump[peak] / sigma:.1f}× the batch noise σ={sigma:.3f}); {len(idx)} spiking point(s)",
        int(steps[lo]),
        int(steps[hi]),
        {"baseline": _r(float(baseline[peak])), "peak": _r(float(values[peak])), "noise_sigma": _r(sigma)},
    )


@rule(
    "DPO103",
    "loss-collapse",
    Severity.WARNING,
    "the loss goes to ~0 (the preference pairs are memorised)",
    metrics=("loss",),
    params={"threshold": 0.05},
)
def loss_collapse(ctx: Context) -> Hit | None:
    """The loss goes to about zero.

    What it detects:
        The smoothed loss falls below `threshold` (0.05) and stays below it for the rest of the run.
    Why it matters:
        A DPO loss near 0 means every training pair is separated by a huge margin: the model has memorised the
        pairs. Accuracy sits at 1.0 and the margins keep growing, but held-out preference quality usually stops
        improving or gets worse, and the policy drifts far from the reference.
    Likely causes:
        Too many epochs over a small preference set, a learning rate too high for the data size, or pairs that
        are trivially separable (the rejected answers differ in an obvious surface feature such as length).
    What to try:
        Train for fewer epochs or steps, add data, raise β to keep the policy closer to the reference, and watch
        the eval loss: keep the checkpoint where it was lowest.
    Example:
        loss   0.69 0.35 0.12 0.04 0.01 0.007 0.007
    """
    s = ctx.series("loss")
    if len(s) < MIN_POINTS:
        return None
    threshold = ctx.param("threshold")
    smoothed = stats.smooth(s)
    below = (smoothed < threshold).to_numpy()
    if not below[-1]:
        return None
    # first step from which the smoothed loss stays below the threshold
    above = np.flatnonzero(~below)
    start_idx = int(above[-1]) + 1 if above.size else 0
    steps = s.index.to_numpy()
    first, last = int(steps[start_idx]), int(steps[-1])
    fraction = (first - steps[0]) / max(1, steps[-1] - steps[0])
    evidence: dict[str, Any] = {"final_loss": _r(float(smoothed.iloc[-1])), "threshold": threshold}
    extra = ""
    if ctx.has("accuracy"):
        acc = stats.tail_level(ctx.series("accuracy"))
        evidence["final_accuracy"] = _r(acc)
        extra += f"; accuracy {acc:.2f}"
    if ctx.has("margins"):
        margin = stats.tail_level(ctx.series("margins"))
        evidence["final_margin_nats"] = _r(ctx.nats(margin))
        extra += f"; margin {margin:.3g} ({ctx.nats(margin):.1f} nats)"
    return Hit(
        f"loss fell below {threshold:g} at step {first} ({fraction:.0%} into the run) and stayed there, "
        f"ending at {smoothed.iloc[-1]:.4f}{extra}",
        first,
        last,
        evidence,
    )


@rule(
    "DPO201",
    "margin-negative",
    Severity.ERROR,
    "margins stay below 0",
    metrics=("margins",),
    absorbs=("DPO401", "DPO402"),
)
def margin_negative(ctx: Context) -> Hit | None:
    """The reward margin stays negative: rejected answers are scored above chosen ones.

    What it detects:
        After the first 10% of steps, at least 70% of the margins are below 0 and their median is below
        −0.1 nats (× β).
    Why it matters:
        DPO raises chosen over rejected. A persistently negative margin means the model learns the opposite of
        the labelled preference, or cannot follow it at all.
    Likely causes:
        Chosen and rejected swapped in the data or in the column mapping, a reference model that is not the
        starting policy, or a learning rate so high that updates overshoot.
    What to try:
        Inspect a few pairs as the trainer sees them (after the chat template), check the chosen/rejected column
        names, make sure the reference is the SFT checkpoint the policy starts from, and lower the learning rate.
    Example:
        margins  0.00 -0.02 -0.05 -0.08 -0.11 -0.12
    """
    s = stats.late(ctx.series("margins"))
    if len(s) < MIN_POINTS:
        return None
    values = s.to_numpy()
    median = float(np.median(values))
    negative = stats.share(values < 0)
    if negative < 0.7 or ctx.nats(median) > -0.1:
        return None
    first, last = _span(s)
    return Hit(
        f"margins are negative at {negative:.0%} of the steps from {first} to {last} "
        f"(median {median:.4g}, {ctx.nats(median):.2f} nats)",
        first,
        last,
        {"median": _r(median), "median_nats": _r(ctx.nats(median)), "share_negative": _r(negative, 3)},
    )


@rule(
    "DPO202",
    "margin-flat",
    Severity.WARNING,
    "margins oscillate near 0 and never separate",
    metrics=("margins",),
    params={"band_nats": 0.25},
)
def margin_flat(ctx: Context) -> Hit | None:
    """The reward margin hovers around 0 and never grows.

    What it detects:
        After the first 10% of steps, the smoothed margin stays inside ±`band_nats` (0.25) nats × β of zero.
    Why it matters:
        A healthy margin rises from about 0 and then levels off. One that stays at 0 means the model cannot tell
        the chosen answer from the rejected one, whatever the loss does.
    Likely causes:
        Ambiguous pairs (chosen and rejected nearly identical, or the preference is noise), a length imbalance
        the model exploits in both directions, or hyperparameters (learning rate, β) that are off.
    What to try:
        Read a sample of pairs and check the labels agree with a human reader, balance lengths between chosen and
        rejected, then sweep the learning rate. Remember that wrong labels can still give a healthy-looking
        curve: a growing margin is necessary, not sufficient.
    Example:
        margins  0.003 -0.004 0.002 -0.001 0.004 0.000
    """
    s = stats.late(ctx.series("margins"))
    if len(s) < MIN_POINTS:
        return None
    band = ctx.param("band_nats") * ctx.beta
    smoothed = stats.smooth(s).to_numpy()
    if np.max(np.abs(smoothed)) > band:
        return None
    first, last = _span(s)
    peak = float(np.max(np.abs(smoothed)))
    return Hit(
        f"smoothed margins stay within ±{peak:.3g} ({ctx.nats(peak):.2f} nats) from step {first} to {last}",
        first,
        last,
        {"max_abs_smoothed": _r(peak), "band": _r(band)},
    )


@rule(
    "DPO301",
    "accuracy-chance",
    Severity.ERROR,
    "accuracy stays near 0.5 (or at 0 with zero margins: ties)",
    metrics=("accuracy",),
    params={"upper": 0.6},
)
def accuracy_chance(ctx: Context) -> Hit | None:
    """Reward accuracy stays at chance.

    What it detects:
        After the first 10% of steps the median of rewards/accuracies is at most `upper` (0.6), and the margins
        are not clearly negative (that case is DPO201). A dead run that logs 0.0 with zero margins counts too:
        TRL's accuracy is the share of pairs with chosen reward strictly above rejected, so ties count as misses.
    Why it matters:
        Accuracy is the share of pairs the model ranks the right way. Healthy runs rise from about 0.5 toward
        0.8–0.95; one that stays near 0.5 has learned no preference.
    Likely causes:
        Labels that carry no signal (random, noisy or flipped pairs), a learning rate too low for anything to
        move, or pairs too similar to separate.
    What to try:
        Check whether the margins move at all (if not, see DPO101 and raise the learning rate); otherwise audit
        the pairs and their labels.
    Example:
        accuracy  0.38 0.50 0.45 0.55 0.50 0.52
    """
    s = stats.late(ctx.series("accuracy"))
    if len(s) < MIN_POINTS:
        return None
    median = float(np.median(s.to_numpy()))
    if median > ctx.param("upper"):
        return None
    ties = ""
    if ctx.has("margins"):
        margin = ctx.late_median("margins")
        if ctx.nats(margin) < -0.1:
            return None  # learned backwards: DPO201's case
        if median < 0.4 and abs(ctx.nats(margin)) < 0.05:
            ties = " with margins ≈ 0: chosen and rejected are scored alike, and TRL counts ties as misses"
    first, last = _span(s)
    return Hit(
        f"accuracy median {median:.2f} from step {first} to {last}{ties}",
        first,
        last,
        {"median": _r(median), "upper": ctx.param("upper")},
    )


def _rewards(ctx: Context) -> tuple[int, float, int, float]:
    c_dir, c_change = ctx.direction("chosen")
    r_dir, r_change = ctx.direction("rejected")
    return c_dir, c_change, r_dir, r_change


def _reward_span(ctx: Context) -> tuple[int | None, int | None]:
    return _span(ctx.series("chosen"))


def _moves(ctx: Context, c_change: float, r_change: float) -> dict[str, Any]:
    return {
        "chosen_change": _r(c_change),
        "rejected_change": _r(r_change),
        "chosen_change_nats": _r(ctx.nats(c_change)),
        "rejected_change_nats": _r(ctx.nats(r_change)),
    }


@rule(
    "DPO401",
    "chosen-falling",
    Severity.WARNING,
    "the chosen reward decreases while the rejected one does not",
    metrics=("chosen", "rejected"),
)
def chosen_falling(ctx: Context) -> Hit | None:
    """The chosen reward falls while the rejected reward does not.

    What it detects:
        Over the run, the chosen reward drops by at least 0.5 nats (× β) and most of its last third stays below its
        start, while the rejected reward stays level or rises.
    Why it matters:
        DPO should make chosen answers likelier relative to the reference. If only the chosen side drops, the
        model is moving away from the answers it was told to prefer.
    Likely causes:
        Chosen answers the model finds unlikely (off-policy data from another model), a chat template applied
        differently to chosen and rejected, or label errors.
    What to try:
        Generate chosen answers with the SFT model itself or SFT on them first, check the template on both sides,
        and consider a DPO+SFT loss (rpo_alpha) to anchor the chosen likelihood.
    Example:
        chosen    0.00 -0.05 -0.12 -0.20 -0.26
        rejected  0.00  0.01  0.00  0.02  0.01
    """
    c_dir, c_change, r_dir, r_change = _rewards(ctx)
    if c_dir != -1 or r_dir == -1:
        return None
    first, last = _reward_span(ctx)
    return Hit(
        f"chosen reward fell by {-c_change:.3g} ({ctx.nats(-c_change):.1f} nats) while rejected "
        f"{'rose' if r_dir == 1 else 'stayed level'} ({r_change:+.3g})",
        first,
        last,
        _moves(ctx, c_change, r_change),
        metric="chosen",
    )


@rule(
    "DPO402",
    "rejected-rising",
    Severity.WARNING,
    "the rejected reward increases while the chosen one does not",
    metrics=("chosen", "rejected"),
)
def rejected_rising(ctx: Context) -> Hit | None:
    """The rejected reward rises while the chosen reward does not.

    What it detects:
        The rejected reward rises by at least 0.5 nats (× β) over the run while the chosen reward stays level or
        falls.
    Why it matters:
        DPO should push rejected answers down. A rising rejected reward means the model is making the answers it
        was told to avoid more likely.
    Likely causes:
        Swapped chosen/rejected columns, rejected answers that share most of their text with the chosen ones, or
        a learning rate too high.
    What to try:
        Verify the column mapping on a few examples, check how much of each pair is shared text, and lower the
        learning rate.
    Example:
        chosen    0.00 0.00 -0.01 0.00 0.01
        rejected  0.00 0.04  0.09 0.15 0.20
    """
    c_dir, c_change, r_dir, r_change = _rewards(ctx)
    if r_dir != 1 or c_dir == 1:
        return None
    first, last = _reward_span(ctx)
    return Hit(
        f"rejected reward rose by {r_change:.3g} ({ctx.nats(r_change):.1f} nats) while chosen "
        f"{'fell' if c_dir == -1 else 'stayed level'} ({c_change:+.3g})",
        first,
        last,
        _moves(ctx, c_change, r_change),
        metric="rejected",
    )


def _margin_context(ctx: Context) -> str:
    if not ctx.has("margins") or not ctx.has("loss"):
        return ""
    m = ctx.series("margins")
    loss = ctx.series("loss")
    return (
        f"; beside it, the loss went {stats.head(loss):.3g} → {stats.tail_level(loss):.3g} and the margin "
        f"{stats.head(m):.3g} → {stats.tail_level(m):.3g}"
    )


@rule(
    "DPO403",
    "both-rising",
    Severity.WARNING,
    "chosen and rejected rewards rise together",
    metrics=("chosen", "rejected"),
)
def both_rising(ctx: Context) -> Hit | None:
    """Chosen and rejected rewards rise together.

    What it detects:
        Both rewards rise by at least 0.5 nats (× β) over the run, each with most of its last third above its
        start.
    Why it matters:
        DPO only needs the gap to grow; when both sides rise, the model makes any answer of this form likelier,
        rejected ones included. Read it beside the loss and the margin: if the margin grows too, the preference is
        still learned, but the policy also drifts toward the shared content of the pairs.
    Likely causes:
        An SFT term in the loss (DPO+SFT / RPO, `loss_type=["sigmoid","sft"]`) that raises every completion,
        pairs that share a long common part (template, prefix or tail), or a reference model that differs from
        the starting policy.
    What to try:
        If intended (an SFT mix), check that the margin still grows and that the SFT weight is not drowning the
        preference term; otherwise shorten the shared part of the pairs and confirm the reference model.
    Example:
        chosen    0.2 1.2 2.1 2.5 2.8 2.9
        rejected  0.2 1.2 2.1 2.4 2.7 2.8
    """
    c_dir, c_change, r_dir, r_change = _rewards(ctx)
    if c_dir != 1 or r_dir != 1:
        return None
    first, last = _reward_span(ctx)
    return Hit(
        f"chosen rose by {c_change:.3g} and rejected by {r_change:.3g} "
        f"({ctx.nats(c_change):.1f} and {ctx.nats(r_change):.1f} nats){_margin_context(ctx)}",
        first,
        last,
        _moves(ctx, c_change, r_change),
        metric="chosen",
    )


@rule(
    "DPO404",
    "both-falling",
    Severity.INFO,
    "chosen and rejected rewards fall together (warning when chosen falls nearly as fast)",
    metrics=("chosen", "rejected"),
    params={"ratio": 0.5},
)
def both_falling(ctx: Context) -> Hit | None:
    """Chosen and rejected rewards fall together (likelihood displacement).

    What it detects:
        Both rewards fall by at least 0.5 nats (× β). It is a warning when the chosen reward falls at least
        `ratio` (0.5) times as far as the rejected one, and information otherwise.
    Why it matters:
        This is common and often benign: DPO widens the gap mostly by pushing rejected answers down, and the
        chosen ones drift down a little with them. When the chosen side falls nearly as fast, the model is
        making its preferred answers much less likely too, which often shows as degraded generations.
    Likely causes:
        A learning rate that is too high, many epochs, or pairs whose chosen and rejected answers share most
        tokens, so pushing one down drags the other.
    What to try:
        If the margin grows and chosen falls slowly, nothing. If chosen falls nearly as fast as rejected, lower
        the learning rate, train fewer steps, or anchor the chosen likelihood with an SFT term (rpo_alpha).
    Example:
        chosen    0.0 -0.3 -0.7 -0.9 -1.0
        rejected  0.0 -0.4 -0.9 -1.3 -1.5
    """
    c_dir, c_change, r_dir, r_change = _rewards(ctx)
    if c_dir != -1 or r_dir != -1:
        return None
    ratio = c_change / r_change if r_change else float("inf")
    severe = ratio >= ctx.param("ratio")
    first, last = _reward_span(ctx)
    verdict = (
        "chosen falls nearly as fast as rejected: the preferred answers are being pushed down too"
        if severe
        else "chosen falls much slower than rejected, which is usually benign"
    )
    evidence = _moves(ctx, c_change, r_change) | {"ratio": _r(ratio, 3)}
    return Hit(
        f"chosen fell by {-c_change:.3g} and rejected by {-r_change:.3g} (ratio {ratio:.2f}): {verdict}"
        f"{_margin_context(ctx)}",
        first,
        last,
        evidence,
        metric="chosen",
        severity=Severity.WARNING if severe else Severity.INFO,
    )


# --------------------------------------------------------------------------------------------------------------
# Running the rules
# --------------------------------------------------------------------------------------------------------------


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    """Rules whose code starts with one of ``select`` (all when None) and with none of ``ignore``."""
    chosen = [r for r in RULES.values() if select is None or any(r.code.startswith(p) for p in select)]
    return [r for r in chosen if not any(r.code.startswith(p) for p in (ignore or ()))]


def diagnose_run(
    run: Run,
    *,
    beta: float | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    params: dict[str, dict[str, float]] | None = None,
) -> RunReport:
    """Run every selected rule on one run, fold symptoms into their causes, and return the run's report."""
    ctx = Context(run, beta=beta, params=params)
    findings: dict[str, Finding] = {}
    skipped: dict[str, list[str]] = {}
    rules = select_rules(select, ignore)
    for r in rules:
        missing = [m for m in r.metrics if not ctx.has(m)]
        if missing:
            skipped[r.code] = missing
            continue
        ctx.current = r
        hit = r.check(ctx)
        if hit is None:
            continue
        metric = hit.metric or (r.metrics[0] if r.metrics else "loss")
        findings[r.code] = Finding(
            code=r.code,
            name=r.name,
            severity=hit.severity or r.severity,
            split=hit.split or ctx.split_for(metric),
            metric=metric,
            first_step=hit.first_step,
            last_step=hit.last_step,
            message=hit.message,
            evidence=hit.evidence,
            cause=hit.cause or r.section("Likely causes"),
            fix=r.section("What to try"),
        )
    for r in rules:
        if r.code not in findings:
            continue
        for code in r.absorbs:
            symptom = findings.pop(code, None)
            if symptom is not None:
                findings[r.code].corroborating.append(f"{symptom.code} {symptom.name}: {symptom.message}")
    ordered = sorted(findings.values(), key=lambda f: (-f.severity.rank, f.code))
    return RunReport(run=run, findings=ordered, skipped=skipped, beta_used=ctx.beta, beta_note=ctx.beta_note)
