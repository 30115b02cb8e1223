"""Rules DPO3xx: The reward accuracy: chance, saturated, confident-looking but tiny margins, below chance, separated
by length.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpodoctor.curve import CurveSummary, fixed
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


@rule(
    "DPO301",
    "accuracy-chance",
    Severity.ERROR,
    "accuracy stays near 0.5 (or at 0 with zero margins: ties)",
    metrics=("accuracy",),
    params={"upper": 0.6},
    trend=True,
)
def accuracy_chance(ctx: Context) -> Hit | Skip | None:
    """Reward accuracy stays at chance.

    What it detects:
        After the first 10% of steps the median of rewards/accuracies is at most `upper` (0.6), and the margins
        are not clearly negative (that case is DPO201). A dead run that logs 0.0 with zero margins counts too:
        TRL's accuracy is the share of pairs with chosen reward strictly above rejected, so ties count as misses.
        Needs 16 points past the first 10% (8 when the accuracy is constant), and stays quiet when the accuracy is
        above 0.5 by more than its noise while the margin grows steadily (a slow learner: noisy labels, batch 1). When
        each logged accuracy averages only a few pairs (batch size 1 logged every step gives only 0 or 1), the median
        is meaningless: the mean of the logged values is used instead, and the rule fires only when that mean plus two
        standard errors (over the pairs averaged) stays at or below `upper`, so a short log of 0/1 values is not
        called "chance" on a coin-flip's evidence.
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
    s = ctx.late("accuracy")
    # a noisy accuracy needs 16 points to be called "at chance" rather than "has barely started"; a constant one
    # (a dead run logging 0.0) is a level, and 8 suffice
    needed = MIN_POINTS if float(np.ptp(s.values)) == 0 and len(s) else MIN_POINTS * 2
    if len(s) < needed:
        return too_few(len(s), needed)
    noise = ctx.expect.noise
    how = "median"
    median = ctx.late_median("accuracy")  # stats.median(s.values), once per run
    above_chance = median - 0.5 > 2 * 1.25 * ctx.late_noise("accuracy") / np.sqrt(len(s))
    small_margin = ctx.has("margins") and abs(ctx.nats(ctx.late_median("margins"))) < 2.0
    if above_chance and small_margin and ctx.learning()[0]:
        # above 0.5 by more than its noise while a small margin grows: a slow learner (noisy labels, batch 1); a
        # large margin beside an accuracy at chance is a contradiction worth reporting (a few pairs carry it)
        return None
    if noise.coarse_accuracy and noise.accuracy_quantum:
        # each logged value averages 1/quantum pairs: judge the mean, with its binomial standard error
        median = float(np.mean(s.values))
        pairs = len(s) / noise.accuracy_quantum
        se = float(np.sqrt(max(median * (1 - median), 0.25 * 0.25) / pairs))
        how = f"mean (each logged value averages {1 / noise.accuracy_quantum:.0f} pair(s), so a median says nothing)"
        if median + 2 * se > ctx.param("upper"):
            return None
    if median > ctx.param("upper"):
        return None
    ties = ""
    if ctx.has("margins"):
        margin = ctx.late_median("margins")
        if ctx.nats(margin) < -0.1:
            return None  # learned backwards: DPO201's case
        if median < 0.4 and abs(ctx.nats(margin)) < 0.05:
            ties = " with margins ≈ 0: chosen and rejected are scored alike, and TRL counts ties as misses"
    first, last = span_of(s)
    return Hit(
        f"accuracy {how} {median:.2f} from step {first} to {last}{ties}",
        first,
        last,
        {"median": rounded(median), "upper": ctx.param("upper")},
    )


