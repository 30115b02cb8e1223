"""Rules DPO1xx: The loss: stuck at its starting value, spikes, collapse to 0, a start that is not the family's, a
rising trend.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpodoctor import stats
from dpodoctor.curve import fixed, fmt, trend
from dpodoctor.metrics import LN2
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


def stuck_reference(ctx: Context) -> tuple[float, str]:
    """The level a loss that learns nothing stays at: the family's own starting value (ln 2 for sigmoid DPO,
    1/(4β²) for IPO, 1 for hinge ...), or, when a data-dependent NLL term makes that unknown, the curve's own
    starting level."""
    family = ctx.expect.family
    if family.start is not None:
        return family.start, f"its expected start, {fmt(family.start)} ({family.start_text})"
    c = ctx.curve("loss")
    return c.start, f"its own starting level {c.level_text('start')}"


@rule(
    "DPO101",
    "loss-stuck-ln2",
    Severity.ERROR,
    "after the first ~10% of steps the loss stays at its starting value (ln 2 for sigmoid DPO)",
    metrics=("loss",),
    params={"tolerance": 0.02, "absurd_lr": 1e-8},
    absorbs=("DPO202", "DPO203", "DPO301", "DPO303", "DPO601"),
    trend=True,
)
def loss_stuck_ln2(ctx: Context) -> Hit | Skip | None:
    """The loss stays at its starting value (ln 2 ≈ 0.693 for sigmoid DPO): the model has not learned to prefer
    the chosen answers.

    What it detects:
        After the first 10% of the logged steps, the median loss is within `tolerance` (0.02 at ln 2, scaled with
        the starting value, and widened by the uncertainty the batch noise puts on a median) of the loss family's
        starting value, and the smoothed loss never clearly leaves that band, while neither accuracy (above 0.6) nor
        the margin (above 0.5 nats) shows learning. The starting value is the family's: ln 2 for sigmoid, robust and
        cDPO; 1/(4β²) for IPO; 1 for hinge and APO; 0.5/β² for sppo_hard; 2 ln 2 for nca_pair and bco_pair; the
        weighted sum for a list of loss types; the curve's own start when an SFT/NLL term makes it data-dependent.
        bf16 prints ln 2 as 0.6914; the tolerance covers it. A margin that grows steadily (Kendall p < 0.05, by more
        than 0.25 nats), or an eval accuracy above 0.6 with a positive eval margin, counts as learning too: noisy
        labels or batch size 1 make a slow but healthy learner. Needs
        16 points past the first 10% (8 when the loss is frozen to three digits). Not judged on a log that ends
        during its warm-up. When
        the logged learning rate never exceeds `absurd_lr` (1e-8) past its warm-up, three logged points suffice and
        the finding names the rate as the cause.
    Why it matters:
        At the start the policy is the reference and every log-ratio is 0, so the loss sits at that value; the
        sigmoid DPO loss −log σ(margin) equals ln 2 exactly when chosen and rejected are scored alike. A loss that
        stays there means the run spent its compute and changed nothing that matters.
    Likely causes:
        A learning rate far too low, parameters that are not trainable (frozen adapters, a wrong target_modules),
        or data that carries no preference signal (random or flipped labels, near-identical pairs).
    What to try:
        Check that the rewards move at all: if chosen and rejected stay at 0, raise the learning rate (5e-7 to
        5e-6 for full fine-tuning, around 5e-5 for LoRA) and confirm trainable parameters; if they move but do
        not separate, audit a sample of the pairs. With a tiny β (0.01) the loss leaves ln 2 slowly while accuracy
        and the margin in nats still grow: judge such a run by those two.
    Example:
        loss   0.693 0.693 0.693 0.693 0.693 0.693   (lr=1e-9)
    """
    s = ctx.late("loss")
    phase = ctx.expect.phase
    absurd_lr = phase.peak_lr is not None and 0 < phase.peak_lr < ctx.param("absurd_lr") and not phase.warming_up
    # a learning rate too low to move the weights is a level: three points at the start then suffice; a loss
    # frozen to three digits needs 8; a noisy loss needs 16 to tell "stuck" from "has barely started"
    frozen = len(s) >= 3 and float(np.ptp(s.values)) < 5e-3
    needed = 3 if absurd_lr else MIN_POINTS if frozen else MIN_POINTS * 2
    if len(s) < needed:
        return too_few(len(s), needed)
    reference, reference_text = stuck_reference(ctx)
    tol = ctx.param("tolerance") * max(1.0, abs(reference) / LN2)
    median = ctx.late_median("loss")  # stats.median(s.values), once per run
    # The band widens by the uncertainty of what is measured: at logging_steps=1 the batch noise (σ≈0.1) moves a
    # median of n points by about 1.25σ/√n, and a rolling median of w points by 1.25σ/√w.
    sigma = ctx.late_noise("loss")  # stats.noise_sigma(s), its rolling median computed once per run
    window = stats.window_for(len(s), 0.25)
    median_slack = 3 * 1.25 * sigma / np.sqrt(len(s))
    smooth_slack = 3 * 1.25 * sigma / np.sqrt(window)
    low = float(np.quantile(ctx.rolling("loss", "late", window), 0.1))  # stats.smooth(s, window).values
    if abs(median - reference) > tol + median_slack or low < reference - 2 * tol - smooth_slack:
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
    if absurd_lr:
        cause = (
            f"The learning rate peaks at {fmt(phase.peak_lr)}: far too low for the weights to change (fine-tuning "
            "uses 5e-7–5e-6)."
        )
    first, last = span_of(s)
    c = ctx.curve("loss")
    return Hit(
        f"loss stays at {reference_text}: median {fmt(median)} over steps {first}–{last} "
        f"(logged {c.point_text(first)}, {c.point_text(last)})"  # type: ignore[arg-type]  # s is not empty
        + (f"; no other sign of learning: {learning_text}" if learning_text else ""),
        first,
        last,
        {
            "loss_median": rounded(median),
            "expected_start": rounded(reference),
            "distance_from_start": rounded(abs(median - reference)),
            "tolerance": rounded(tol),
            "loss_family": ctx.expect.family.name,
        },
        cause=cause,
    )


def spike_levels(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The loss spike's two levels of finite values (at least 3) in step order: the centred 3-point median (NaN at
    both ends) and the median of the ``window`` points ending two points earlier (NaN until there are that many).

    pandas' ``rolling(3, center=True, min_periods=3).median()`` and ``rolling(window, min_periods=window).median()
    .shift(2)``, to the bit, without a pandas Series and rolling object each (~0.5 ms a call on a 100-point curve).
    """
    short = np.r_[np.nan, stats.rolling_median(values, 3)[1:-1], np.nan]
    baseline = np.r_[np.nan, np.nan, stats.trailing_median(values, window, window)[:-2]]
    return short, baseline


