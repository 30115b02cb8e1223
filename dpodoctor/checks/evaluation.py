"""Rules DPO5xx: Held-out (eval) curves against the train curves: divergence, no transfer.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.rules`` imports every family module). Kept in code order.
"""

from __future__ import annotations

import numpy as np

from dpodoctor import stats
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, Context, Hit, Skip, rounded, rule, span_of, too_few


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
        return too_few(len(ev), 5)
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
        {"eval_min": rounded(float(smoothed.min())), "eval_end": rounded(end), "train_change": rounded(t.change)},
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
        return too_few(min(len(train), len(ev)), MIN_POINTS)
    train_median = float(np.median(train.to_numpy()))
    eval_median = float(np.median(ev.to_numpy()))
    if train_median < ctx.param("train") or eval_median > ctx.param("eval"):
        return None
    first, last = span_of(ev)
    return Hit(
        f"train accuracy median {train_median:.2f} but eval accuracy median {eval_median:.2f}",
        first,
        last,
        {"train_accuracy": rounded(train_median), "eval_accuracy": rounded(eval_median)},
        metric="accuracy",
        split="eval",
    )
