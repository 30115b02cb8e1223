"""Rules DPO6xx: The optimiser: dead gradients, gradient spikes, learning rates absurd for the setup.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpodoctor import stats
from dpodoctor.curve import fmt
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, RULES, Context, Hit, Skip, rounded, rule, span_of, too_few

if TYPE_CHECKING:
    import numpy as np

    from dpodoctor.curveseries import Curve
else:
    from dpodoctor._lazy import np


def _loss_saturated(ctx: Context, steps: np.ndarray) -> bool:
    """At those steps the loss is ~0: the gradient vanished because the sigmoid saturated (DPO106's case)."""
    loss = ctx.curve("loss")
    values = [loss.value_at(int(st)) for st in steps]
    known = [v for v in values if v is not None]
    return bool(known) and stats.median(known) <= 1e-3


@rule(
    "DPO601",
    "grad-dead",
    Severity.ERROR,
    "grad_norm is exactly 0 (or the loss is constant to 4 digits) for most steps",
    metrics=("loss",),
    absorbs=("DPO101",),
)
def grad_dead(ctx: Context) -> Hit | Skip | None:
    """Nothing is being trained: zero gradients, or a loss frozen to four digits.

    What it detects:
        grad_norm is 0 (below 1e-12) at more than half of the logged steps, or the loss after the warm-up varies by
        less than 5e-4 between its 5th and 95th percentiles (constant to four printed digits). When grad_norm is
        exactly 0 at every logged step, that is the cause of everything else the run shows (a loss stuck at its
        start, margins and accuracy at 0), and this finding is the headline. Zero gradients at a loss of ~0 are
        not this rule's case: there the sigmoid saturated (DPO106).
    Why it matters:
        With zero gradients or a frozen loss the optimiser changes nothing: the run costs compute and returns the
        reference model.
    Likely causes:
        For grad_norm exactly 0: no gradient reaches any trainable parameter — all parameters frozen
        (requires_grad False, a PEFT config whose target_modules match no module), a loss computed on detached
        tensors, or gradients zeroed by an overflowing fp16 scaler. The learning rate does not enter grad_norm (it
        is measured before the optimiser step), so it is not the cause of a zero norm. For a frozen loss with
        non-zero gradients: a learning rate of 0 or ~1e-9.
    What to try:
        Print the number of trainable parameters (model.print_trainable_parameters() for PEFT), check that the loss
        requires grad, and look at the learning-rate schedule in the log when only the loss is frozen.
    Example:
        grad_norm 0 0 0 0     loss 0.6914 0.6914 0.6914 0.6914     margins 0 0 0 0
    """
    evidence: dict[str, Any] = {}
    reasons = []
    steps: Curve | None = None
    every_step = False
    if ctx.has("grad_norm"):
        g = ctx.series("grad_norm")
        is_zero = np.abs(g.values) < 1e-12
        zero = stats.share(is_zero)
        evidence["grad_zero_share"] = rounded(zero, 3)
        if len(g) >= 2 and zero > 0.5:
            if _loss_saturated(ctx, g.steps[is_zero]):
                return None  # the sigmoid saturated: DPO106 says so, with the cause
            every_step = bool(is_zero.all())
            if every_step:
                reasons.append(
                    f"grad_norm is exactly 0 at every one of the {len(g)} logged steps "
                    f"({int(g.steps[0])}–{int(g.steps[-1])}): no gradient reaches the parameters"
                )
            else:
                reasons.append(f"grad_norm is 0 at {zero:.0%} of {len(g)} logged steps")
            steps = g
    loss = ctx.late("loss")
    if len(loss) >= MIN_POINTS:
        spread = float(np.quantile(loss.values, 0.95) - np.quantile(loss.values, 0.05))
        evidence["loss_spread"] = rounded(spread)
        if spread < 5e-4:
            c = ctx.curve("loss")
            first = int(loss.steps[0])
            reasons.append(
                f"the loss stays at {fmt(stats.median(loss.values))} (5th–95th percentile spread {spread:.1e}) from "
                f"{c.point_text(first)} to {c.point_text(int(loss.steps[-1]))}"
            )
            steps = loss if steps is None else steps
    if not reasons or steps is None:
        return None
    first, last = span_of(steps)  # type: ignore[assignment]  # steps is not empty
    cause = None
    if every_step:
        cause = RULES["DPO601"].section("Likely causes").split(" For a frozen loss")[0]
    elif "grad_norm" not in reasons[0]:
        lr = ctx.expect.phase
        lr_text = f" (the logged learning rate peaks at {fmt(lr.peak_lr)})" if lr.peak_lr is not None else ""
        cause = f"The loss is frozen while gradients flow: a learning rate of 0 or ~1e-9{lr_text}."
    return Hit(
        "; ".join(reasons),
        first,
        last,
        evidence,
        metric="grad_norm" if "grad_norm" in reasons[0] else "loss",
        cause=cause,
        # grad_norm exactly 0 everywhere explains the stuck loss, flat margins and zero accuracy: the headline
        absorbs=(
            ("DPO101", "DPO104", "DPO202", "DPO203", "DPO301", "DPO303", "DPO304", "DPO603") if every_step else None
        ),
        priority=10 if every_step else 0,
    )


def _loss_reacts(ctx: Context, step: int) -> bool:
    """Did the loss move at a grad_norm spike (at that logged step or the next), beyond its batch noise?"""
    loss = ctx.curve("loss")
    if loss.n < 5:
        return False
    idx = int(np.searchsorted(loss.steps, step))
    window = loss.values[max(0, idx - 10) : idx]
    if len(window) < 3:
        return False
    level = stats.median(window)
    after = loss.values[idx : idx + 2]
    return bool(len(after)) and float(np.max(after)) - level > max(3 * loss.noise, 0.05)


@rule(
    "DPO602",
    "grad-spike",
    Severity.WARNING,
    "grad_norm spikes far above its rolling baseline and the loss jumps with it, or grad_norm is absurd",
    metrics=("grad_norm",),
    params={"factor": 30.0, "absurd": 1e5},
)
def grad_spike(ctx: Context) -> Hit | Skip | None:
    """grad_norm spikes far above its recent level, and the update shows in the loss; or it is absurdly large.

    What it detects:
        A logged grad_norm more than `factor` (30) times the median of the preceding window of points at which the
        loss jumps too (at that logged step or the next, by more than three times its batch noise and 0.05); or a
        grad_norm above `absurd` (1e5) at any point. Isolated spikes that leave the loss where it was are not
        reported: tiny models, small batches and logging every step routinely show 20–40× jumps, and with
        max_grad_norm (1.0 by default in transformers) the update is clipped, so the step is bounded.
    Why it matters:
        A gradient spike that moves the loss threw the policy off in one step; loss spikes and NaNs tend to follow.
        A norm in the hundreds of thousands means the loss surface is degenerate for this batch or precision.
    Likely causes:
        Very long or empty completions, bad tokens in a batch, a learning rate too high, fp16 overflow, or
        clipping switched off (max_grad_norm=0).
    What to try:
        Keep max_grad_norm at 1.0 (the logged norm is before clipping), inspect the batches at the cited steps, and
        lower the learning rate if spikes repeat.
    Example:
        grad_norm 0.8 0.9 0.7 42.0 1.1 0.9     loss 0.52 0.50 0.49 0.95 0.81 0.70
    """
    g = ctx.series("grad_norm")
    values = g.values
    absurd = np.flatnonzero(values > ctx.param("absurd"))
    clip = ctx.run.config.get("max_grad_norm")
    clipped = f"; max_grad_norm={clip} clips the update" if isinstance(clip, int | float) and clip > 0 else ""
    if absurd.size:
        worst = int(absurd[np.argmax(values[absurd])])
        steps = g.steps[absurd]
        return Hit(
            f"grad_norm is {fmt(values[worst])} at step {int(g.steps[worst])} ({absurd.size} logged value(s) above "
            f"{ctx.param('absurd'):g}){clipped}",
            int(steps[0]),
            int(steps[-1]),
            {"absurd": int(absurd.size), "worst": rounded(float(values[worst]))},
        )
    if len(g) < MIN_POINTS * 2:
        return too_few(len(g), MIN_POINTS * 2)
    window = stats.window_for(len(g), 0.1, minimum=5)
    # the median of the window before each point (pandas' rolling(window, min_periods=3).median().shift(1))
    baseline = np.r_[np.nan, stats.trailing_median(values, window, 3)[:-1]]
    with np.errstate(invalid="ignore"):
        ratio = values / np.where(baseline > 0, baseline, np.nan)
    spikes = np.flatnonzero(np.nan_to_num(ratio, nan=0.0) > ctx.param("factor"))
    spikes = np.array([i for i in spikes if _loss_reacts(ctx, int(g.steps[int(i)]))], dtype=np.int64)
    if spikes.size == 0:
        return None
    steps = g.steps[spikes]
    worst = int(spikes[np.argmax(ratio[spikes])])
    cited = ", ".join(str(int(x)) for x in steps[:10]) + (" …" if len(steps) > 10 else "")
    loss = ctx.curve("loss")
    return Hit(
        f"grad_norm spikes at step(s) {cited} and the loss jumps with it; worst {fmt(values[worst])} at step "
        f"{int(g.steps[worst])}, {ratio[worst]:.0f}× the recent median (loss {loss.point_text(int(g.steps[worst]))})"
        f"{clipped}",
        int(steps[0]),
        int(steps[-1]),
        {"spikes": len(steps), "worst_ratio": rounded(float(ratio[worst]), 3), "steps": [int(x) for x in steps[:50]]},
    )


# What a learning rate far too high explains: NaNs, collapse, spikes, rewards far from 0, any reward direction.
HIGH_LR_SYMPTOMS = (
    "DPO001", "DPO102", "DPO103", "DPO105", "DPO106", "DPO201", "DPO202", "DPO204", "DPO301", "DPO401",
    "DPO402", "DPO403", "DPO404", "DPO406", "DPO407",
)  # fmt: skip


@rule(
    "DPO603",
    "lr-absurd",
    Severity.WARNING,
    "the logged learning rate is absurdly high for fine-tuning",
    metrics=("learning_rate",),
    params={"high": 1e-2},
)
def lr_absurd(ctx: Context) -> Hit | Skip | None:
    """The learning rate is far above what fine-tuning a language model uses.

    What it detects:
        The peak logged learning rate is above `high` (1e-2). DPO fine-tuning uses about 5e-7 to 5e-6 for full
        fine-tuning and up to about 5e-4 for LoRA. When the rate is this far off, it is the cause of what else the
        run shows (NaNs, a collapse of the loss to 0, spikes, rewards far from 0 from the first log), and those
        findings are folded into this one. An absurdly low rate (below 1e-8 past the warm-up) shows as a loss stuck
        at its start, and DPO101 names the rate as its cause, at any length of log.
    Why it matters:
        A rate of 1e-2 or more wrecks a pretrained model in a few updates: the damage often happens before the
        first log, so later curves look like a "recovery" of a broken model.
    Likely causes:
        A typo in the exponent, a scheduler misconfigured (warm-up longer than the run, a decay to 0 from the
        start), or a learning rate copied from a from-scratch recipe.
    What to try:
        Set the learning rate to 5e-7–5e-6 for full fine-tuning (5e-5–2e-4 for LoRA), use a short warm-up, and
        re-run from the SFT checkpoint.
    Example:
        learning_rate 0.1 0.1 0.1     loss 0.69 0 0
    """
    c = ctx.curve("learning_rate")
    if not c.logged:
        return None
    peak = c.max_value
    if peak > ctx.param("high"):
        return Hit(
            f"the learning rate peaks at {fmt(peak)} at step {c.max_step}: far above what fine-tuning a language "
            f"model uses (5e-7–5e-6 full, up to ~5e-4 LoRA)",
            c.first_step,
            c.last_step,
            {"peak_lr": rounded(peak)},
            metric="learning_rate",
            absorbs=HIGH_LR_SYMPTOMS,
            priority=6,
        )
    return None