@rule(
    "DPO302",
    "accuracy-saturated",
    Severity.WARNING,
    "accuracy reaches ~1.0 early and stays there",
    metrics=("accuracy",),
    params={"level": 0.98, "by": 0.5},
    trend=True,
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
        return too_few(len(s))
    smoothed = ctx.rolling("accuracy")  # stats.smooth(s).values, computed once per run
    level = ctx.param("level")
    below = np.flatnonzero(smoothed < level)
    start_idx = int(below[-1]) + 1 if below.size else 0
    if start_idx >= len(s):
        return None
    steps = s.steps
    fraction = (steps[start_idx] - steps[0]) / max(1, steps[-1] - steps[0])
    if fraction > ctx.param("by"):
        return None
    return Hit(
        f"accuracy is at {smoothed[-1]:.2f} from step {int(steps[start_idx])} ({fraction:.0%} into the run) to the end",
        int(steps[start_idx]),
        int(steps[-1]),
        {"level": level, "reached_at_fraction": rounded(fraction, 3)},
    )


@rule(
    "DPO303",
    "low-confidence",
    Severity.WARNING,
    "accuracy is high but the margin stays tiny",
    metrics=("accuracy", "margins"),
    params={"accuracy": 0.75, "nats": 0.5},
    absorbs=("DPO203",),
    trend=True,
)
def low_confidence(ctx: Context) -> Hit | Skip | None:
    """High accuracy with a tiny margin: the pairs are separated, but barely.

    What it detects:
        After the warm-up the median accuracy is at least `accuracy` (0.75) while the median margin stays below
        `nats` (0.5) nats × β. Not judged for CPO, SimPO and ORPO, whose margins are not log-ratios.
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
    family = ctx.expect.family
    if not family.reference_based:
        # CPO/SimPO/ORPO margins are β × a difference of (average) log-probabilities, not a log-ratio against a
        # reference: a threshold in nats of log-ratio does not apply to them
        return Skip(f"reference-based rewards (this run's {family.name} logs β·logp rewards)")
    acc = ctx.late("accuracy")
    margins = ctx.late("margins")
    if min(len(acc), len(margins)) < MIN_POINTS:
        return too_few(min(len(acc), len(margins)))
    acc_median, how = ctx.accuracy_level()
    margin_median = ctx.late_median("margins")  # stats.median(margins.values), once per run
    if acc_median < ctx.param("accuracy") or ctx.nats(margin_median) >= ctx.param("nats"):
        return None
    first, last = span_of(acc)
    return Hit(
        f"accuracy {how} {acc_median:.2f} but margin median {margin_median:.3g} "
        f"({fixed(ctx.nats(margin_median))} nats at {ctx.beta_label})",
        first,
        last,
        {"accuracy_median": rounded(acc_median), "margin_median_nats": rounded(ctx.nats(margin_median))},
        metric="margins",
    )


@rule(
    "DPO304",
    "accuracy-below-chance",
    Severity.ERROR,
    "accuracy stays below 0.5: the preference is learned backwards",
    metrics=("accuracy",),
    params={"upper": 0.45},
    trend=True,
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
    s = ctx.late("accuracy")
    if len(s) < MIN_POINTS:
        return too_few(len(s))
    median, how = ctx.accuracy_level()
    if median >= ctx.param("upper"):
        return None
    noise = ctx.expect.noise
    if noise.coarse_accuracy and noise.accuracy_quantum:
        # a mean of 0/1 values: below chance only when its binomial error leaves no doubt
        se = float(np.sqrt(max(median * (1 - median), 0.25 * 0.25) / (len(s) / noise.accuracy_quantum)))
        if median + 2 * se >= 0.5:
            return None
    if ctx.has("margins") and abs(ctx.nats(ctx.late_median("margins"))) < 0.05:
        return None  # ties, not a backwards preference: DPO301 covers it
    first, last = span_of(s)
    return Hit(
        f"accuracy {how} {median:.2f} from step {first} to {last}: rejected answers win most pairs",
        first,
        last,
        {"median": rounded(median), "upper": ctx.param("upper")},
    )


@rule(
    "DPO305",
    "length-separation",
    Severity.WARNING,
    "accuracy ~1.0 while one side's summed log-probs start several times the other's: the pairs separate by length",
    metrics=("accuracy", "logps_chosen", "logps_rejected"),
    params={"ratio": 2.5, "accuracy": 0.95},
    absorbs=("DPO103", "DPO204", "DPO302", "DPO503"),
    trend=True,
)
def length_separation(ctx: Context) -> Hit | Skip | None:
    """The pairs are told apart by their length: accuracy ≈ 1.0, and one side's log-probabilities start several
    times the other's.

    What it detects:
        At the first log (the policy is then still close to the reference) logps/chosen and logps/rejected, both
        negative, differ by a factor of at least `ratio` (2.5), taken on the first logged values or on the start
        levels; and the accuracy level late in the run is at least `accuracy` (0.95). TRL logs the *sum* of the
        completion's token log-probabilities, so at the start their ratio is about the ratio of the two answers'
        lengths in tokens. Length-normalised losses (SimPO, ORPO's average log-probabilities) start near 1 and are
        not flagged.
    Why it matters:
        When every rejected answer is much longer (or shorter) than its chosen one, the model can rank the pairs by
        length alone: accuracy goes to 1.0 and the loss toward 0 whatever the content says (even with the content's
        labels at random), and the tuned model learns a length preference, the "length exploitation" DPO is known
        for. An accuracy of 1.0 then says nothing about the preference it was meant to measure.
    Likely causes:
        A preference set built so that one side is systematically longer (chosen from a verbose model, rejected
        truncated; or refusals as rejected), or a formatting difference that adds tokens to one side only (a
        template, an EOS, a trailing explanation).
    What to try:
        Compare the token lengths of chosen and rejected in the data; balance them or filter the pairs whose length
        ratio is extreme; use a length-regularised or length-normalised objective (TRL's `ld_alpha` (LD-DPO), SimPO,
        or R-DPO's length penalty); judge the model on length-controlled comparisons, not on reward accuracy.
    Example:
        logps/chosen -6.9 -6.4 -5.1 ...   logps/rejected -31.9 -36 -58 ...   accuracy 0.62 0.97 1.00 1.00 1.00
    """
    acc = ctx.series("accuracy")
    if len(acc) < MIN_POINTS:
        return too_few(len(acc))
    chosen, rejected = ctx.curve("logps_chosen"), ctx.curve("logps_rejected")
    best: tuple[float, str, str] | None = None  # (ratio, the longer side, how its start is quoted)
    for which, (c_value, r_value) in (
        ("first", (chosen.first_value, rejected.first_value)),
        ("start", (chosen.start, rejected.start)),
    ):
        if not (np.isfinite(c_value) and np.isfinite(r_value) and c_value < 0 and r_value < 0):
            continue
        ratio = max(c_value / r_value, r_value / c_value)
        if best is None or ratio > best[0]:
            best = (ratio, "rejected" if r_value < c_value else "chosen", which)
    if best is None:
        return None
    ratio, longer, which = best
    level, how = ctx.accuracy_level()
    if ratio < ctx.param("ratio") or not level >= ctx.param("accuracy"):
        return None
    shorter = "chosen" if longer == "rejected" else "rejected"
    big, small = (rejected, chosen) if longer == "rejected" else (chosen, rejected)

    def quoted(c: CurveSummary) -> str:
        if which == "first" and c.first_step is not None:
            return c.point_text(c.first_step)
        return f"a start level of {c.level_text('start')}"

    first, last = span_of(acc)
    eval_note = ""
    if ctx.run.has("accuracy", "eval"):
        eval_note = f"; eval accuracy ends at {ctx.curve('accuracy', 'eval').level_text('end')}"
    return Hit(
        f"logps/{longer} starts {fixed(ratio, 1)}× logps/{shorter} ({quoted(big)} against {quoted(small)}): "
        f"the log-probabilities are sums over tokens, so the {longer} answers are about {fixed(ratio, 1)}× as long; "
        f"accuracy {how} {level:.2f} late in the run{eval_note}: length alone separates the pairs",
        first,
        last,
        {
            "logps_ratio": rounded(ratio, 3),
            "longer": longer,
            "accuracy": rounded(level),
            f"logps_{longer}_start": rounded(big.first_value if which == "first" else big.start),
            f"logps_{shorter}_start": rounded(small.first_value if which == "first" else small.start),
        },
        priority=1,  # the cause: it folds the collapse and saturation it explains before they fold anything
    )
