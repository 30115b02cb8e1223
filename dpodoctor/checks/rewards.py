"""Rules DPO4xx: The chosen and rejected rewards and the policy's drift from the reference: directions, levels,
log-probabilities.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import Any

from dpodoctor import stats
from dpodoctor.curve import fixed, fmt
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few


def _rewards_short(ctx: Context) -> Skip | None:
    n = min(len(ctx.series("chosen")), len(ctx.series("rejected")))
    return too_few(n) if n < MIN_POINTS else None


def _rewards(ctx: Context) -> tuple[int, float, int, float]:
    c_dir, c_change = ctx.direction("chosen")
    r_dir, r_change = ctx.direction("rejected")
    return c_dir, c_change, r_dir, r_change


def _chosen_down_by_design(ctx: Context) -> bool:
    """APO-down (loss_type apo_down) pushes the chosen likelihood down on purpose."""
    return any(t == "apo_down" for t, _ in ctx.expect.family.terms)


LEVELS_NOTE = " (levels: median of the first 5% of points against the median of the last third)"


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
    trend=True,
)
def chosen_falling(ctx: Context) -> Hit | Skip | None:
    """The chosen reward falls while the rejected reward does not.

    What it detects:
        Over the run, the chosen reward drops by at least 0.5 nats (× β) and most of its last third stays below its
        start, while the rejected reward stays level or rises. Information only under loss_type apo_down, which
        lowers the chosen likelihood by design.
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
    by_design = _chosen_down_by_design(ctx)
    return Hit(
        f"chosen reward fell by {-c_change:.3g} ({fixed(ctx.nats(-c_change), 1)} nats) while rejected "
        f"{'rose' if r_dir == 1 else 'stayed level'} ({r_change:+.3g}){LEVELS_NOTE}",
        first,
        last,
        _moves(ctx, c_change, r_change),
        metric="chosen",
        severity=Severity.INFO if by_design else None,
    )


@rule(
    "DPO402",
    "rejected-rising",
    Severity.WARNING,
    "the rejected reward increases while the chosen one does not",
    metrics=("chosen", "rejected"),
    trend=True,
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
        f"rejected reward rose by {r_change:.3g} ({fixed(ctx.nats(r_change), 1)} nats) while chosen "
        f"{'fell' if c_dir == -1 else 'stayed level'} ({c_change:+.3g}){LEVELS_NOTE}",
        first,
        last,
        _moves(ctx, c_change, r_change),
        metric="rejected",
    )


def _margin_context(ctx: Context) -> str:
    """The loss and margin beside a reward finding, as the curve summary has them (raw first point → end level)."""
    if not ctx.has("margins") or not ctx.has("loss"):
        return ""
    return (
        f"; beside it, the loss went {ctx.curve('loss').span_text()} and the margin {ctx.curve('margins').span_text()}"
    )


