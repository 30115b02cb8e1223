"""Rules DPO6xx: The optimiser: dead gradients, gradient spikes, learning rates absurd for the setup.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.rules`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dpodoctor import stats
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few


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
        evidence["grad_zero_share"] = rounded(zero, 3)
        if len(g) >= 3 and zero > 0.5:
            reasons.append(f"grad_norm is 0 at {zero:.0%} of {len(g)} steps")
            steps = g
    loss = stats.late(ctx.series("loss"))
    if len(loss) >= MIN_POINTS:
        spread = float(np.quantile(loss.to_numpy(), 0.95) - np.quantile(loss.to_numpy(), 0.05))
        evidence["loss_spread"] = rounded(spread)
        if spread < 5e-4:
            reasons.append(f"the loss stays within {spread:.1e} ({loss.median():.4f}) from step {int(loss.index[0])}")
            steps = loss if steps is None else steps
    if not reasons or steps is None:
        return None
    first, last = span_of(steps)
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
        return too_few(len(g), MIN_POINTS * 2)
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
        {"spikes": len(steps), "worst_ratio": rounded(float(ratio[worst]), 3), "steps": [int(x) for x in steps[:50]]},
    )
