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
from dpodoctor.curve import CurveSummary, fmt, summarize
from dpodoctor.expectations import Expectations, expect
from dpodoctor.metrics import CORE_METRICS, LN2, Split
from dpodoctor.model import Ended, Run
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
class Skip:
    """A rule could not judge this run (too few points, no eval split...): recorded as not checked, never as passed."""

    needs: str


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    metrics: tuple[str, ...]
    summary: str
    check: Callable[[Context], Hit | Skip | None]
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
) -> Callable[[Callable[[Context], Hit | Skip | None]], Callable[[Context], Hit | Skip | None]]:
    """Register a rule function under ``code``. Refuses malformed or duplicate codes."""

    def decorate(func: Callable[[Context], Hit | Skip | None]) -> Callable[[Context], Hit | Skip | None]:
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
        self.beta_assumed = beta is None and not (run.beta is not None and run.beta > 0)
        self._params = params or {}
        self._cache: dict[tuple[str, str], pd.Series] = {}
        self._curves: dict[tuple[str, str], CurveSummary] = {}
        self.current: Rule | None = None
        # what a healthy run of this setup looks like (loss family, phase, noise): the rules judge against it
        self.expect: Expectations = expect(run, self.beta)

    def curve(self, metric: str, split: Split | None = None) -> CurveSummary:
        """The one summary of a curve (computed once per run): what messages quote and reporters print."""
        split = split or self.split_for(metric)
        key = (split, metric)
        if key not in self._curves:
            self._curves[key] = summarize(self.raw(metric, split), split, metric)
        return self._curves[key]

    def curves(self) -> dict[tuple[str, str], CurveSummary]:
        """Every logged curve of the run, summarised (reusing the ones the rules already asked for)."""
        return {(split, metric): self.curve(metric, split) for split, metric in self.run.metrics}  # type: ignore[arg-type]

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

    @property
    def beta_label(self) -> str:
        """``β=0.1``, marked when assumed: a threshold in nats is only as good as the β it divides by."""
        return (
            f"β={self.beta:g} (assumed: the log does not say; pass --beta)" if self.beta_assumed else f"β={self.beta:g}"
        )

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
            parts.append(f"margin median {margin:.4g} ({self.nats(margin):.2f} nats at {self.beta_label})")
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


def _short(have: int, need: int = MIN_POINTS) -> Skip:
    return Skip(f"≥{need} logged points (has {have})")


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


@rule("DPO001", "nonfinite", Severity.ERROR, "NaN or ±inf in a core metric", absorbs=("DPO103", "DPO104"))
def nonfinite(ctx: Context) -> Hit | Skip | None:
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
    absorbs=("DPO202", "DPO203", "DPO301", "DPO303", "DPO601"),
)
def loss_stuck_ln2(ctx: Context) -> Hit | Skip | None:
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
        return _short(len(s))
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
def loss_spike(ctx: Context) -> Hit | Skip | None:
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
        return _short(n, MIN_POINTS * 2)
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
    absorbs=("DPO204", "DPO302"),
)
def loss_collapse(ctx: Context) -> Hit | Skip | None:
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
        return _short(len(s))
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
    absorbs=("DPO304", "DPO401", "DPO402"),
)
def margin_negative(ctx: Context) -> Hit | Skip | None:
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
        return _short(len(s))
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
    absorbs=("DPO303",),
)
def margin_flat(ctx: Context) -> Hit | Skip | None:
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
        return _short(len(s))
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
def accuracy_chance(ctx: Context) -> Hit | Skip | None:
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
        return _short(len(s))
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