@rule(
    "DPO403",
    "both-rising",
    Severity.WARNING,
    "chosen and rejected rewards rise together (info when rejected rises much slower)",
    metrics=("chosen", "rejected"),
    params={"ratio": 0.5, "warn_nats": 2.0},
    trend=True,
)
def both_rising(ctx: Context) -> Hit | Skip | None:
    """Chosen and rejected rewards rise together.

    What it detects:
        Both rewards rise by at least 0.5 nats (× β) over the run, each with most of its last third above its
        start. It is a warning when rejected rises at least `ratio` (0.5) times as far as chosen and chosen rises at
        least `warn_nats` (2) nats, and information otherwise (chosen clearly leads, so the margin grows as DPO
        intends, or the drift is the nat or so a slow, noisy learner shows, or the loss has an SFT/NLL term that
        raises every completion by design).
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
    # a shared drift of a nat or two is what a slow, noisy learner shows; warn from `warn_nats` (2) up
    similar = ratio >= ctx.param("ratio")
    # an SFT/NLL term raises every completion by design: a shared rise is then expected, never a warning
    together = similar and ctx.nats(c_change) >= ctx.param("warn_nats") and not ctx.expect.family.extra_term
    verdict = (
        "they rise at a similar rate, so the gap comes from little more than a shared drift"
        if similar
        else "rejected rises much slower than chosen, so the preference is still learned"
    )
    if similar and not together:
        verdict += f" (a drift under {ctx.param('warn_nats'):g} nats, as slow, noisy learners show)"
    first, last = _reward_span(ctx)
    return Hit(
        f"chosen rose by {c_change:.3g} and rejected by {r_change:.3g} "
        f"({fixed(ctx.nats(c_change), 1)} and {fixed(ctx.nats(r_change), 1)} nats, ratio {ratio:.2f}){LEVELS_NOTE}: "
        f"{verdict}"
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
    params={"ratio": 0.5, "warn_nats": 2.0},
    trend=True,
)
def both_falling(ctx: Context) -> Hit | Skip | None:
    """Chosen and rejected rewards fall together (likelihood displacement).

    What it detects:
        Both rewards fall by at least 0.5 nats (× β). It is a warning when the chosen reward falls at least
        `ratio` (0.5) times as far as the rejected one and by at least `warn_nats` (2) nats, and information
        otherwise (and always under loss_type apo_down, which lowers the chosen likelihood by design).
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
    similar = ratio >= ctx.param("ratio")
    # apo_down lowers the chosen likelihood by design ("the chosen answers are worse than the model's own")
    severe = similar and ctx.nats(-c_change) >= ctx.param("warn_nats") and not _chosen_down_by_design(ctx)
    first, last = _reward_span(ctx)
    verdict = (
        "chosen falls nearly as fast as rejected: the preferred answers are being pushed down too"
        if similar
        else "chosen falls much slower than rejected, which is usually benign"
    )
    if similar and not severe:
        verdict += f" (by under {ctx.param('warn_nats'):g} nats, as slow, noisy learners show)"
    evidence = _moves(ctx, c_change, r_change) | {"ratio": rounded(ratio, 3)}
    return Hit(
        f"chosen fell by {-c_change:.3g} and rejected by {-r_change:.3g} (ratio {ratio:.2f}){LEVELS_NOTE}: {verdict}"
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
    "logps/chosen falls steadily (likelihood displacement; warning when it falls far below its start)",
    metrics=("logps_chosen",),
    params={"min_drop": 1.0, "severe_drop": 10.0},
)
def chosen_logps_falling(ctx: Context) -> Hit | Skip | None:
    """The log-probability of the chosen answers falls steadily.

    What it detects:
        logps/chosen falls by at least `min_drop` (1 nat) from its start, either steadily (a significant downward
        trend, Kendall's test p < 0.01) or early and then holding (90% of the last third below the start). On a
        log too short for a trend (2–7 points), a fall of ten times `min_drop` from the first point to the last.
        It is a warning when the fall is at least `severe_drop` (10 nats) and half the start's own size (−8 → −23):
        the policy has moved far from the reference, as with a tiny β or damage from a learning rate too high.
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
    c = ctx.curve("logps_chosen")
    if 2 <= len(s) < MIN_POINTS:
        # a short log carries no trend, but a large fall from the first point to the last is still a level
        drop = c.first_value - c.last_value
        if drop < 10 * ctx.param("min_drop"):
            return None
        return Hit(
            f"logps/chosen falls from {c.point_text(int(c.first_step or 0))} to "
            f"{c.point_text(int(c.last_step or 0))} ({fmt(drop)} nats, {len(s)} logged points)",
            c.first_step,
            c.last_step,
            {"drop": rounded(drop)},
        )
    if len(s) < MIN_POINTS:
        return too_few(len(s))
    t = ctx.trend("logps_chosen")
    start = stats.head(s, points=max(3, len(s) // 20))
    drop = start - stats.tail_level(s)
    tail = s.values[-max(1, len(s) // 3) :]
    # a steady fall, or a fall that happens early and then holds (the last third stays below the start)
    held = stats.share(tail < start - ctx.param("min_drop")) >= 0.9
    if drop < ctx.param("min_drop") or not ((t.slope < 0 and t.significant()) or held):
        return None
    first, last = span_of(s)
    # far below where it started: tens of nats and a large share of the start's own size (sequence log-probs are
    # sums over tokens, so a long completion falls by more nats for the same per-token change)
    severe = drop >= ctx.param("severe_drop") and start < 0 and drop >= 0.5 * abs(start)
    severe = severe and not _chosen_down_by_design(ctx)
    return Hit(
        f"logps/chosen falls by {fmt(drop)} nats, from {c.level_text('start')} to {c.level_text('end')} "
        f"(Kendall τ={t.tau:.2f})"
        + (": the preferred answers became far less likely than at the start" if severe else ""),
        first,
        last,
        {"drop": rounded(drop), "tau": rounded(t.tau, 3), "relative_drop": rounded(drop / abs(start), 3)},
        severity=Severity.WARNING if severe else None,
    )


@rule(
    "DPO406",
    "rewards-off-zero",
    Severity.WARNING,
    "the rewards are far from 0 at the first log: the reference is not the policy's start, or damage came first",
    metrics=("chosen", "rejected"),
    params={"nats": 20.0},
)
def rewards_off_zero(ctx: Context) -> Hit | Skip | None:
    """The rewards are far from 0 at the first logged step.

    What it detects:
        For a reference-based loss (every DPOTrainer loss type; not CPO, SimPO or ORPO, whose rewards are β·logp
        and start far below 0 by design), the first logged chosen or rejected reward is beyond `nats` (20) nats
        (reward / β) from 0, on a log whose first point is within 25 steps of the start. Judged at any length.
        When the chosen reward also stays below 0 for the whole run, the finding says so.
    Why it matters:
        Rewards are β·log(π/π_ref). At step 0 the policy is the reference, so every reward is exactly 0, and in the
        first few steps it moves by a few nats at most. Tens of nats at the first log mean the comparison point is
        wrong (a reference model that is not the checkpoint the policy starts from), or the policy was already
        wrecked before the first log by a learning rate far too high — later trends then describe a broken model.
    Likely causes:
        ref_model set to a different checkpoint than the policy (a base model against an SFT policy, or a LoRA
        policy whose adapter was merged differently), precomputed reference log-probs from another model or
        template, or a learning rate orders of magnitude too high (no warm-up).
    What to try:
        Make the reference the exact checkpoint the policy starts from (or leave ref_model=None so TRL copies it),
        recompute precomputed reference log-probs with the same template, and check the learning rate and warm-up.
    Example:
        rewards/chosen 15.2 14.8 15.5   rewards/rejected 14.9 15.1 15.0   (β=0.1: 150 nats at step 1)
    """
    family = ctx.expect.family
    if not family.reference_based:
        return Skip(f"reference-based rewards (this run's {family.name} logs β·logp rewards, negative by design)")
    chosen, rejected = ctx.curve("chosen"), ctx.curve("rejected")
    step = min(int(chosen.first_step or 0), int(rejected.first_step or 0))
    if step > 25:
        return Skip(f"a first log within 25 steps of the start (first reward at step {step})")
    c0, r0 = chosen.first_value, rejected.first_value
    worst = max(abs(ctx.nats(c0)), abs(ctx.nats(r0)))
    if worst < ctx.param("nats"):
        return None
    text = (
        f"at the first log the rewards are chosen {chosen.point_text(int(chosen.first_step or 0))} and rejected "
        f"{rejected.point_text(int(rejected.first_step or 0))}: {fixed(worst, 0)} nats from 0 at {ctx.beta_label}, "
        "where a policy that starts as its reference logs 0"
    )
    stays = chosen.n >= 2 and ctx.nats(chosen.max_value) < -ctx.param("nats") / 4
    if stays:
        text += (
            f"; the chosen reward stays below 0 for the whole run (its highest is "
            f"{chosen.point_text(int(chosen.max_step or 0))})"
        )
    same_sign = c0 * r0 > 0 and abs(ctx.nats(c0 - r0)) < 0.25 * worst
    cause = (
        "Both rewards are shifted the same way with little margin between them: the reference model is not the "
        "checkpoint the policy starts from (or its precomputed log-probs come from another model or template)."
        if same_sign
        else None
    )
    return Hit(
        text,
        step,
        step,
        {"first_chosen": rounded(c0), "first_rejected": rounded(r0), "nats": rounded(worst), "stays_below": stays},
        metric="chosen",
        cause=cause,
    )


@rule(
    "DPO407",
    "entropy-collapse",
    Severity.WARNING,
    "the policy's token entropy collapses (when the trainer logs it)",
    metrics=("entropy",),
    params={"fraction": 0.1, "floor": 0.05},
)
def entropy_collapse(ctx: Context) -> Hit | Skip | None:
    """The mean per-token entropy of the policy collapses.

    What it detects:
        TRL ≥ 0.20 logs `entropy`, the mean per-token entropy of the policy on the completions. The rule fires when
        its end level falls below `fraction` (0.1) of its start level, or below `floor` (0.05 nats) from a start
        above it. Judged at any length (the start and end are the raw points on a short log).
    Why it matters:
        A policy whose entropy collapses puts nearly all its probability on one token at each position: it has
        stopped being a language model of the data and generates the same few strings (mode collapse). DPO alone
        does not need that; it comes from a policy pushed far from the reference.
    Likely causes:
        A learning rate too high, a tiny β, many epochs, or a reference mismatch that the policy overcorrects.
    What to try:
        Lower the learning rate, raise β, train fewer steps, and sample from the checkpoint to confirm; an SFT term
        (rpo_alpha) also keeps the policy closer to the data.
    Example:
        entropy  1.92 1.85 1.10 0.31 0.04 0.02
    """
    c = ctx.curve("entropy")
    if c.n < 2 or c.start <= 0:
        return None
    ratio = c.end / c.start
    if ratio >= ctx.param("fraction") and not (c.end < ctx.param("floor") < c.start):
        return None
    return Hit(
        f"entropy fell from {c.level_text('start')} to {c.level_text('end')} ({ratio:.0%} of its start)",
        c.first_step,
        c.last_step,
        {"start": rounded(c.start), "end": rounded(c.end), "ratio": rounded(ratio, 3)},
    )
