"""Rules DPO5xx: Held-out (eval) curves against the train curves: divergence, no transfer.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpodoctor import stats
from dpodoctor.curve import fmt, trend
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, first_logged_step, rounded, rule, span_of, too_few

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


@rule(
    "DPO501",
    "eval-diverging",
    Severity.WARNING,
    "the eval loss rises from its minimum while the train loss keeps falling",
    params={"min_rise": 0.02},
    trend=True,
)
def eval_diverging(ctx: Context) -> Hit | Skip | None:
    """The eval loss climbs from its minimum while the train loss keeps falling.

    What it detects:
        Sparse evals (fewer than 12, the usual eval_steps): the lowest logged eval loss is followed by at least two
        evals, all of them above it, and the last eval sits at least `min_rise` (0.02) and 10% above it, while the
        typical eval after the minimum (their median) is `min_rise` above it too. The eval set is the same at every
        eval, so a change between two evals is the model's, not batch noise: the raw points are judged, not a
        smoothed curve (three-point smoothing of nine evals hides a late rise). Dense evals (12 or more): the
        3-point rolling median's minimum against the median of the last three evals, which must exceed `min_rise`
        and twice the eval noise. In both cases the train loss must still fall after the eval minimum (Kendall's
        test p < 0.05, or its end level below its level at the minimum by more than its noise).
    Why it matters:
        This is the textbook overfitting signature: the model keeps improving on the training pairs and gets worse
        on held-out ones. The best checkpoint is the one at the eval minimum, not the last.
    Likely causes:
        Too many epochs, a small preference set, or a learning rate that is too high for the data size.
    What to try:
        Keep the checkpoint at the eval minimum (load_best_model_at_end with metric_for_best_model=eval_loss),
        train fewer epochs, add data or raise β.
    Example:
        train loss 0.60 0.40 0.25 0.15 0.08     eval loss 0.40 0.34 0.255 0.317 0.313 0.369
    """
    if not ctx.run.has("loss", "eval") or not ctx.run.has("loss", "train"):
        return Skip("train and eval loss")
    ev = ctx.series("loss", "eval")
    if len(ev) < 4:
        return too_few(len(ev), 4)
    values = ev.values
    steps = ev.steps
    min_rise = ctx.param("min_rise")
    if len(ev) < 12:
        low = int(np.argmin(values))
        after = values[low + 1 :]
        if len(after) < 2:
            return None
        minimum, end = float(values[low]), float(values[-1])
        typical = stats.median(after)
        if not ((after > minimum).all() and end - minimum >= max(min_rise, 0.1 * abs(minimum))):
            return None
        if typical - minimum < min_rise:
            return None
        min_step = int(steps[low])
        how = "logged"
    else:
        # pandas' rolling(3, center=True, min_periods=1).median(); its minimum at its first position (idxmin)
        smoothed = stats.rolling_median(values, 3)
        lowest = int(np.argmin(smoothed))
        min_step = int(steps[lowest])
        minimum = float(smoothed[lowest])
        end = stats.median(values[-3:])
        sigma = stats.noise_sigma_around(values, smoothed)  # stats.noise_sigma(ev, 3), without smoothing it again
        if min_step >= int(steps[-1]) or end - minimum < max(min_rise, 2 * sigma):
            return None
        how = "3-point median"
    train = ctx.series("loss", "train")
    train_after = train[train.steps >= min_step]
    t = trend(train_after)
    falling = t.n >= MIN_POINTS and t.slope < 0 and t.significant(0.05)
    if not falling and len(train_after) >= 3:
        level_then = stats.median(train_after.values[:3])
        level_end = stats.median(train_after.values[-3:])
        falling = level_then - level_end > max(ctx.noise("loss", "train"), 0.02)
    if not falling:
        return None
    c = ctx.curve("loss", "eval")
    tr = ctx.curve("loss", "train")
    near = tr.nearest(min_step)
    return Hit(
        f"eval loss rose from {fmt(minimum)} at step {min_step} ({how}) to {c.point_text(int(steps[-1]))}"
        f"{' (median of the last 3: ' + fmt(end) + ')' if how != 'logged' else ''} while the train loss kept "
        f"falling, from {fmt(near[1]) if near else '?'} at step {near[0] if near else min_step} to "
        f"{tr.level_text('end')}",
        min_step,
        int(steps[-1]),
        {"eval_min": rounded(minimum), "eval_end": rounded(end), "train_change": rounded(t.change)},
        metric="loss",
        split="eval",
    )


@rule(
    "DPO502",
    "eval-not-learning",
    Severity.WARNING,
    "train accuracy rises while eval accuracy stays at chance",
    params={"train": 0.7, "eval": 0.55},
    trend=True,
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
    train = ctx.late("accuracy", "train")
    ev = ctx.late("accuracy", "eval")
    if len(train) < MIN_POINTS or len(ev) < 3:
        return too_few(min(len(train), len(ev)), MIN_POINTS)
    train_median, how = ctx.accuracy_level("train")  # the mean when batch-1 accuracies are only 0 or 1
    eval_median = ctx.late_median("accuracy", "eval")  # stats.median(ev.values), once per run
    if train_median < ctx.param("train") or eval_median > ctx.param("eval"):
        return None
    first, last = span_of(ev)
    return Hit(
        f"train accuracy {how} {train_median:.2f} but eval accuracy median {eval_median:.2f}",
        first,
        last,
        {"train_accuracy": rounded(train_median), "eval_accuracy": rounded(eval_median)},
        metric="accuracy",
        split="eval",
    )


def _smallest_set(values: np.ndarray, below: int) -> int | None:
    """The smallest eval set (in pairs, under ``below``) that could have produced every logged accuracy, or None.

    An accuracy over n pairs is a multiple of 1/n. Only values strictly between 0 and 1 tell n apart (1.0 is a
    multiple of anything); when there are none, the set's size is unknown and None is returned.
    """
    inner = values[(values > 0) & (values < 1)]
    if not inner.size:
        return None
    for n in range(1, below):
        scaled = inner * n
        if np.all(np.abs(scaled - np.round(scaled)) < 2e-3 * n):
            return n
    return None


@rule(
    "DPO503",
    "eval-accuracy-saturated",
    Severity.WARNING,
    "eval accuracy is at ~1.0 from early in the run to its end",
    params={"level": 0.98, "by": 0.3, "evals": 4, "pairs": 16},
    trend=True,
)
def eval_accuracy_saturated(ctx: Context) -> Hit | Skip | None:
    """Eval accuracy reaches about 1.0 early and stays there to the end.

    What it detects:
        Every eval from one logged within the first `by` (30%) of the run to the last has an accuracy of at least
        `level` (0.98), over at least `evals` (4) evals. Not judged on a small eval set: when every logged eval
        accuracy is a multiple of 1/n for some n below `pairs` (16), the set may hold only n pairs, and a healthy
        run can win all of them (the calibration corpus has one that reaches 8/8 and stays).
    Why it matters:
        Held-out preference pairs are noisy and ambiguous; a model that learns the preference ranks 70–95% of them
        the right way. All of them, from early on, means the eval set does not measure what it should: it is too
        easy, it overlaps the training pairs, or its pairs differ in something trivial (length, a template) the
        model keys on. The eval curves then cannot warn about overfitting.
    Likely causes:
        An eval set drawn from the training pairs (a leak, or duplicates across the split), pairs whose rejected
        side is trivially wrong (truncated, empty, another language), or a systematic length difference (DPO305).
    What to try:
        Check the eval pairs against the train pairs for duplicates, read a sample of eval pairs, compare chosen
        and rejected lengths, and hold out a harder, deduplicated eval set.
    Example:
        eval accuracy (64 pairs)  1.00 1.00 1.00 1.00 1.00 1.00 1.00 1.00   (train accuracy 0.6 → 1.0)
    """
    if not ctx.run.has("accuracy", "eval"):
        return Skip("eval accuracy")
    ev = ctx.series("accuracy", "eval")
    need = int(ctx.param("evals"))
    if len(ev) < need:
        return too_few(len(ev), need)
    values, steps = ev.values, ev.steps
    pairs = _smallest_set(values, int(ctx.param("pairs")))
    if pairs is not None:
        return Skip(f"an eval set of ≥{ctx.param('pairs'):g} pairs (the eval accuracies are multiples of 1/{pairs})")
    level = ctx.param("level")
    below = np.flatnonzero(values < level)
    start = int(below[-1]) + 1 if below.size else 0
    if len(values) - start < need:
        return None
    first_step = first_logged_step(ctx.run)
    assert first_step is not None  # the eval accuracy has points
    span = max(1, max(int(ctx.run.steps), int(steps[-1])) - first_step)
    fraction = (int(steps[start]) - first_step) / span
    if fraction > ctx.param("by"):
        return None
    c = ctx.curve("accuracy", "eval")
    return Hit(
        f"eval accuracy is at least {level:g} at every eval from step {int(steps[start])} ({fraction:.0%} into the "
        f"run) to step {int(steps[-1])} ({len(values) - start} evals; logged {c.point_text(int(steps[start]))}, "
        f"{c.point_text(int(steps[-1]))}): the held-out pairs are all separated from early on",
        int(steps[start]),
        int(steps[-1]),
        {"level": level, "evals": len(values) - start, "reached_at_fraction": rounded(fraction, 3)},
        metric="accuracy",
        split="eval",
    )
