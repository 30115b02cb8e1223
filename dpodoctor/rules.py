"""The DPO rules engine: the registry, the decorator, the context rules read, and the run that folds symptoms into
their causes.

Each rule is a small function plus metadata, registered by :func:`rule` into :data:`RULES`, one table keyed by code
(``DPO`` and three digits, kept sorted, no duplicates). The rules themselves live in :mod:`dpodoctor.checks`, one
module per code family in code order (integrity DPO0xx, loss DPO1xx, margins DPO2xx, accuracy DPO3xx, rewards
DPO4xx, evaluation DPO5xx, gradients DPO6xx), imported at the end of this module so that importing the engine always
yields the full catalogue. The docstring of each rule is its documentation page, with
the headings *What it detects / Why it matters / Likely causes / What to try / Example*; the likely cause and what
to try that a finding carries are read from those sections, so the page and the report cannot disagree.

Conventions every rule follows:

* Judge smoothed or robust summaries (medians, Theil–Sen, Kendall's tau), never single points: per-batch metrics
  jump ±0.2 from one logged step to the next.
* Rewards are β × log-ratio, so thresholds on rewards and margins are stated in log-ratio units (nats) and scaled by
  the β in use (:attr:`Context.beta`).
* A rule returns a :class:`Hit` or None. When one cause explains several symptoms, the rule for the cause lists the
  symptom rules in ``absorbs``; their findings are folded into its finding as corroborating evidence.
* The metrics cannot see label quality: wrong preference labels still give a healthy-looking curve. No rule may
  claim the labels are right.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dpodoctor import stats
from dpodoctor.curve import CurveSummary, fixed, fmt, known_slope, summarize_arrays, summarize_run, trend
from dpodoctor.curveseries import Curve
from dpodoctor.expectations import Expectations, expect
from dpodoctor.metrics import Split
from dpodoctor.model import Run
from dpodoctor.results import Corroboration, Finding, RunReport, Severity
from dpodoctor.settings import DiagnoseSettings
from dpodoctor.vocabulary import DIRECTION, primary_split

if TYPE_CHECKING:
    import numpy as np
else:
    from dpodoctor._lazy import np

CODE_RE = re.compile(r"^DPO\d{3}$")
DEFAULT_BETA = 0.1  # TRL's DPOConfig default, used (and said so) when the run does not log β
SECTIONS = ("What it detects", "Why it matters", "Likely causes", "What to try", "Example")
MIN_POINTS = 8  # fewer logged points than this cannot carry a trend


@dataclass
class Hit:
    """What a rule function reports; the registry turns it into a :class:`Finding`."""

    message: str
    first_step: int | None
    last_step: int | None
    evidence: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    split: Split | None = None
    severity: Severity | None = None  # overrides the rule's default severity
    cause: str | None = None  # overrides the page's "Likely causes" when the evidence tells them apart
    # Cause before symptom: the codes this finding explains (None: the rule's ``absorbs``), and how strongly it is a
    # cause. Findings fold symptoms in order of decreasing ``priority``, so a cause seen at one run (grad_norm exactly
    # 0 at every step) can absorb a rule that would otherwise absorb it (the loss stuck at its start).
    absorbs: tuple[str, ...] | None = None
    priority: int = 0


@dataclass(frozen=True)
class Skip:
    """A rule could not judge this run (too few points, no eval split...): recorded as not checked, never as passed."""

    needs: str


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    metrics: tuple[str, ...]
    summary: str
    check: Callable[[Context], Hit | Skip | None]
    params: dict[str, float]
    absorbs: tuple[str, ...] = ()
    # judges a trend: not run on a log that is too early to judge (warm-up not over, a few % of the planned steps)
    trend: bool = False

    @property
    def doc(self) -> str:
        return _dedent(self.check.__doc__ or "")

    def section(self, heading: str) -> str:
        """One section of the rule's page, as a single paragraph (the page is parsed once per process: every
        finding quotes two sections, and parsing costs ~0.1 ms)."""
        return _sections_of(self.check.__doc__ or "").get(heading, "")


@functools.lru_cache(maxsize=512)
def _sections_of(docstring: str) -> dict[str, str]:
    """:func:`parse_sections` of a rule function's raw docstring, cached (callers only read the result)."""
    return parse_sections(_dedent(docstring))


