"""Rules DPO4xx: The chosen and rejected rewards and the policy's drift from the reference: directions, levels,
log-probabilities.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.rules`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import Any

from dpodoctor import stats
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few


def _rewards_short(ctx: Context) -> Skip | None:
    n = min(len(ctx.series("chosen")), len(ctx.series("rejected")))
    return too_few(n) if n < MIN_POINTS else None


def _rewards(ctx: Context) -> tuple[int, float, int, float]:
    c_dir, c_change = ctx.direction("chosen")
    r_dir, r_change = ctx.direction("rejected")
    return c_dir, c_change, r_dir, r_change


def _reward_span(ctx: Context) -> tuple[int | None, int | None]:
    return span_of(ctx.series("chosen"))


def _moves(ctx: Context, c_change: float, r_change: float) -> dict[str, Any]:
    return {
        "chosen_change": rounded(c_change),
        "rejected_change": rounded(r_change),
        "chosen_change_nats": rounded(ctx.nats(c_change)),
        "rejected_change_nats": rounded(ctx.nats(r_change)),
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
        _moves(ctx, c_change, r_change) | {"ratio": rounded(ratio, 3)},
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
    evidence = _moves(ctx, c_change, r_change) | {"ratio": rounded(ratio, 3)}
    return Hit(
        f"chosen fell by {-c_change:.3g} and rejected by {-r_change:.3g} (ratio {ratio:.2f}): {verdict}"
        f"{_margin_context(ctx)}",
        first,
        last,
        evidence,
        metric="chosen",
        severity=Severity.WARNING if severe else Severity.INFO,
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
        return too_few(len(s))
    t = stats.trend(s)
    start = stats.head(s, points=max(3, len(s) // 20))
    drop = start - stats.tail_level(s)
    tail = s.to_numpy()[-max(1, len(s) // 3) :]
    # a steady fall, or a fall that happens early and then holds (the last third stays below the start)
    held = stats.share(tail < start - ctx.param("min_drop")) >= 0.9
    if drop < ctx.param("min_drop") or not ((t.slope < 0 and t.significant()) or held):
        return None
    first, last = span_of(s)
    return Hit(
        f"logps/chosen falls by {drop:.3g} nats from step {first} to {last} (Kendall τ={t.tau:.2f})",
        first,
        last,
        {"drop": rounded(drop), "tau": rounded(t.tau, 3)},
    )
