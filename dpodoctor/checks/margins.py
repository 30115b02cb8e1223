"""Rules DPO2xx: The reward margin (chosen − rejected, in nats = margin / β): negative, flat, slow, runaway.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpodoctor import stats
from dpodoctor.curve import fixed
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


@rule(
    "DPO201",
    "margin-negative",
    Severity.ERROR,
    "margins stay below 0",
    metrics=("margins",),
    absorbs=("DPO304", "DPO401", "DPO402"),
    trend=True,
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
    s = ctx.late("margins")
    if len(s) < MIN_POINTS:
        return too_few(len(s))
    values = s.values
    median = ctx.late_median("margins")  # stats.median(values), once per run
    negative = stats.share(values < 0)
    if negative < 0.7 or ctx.nats(median) > -0.1:
        return None
    first, last = span_of(s)
    return Hit(
        f"margins are negative at {negative:.0%} of the steps from {first} to {last} "
        f"(median {median:.4g}, {fixed(ctx.nats(median))} nats)",
        first,
        last,
        {"median": rounded(median), "median_nats": rounded(ctx.nats(median)), "share_negative": rounded(negative, 3)},
    )


@rule(
    "DPO202",
    "margin-flat",
    Severity.WARNING,
    "margins oscillate near 0 and never separate",
    metrics=("margins",),
    params={"band_nats": 0.25},
    absorbs=("DPO303",),
    trend=True,
)
def margin_flat(ctx: Context) -> Hit | Skip | None:
    """The reward margin hovers around 0 and never grows.

    What it detects:
        After the first 10% of steps, the smoothed margin stays inside ±`band_nats` (0.25) nats × β of zero, on at
        least 16 points (8 when the margin is constant), and does not grow steadily (a slow learner is not flat).
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
    s = ctx.late("margins")
    needed = MIN_POINTS if len(s) and float(np.ptp(s.values)) < 1e-9 else MIN_POINTS * 2
    if len(s) < needed:
        return too_few(len(s), needed)
    if ctx.learning()[0]:
        return None  # the margin grows steadily, if slowly: not flat
    band = ctx.param("band_nats") * ctx.beta
    smoothed = ctx.rolling("margins", "late")  # stats.smooth(s).values, computed once per run
    if np.max(np.abs(smoothed)) > band:
        return None
    first, last = span_of(s)
    peak = float(np.max(np.abs(smoothed)))
    return Hit(
        f"smoothed margins stay within ±{peak:.3g} ({fixed(ctx.nats(peak))} nats) from step {first} to {last}",
        first,
        last,
        {"max_abs_smoothed": rounded(peak), "band": rounded(band)},
    )


@rule(
    "DPO203",
    "margin-slow",
    Severity.INFO,
    "margins barely grow for the β in use",
    metrics=("margins",),
    params={"nats": 2.0},
    trend=True,
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
        return too_few(len(s))
    c = ctx.curve("margins")  # the end level the table and every report show, not one of this rule's own
    end = c.end
    nats = ctx.nats(end)
    if not (0.25 < nats < ctx.param("nats")):
        return None
    expected = (
        f"expected with a large β ({ctx.beta:g}): rewards are β × log-ratio, so a constrained policy moves slowly"
        if ctx.beta >= 0.5
        else f"small for {ctx.beta_label}"
    )
    first, last = span_of(s)
    return Hit(
        f"the margin ends at {c.level_text('end')} = {fixed(nats)} nats at {ctx.beta_label}: {expected}",
        first,
        last,
        {"final_margin": rounded(end), "final_margin_nats": rounded(nats), "beta": ctx.beta},
    )


@rule(
    "DPO204",
    "margin-runaway",
    Severity.WARNING,
    "margins/β reach extreme values (~100 nats), or keep growing past 15 nats without levelling off",
    metrics=("margins",),
    params={"extreme_nats": 100.0, "drift_nats": 15.0},
)
def margin_runaway(ctx: Context) -> Hit | Skip | None:
    """The log-ratio gap (margin / β) reaches extreme values, or keeps growing without levelling off.

    What it detects:
        The margin in nats (margin / β) ends above `extreme_nats` (100), judged at any length, even on a few
        logged points; or, on a log of at least 16 points past its warm-up, it ends above `drift_nats` (15) while
        still growing as fast in the last third of the run as in the first (no levelling off). A margin that has
        levelled off — at 25 nats or wherever — is not reported by the second test, and neither is cDPO's margin,
        which settles near ln((1−ε)/ε) by design (label_smoothing=ε).
    Why it matters:
        A healthy margin rises and then levels off. One that keeps growing means the policy keeps moving away from
        the reference; a gap of about 100 nats means it has moved so far that it exploits the pairs rather than
        learning a preference, and generations often degrade (repetition, length hacking).
    Likely causes:
        A tiny β (0.01) that barely constrains the policy, too many epochs, or too high a learning rate.
    What to try:
        Raise β, train for fewer steps, and look at sample generations from the late checkpoints; watch the eval
        margins and loss (DPO501).
    Example:
        margins (β=0.1)  0.4 1.4 2.5 3.4 4.0 4.6 4.9 5.0 ...   (50 nats and still growing)
    """
    c = ctx.curve("margins")
    if not c.logged:
        return None
    end_nats = ctx.nats(c.end)
    extreme = end_nats > ctx.param("extreme_nats")
    still_growing = False
    if not extreme:
        if ctx.expect.phase.too_early:
            return Skip(f"a log past its warm-up (too early to judge: {ctx.expect.phase.reason})")
        s = ctx.series("margins")
        if len(s) < MIN_POINTS * 2:
            return too_few(len(s), MIN_POINTS * 2)
        target = ctx.expect.family.margin_target_nats
        if target is not None and end_nats <= 2 * target:
            return None  # cDPO: the margin settles near ln((1−ε)/ε) by design
        early, late_part = ctx.trend("margins", "early"), ctx.trend("margins", "late")
        still_growing = (
            not c.levelled and late_part.significant(0.05) and late_part.slope >= 0.5 * max(early.slope, 0.0) > 0
        )
        if not (end_nats > ctx.param("drift_nats") and still_growing):
            return None
    why = (
        f"beyond {ctx.param('extreme_nats'):g} nats: an extreme log-ratio gap"
        if extreme
        else "still growing as fast as at the start, not levelling off"
    )
    return Hit(
        f"margin / β ends at {fixed(end_nats, 1)} nats at {ctx.beta_label} ({why}); the margin went from "
        f"{c.point_text(int(c.first_step or 0))} to {c.level_text('end')}, "
        f"peaking at {c.point_text(int(c.max_step or 0))}",
        c.first_step,
        c.last_step,
        {"final_margin_nats": rounded(end_nats), "still_growing": bool(still_growing), "beta": ctx.beta},
    )