@rule(
    "DPO102",
    "loss-spike",
    Severity.WARNING,
    "the loss drops, then spikes well above its recent level",
    metrics=("loss",),
    params={"sigmas": 5.0, "min_jump": 0.1},
    trend=True,
)
def loss_spike(ctx: Context) -> Hit | Skip | None:
    """The loss fell, then jumped well above the level it had reached.

    What it detects:
        Once the loss is below its start, a stretch where the median of three consecutive points rises
        above the median of the preceding window by more than `sigmas` (5) times the batch noise and by at least
        `min_jump` (0.1), undoing at least three quarters of the progress made since the start. Single noisy
        batches do not count, nor do logs of fewer than 24 points (their batch noise
        cannot be told from a spike), nor a loss with an SFT/NLL term (RPO, `loss_type=["sigmoid","sft"]`,
        pref_ftx), whose noisy likelihood term moves the total without saying anything about the preference.
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
    if ctx.expect.family.extra_term:
        return Skip(f"a loss without an SFT/NLL term (this run's: {ctx.expect.family.name})")
    s = ctx.series("loss")
    n = len(s)
    if n < MIN_POINTS * 3:
        return too_few(n, MIN_POINTS * 3)
    values = s.values
    sigma = max(ctx.noise("loss"), 1e-12)
    window = stats.window_for(n, 0.1, minimum=5)
    short, baseline = spike_levels(values, window)
    # "drops, then spikes": the level before the jump must be below the start. The start is the median of the
    # first window, since three noisy points can sit anywhere.
    start = stats.head(s, points=window)
    threshold = max(ctx.param("sigmas") * sigma, ctx.param("min_jump"))
    jump = short - baseline
    # a spike undoes most of the progress made (the loss goes back toward where it started); a heavy-tailed loss
    # (IPO's square) wobbles by a fraction of its progress without anything having gone wrong
    progress = np.maximum(start - baseline, 0.0)
    spiking = (jump > threshold) & (baseline < start) & (jump >= 0.75 * progress) & np.isfinite(jump)
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
    steps = s.steps
    before = int(steps[max(0, lo - 1)])
    return Hit(
        f"loss jumped to {fmt(values[peak])} at step {int(steps[peak])} (logged {fmt(values[max(0, lo - 1)])} at "
        f"step {before}; the level before it, a median of {window} points, was {fmt(baseline[peak])}): "
        f"{jump[peak] / sigma:.1f}× the batch noise σ={fmt(sigma)}; {len(idx)} spiking point(s)",
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
    absorbs=("DPO204", "DPO302", "DPO407"),
)
def loss_collapse(ctx: Context) -> Hit | Skip | None:
    """The loss goes to about zero.

    What it detects:
        The smoothed loss falls below `threshold` (0.05, scaled with the loss family's starting value when it is
        above ln 2, e.g. 1/(4β²) for IPO) and stays below it for the rest of the run. Robust DPO, whose loss goes
        negative by design, and cDPO, whose loss settles at the entropy of its label smoothing, are not judged. A
        log shorter than 8 points is judged on the median of each two consecutive points (a collapse can happen in
        the first few logs).
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
    family = ctx.expect.family
    if family.floor is None:
        return Skip(f"a loss bounded below (this run's {family.name} goes negative by design)")
    s = ctx.series("loss")
    if len(s) < 3:
        return too_few(len(s), 3)
    # the threshold is stated for sigmoid DPO (0.05 of a start at ln 2); other families scale it with their start,
    # and a floor above it (cDPO's H(ε)) is where the loss settles by design, not a collapse
    scale = family.start / LN2 if family.start is not None and family.start > 0 else 1.0
    threshold = ctx.param("threshold") * max(1.0, scale)
    if family.floor >= threshold:
        return None
    # a short log has no smoothed curve: its end level (the median of its last points) is the judge, at any length
    # (the short log's: pandas' rolling(2, min_periods=1).median(), the median of each point and the one before)
    # ctx.rolling: stats.smooth(s).values, the rolling median the loss summary already took for its noise scale
    smoothed = ctx.rolling("loss") if len(s) >= MIN_POINTS else stats.trailing_median(s.values, 2, 1)
    below = smoothed < threshold
    if not below[-1]:
        return None
    # first step from which the smoothed loss stays below the threshold
    above = np.flatnonzero(~below)
    start_idx = int(above[-1]) + 1 if above.size else 0
    steps = s.steps
    first, last = int(steps[start_idx]), int(steps[-1])
    fraction = (first - steps[0]) / max(1, steps[-1] - steps[0])
    evidence: dict[str, Any] = {"final_loss": rounded(float(smoothed[-1])), "threshold": threshold}
    extra = ""
    if ctx.has("accuracy"):
        acc = ctx.curve("accuracy")
        evidence["final_accuracy"] = rounded(acc.end)
        extra += f"; accuracy ends at {acc.level_text('end')}"
    if ctx.has("margins"):
        margin = ctx.curve("margins")
        evidence["final_margin_nats"] = rounded(ctx.nats(margin.end))
        extra += f"; margin ends at {margin.level_text('end')} = {fixed(ctx.nats(margin.end), 1)} nats"
    loss = ctx.curve("loss")
    return Hit(
        f"the smoothed loss fell below {threshold:g} at step {first} ({fraction:.0%} into the run; logged "
        f"{loss.point_text(first)}) and stayed there, ending at {loss.level_text('end')}{extra}",
        first,
        last,
        evidence,
    )


