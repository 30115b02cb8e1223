"""Rules DPO0xx: Integrity of the log itself: non-finite values, missing metrics, too few points, inconsistent
margins, a log that stops early, a run too early to judge.

Registered into :data:`dpodoctor.rules.RULES` by the :func:`~dpodoctor.rules.rule` decorator when this module is
imported (``dpodoctor.checks`` imports every family module). Kept in code order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpodoctor import stats
from dpodoctor.curveseries import Curve, common_steps
from dpodoctor.metrics import CORE_METRICS
from dpodoctor.model import Ended
from dpodoctor.results import Severity
from dpodoctor.rules import MIN_POINTS, RULES, Context, Hit, Skip, rounded, rule, too_few

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np


@rule(
    "DPO001",
    "nonfinite",
    Severity.ERROR,
    "NaN or ±inf in a core metric",
    absorbs=("DPO103", "DPO104", "DPO106", "DPO601", "DPO602"),
)
def nonfinite(ctx: Context) -> Hit | Skip | None:
    """NaN or ±inf values in loss, margins, accuracy or the rewards.

    What it detects:
        Any logged value of a core metric (loss, rewards/margins, rewards/accuracies, rewards/chosen,
        rewards/rejected), in train or eval, that is NaN or infinite.
    Why it matters:
        One non-finite loss poisons the optimizer state: the weights after it are usually garbage, and every
        later curve describes a broken model.
    Likely causes:
        A learning rate too high for the precision in use (fp16 overflow), log-probabilities of -inf from an
        empty or fully masked completion, or a division by zero in a custom loss.
    What to try:
        Lower the learning rate or enable gradient clipping (max_grad_norm), train in bf16 instead of fp16, and
        drop pairs whose completion is empty after truncation (check max_length/max_prompt_length).
    Example:
        loss   0.69 0.61 0.55  nan  nan  nan
    """
    bad: list[tuple[str, str, Curve]] = []
    for split in ("train", "eval"):
        for metric in CORE_METRICS:
            s = ctx.raw(metric, split)  # type: ignore[arg-type]
            mask = ~np.isfinite(s.values.astype(float, copy=False))
            if mask.any():
                bad.append((split, metric, s[mask]))
    if not bad:
        return None
    first = min(int(b[2].steps[0]) for b in bad)
    last = max(int(b[2].steps[-1]) for b in bad)
    worst_split, worst_metric, worst = min(bad, key=lambda b: int(b[2].steps[0]))
    described = ", ".join(f"{split} {metric} ×{len(values)}" for split, metric, values in bad)
    return Hit(
        f"{worst_split} {worst_metric} is non-finite ({worst.values[0]}) from step {int(worst.steps[0])}; "
        f"non-finite values: {described}",
        first,
        last,
        {"count": sum(len(b[2]) for b in bad), "first_step": first},
        metric=worst_metric,
        split=worst_split,  # type: ignore[arg-type]
    )


@rule("DPO002", "missing-metrics", Severity.WARNING, "a core metric is absent, so the rules that need it cannot run")
def missing_metrics(ctx: Context) -> Hit | Skip | None:
    """A core DPO metric is not in the log.

    What it detects:
        One of loss, rewards/margins, rewards/accuracies, rewards/chosen or rewards/rejected has no finite value in
        either the train or the eval split: it is not logged at all, or only as NaN/inf (then DPO001 fires too).
        A loss family that logs no reward accuracy by design (KTO) is not asked for one.
        The finding lists the rules that could not run because of it.
    Why it matters:
        A rule that cannot run has not passed. A report that is silent because the metric was never logged would
        let a broken run through a CI gate.
    Likely causes:
        A trainer that logs other names (map them with --metric-map key=canonical), a custom training loop that
        logs only the loss, or a log cut before the first metric line.
    What to try:
        Log the DPO metrics (TRL's DPOTrainer logs all five by default), or map the trainer's own key names onto
        them with --metric-map; check that the file given is the run's full log.
    Example:
        logged: loss, learning_rate    missing: rewards/margins, rewards/accuracies, rewards/chosen, rewards/rejected
    """
    expected = [m for m in CORE_METRICS if m != "accuracy" or ctx.expect.family.has_accuracy]
    missing = [m for m in expected if not ctx.has(m)]
    if not missing:
        return None
    logged = {m for _, m in ctx.run.metrics}
    absent = [m for m in missing if m not in logged]
    nonfinite_only = [m for m in missing if m in logged]
    blocked = sorted(r.code for r in RULES.values() if set(r.metrics) & set(missing))
    parts = []
    if absent:
        parts.append(f"not logged: {', '.join(absent)}")
    if nonfinite_only:
        parts.append(f"logged only as NaN/inf: {', '.join(nonfinite_only)}")
    return Hit(
        f"{'; '.join(parts)}; rules that could not run: {', '.join(blocked) or 'none'}",
        None,
        None,
        {"missing": absent, "nonfinite_only": nonfinite_only, "rules_not_run": blocked},
        metric=missing[0],
        # a metric that is logged nowhere belongs to no split: say "train", the split the rules judge first, rather
        # than "eval margins" on a log that has no eval split at all
        split="train" if any(split == "train" for split, _ in ctx.run.metrics) or not ctx.run.metrics else "eval",
    )


@rule("DPO003", "too-short", Severity.INFO, "too few logged points to judge trends")
def too_short(ctx: Context) -> Hit | Skip | None:
    """Too few logged points to judge trends.

    What it detects:
        The run logged fewer than 16 points of its main metric (the train loss, else any core metric). Trend rules
        need at least 8 points after the warm-up and spike detection needs 16.
    Why it matters:
        Per-batch DPO metrics jump ±0.2 from one logged step to the next. With a handful of points no honest
        statement about a trend is possible, so the trend rules stay silent and say so instead of passing.
    Likely causes:
        A large logging_steps for a short run, a run that crashed early, or a log that keeps only a few entries
        (a trainer_state.json of an early checkpoint).
    What to try:
        Lower logging_steps (TRL logs every 10 steps by default; 1–5 is better for short runs), or check the log
        of the full run.
    Example:
        loss   0.693 0.61 0.58        (3 points: no trend can be judged)
    """
    counts = {m: len(ctx.series(m)) for m in CORE_METRICS if ctx.has(m)}
    if not counts:
        return None
    have = counts.get("loss", max(counts.values()))
    need = MIN_POINTS * 2
    if have >= need:
        return None
    return Hit(
        f"only {have} logged point(s); trend rules need at least {MIN_POINTS} after the warm-up and spike "
        f"detection {need}",
        None,
        None,
        {"points": have, "needed": need},
        metric="loss" if "loss" in counts else next(iter(counts)),
    )


@rule(
    "DPO004",
    "inconsistent-margins",
    Severity.WARNING,
    "margins ≠ chosen − rejected beyond rounding",
    metrics=("margins", "chosen", "rejected"),
    params={"relative": 5e-3},
)
def inconsistent_margins(ctx: Context) -> Hit | Skip | None:
    """The logged margin is not chosen − rejected.

    What it detects:
        At more than 10% of the steps where all three are logged, rewards/margins differs from rewards/chosen −
        rewards/rejected by more than `relative` (0.005) of their size, which is more than printing them with four
        significant digits can explain.
    Why it matters:
        DPO's margin is by definition the chosen reward minus the rejected reward. When the logged numbers
        disagree, every rule reading them is reading something else: the diagnosis cannot be trusted.
    Likely causes:
        A metric mapping that points a key at the wrong canonical metric (a --metric-map or a framework alias),
        two runs mixed in one log, or a custom logger that averages the three differently.
    What to try:
        Check the key names the trainer logs and how they are mapped (dpodoctor maps framework keys in one table;
        --metric-map overrides it), and make sure the log holds a single run.
    Example:
        chosen 0.20  rejected -0.40  margins 0.35   (expected 0.60)
    """
    m, c, r = ctx.series("margins"), ctx.series("chosen"), ctx.series("rejected")
    mi, ci, ri = m.steps, c.steps, r.steps
    if len(mi) == len(ci) == len(ri) and bool((mi == ci).all() and (mi == ri).all() and (mi[1:] > mi[:-1]).all()):
        # the usual case, all three logged at the same (strictly increasing) steps: every step is common
        common = mi
        mv, cv, rv = m.values, c.values, r.values
    else:
        # the steps all three logged, each with its last value there: a hand-built frame may log a step twice, and
        # every value of it (pandas' label look-up) gave arrays of other lengths than the steps (an IndexError)
        m, c, r = m.last_per_step(), c.last_per_step(), r.last_per_step()
        common = common_steps(m, c, r)
        mv, cv, rv = m.at_steps(common), c.at_steps(common), r.at_steps(common)
    if len(common) < 3:
        return too_few(len(common), 3)
    error = np.abs(mv - (cv - rv))
    scale = np.maximum.reduce([np.abs(mv), np.abs(cv), np.abs(rv)])
    bad = error > ctx.param("relative") * scale + 1e-9
    if stats.share(bad) <= 0.1:
        return None
    steps = np.asarray(common)[bad]
    worst = int(np.argmax(np.where(bad, error, -1)))
    return Hit(
        f"margins differ from chosen − rejected at {int(bad.sum())} of {len(common)} steps; worst at step "
        f"{int(np.asarray(common)[worst])}: margin {mv[worst]:.4g} vs {cv[worst]:.4g} − ({rv[worst]:.4g}) = "
        f"{cv[worst] - rv[worst]:.4g}",
        int(steps[0]),
        int(steps[-1]),
        {"inconsistent_steps": int(bad.sum()), "steps_compared": len(common)},
        metric="margins",
    )


@rule("DPO005", "run-ended-early", Severity.WARNING, "the log stops mid-run (crash, kill, truncation)")
def run_ended_early(ctx: Context) -> Hit | Skip | None:
    """The log stops before the end of training.

    What it detects:
        The reader found that the run did not finish: no `train_runtime` summary with a traceback, `CANCELLED` or
        a kill at the end of stdout, a SwanLab CRASHED or missing finish record, a truncated event file or a torn
        last record. Or the log has no end-of-training record and reaches under 95% of its planned schedule
        (max_steps, or num_train_epochs against the logged epoch): a run killed with SIGKILL leaves no other trace.
    Why it matters:
        The curves end where the log ends, so every trend is judged on part of a run, and the checkpoint that would
        ship may be an early one. A crash is exactly when people run dpodoctor, so it says so first.
    Likely causes:
        Out-of-memory kills, a scheduler time limit (SLURM CANCELLED), a NaN assertion in the trainer, a node
        failure, or copying the log while the run was still writing it.
    What to try:
        Read the end of the stdout log for the error, resume from the last checkpoint, and re-check once the run has
        finished.
    Example:
        ... {'loss': 0.512, ...}  slurmstepd: error: *** JOB 123 CANCELLED AT ... DUE TO TIME LIMIT ***
    """
    ended = ctx.run.ended
    phase = ctx.expect.phase
    if ended is Ended.UNKNOWN and not ctx.live and phase.fraction_done is not None and phase.fraction_done < 0.95:
        # no end-of-training record, and the log reaches only part of the planned schedule
        last = ctx.run.steps
        planned = (
            f"{phase.planned_steps} planned steps"
            if phase.planned_steps
            else "the planned epochs (by the logged epoch)"
        )
        return Hit(
            f"the log stops at step {last}, {phase.fraction_done:.0%} of {planned}, with no end-of-training record: "
            "the run was stopped, crashed, or is still going",
            last,
            last,
            {"ended": ended.value, "last_step": last, "fraction_done": rounded(phase.fraction_done, 3)},
            metric="loss",
        )
    if ended not in (Ended.CRASHED, Ended.TRUNCATED):
        return None
    detail = "; ".join(
        n
        for n in ctx.run.notes
        if any(
            w in n.lower()
            for w in (
                "crash",
                "trunc",
                "torn",
                "cancel",
                "traceback",
                "kill",
                "finish",
                "signal",
                "stopped",
                "interrupt",
            )
        )
    )
    last = ctx.run.steps
    how = "the run crashed or was killed" if ended is Ended.CRASHED else "the log is cut short"
    return Hit(
        f"the log stops at step {last}: {how}" + (f" ({detail})" if detail else ""),
        last,
        last,
        {"ended": ended.value, "last_step": last},
        metric="loss",
    )


@rule("DPO006", "too-early", Severity.INFO, "the log ends during the warm-up: too early to judge its trends")
def too_early(ctx: Context) -> Hit | Skip | None:
    """The log ends too early in the run's schedule to judge how training goes.

    What it detects:
        A log that did not finish and ends while the logged learning rate is still rising (the warm-up is not over,
        or warmup_steps/warmup_ratio in the config are not reached yet), or that covers under 5% of the planned
        steps (max_steps, LLaMA-Factory's total_steps). The trend rules (loss stuck, accuracy at chance, reward
        directions, eval divergence ...) are then not run; the level checks (NaN, a loss of 0, dead gradients,
        rewards far from 0, extreme margins) still are. While a watch follows the run, the rules wait silently.
    Why it matters:
        During the warm-up the learning rate is a fraction of its peak and the curves barely move by design: a
        loss near its start and accuracy near 0.5 are what a healthy run looks like there. Calling that "stuck"
        is a false alarm, and a gate that raises false alarms gets switched off.
    Likely causes:
        A run checked while it is still going (a live log, an early checkpoint's trainer_state.json), or a run
        stopped early (killed, crashed, out of time) before its warm-up ended.
    What to try:
        Check the run again once it is past its warm-up (dpodoctor watch follows a live run); if it was stopped,
        see DPO005 for why.
    Example:
        learning_rate 0 4e-8 8e-8 1.2e-7 1.6e-7 2e-7 (rising)   stopped at step 202 of 5100
    """
    phase = ctx.expect.phase
    if not phase.too_early or ctx.live:
        return None  # a watch waits for the warm-up to end; the trend rules still wait with it
    skipped = sorted(code for code, r in RULES.items() if r.trend)
    return Hit(
        f"too early to judge: {phase.reason}; trend rules not run ({', '.join(skipped)})",
        None,
        None,
        {
            "last_step": phase.last_step,
            "planned_steps": phase.planned_steps,
            "fraction_done": None if phase.fraction_done is None else rounded(phase.fraction_done, 3),
            "warming_up": phase.warming_up,
            "last_lr": None if phase.last_lr is None else rounded(phase.last_lr),
        },
        metric="learning_rate" if ctx.run.has("learning_rate") else "loss",
    )