RULES: dict[str, Rule] = {}


def rule(
    code: str,
    name: str,
    severity: Severity,
    summary: str,
    *,
    metrics: Iterable[str] = (),
    params: dict[str, float] | None = None,
    absorbs: Iterable[str] = (),
    trend: bool = False,
) -> Callable[[Callable[[Context], Hit | Skip | None]], Callable[[Context], Hit | Skip | None]]:
    """Register a rule function under ``code``. Refuses malformed or duplicate codes.

    ``trend``: the rule judges how a curve develops, which a log still in its warm-up cannot show; the engine skips
    it there (recorded as not checked, "too early to judge") instead of letting it call a warm-up a failure.
    """

    def decorate(func: Callable[[Context], Hit | Skip | None]) -> Callable[[Context], Hit | Skip | None]:
        if not CODE_RE.match(code):
            raise ValueError(f"rule code {code!r} does not match {CODE_RE.pattern}")
        if code in RULES:
            raise ValueError(f"rule code {code} registered twice")
        RULES[code] = Rule(
            code, name, severity, tuple(metrics), summary, func, dict(params or {}), tuple(absorbs), trend
        )
        ordered = dict(sorted(RULES.items()))
        RULES.clear()
        RULES.update(ordered)
        return func

    return decorate


def _dedent(text: str) -> str:
    lines = text.expandtabs().splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    return "\n".join([lines[0].strip(), *(line[cut:] for line in lines[1:])]).strip() if lines else ""