@rule(
    "DPO104",
    "loss-start-off",
    Severity.INFO,
    "the first loss is far from the loss family's starting value (ln 2 for sigmoid DPO)",
    metrics=("loss",),
    params={"tolerance": 0.1},
)
def loss_start_off(ctx: Context) -> Hit | Skip | None:
    """The first logged loss is far from where this loss starts (ln 2 for sigmoid DPO).

    What it detects:
        The first logged loss differs from the loss family's starting value by more than `tolerance` (0.1, scaled
        with that value when it is above ln 2): ln 2 ≈ 0.693 for sigmoid DPO, 1/(4β²) for IPO, 1 for hinge,
        0.5/β² for sppo_hard, 2 ln 2 for nca_pair and bco_pair, the weighted sum for a list of loss types. Not
        judged when an SFT/NLL term makes the start data-dependent, nor when the first log averages more than 10
        steps (it then already holds many updates).
    Why it matters:
        At step 0 the policy equals the reference, every log-ratio is 0 and the loss has a known value. A different
        start means either the policy did not start from the reference model, or the loss is not the one the
        config or the keys say, and then the loss thresholds of the other rules do not apply as written.
    Likely causes:
        A loss other than the one detected (the config was not found: IPO starts at 1/(4β²), hinge at 1, a DPO+SFT
        mix several nats up), a reference model that is not the policy's starting checkpoint, or a first log that
        already averages many updates.
    What to try:
        Check loss_type / loss_weights / rpo_alpha in the config, pass --beta when the log does not say it, and make
        sure ref_model is the SFT checkpoint the policy starts from.
    Example:
        loss   3.50 2.66 1.82 1.44 1.22 ...   (sigmoid DPO expected at 0.693)
    """
    family = ctx.expect.family
    c = ctx.curve("loss")
    if not c.logged:
        return None
    if c.first_step is not None and c.first_step > 10:
        return Skip(f"a first log within 10 steps of the start (first loss at step {c.first_step})")
    first = c.first_value
    expected = family.start if family.start is not None else LN2
    tol = ctx.param("tolerance") * max(1.0, abs(expected) / LN2)
    if abs(first - expected) <= tol:
        return None
    step = int(c.first_step or 0)
    if family.start is None:
        # an SFT/NLL term: the start is the preference term plus the data's NLL; say so rather than stay silent
        said = (
            f"expected: the config's {family.name} adds an NLL term to the preference loss (from {family.source}), "
            "so judge this run by its margins and accuracy rather than by the loss level"
        )
    else:
        said = f"{family.name} starts at {fmt(family.start)} ({family.start_text}; loss family from {family.source})"
    return Hit(
        f"the first logged loss is {fmt(first)} at step {step}; {said}",
        step,
        step,
        {"first_loss": rounded(first), "expected_start": rounded(expected), "loss_family": family.name},
    )


