"""Rules DPO1xx: The loss: stuck at its starting value, spikes, collapse to 0, a start that is not the family's, a
rising trend.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.rules`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dpodoctor import stats
from dpodoctor.metrics import LN2
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few


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
        return too_few(len(s))
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
    first, last = span_of(s)
    return Hit(
        f"loss stays at {median:.4f} (ln 2 = {LN2:.4f}) from step {first} to {last}"
        + (f"; no other sign of learning: {learning_text}" if learning_text else ""),
        first,
        last,
        {"loss_median": rounded(median), "distance_from_ln2": rounded(abs(median - LN2)), "tolerance": tol},
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
        return too_few(n, MIN_POINTS * 2)
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
        {
            "baseline": rounded(float(baseline[peak])),
            "peak": rounded(float(values[peak])),
            "noise_sigma": rounded(sigma),
        },
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
        return too_few(len(s))
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
    evidence: dict[str, Any] = {"final_loss": rounded(float(smoothed.iloc[-1])), "threshold": threshold}
    extra = ""
    if ctx.has("accuracy"):
        acc = stats.tail_level(ctx.series("accuracy"))
        evidence["final_accuracy"] = rounded(acc)
        extra += f"; accuracy {acc:.2f}"
    if ctx.has("margins"):
        margin = stats.tail_level(ctx.series("margins"))
        evidence["final_margin_nats"] = rounded(ctx.nats(margin))
        extra += f"; margin {margin:.3g} ({ctx.nats(margin):.1f} nats)"
    return Hit(
        f"loss fell below {threshold:g} at step {first} ({fraction:.0%} into the run) and stayed there, "
        f"ending at {smoothed.iloc[-1]:.4f}{extra}",
        first,
        last,
        evidence,
    )


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
        {"first_loss": rounded(first), "ln2": rounded(LN2)},
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
        return too_few(len(s), MIN_POINTS * 2)
    half = s.iloc[len(s) // 2 :]
    t = stats.trend(half)
    sigma = stats.noise_sigma(s)
    if t.slope <= 0 or not t.significant() or t.change < max(ctx.param("min_rise"), sigma):
        return None
    first, last = span_of(half)
    return Hit(
        f"the loss rises by {t.change:.3g} from step {first} to {last} (Theil–Sen slope {t.slope:.3g}/step, "
        f"Kendall τ={t.tau:.2f}, p={t.p_value:.1g})",
        first,
        last,
        {
            "rise": rounded(t.change),
            "tau": rounded(t.tau, 3),
            "p_value": rounded(t.p_value, 2),
            "noise_sigma": rounded(sigma),
        },
    )