def parse_sections(doc: str) -> dict[str, str]:
    """Split a rule page into its headed sections (heading line ending in ':')."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and stripped[:-1] in SECTIONS:
            current = stripped[:-1]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: " ".join(" ".join(v).split()) if k != "Example" else "\n".join(v).strip("\n") for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------------
# The context rules read: series access with the β in use and a few shared summaries computed once.
# --------------------------------------------------------------------------------------------------------------


class Context:
    """One run as the rules see it: finite curves of the primary split, β, and cached summaries.

    The curves are :class:`~dpodoctor.curveseries.Curve` (two numpy arrays) read through ``run.arrays``/``run.has``/
    ``run.metrics``/``run.steps``: the diagnosis builds no pandas object and never reads ``run.frame``, so a run
    whose model holds no frame is diagnosed without importing pandas.
    """

    def __init__(self, run: Run, beta: float | None = None, params: dict[str, dict[str, float]] | None = None):
        self.run = run
        if beta is not None:
            self.beta, self.beta_note = float(beta), "given by the user"
        elif run.beta is not None and run.beta > 0:
            self.beta, self.beta_note = float(run.beta), f"from {run.beta_source or run.source}"
        else:
            self.beta = DEFAULT_BETA
            self.beta_note = "assumed (TRL's default): the log does not say; pass --beta to set it"
        self.beta_assumed = beta is None and not (run.beta is not None and run.beta > 0)
        self._params = params or {}
        self._cache: dict[tuple[str, str], Curve] = {}
        self._finite: dict[tuple[str, str], Curve] = {}
        self._late: dict[tuple[str, str], Curve] = {}
        self._learning: tuple[bool, str] | None = None
        self._direction: dict[str, tuple[int, float]] = {}
        self._curves: dict[tuple[str, str], CurveSummary] = {}
        # rolling medians, computed once per run: (split, metric, part, window) -> rolling median (see rolling()), and
        # the ones the curve summaries took for their noise scale, (split, metric) -> (window, rolling median)
        self._rolling: dict[tuple[str, str, str, int], np.ndarray] = {}
        self._summary_rolling: dict[tuple[str, str], tuple[int, np.ndarray]] = {}
        self._late_median: dict[tuple[str, str], float] = {}
        # per metric, the split it is judged on and whether it has a finite point there: asked ~50 times a run each
        self._split: dict[str, Split] = {}
        self._has: dict[str, bool] = {}
        self.current: Rule | None = None
        # what a healthy run of this setup looks like (loss family, phase, noise): the rules judge against it
        self.expect: Expectations = expect(run, self.beta)
        # the log is being followed while the run writes it (dpodoctor watch): a log that has not reached its planned
        # end is then simply not there yet, not stopped
        self.live = False

    def curve(self, metric: str, split: Split | None = None) -> CurveSummary:
        """The one summary of a curve (computed once per run): what messages quote and reporters print."""
        split = split or self.split_for(metric)
        key = (split, metric)
        if not self._curves:  # every curve of the run at once: they share their numpy work (summarize_run)
            self._curves.update(summarize_run(self.run, self._summary_rolling))
        if key not in self._curves:  # a curve the run does not log: the empty summary
            raw = self.raw(metric, split)
            self._curves[key] = summarize_arrays(raw.steps, raw.values, split, metric)
        return self._curves[key]

    def noise(self, metric: str, split: Split | None = None) -> float:
        """:func:`stats.noise_sigma` of :meth:`series` (the whole finite curve), read from its summary.

        Why: the summary computed that very number (the same finite points, one per step, the same rolling median
        and MADs), and a 10k-point curve's rolling median costs ~9 ms. The series and the summary hold the same
        points exactly when they have as many: the summary drops only non-finite points, as the series does, and
        repeated steps, which a series from a hand-built frame may keep (then the noise is computed here).
        """
        split = split or self.split_for(metric)
        s = self.series(metric, split)
        if len(s) < 3:
            return 0.0
        curve = self.curve(metric, split)
        return curve.noise if curve.n == len(s) else stats.noise_sigma(s)

    def rolling(self, metric: str, part: str = "all", window: int | None = None) -> np.ndarray:
        """:func:`stats.rolling_median` of the values of :meth:`series` (``part="all"``) or of :meth:`late`
        (``"late"``) over ``window`` points (default :func:`stats.window_for` of their length): what
        ``stats.smooth(series, window).values`` gives, computed once per run (read-only: shared by the rules).

        Why: on a 10k-point curve a rolling median costs ~0.5 ms, and a diagnosis asked for the same one up to
        three times (the summary's noise scale, a rule's smoothed curve, another rule's noise of the same points).
        The whole curve's is the one its summary took when the series and the summary hold the same points (as
        :meth:`noise`). Keyed by the curve and the window, and kept on this run's context only: never shared
        between runs, never looked up by array contents.
        """
        split = self.split_for(metric)
        s = self.series(metric, split) if part == "all" else self.late(metric, split)
        w = window or stats.window_for(len(s))
        key = (split, metric, part, w)
        cached = self._rolling.get(key)
        if cached is None:
            if part == "all" and self.curve(metric, split).n == len(s):
                known = self._summary_rolling.get((split, metric))
                if known is not None and known[0] == w:
                    cached = known[1]
            if cached is None:
                cached = stats.rolling_median(s.values, w)
            self._rolling[key] = cached
        return cached

    def late_noise(self, metric: str) -> float:
        """:func:`stats.noise_sigma` of :meth:`late`, around its rolling median from :meth:`rolling` (the same
        float: the residuals, their median and MAD are computed as noise_sigma does)."""
        s = self.late(metric)
        if len(s) < 3:
            return 0.0
        return stats.noise_sigma_around(s.values, self.rolling(metric, "late"))

    def trend(self, metric: str, part: str = "all") -> stats.Trend:
        """:func:`~dpodoctor.curve.trend` of :meth:`series` (``part="all"``), of its first third (``"early"``:
        ``series[:n // 3]``) or of its last third (``"late"``: ``series[-(n // 3):]``, the whole series below 3
        points, as that slice gives).

        Why here: the curve's summary took those very Theil–Sen slopes (its slope, and its levelling test's thirds),
        so when the series and the summary hold the same points only Kendall's test is left to compute."""
        s = self.series(metric)
        third = len(s) // 3
        part_of = s if part == "all" else s[:third] if part == "early" else s[-third:]
        curve = self.curve(metric)
        slope = known_slope(curve, part) if curve.n == len(s) else None
        return trend(part_of, slope)

    def curves(self) -> dict[tuple[str, str], CurveSummary]:
        """Every logged curve of the run, summarised (reusing the ones the rules already asked for)."""
        return {(split, metric): self.curve(metric, split) for split, metric in self.run.metrics}  # type: ignore[arg-type]

    def param(self, name: str) -> float:
        assert self.current is not None
        return self._params.get(self.current.code, {}).get(name, self.current.params[name])

    def split_for(self, metric: str) -> Split:
        """Seed rules judge the train curve; a run that logs a metric only at eval is judged on eval."""
        split = self._split.get(metric)
        if split is None:
            split = self._split[metric] = primary_split(self.run, metric)
        return split

    def raw(self, metric: str, split: Split | None = None) -> Curve:
        """Every logged point of one metric (NaN/inf kept), in step order: ``run.arrays``, read once per run."""
        split = split or self.split_for(metric)
        key = (split, metric)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = Curve(*self.run.arrays(metric, split))
        return cached

    def series(self, metric: str, split: Split | None = None) -> Curve:
        """Finite values of one metric, in step order (filtered once per run: the rules ask hundreds of times)."""
        split = split or self.split_for(metric)
        key = (split, metric)
        cached = self._finite.get(key)
        if cached is None:
            cached = self._finite[key] = stats.finite(self.raw(metric, split))
        return cached

    def late(self, metric: str, split: Split | None = None) -> Curve:
        """:func:`stats.late` of :meth:`series`, sliced once per run (the rules ask for the late accuracy, margins
        and loss a dozen times a run)."""
        split = split or self.split_for(metric)
        key = (split, metric)
        cached = self._late.get(key)
        if cached is None:
            cached = self._late[key] = stats.late(self.series(metric, split))
        return cached

    def has(self, metric: str) -> bool:
        """True when the metric has a finite point in the split it is judged on (read from the run's arrays: a rule
        that needs a metric asks for it, and building its Series only to see it is there cost ~0.1 ms)."""
        known = self._has.get(metric)
        if known is None:
            split = self.split_for(metric)
            cached = self._finite.get((split, metric))
            if cached is not None:
                known = len(cached) > 0
            else:
                known = self.run.has(metric, split) and bool(np.isfinite(self.run.arrays(metric, split)[1]).any())
            self._has[metric] = known
        return known

    @property
    def beta_label(self) -> str:
        """``β=0.1``, marked ``(assumed)`` when the log does not say: a threshold in nats is only as good as the β it
        divides by. The report header says once where β came from; messages only carry the short mark."""
        return f"β={self.beta:g} (assumed)" if self.beta_assumed else f"β={self.beta:g}"

    def nats(self, reward: float) -> float:
        """A reward or margin in log-ratio units (reward / β)."""
        return reward / self.beta

    def late_median(self, metric: str, split: Split | None = None) -> float:
        """:func:`stats.median` of :meth:`late` (NaN when empty), computed once per run: a 10k-step run's late
        margins and accuracy were each taken the median of five or six times (the rules, learning(), the health
        line), ~0.1 ms each."""
        split = split or self.split_for(metric)
        key = (split, metric)
        known = self._late_median.get(key)
        if known is None:
            s = self.late(metric, split)
            known = self._late_median[key] = stats.median(s.values) if len(s) else float("nan")
        return known

    def accuracy_level(self, split: Split | None = None) -> tuple[float, str]:
        """The late accuracy level and how it was taken: the median, or the mean when each logged value averages so
        few pairs (batch size 1 logged every step gives only 0 or 1) that a median is 0 or 1 whatever the model does.
        """
        s = self.late("accuracy", split)
        if not len(s):
            return float("nan"), "median"
        if self.expect.noise.coarse_accuracy:
            return float(np.mean(s.values)), "mean"
        return self.late_median("accuracy", split), "median"

    def learning(self) -> tuple[bool, str]:
        """Is there evidence the preference is being learned, apart from the loss? (accuracy, margins in nats)

        Accuracy counts only beside a margin that is not ~0: margins of 1e-5 nats order chosen above rejected by
        rounding, and an accuracy of 0.65 on them says nothing. Judged once per run (several rules ask; it reads
        only the run and β, never the rule asking).
        """
        if self._learning is None:
            self._learning = self._judge_learning()
        return self._learning

    def _judge_learning(self) -> tuple[bool, str]:
        """:meth:`learning`, computed."""
        parts: list[str] = []
        learning = False
        margin_nats: float | None = None
        if self.has("margins"):
            margin = self.late_median("margins")
            margin_nats = self.nats(margin)
        if self.has("accuracy"):
            acc, how = self.accuracy_level()
            parts.append(f"accuracy {how} {acc:.2f}")
            separated = margin_nats is None or abs(margin_nats) > 0.05
            learning |= acc > 0.6 and separated
            noise = self.expect.noise
            if how == "mean" and noise.accuracy_quantum:
                # batch-1 accuracies are a binomial sample: above chance when two standard errors clear 0.5
                pairs = len(self.late("accuracy")) / noise.accuracy_quantum
                se = float(np.sqrt(max(acc * (1 - acc), 0.0625) / max(pairs, 1.0)))
                learning |= acc - 2 * se > 0.5 and separated
        if margin_nats is not None:
            parts.append(
                f"margin median {fmt(self.late_median('margins'))} ({fixed(margin_nats, 2)} nats at {self.beta_label})"
            )
            learning |= margin_nats > 0.5
            # a slow learner (noisy labels, batch 1, few steps): the margin grows steadily, if not far yet
            t = self.trend("margins")
            if t.n >= MIN_POINTS and t.slope > 0 and t.significant(0.05) and self.nats(t.change) > 0.25:
                learning = True
                grown = fixed(self.nats(t.change))
                parts.append(f"the margin grows steadily (+{grown} nats, Kendall p={t.p_value:.1g})")
        if self.run.has("accuracy", "eval") and self.run.has("margins", "eval"):
            # held-out pairs are the cleanest evidence: their labels are not the training noise
            acc_eval, margin_eval = self.curve("accuracy", "eval"), self.curve("margins", "eval")
            if acc_eval.n >= 3 and acc_eval.end > 0.6 and self.nats(margin_eval.end) > 0.1:
                learning = True
                parts.append(f"eval accuracy ends at {acc_eval.level_text('end')}")
        return learning, ", ".join(parts)

    def direction(self, metric: str) -> tuple[int, float]:
        """Where a reward went from its start: (+1 up / -1 down / 0 flat, change). Judged on levels, not points.

        Rewards start at 0 by construction (the policy starts as the reference), so the level reached in the last
        third, against the first points, is the trend. It counts only when it is large in nats and most of the
        last third lies on that side of the start. Judged once per metric and run: it reads only the curve and β,
        and the reward rules ask it eight times a run for two metrics.
        """
        known = self._direction.get(metric)
        if known is None:
            known = self._direction[metric] = self._judge_direction(metric)
        return known

    def _judge_direction(self, metric: str) -> tuple[int, float]:
        """:meth:`direction`, computed."""
        s = self.series(metric)
        if len(s) < MIN_POINTS:
            return 0, 0.0
        start = stats.head(s, points=max(3, len(s) // 20))  # the first 5%: three points alone are too noisy
        end = stats.tail_level(s)
        change = end - start
        tail = s.values[-max(1, len(s) // 3) :]
        side = stats.share(tail > start) if change > 0 else stats.share(tail < start)
        if abs(self.nats(change)) >= 0.5 and side >= 0.75:
            return (1 if change > 0 else -1), change
        return 0, change


def too_few(have: int, need: int = MIN_POINTS) -> Skip:
    return Skip(f"≥{need} logged points (has {have})")


def span_of(series: Curve) -> tuple[int | None, int | None]:
    """First and last step of a curve (None, None for an empty one)."""
    return series.first_step, series.last_step


def first_logged_step(run: Run) -> int | None:
    """The smallest step any (split, metric) of the run logged, read from the run's arrays (not its frame)."""
    firsts = [int(steps.min()) for split, metric in run.metrics if len(steps := run.arrays(metric, split)[0])]  # type: ignore[arg-type]
    return min(firsts) if firsts else None


def rounded(x: float, digits: int = 4) -> float:
    """Round evidence numbers for people and JSON (NaN stays NaN-free: None)."""
    return float(f"{x:.{digits}g}") if np.isfinite(x) else x


# --------------------------------------------------------------------------------------------------------------
# Running the rules
# --------------------------------------------------------------------------------------------------------------


# Which way a healthy curve of each seed metric moves (the seed's table): -1 falls, +1 rises.
# Which way a healthy curve of each seed metric moves: one table, in the shared vocabulary.
HEALTHY_DIRECTION: dict[str, int] = DIRECTION
MOVE_WORD: dict[int, str] = {1: "rose", -1: "fell", 0: "stayed level"}


def material_move(metric: str, beta: float) -> float:
    """The smallest move worth calling a move (0.01 of loss, 0.05 of accuracy, a quarter of a nat of reward): a curve
    that moved 1e-5 the wrong way beside 1e-6 of noise stayed put."""
    return {"loss": 0.01, "accuracy": 0.05}.get(metric, 0.25 * beta)


@dataclass(frozen=True)
class Move:
    """Where a curve went, judged once for the table's mark and the "checked" line, so the two cannot disagree.

    ``direction``: +1 rose, -1 fell, 0 stayed level. ``since``: what the end level is compared with, ``"first"``
    (the raw first value the table shows) or ``"start"`` (the start level: a median of the first points)."""

    direction: int
    since: str = "first"

    @property
    def word(self) -> str:
        return MOVE_WORD[self.direction]


def curve_move(curve: CurveSummary, beta: float) -> Move:
    """Which way ``curve`` went: its end level against both its start level (medians: one noisy batch cannot decide)
    and its raw first value (what ``first → end`` shows), by more than its batch noise and a material amount
    (:func:`material_move`).

    When the two references disagree, a move against the seed's healthy direction wins (a ✓ must never sit beside a
    curve that went the wrong way, and a run damaged in its first steps has a start level already far from where it
    began); then a move in the healthy direction; else the curve stayed level. The table's ⚠ "against its healthy
    direction" (:func:`dpodoctor.table.against_direction`) and :func:`describe_health`'s rose/fell/stayed level both
    read this one judgement.
    """
    if not curve.logged or curve.n < 2:
        return Move(0)
    threshold = max(curve.noise, material_move(curve.metric, beta))
    moves: dict[str, int] = {}
    for since, begin in (("first", curve.first_value), ("start", curve.start)):
        change = curve.end - begin
        if np.isfinite(change) and abs(change) > threshold:
            moves[since] = 1 if change > 0 else -1
    healthy = HEALTHY_DIRECTION.get(curve.metric, 0)
    for wanted in (-healthy, healthy) if healthy else (1, -1):
        for since in ("first", "start"):
            if moves.get(since) == wanted:
                return Move(wanted, since)
    return Move(0)


def describe_health(ctx: Context) -> dict[str, str]:
    """One sentence per row of the seed table saying what the curve did, so a clean run reads as checked, not
    as silence. The verdict itself comes from the findings; this only describes. Every number is the curve
    summary's (:meth:`Context.curve`): the raw first point, and the end level saying what it is the median of. The
    rose/fell/stayed level is :func:`curve_move`'s, the same judgement the table's ⚠ "against" reads."""
    out: dict[str, str] = {}
    for metric in ("loss", "margins", "accuracy", "chosen", "rejected"):
        c = ctx.curve(metric)
        if not c.logged:
            continue
        label = {"chosen": "chosen reward", "rejected": "rejected reward"}.get(metric, metric)
        move = curve_move(c, ctx.beta)
        if move.since == "start":  # the first value alone would not show the move: quote the level it came from
            text = f"{label} {move.word} from its start level {c.level_text('start')} (first logged "
            text += f"{fmt(c.first_value)} at step {c.first_step}) to "
        else:
            text = f"{label} {move.word} from {fmt(c.first_value)} at step {c.first_step} to "
        text += c.level_text("end")
        if metric in ("margins", "chosen", "rejected"):
            text += f" ({fixed(ctx.nats(c.end), 1)} nats at {ctx.beta_label})"
        if metric == "loss" and c.n >= MIN_POINTS * 2 and c.end < c.start:
            text += " and levelled off" if c.levelled else " and was still falling at the end"
        out[metric] = text
    return out


def fold_symptoms(findings: dict[str, Finding], declared: dict[str, tuple[tuple[str, ...] | None, int]]) -> None:
    """Cause before symptom: each finding that explains others absorbs them, in place.

    Causes are taken in order of decreasing priority (then code); a finding already absorbed absorbs nothing more,
    and what it had gathered moves with it. The cause keeps the worst severity of what it absorbed: folding a symptom
    in must never make a run look healthier than the symptom alone did.
    """
    order = sorted(findings, key=lambda code: (-declared.get(code, (None, 0))[1], code))
    absorbed: set[str] = set()
    for code in order:
        if code in absorbed:
            continue
        own, _ = declared.get(code, (None, 0))
        rule_ = RULES.get(code)
        targets = own if own is not None else (rule_.absorbs if rule_ else ())
        cause = findings[code]
        for target in targets:
            symptom = findings.get(target)
            if symptom is None or target in absorbed or target == code:
                continue
            absorbed.add(target)
            cause.corroborating.append(Corroboration(symptom.code, symptom.name, symptom.message))
            cause.corroborating.extend(symptom.corroborating)
            if symptom.severity.rank > cause.severity.rank:
                cause.severity = symptom.severity
    for code in absorbed:
        findings.pop(code, None)


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    """Rules whose code starts with one of ``select`` (all when None) and with none of ``ignore``."""
    chosen = [r for r in RULES.values() if select is None or any(r.code.startswith(p) for p in select)]
    return [r for r in chosen if not any(r.code.startswith(p) for p in (ignore or ()))]


def diagnose_run(
    run: Run,
    *,
    beta: float | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    params: dict[str, dict[str, float]] | None = None,
    live: bool = False,
    settings: DiagnoseSettings | None = None,
) -> RunReport:
    """Run every selected rule on one run, fold symptoms into their causes, and return the run's report.

    ``settings``: the resolved settings of a check (:class:`~dpodoctor.settings.DiagnoseSettings`); when given, they
    replace ``beta``/``select``/``ignore``/``params``.

    ``live``: the run is still being written (a watch); rules that read "the log ends before its planned end" as a
    stopped run (DPO005's schedule test, DPO006) stay quiet, since the rest of the log has simply not come yet.
    """
    if settings is not None:
        beta, select, ignore, params = settings.beta, settings.select, settings.ignore, settings.rule_params()
    ctx = Context(run, beta=beta, params=params)
    ctx.live = live
    findings: dict[str, Finding] = {}
    skipped: dict[str, list[str]] = {}
    checked: list[str] = []
    rules = select_rules(select, ignore)
    phase = ctx.expect.phase
    hits: dict[str, Hit] = {}
    for r in rules:
        missing = [m for m in r.metrics if not ctx.has(m)]
        if missing:
            skipped[r.code] = missing
            continue
        if r.trend and phase.too_early:
            skipped[r.code] = [f"a log past its warm-up (too early to judge: {phase.reason})"]
            continue
        ctx.current = r
        checked.append(r.code)
        hit = r.check(ctx)
        if isinstance(hit, Skip):
            checked.pop()
            skipped[r.code] = [hit.needs]
            continue
        if hit is None:
            continue
        hits[r.code] = hit
        metric = hit.metric or (r.metrics[0] if r.metrics else "loss")
        findings[r.code] = Finding(
            code=r.code,
            name=r.name,
            severity=hit.severity or r.severity,
            split=hit.split or ctx.split_for(metric),
            metric=metric,
            first_step=hit.first_step,
            last_step=hit.last_step,
            message=hit.message,
            evidence=hit.evidence,
            cause=hit.cause or r.section("Likely causes"),
            fix=r.section("What to try"),
        )
    fold_symptoms(findings, {code: (h.absorbs, h.priority) for code, h in hits.items()})
    ordered = sorted(findings.values(), key=lambda f: (-f.severity.rank, f.code))
    report = RunReport(
        run=run,
        findings=ordered,
        skipped=skipped,
        checked=checked,
        beta_used=ctx.beta,
        beta_note=ctx.beta_note,
        health=describe_health(ctx),
    )
    report.__dict__["_curves"] = ctx.curves()  # the summaries the rules quoted: the report shows the same numbers
    report.__dict__["_expectations"] = ctx.expect
    return report


__all__ = ["CODE_RE", "RULES", "SECTIONS", "Context", "Hit", "Rule", "Skip", "diagnose_run", "parse_sections", "rule"]