@rule(
    "DPO105",
    "loss-rising",
    Severity.ERROR,
    "the smoothed loss trends upward over the later part of the run",
    metrics=("loss",),
    params={"min_rise": 0.05},
    trend=True,
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
    half = s[len(s) // 2 :]
    t = trend(half)
    sigma = ctx.noise("loss")
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


@rule(
    "DPO106",
    "loss-zero",
    Severity.ERROR,
    "the loss is logged as 0: the sigmoid saturated and no gradient is left",
    metrics=("loss",),
    params={"zero": 1e-4},
    absorbs=("DPO103", "DPO203", "DPO204", "DPO302", "DPO303", "DPO404", "DPO405", "DPO406", "DPO601", "DPO602"),
)
def loss_zero(ctx: Context) -> Hit | Skip | None:
    """The loss is logged as 0 (at most `zero`, 1e-4): the preference loss saturated.

    What it detects:
        The loss ends at 0 — its end level (the last logged value for a short log, the median of the last tenth for
        a long one) is at most `zero` (1e-4, what four printed digits show as 0.0) — for a loss whose floor is
        not reached by design: sigmoid DPO and its variants, and any mix with an SFT term. Hinge, IPO, APO and
        sppo_hard may sit at 0 by design and are not judged; robust DPO goes negative by design. Judged at any
        length, even on four logged points.
    Why it matters:
        −log σ(β·margin) reaches 0 in floating point only when the margin is beyond about 100 nats: the policy has
        moved so far from the reference that every pair is separated absurdly, and the gradient of a saturated
        sigmoid is 0, so training has stopped. It usually comes with grad_norm ≈ 0, accuracy 1.0 and margins of
        hundreds of nats; those are symptoms of this one cause.
    Likely causes:
        A learning rate far too high for the setup (the collapse happens in the first few updates), a tiny β, or
        pairs that a surface feature separates trivially (rejected answers many times longer than chosen ones).
    What to try:
        Lower the learning rate by 10–100× and use a warm-up, raise β, and compare chosen and rejected lengths
        (logps/rejected many times logps/chosen is the tell). Do not ship this checkpoint.
    Example:
        loss   0.6931 0.1628 0 0      margins/β 0 267 1196 1417 nats     grad_norm 1628 0.014 1.7e-08 8.1e-08
    """
    family = ctx.expect.family
    if family.zero_is_normal or family.floor is None:
        return Skip(f"a loss that cannot reach 0 by design (this run's: {family.name})")
    c = ctx.curve("loss")
    if not c.logged or c.end > ctx.param("zero") or c.last_value > ctx.param("zero"):
        return None
    zero_steps = [int(st) for st, v in zip(c.steps, c.values, strict=True) if v <= ctx.param("zero")]
    first = zero_steps[0]
    parts = [f"the loss is logged as {fmt(c.value_at(first))} at step {first}"]
    if len(zero_steps) > 1:
        parts[0] += f" and at {len(zero_steps) - 1} later logged step(s), to step {zero_steps[-1]}"
    parts[0] += f" (it started at {c.level_text('start')})"
    evidence: dict[str, Any] = {"zero_steps": zero_steps[:50], "loss_family": family.name}
    if ctx.has("margins"):
        m = ctx.curve("margins")
        value = m.value_at(first)
        if value is not None:
            parts.append(f"margin {fmt(value)} = {fixed(ctx.nats(value), 0)} nats at {ctx.beta_label} there")
            evidence["margin_nats_at_first_zero"] = rounded(ctx.nats(value))
    if ctx.has("grad_norm"):
        g = ctx.curve("grad_norm")
        value = g.value_at(first)
        if value is not None:
            parts.append(f"grad_norm {fmt(value)}: the saturated sigmoid leaves no gradient")
            evidence["grad_norm_at_first_zero"] = rounded(value)
    if ctx.has("logps_chosen") and ctx.has("logps_rejected"):
        lc, lr = ctx.curve("logps_chosen"), ctx.curve("logps_rejected")
        vc, vr = lc.value_at(first), lr.value_at(first)
        if vc is not None and vr is not None and vc < 0 and vr / vc >= 3:
            parts.append(
                f"logps/rejected {fmt(vr)} is {vr / vc:.0f}× logps/chosen {fmt(vc)}: the pairs may be separable by "
                "length alone"
            )
    return Hit("; ".join(parts), first, int(c.last_step or first), evidence, priority=5)