def _rewards_short(ctx: Context) -> Skip | None:
    n = min(len(ctx.series("chosen")), len(ctx.series("rejected")))
    return _short(n) if n < MIN_POINTS else None


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
def chosen_falling(ctx: Context) -> Hit | Skip | None:
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
    if (short := _rewards_short(ctx)) is not None:
        return short
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
def rejected_rising(ctx: Context) -> Hit | Skip | None:
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
    if (short := _rewards_short(ctx)) is not None:
        return short
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
    "chosen and rejected rewards rise together (info when rejected rises much slower)",
    metrics=("chosen", "rejected"),
    params={"ratio": 0.5},
)
def both_rising(ctx: Context) -> Hit | Skip | None:
    """Chosen and rejected rewards rise together.

    What it detects:
        Both rewards rise by at least 0.5 nats (× β) over the run, each with most of its last third above its
        start. It is a warning when rejected rises at least `ratio` (0.5) times as far as chosen, and information
        when chosen clearly leads (the margin then grows as DPO intends).
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
    if (short := _rewards_short(ctx)) is not None:
        return short
    c_dir, c_change, r_dir, r_change = _rewards(ctx)
    if c_dir != 1 or r_dir != 1:
        return None
    ratio = r_change / c_change if c_change else float("inf")
    together = ratio >= ctx.param("ratio")
    verdict = (
        "they rise at a similar rate, so the gap comes from little more than a shared drift"
        if together
        else "rejected rises much slower than chosen, so the preference is still learned"
    )
    first, last = _reward_span(ctx)
    return Hit(
        f"chosen rose by {c_change:.3g} and rejected by {r_change:.3g} "
        f"({ctx.nats(c_change):.1f} and {ctx.nats(r_change):.1f} nats, ratio {ratio:.2f}): {verdict}"
        f"{_margin_context(ctx)}",
        first,
        last,
        _moves(ctx, c_change, r_change) | {"ratio": _r(ratio, 3)},
        metric="chosen",
        severity=Severity.WARNING if together else Severity.INFO,
    )


@rule(
    "DPO404",
    "both-falling",
    Severity.INFO,
    "chosen and rejected rewards fall together (warning when chosen falls nearly as fast)",
    metrics=("chosen", "rejected"),
    params={"ratio": 0.5},
)
def both_falling(ctx: Context) -> Hit | Skip | None:
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
    if (short := _rewards_short(ctx)) is not None:
        return short
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
# Data and run-level checks (DPO0xx)
# --------------------------------------------------------------------------------------------------------------


@rule("DPO002", "missing-metrics", Severity.WARNING, "a core metric is absent, so the rules that need it cannot run")
def missing_metrics(ctx: Context) -> Hit | Skip | None:
    """A core DPO metric is not in the log.

    What it detects:
        One of loss, rewards/margins, rewards/accuracies, rewards/chosen or rewards/rejected has no finite value in
        either the train or the eval split: it is not logged at all, or only as NaN/inf (then DPO001 fires too).
        The finding lists the rules that could not run because of it.
    Why it matters:
        A rule that cannot run has not passed. A report that is silent because the metric was never logged would
        let a broken run through a CI gate.
    Likely causes:
        A trainer that logs other names (map them with --metric-map key=canonical), a custom training loop that
        logs only the loss, or a log cut before the first metric line.
    What to try:
        Log the DPO metrics (TRL's DPOTrainer logs all five by default), or map the trainer's own key names onto
        them with --metric-map; check that the file given is the run's full log.
    Example:
        logged: loss, learning_rate    missing: rewards/margins, rewards/accuracies, rewards/chosen, rewards/rejected
    """
    missing = [m for m in CORE_METRICS if not ctx.has(m)]
    if not missing:
        return None
    logged = {m for _, m in ctx.run.metrics}
    absent = [m for m in missing if m not in logged]
    nonfinite_only = [m for m in missing if m in logged]
    blocked = sorted(r.code for r in RULES.values() if set(r.metrics) & set(missing))
    parts = []
    if absent:
        parts.append(f"not logged: {', '.join(absent)}")
    if nonfinite_only:
        parts.append(f"logged only as NaN/inf: {', '.join(nonfinite_only)}")
    return Hit(
        f"{'; '.join(parts)}; rules that could not run: {', '.join(blocked) or 'none'}",
        None,
        None,
        {"missing": absent, "nonfinite_only": nonfinite_only, "rules_not_run": blocked},
        metric=missing[0],
    )


@rule("DPO003", "too-short", Severity.INFO, "too few logged points to judge trends")
def too_short(ctx: Context) -> Hit | Skip | None:
    """Too few logged points to judge trends.

    What it detects:
        The run logged fewer than 16 points of its main metric (the train loss, else any core metric). Trend rules
        need at least 8 points after the warm-up and spike detection needs 16.
    Why it matters:
        Per-batch DPO metrics jump ±0.2 from one logged step to the next. With a handful of points no honest
        statement about a trend is possible, so the trend rules stay silent and say so instead of passing.
    Likely causes:
        A large logging_steps for a short run, a run that crashed early, or a log that keeps only a few entries
        (a trainer_state.json of an early checkpoint).
    What to try:
        Lower logging_steps (TRL logs every 10 steps by default; 1–5 is better for short runs), or check the log
        of the full run.
    Example:
        loss   0.693 0.61 0.58        (3 points: no trend can be judged)
    """
    counts = {m: len(ctx.series(m)) for m in CORE_METRICS if ctx.has(m)}
    if not counts:
        return None
    have = counts.get("loss", max(counts.values()))
    need = MIN_POINTS * 2
    if have >= need:
        return None
    return Hit(
        f"only {have} logged point(s); trend rules need at least {MIN_POINTS} after the warm-up and spike "
        f"detection {need}",
        None,
        None,
        {"points": have, "needed": need},
        metric="loss" if "loss" in counts else next(iter(counts)),
    )


@rule(
    "DPO004",
    "inconsistent-margins",
    Severity.WARNING,
    "margins ≠ chosen − rejected beyond rounding",
    metrics=("margins", "chosen", "rejected"),
    params={"relative": 5e-3},
)
def inconsistent_margins(ctx: Context) -> Hit | Skip | None:
    """The logged margin is not chosen − rejected.

    What it detects:
        At more than 10% of the steps where all three are logged, rewards/margins differs from rewards/chosen −
        rewards/rejected by more than `relative` (0.005) of their size, which is more than printing them with four
        significant digits can explain.
    Why it matters:
        DPO's margin is by definition the chosen reward minus the rejected reward. When the logged numbers
        disagree, every rule reading them is reading something else: the diagnosis cannot be trusted.
    Likely causes:
        A metric mapping that points a key at the wrong canonical metric (a --metric-map or a framework alias),
        two runs mixed in one log, or a custom logger that averages the three differently.
    What to try:
        Check the key names the trainer logs and how they are mapped (dpodoctor maps framework keys in one table;
        --metric-map overrides it), and make sure the log holds a single run.
    Example:
        chosen 0.20  rejected -0.40  margins 0.35   (expected 0.60)
    """
    m, c, r = ctx.series("margins"), ctx.series("chosen"), ctx.series("rejected")
    common = m.index.intersection(c.index).intersection(r.index)
    if len(common) < 3:
        return _short(len(common), 3)
    mv, cv, rv = m[common].to_numpy(), c[common].to_numpy(), r[common].to_numpy()
    error = np.abs(mv - (cv - rv))
    scale = np.maximum.reduce([np.abs(mv), np.abs(cv), np.abs(rv)])
    bad = error > ctx.param("relative") * scale + 1e-9
    if stats.share(bad) <= 0.1:
        return None
    steps = np.asarray(common)[bad]
    worst = int(np.argmax(np.where(bad, error, -1)))
    return Hit(
        f"margins differ from chosen − rejected at {int(bad.sum())} of {len(common)} steps; worst at step "
        f"{int(np.asarray(common)[worst])}: margin {mv[worst]:.4g} vs {cv[worst]:.4g} − ({rv[worst]:.4g}) = "
        f"{cv[worst] - rv[worst]:.4g}",
        int(steps[0]),
        int(steps[-1]),
        {"inconsistent_steps": int(bad.sum()), "steps_compared": len(common)},
        metric="margins",
    )


@rule("DPO005", "run-ended-early", Severity.WARNING, "the log stops mid-run (crash, kill, truncation)")
def run_ended_early(ctx: Context) -> Hit | Skip | None:
    """The log stops before the end of training.

    What it detects:
        The reader found that the run did not finish: no `train_runtime` summary with a traceback, `CANCELLED` or
        a kill at the end of stdout, a SwanLab CRASHED or missing finish record, a truncated event file or a torn
        last record.
    Why it matters:
        The curves end where the log ends, so every trend is judged on part of a run, and the checkpoint that would
        ship may be an early one. A crash is exactly when people run dpodoctor, so it says so first.
    Likely causes:
        Out-of-memory kills, a scheduler time limit (SLURM CANCELLED), a NaN assertion in the trainer, a node
        failure, or copying the log while the run was still writing it.
    What to try:
        Read the end of the stdout log for the error, resume from the last checkpoint, and re-check once the run has
        finished.
    Example:
        ... {'loss': 0.512, ...}  slurmstepd: error: *** JOB 123 CANCELLED AT ... DUE TO TIME LIMIT ***
    """
    ended = ctx.run.ended
    if ended not in (Ended.CRASHED, Ended.TRUNCATED):
        return None
    detail = "; ".join(
        n
        for n in ctx.run.notes
        if any(
            w in n.lower()
            for w in (
                "crash",
                "trunc",
                "torn",
                "cancel",
                "traceback",
                "kill",
                "finish",
                "signal",
                "stopped",
                "interrupt",
            )
        )
    )
    last = ctx.run.steps
    return Hit(
        f"the log ends {ended.value} at step {last}" + (f": {detail}" if detail else ""),
        last,
        last,
        {"ended": ended.value, "last_step": last},
        metric="loss",
    )


# --------------------------------------------------------------------------------------------------------------
# More loss, margin and accuracy checks
# --------------------------------------------------------------------------------------------------------------


@rule(
    "DPO104",
    "loss-start-off",
    Severity.INFO,
    "the first loss is far from ln 2",
    metrics=("loss",),
    params={"tolerance": 0.1},
)
def loss_start_off(ctx: Context) -> Hit | Skip | None:
    """The first logged loss is far from ln 2.

    What it detects:
        The first logged loss differs from ln 2 ≈ 0.693 by more than `tolerance` (0.1).
    Why it matters:
        At step 0 the policy equals the reference, every reward is 0 and the sigmoid DPO loss is exactly ln 2. A
        different start means either the policy did not start from the reference model, or the loss is not plain
        sigmoid DPO, and then the loss thresholds of the other rules (ln 2, ~0) do not apply as written.
    Likely causes:
        A loss other than sigmoid DPO: IPO (starts at 1/(4β²)-scale values), hinge (starts at 1), or a DPO+SFT mix
        (RPO, `loss_type=["sigmoid","sft"]`) whose NLL term adds several nats; or a reference model that is not
        the policy's starting checkpoint; or a large logging_steps, so the first logged value already averages
        many updates.
    What to try:
        Check loss_type / rpo_alpha in the config and that ref_model is the SFT checkpoint the policy starts from.
        If the mix is intended, judge the run by its margins and accuracy rather than by the loss level.
    Example:
        loss   3.50 2.66 1.82 1.44 1.22 ...   (DPO + SFT)
    """
    s = ctx.series("loss")
    if len(s) == 0:
        return None
    first = float(s.iloc[0])
    tol = ctx.param("tolerance")
    if abs(first - LN2) <= tol:
        return None
    loss_type = ctx.run.config.get("loss_type")
    rpo = ctx.run.config.get("rpo_alpha")
    said = ""
    if loss_type is not None:
        said = f"; the config says loss_type={loss_type}"
    if rpo:
        said += f", rpo_alpha={rpo}"
    step = int(s.index[0])
    return Hit(
        f"the first logged loss is {first:.4g} at step {step}, {abs(first - LN2):.3g} from ln 2{said}",
        step,
        step,
        {"first_loss": _r(first), "ln2": _r(LN2)},
    )


@rule(
    "DPO105",
    "loss-rising",
    Severity.ERROR,
    "the smoothed loss trends upward over the later part of the run",
    metrics=("loss",),
    params={"min_rise": 0.05},
)
def loss_rising(ctx: Context) -> Hit | Skip | None:
    """The loss trends upward in the second half of the run.

    What it detects:
        Over the second half of the logged steps, the Theil–Sen slope of the loss is positive, Kendall's test
        finds the upward trend significant (p < 0.01), and the fitted rise is at least `min_rise` (0.05) and
        larger than the batch noise.
    Why it matters:
        A DPO loss that climbs back up means training is undoing what it learned: the later checkpoints are worse
        on the training objective itself, not only on held-out data.
    Likely causes:
        A learning rate too high for the later phase (no decay, or a restart), divergence after the margins grew
        too large, or data order effects (a second epoch over harder or differently labelled pairs).
    What to try:
        Lower the learning rate or use a decaying schedule, keep an earlier checkpoint, and check whether the rise
        starts at an epoch boundary or a resume.
    Example:
        loss   0.69 0.55 0.48 0.47 0.52 0.58 0.63
    """
    s = ctx.series("loss")
    if len(s) < MIN_POINTS * 2:
        return _short(len(s), MIN_POINTS * 2)
    half = s.iloc[len(s) // 2 :]
    t = stats.trend(half)
    sigma = stats.noise_sigma(s)
    if t.slope <= 0 or not t.significant() or t.change < max(ctx.param("min_rise"), sigma):
        return None
    first, last = _span(half)
    return Hit(
        f"the loss rises by {t.change:.3g} from step {first} to {last} (Theil–Sen slope {t.slope:.3g}/step, "
        f"Kendall τ={t.tau:.2f}, p={t.p_value:.1g})",
        first,
        last,
        {"rise": _r(t.change), "tau": _r(t.tau, 3), "p_value": _r(t.p_value, 2), "noise_sigma": _r(sigma)},
    )


@rule(
    "DPO203",
    "margin-slow",
    Severity.INFO,
    "margins barely grow for the β in use",
    metrics=("margins",),
    params={"nats": 2.0},
)
def margin_slow(ctx: Context) -> Hit | Skip | None:
    """The margin grows, but only a little for the β in use.

    What it detects:
        The margin ends above the flat band of DPO202 but below `nats` (2) nats × β, i.e. the log-ratio gap
        between chosen and rejected stays small.
    Why it matters:
        Margins scale with β (rewards are β × log-ratio). With a large β (0.5–1.0) the policy is held close to the
        reference and margins in log-ratio terms grow slowly by design, which is expected. With a small β, a
        small log-ratio gap means the model separates the pairs only weakly.
    Likely causes:
        A large β (expected), a learning rate on the low side, few steps, or hard, ambiguous pairs.
    What to try:
        With β ≥ 0.5, nothing if accuracy rises; otherwise train longer or raise the learning rate a little, and
        compare runs by margin / β rather than by raw margin.
    Example:
        margins (β=1.0)  0.0 0.25 0.69 1.03 1.18 1.26
    """
    s = ctx.series("margins")
    if len(s) < MIN_POINTS:
        return _short(len(s))
    end = stats.tail_level(s)
    nats = ctx.nats(end)
    if not (0.25 < nats < ctx.param("nats")):
        return None
    expected = (
        f"expected with a large β ({ctx.beta:g}): rewards are β × log-ratio, so a constrained policy moves slowly"
        if ctx.beta >= 0.5
        else f"small for {ctx.beta_label}"
    )
    first, last = _span(s)
    return Hit(
        f"the margin ends at {end:.3g} = {nats:.2f} nats at {ctx.beta_label}: {expected}",
        first,
        last,
        {"final_margin": _r(end), "final_margin_nats": _r(nats), "beta": ctx.beta},
    )


@rule(
    "DPO204",
    "margin-runaway",
    Severity.WARNING,
    "margins/β keep growing without levelling off, or reach extreme values",
    metrics=("margins",),
    params={"extreme_nats": 25.0, "drift_nats": 10.0},
)
def margin_runaway(ctx: Context) -> Hit | Skip | None:
    """The log-ratio gap (margin / β) keeps growing or reaches extreme values.

    What it detects:
        The margin in nats (margin / β) ends above `extreme_nats` (25), or ends above `drift_nats` (10) while still
        growing as fast in the last third of the run as in the first (no levelling off).
    Why it matters:
        A healthy margin rises and then levels off. A gap of tens of nats means the policy has moved far from the
        reference: it exploits the pairs rather than learning a preference, and generations often degrade
        (repetition, length hacking).
    Likely causes:
        A tiny β (0.01) that barely constrains the policy, too many epochs, or too high a learning rate.
    What to try:
        Raise β, train for fewer steps, and look at sample generations from the late checkpoints; watch the eval
        margins and loss (DPO501).
    Example:
        margins (β=0.1)  0.4 1.4 2.5 3.4 4.0 4.6 4.9 5.0   (50 nats)
    """
    s = ctx.series("margins")
    if len(s) < MIN_POINTS * 2:
        return _short(len(s), MIN_POINTS * 2)
    end_nats = ctx.nats(stats.tail_level(s))
    third = len(s) // 3
    early, late_part = stats.trend(s.iloc[:third]), stats.trend(s.iloc[-third:])
    still_growing = late_part.significant(0.05) and late_part.slope >= 0.5 * max(early.slope, 0.0) > 0
    extreme = end_nats > ctx.param("extreme_nats")
    drifting = end_nats > ctx.param("drift_nats") and still_growing
    if not (extreme or drifting):
        return None
    first, last = _span(s)
    why = "an extreme log-ratio gap" if extreme else "still growing as fast as at the start"
    return Hit(
        f"margin / β reaches {end_nats:.1f} nats at {ctx.beta_label} ({why})",
        first,
        last,
        {"final_margin_nats": _r(end_nats), "still_growing": bool(still_growing), "beta": ctx.beta},
    )


@rule(
    "DPO302",
    "accuracy-saturated",
    Severity.WARNING,
    "accuracy reaches ~1.0 early and stays there",
    metrics=("accuracy",),
    params={"level": 0.98, "by": 0.5},
)
def accuracy_saturated(ctx: Context) -> Hit | Skip | None:
    """Reward accuracy reaches about 1.0 early and stays there.

    What it detects:
        The smoothed accuracy reaches `level` (0.98) before `by` (50%) of the run and stays at or above it.
    Why it matters:
        Real preference data has noisy and ambiguous pairs, so a healthy run levels off around 0.8–0.95. Accuracy
        pinned at 1.0 means every training pair is separated: the model memorises the pairs.
    Likely causes:
        A small preference set trained for many epochs, or pairs that differ in an obvious surface feature (length,
        a formatting token) the model can key on.
    What to try:
        Add data or train fewer epochs, check chosen and rejected for a trivial tell (length, EOS, template), and
        judge the run on eval accuracy.
    Example:
        accuracy  0.43 0.88 0.98 1.00 1.00 1.00 1.00
    """
    s = ctx.series("accuracy")
    if len(s) < MIN_POINTS:
        return _short(len(s))
    smoothed = stats.smooth(s).to_numpy()
    level = ctx.param("level")
    below = np.flatnonzero(smoothed < level)
    start_idx = int(below[-1]) + 1 if below.size else 0
    if start_idx >= len(s):
        return None
    steps = s.index.to_numpy()
    fraction = (steps[start_idx] - steps[0]) / max(1, steps[-1] - steps[0])
    if fraction > ctx.param("by"):
        return None
    return Hit(
        f"accuracy is at {smoothed[-1]:.2f} from step {int(steps[start_idx])} ({fraction:.0%} into the run) to the end",
        int(steps[start_idx]),
        int(steps[-1]),
        {"level": level, "reached_at_fraction": _r(fraction, 3)},
    )


@rule(
    "DPO303",
    "low-confidence",
    Severity.WARNING,
    "accuracy is high but the margin stays tiny",
    metrics=("accuracy", "margins"),
    params={"accuracy": 0.75, "nats": 0.5},
    absorbs=("DPO203",),
)
def low_confidence(ctx: Context) -> Hit | Skip | None:
    """High accuracy with a tiny margin: the pairs are separated, but barely.

    What it detects:
        After the warm-up the median accuracy is at least `accuracy` (0.75) while the median margin stays below
        `nats` (0.5) nats × β.
    Why it matters:
        Accuracy only counts which side wins; the margin says by how much. Winning most pairs by a hair is a
        low-confidence separation that flips under small changes (sampling, a new prompt distribution).
    Likely causes:
        Too few steps or too low a learning rate for the β in use, or near-duplicate chosen and rejected answers
        whose difference is a few tokens.
    What to try:
        Train longer or with a slightly higher learning rate, and compare margin / β across runs; if the pairs
        differ by a few tokens, consider a length-normalised or token-level loss.
    Example:
        accuracy 0.80 0.84 0.83   margins 0.003 0.004 0.004 (β=0.1: 0.04 nats)
    """
    acc = stats.late(ctx.series("accuracy"))
    margins = stats.late(ctx.series("margins"))
    if min(len(acc), len(margins)) < MIN_POINTS:
        return _short(min(len(acc), len(margins)))
    acc_median = float(np.median(acc.to_numpy()))
    margin_median = float(np.median(margins.to_numpy()))
    if acc_median < ctx.param("accuracy") or ctx.nats(margin_median) >= ctx.param("nats"):
        return None
    first, last = _span(acc)
    return Hit(
        f"accuracy median {acc_median:.2f} but margin median {margin_median:.3g} "
        f"({ctx.nats(margin_median):.2f} nats at {ctx.beta_label})",
        first,
        last,
        {"accuracy_median": _r(acc_median), "margin_median_nats": _r(ctx.nats(margin_median))},
        metric="margins",
    )


@rule(
    "DPO304",
    "accuracy-below-chance",
    Severity.ERROR,
    "accuracy stays below 0.5: the preference is learned backwards",
    metrics=("accuracy",),
    params={"upper": 0.45},
)
def accuracy_below_chance(ctx: Context) -> Hit | Skip | None:
    """Reward accuracy stays below chance: the model prefers the rejected answers.

    What it detects:
        After the warm-up the median accuracy is below `upper` (0.45) while the margins are not ≈ 0. (Accuracy
        near 0 with zero margins is a dead run, DPO301: TRL counts ties as misses.)
    Why it matters:
        Below-chance accuracy with real margins means the model consistently ranks rejected above chosen: it is
        learning the preference backwards.
    Likely causes:
        chosen and rejected swapped in the data or in the column mapping, or a preference dataset whose labels
        mean the opposite of what the trainer assumes.
    What to try:
        Print a few pairs as the trainer sees them and check which side is the preferred one; fix the mapping.
    Example:
        accuracy  0.45 0.38 0.30 0.27 0.25
    """
    s = stats.late(ctx.series("accuracy"))
    if len(s) < MIN_POINTS:
        return _short(len(s))
    median = float(np.median(s.to_numpy()))
    if median >= ctx.param("upper"):
        return None
    if ctx.has("margins") and abs(ctx.nats(ctx.late_median("margins"))) < 0.05:
        return None  # ties, not a backwards preference: DPO301 covers it
    first, last = _span(s)
    return Hit(
        f"accuracy median {median:.2f} from step {first} to {last}: rejected answers win most pairs",
        first,
        last,
        {"median": _r(median), "upper": ctx.param("upper")},
    )


@rule(
    "DPO405",
    "chosen-logps-falling",
    Severity.INFO,
    "logps/chosen falls steadily (likelihood displacement)",
    metrics=("logps_chosen",),
    params={"min_drop": 1.0},
)
def chosen_logps_falling(ctx: Context) -> Hit | Skip | None:
    """The log-probability of the chosen answers falls steadily.

    What it detects:
        logps/chosen falls by at least `min_drop` (1 nat) from its start, either steadily (a significant downward
        trend, Kendall's test p < 0.01) or early and then holding (90% of the last third below the start).
    Why it matters:
        DPO only needs chosen to beat rejected; it can get there by pushing both down. When the preferred answers
        themselves become less likely ("likelihood displacement"), the probability mass goes to other outputs,
        which sometimes shows up as worse generations even with a growing margin.
    Likely causes:
        A learning rate on the high side, chosen and rejected answers that share most tokens, or off-policy chosen
        answers the model finds unlikely from the start.
    What to try:
        Often nothing, if the margin and eval metrics are healthy. Otherwise lower the learning rate or add an SFT
        term on the chosen answers (rpo_alpha) to anchor their likelihood.
    Example:
        logps/chosen  -7.2 -14.1 -16.6 -18.1 -17.3 -17.8
    """
    s = ctx.series("logps_chosen")
    if len(s) < MIN_POINTS:
        return _short(len(s))
    t = stats.trend(s)
    start = stats.head(s, points=max(3, len(s) // 20))
    drop = start - stats.tail_level(s)
    tail = s.to_numpy()[-max(1, len(s) // 3) :]
    # a steady fall, or a fall that happens early and then holds (the last third stays below the start)
    held = stats.share(tail < start - ctx.param("min_drop")) >= 0.9
    if drop < ctx.param("min_drop") or not ((t.slope < 0 and t.significant()) or held):
        return None
    first, last = _span(s)
    return Hit(
        f"logps/chosen falls by {drop:.3g} nats from step {first} to {last} (Kendall τ={t.tau:.2f})",
        first,
        last,
        {"drop": _r(drop), "tau": _r(t.tau, 3)},
    )


# --------------------------------------------------------------------------------------------------------------
# Eval and optimiser checks (DPO5xx, DPO6xx)
# --------------------------------------------------------------------------------------------------------------


@rule(
    "DPO501",
    "eval-diverging",
    Severity.WARNING,
    "the eval loss rises from its minimum while the train loss keeps falling",
    params={"min_rise": 0.02},
)
def eval_diverging(ctx: Context) -> Hit | Skip | None:
    """The eval loss climbs from its minimum while the train loss keeps falling.

    What it detects:
        The eval loss ends at least `min_rise` (0.02) and twice its noise above its minimum, and over the same
        steps the train loss still falls significantly (Kendall's test, p < 0.05).
    Why it matters:
        This is the textbook overfitting signature: the model keeps improving on the training pairs and gets worse
        on held-out ones. The best checkpoint is the one at the eval minimum, not the last.
    Likely causes:
        Too many epochs, a small preference set, or a learning rate that is too high for the data size.
    What to try:
        Keep the checkpoint at the eval minimum (load_best_model_at_end with metric_for_best_model=eval_loss),
        train fewer epochs, add data or raise β.
    Example:
        train loss 0.60 0.40 0.25 0.15 0.08     eval loss 0.62 0.52 0.50 0.56 0.63
    """
    if not ctx.run.has("loss", "eval") or not ctx.run.has("loss", "train"):
        return Skip("train and eval loss")
    ev = ctx.series("loss", "eval")
    if len(ev) < 5:
        return _short(len(ev), 5)
    smoothed = ev.rolling(3, center=True, min_periods=1).median()
    min_step = int(smoothed.idxmin())
    end = float(np.median(ev.to_numpy()[-3:]))
    rise = end - float(smoothed.min())
    sigma = stats.noise_sigma(ev, 3)
    if min_step >= int(ev.index[-1]) or rise < max(ctx.param("min_rise"), 2 * sigma):
        return None
    train_after = ctx.series("loss", "train")
    train_after = train_after[train_after.index >= min_step]
    t = stats.trend(train_after)
    if t.n < MIN_POINTS or t.slope >= 0 or not t.significant(0.05):
        return None
    return Hit(
        f"eval loss rose from {smoothed.min():.4g} at step {min_step} to {end:.4g} while the train loss kept "
        f"falling ({t.change:+.3g} over the same steps)",
        min_step,
        int(ev.index[-1]),
        {"eval_min": _r(float(smoothed.min())), "eval_end": _r(end), "train_change": _r(t.change)},
        metric="loss",
        split="eval",
    )


@rule(
    "DPO502",
    "eval-not-learning",
    Severity.WARNING,
    "train accuracy rises while eval accuracy stays at chance",
    params={"train": 0.7, "eval": 0.55},
)
def eval_not_learning(ctx: Context) -> Hit | Skip | None:
    """Train accuracy rises but eval accuracy stays at chance.

    What it detects:
        After the warm-up the median train accuracy is at least `train` (0.7) while the median eval accuracy stays
        at or below `eval` (0.55).
    Why it matters:
        The preference learned on the training pairs does not transfer to held-out pairs: the model memorises
        rather than generalises, or the eval set measures something else.
    Likely causes:
        An eval set from a different distribution or with different labels, a train set small enough to memorise,
        or leakage of eval prompts' style into the train pairs' tells.
    What to try:
        Check that train and eval pairs come from the same source and labelling, add training data, and compare
        the two sets' chosen/rejected length statistics.
    Example:
        train accuracy 0.55 0.70 0.82 0.90     eval accuracy 0.50 0.52 0.49 0.51
    """
    if not ctx.run.has("accuracy", "eval") or not ctx.run.has("accuracy", "train"):
        return Skip("train and eval accuracy")
    train = stats.late(ctx.series("accuracy", "train"))
    ev = stats.late(ctx.series("accuracy", "eval"))
    if len(train) < MIN_POINTS or len(ev) < 3:
        return _short(min(len(train), len(ev)), MIN_POINTS)
    train_median = float(np.median(train.to_numpy()))
    eval_median = float(np.median(ev.to_numpy()))
    if train_median < ctx.param("train") or eval_median > ctx.param("eval"):
        return None
    first, last = _span(ev)
    return Hit(
        f"train accuracy median {train_median:.2f} but eval accuracy median {eval_median:.2f}",
        first,
        last,
        {"train_accuracy": _r(train_median), "eval_accuracy": _r(eval_median)},
        metric="accuracy",
        split="eval",
    )


@rule(
    "DPO601",
    "grad-dead",
    Severity.ERROR,
    "grad_norm is 0 (or the loss is constant to 4 digits) for most steps",
    metrics=("loss",),
)
def grad_dead(ctx: Context) -> Hit | Skip | None:
    """Nothing is being trained: zero gradients, or a loss frozen to four digits.

    What it detects:
        grad_norm is 0 (below 1e-12) at more than half of the logged steps, or the loss after the warm-up varies by
        less than 5e-4 between its 5th and 95th percentiles (constant to four printed digits).
    Why it matters:
        With zero gradients or a frozen loss the optimiser changes nothing: the run costs compute and returns the
        reference model.
    Likely causes:
        All parameters frozen (requires_grad False, a PEFT config that targets no module), a learning rate of 0 or
        ~1e-9, a broken loss (detached tensors), or gradients zeroed by an overflowing fp16 scaler.
    What to try:
        Print the number of trainable parameters, check the learning-rate schedule in the log, and check the loss
        is computed on tensors that require grad.
    Example:
        grad_norm 0 0 0 0     loss 0.6931 0.6931 0.6932 0.6931
    """
    evidence: dict[str, Any] = {}
    reasons = []
    steps: pd.Series | None = None
    if ctx.has("grad_norm"):
        g = ctx.series("grad_norm")
        zero = stats.share(np.abs(g.to_numpy()) < 1e-12)
        evidence["grad_zero_share"] = _r(zero, 3)
        if len(g) >= 3 and zero > 0.5:
            reasons.append(f"grad_norm is 0 at {zero:.0%} of {len(g)} steps")
            steps = g
    loss = stats.late(ctx.series("loss"))
    if len(loss) >= MIN_POINTS:
        spread = float(np.quantile(loss.to_numpy(), 0.95) - np.quantile(loss.to_numpy(), 0.05))
        evidence["loss_spread"] = _r(spread)
        if spread < 5e-4:
            reasons.append(f"the loss stays within {spread:.1e} ({loss.median():.4f}) from step {int(loss.index[0])}")
            steps = loss if steps is None else steps
    if not reasons or steps is None:
        return None
    first, last = _span(steps)
    return Hit(
        "; ".join(reasons), first, last, evidence, metric="grad_norm" if "grad_norm is 0" in reasons[0] else "loss"
    )


@rule(
    "DPO602",
    "grad-spike",
    Severity.WARNING,
    "grad_norm spikes far above its rolling baseline",
    metrics=("grad_norm",),
    params={"factor": 30.0},
)
def grad_spike(ctx: Context) -> Hit | Skip | None:
    """grad_norm spikes far above its recent level.

    What it detects:
        A logged grad_norm more than `factor` (30) times the median of the preceding window of points. Tiny models
        and small batches routinely show 10–20× jumps, so the default looks only at extreme ones.
    Why it matters:
        A gradient spike that large usually comes from a degenerate batch and, without clipping, throws the policy
        off in one step; loss spikes and NaNs tend to follow.
    Likely causes:
        Very long or empty completions, bad tokens in a batch, a learning rate too high, or fp16 overflow.
    What to try:
        Keep max_grad_norm at 1.0 (the logged norm is before clipping), inspect the batches at the cited steps, and
        lower the learning rate if spikes repeat.
    Example:
        grad_norm 0.8 0.9 0.7 42.0 1.1 0.9
    """
    g = ctx.series("grad_norm")
    if len(g) < MIN_POINTS * 2:
        return _short(len(g), MIN_POINTS * 2)
    window = stats.window_for(len(g), 0.1, minimum=5)
    baseline = g.rolling(window, min_periods=3).median().shift(1)
    ratio = (g / baseline.where(baseline > 0)).to_numpy()
    spikes = np.flatnonzero(np.nan_to_num(ratio, nan=0.0) > ctx.param("factor"))
    if spikes.size == 0:
        return None
    steps = g.index.to_numpy()[spikes]
    worst = int(spikes[np.argmax(ratio[spikes])])
    clip = ctx.run.config.get("max_grad_norm")
    clipped = f"; max_grad_norm={clip} clips the update" if isinstance(clip, int | float) and clip > 0 else ""
    cited = ", ".join(str(int(x)) for x in steps[:10]) + (" …" if len(steps) > 10 else "")
    return Hit(
        f"grad_norm spikes at step(s) {cited}; worst {g.iloc[worst]:.3g} at step {int(g.index[worst])}, "
        f"{ratio[worst]:.0f}× the recent median{clipped}",
        int(steps[0]),
        int(steps[-1]),
        {"spikes": len(steps), "worst_ratio": _r(float(ratio[worst]), 3), "steps": [int(x) for x in steps[:50]]},
    )


# --------------------------------------------------------------------------------------------------------------
# Running the rules
# --------------------------------------------------------------------------------------------------------------


def _moved(start: float, end: float, threshold: float) -> str:
    if end - start > threshold:
        return "rose"
    if start - end > threshold:
        return "fell"
    return "stayed level"


def describe_health(ctx: Context) -> dict[str, str]:
    """One sentence per row of the seed table saying what the curve did, so a clean run reads as checked, not
    as silence. The verdict itself comes from the findings; this only describes. Every number is the curve
    summary's (:meth:`Context.curve`): the raw first point, and the end level saying what it is the median of."""
    out: dict[str, str] = {}
    for metric in ("loss", "margins", "accuracy", "chosen", "rejected"):
        c = ctx.curve(metric)
        if not c.logged:
            continue
        label = {"chosen": "chosen reward", "rejected": "rejected reward"}.get(metric, metric)
        threshold = {"loss": max(0.01, c.noise), "accuracy": 0.05}.get(metric, 0.25 * ctx.beta)
        text = f"{label} {_moved(c.start, c.end, threshold)} from {fmt(c.first_value)} at step {c.first_step} to "
        text += c.level_text("end")
        if metric in ("margins", "chosen", "rejected"):
            text += f" ({fmt(round(ctx.nats(c.end), 1))} nats at {ctx.beta_label})"
        if metric == "loss" and c.n >= MIN_POINTS * 2 and c.end < c.start:
            text += " and levelled off" if c.levelled else " and was still falling at the end"
        out[metric] = text
    return out


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
    checked: list[str] = []
    rules = select_rules(select, ignore)
    for r in rules:
        missing = [m for m in r.metrics if not ctx.has(m)]
        if missing:
            skipped[r.code] = missing
            continue
        ctx.current = r
        checked.append(r.code)
        hit = r.check(ctx)
        if isinstance(hit, Skip):
            checked.pop()
            skipped[r.code] = [hit.needs]
            continue
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
    report = RunReport(
        run=run,
        findings=ordered,
        skipped=skipped,
        checked=checked,
        beta_used=ctx.beta,
        beta_note=ctx.beta_note,
        health=describe_health(ctx),
    )
    report.__dict__["_curves"] = ctx.curves()  # the summaries the rules quoted: the report shows the same numbers
    report.__dict__["_expectations"] = ctx.expect
    return report
