"""Rules on synthetic curves: each planted failure is found where it was planted; healthy noise stays clean."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import stats
from dpodoctor.api import load
from dpodoctor.checks import RULES, diagnose_run
from dpodoctor.checks.loss import spike_levels
from dpodoctor.model import Run
from dpodoctor.results import Severity
from dpodoctor.rules import CODE_RE, SECTIONS, Context, parse_sections
from tests.synthetic import LN2, curves, make_run, rise

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


def codes(data: dict[str, np.ndarray], **kwargs: object) -> dict[str, object]:
    report = diagnose_run(make_run(data, **kwargs))  # type: ignore[arg-type]
    return {f.code: f for f in report.findings}


def overlaps(finding: object, first: int, last: int) -> bool:
    return finding.first_step <= last and finding.last_step >= first  # type: ignore[attr-defined]


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, beta=st.sampled_from([0.01, 0.1, 0.5, 1.0]))
def test_healthy_noisy_run_is_clean(seed: int, beta: float) -> None:
    found = codes(curves(seed=seed, beta=beta), beta=beta)
    assert not [c for c, f in found.items() if f.severity is not Severity.INFO], found


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_stuck_loss_is_found_and_absorbs_its_symptoms(seed: int) -> None:
    data = curves(seed=seed)
    rng = np.random.default_rng(seed)
    n = len(data["steps"])
    data["loss"] = LN2 + rng.normal(0, 0.1, n)
    data["chosen"] = rng.normal(0, 1e-5, n)
    data["rejected"] = rng.normal(0, 1e-5, n)
    data["margins"] = data["chosen"] - data["rejected"]
    data["accuracy"] = np.clip(0.45 + rng.normal(0, 0.1, n), 0, 1)
    found = codes(data)
    assert "DPO101" in found
    assert overlaps(found["DPO101"], 100, 400)
    # one cause, one finding: chance accuracy and flat margins are corroborating evidence, not findings
    assert "DPO301" not in found and "DPO202" not in found
    assert any(c.code == "DPO301" for c in found["DPO101"].corroborating)
    assert "not moving" in found["DPO101"].cause


def test_tiny_beta_slow_loss_is_not_stuck() -> None:
    """β=0.01: the loss leaves ln 2 slowly while accuracy and the margin in nats grow (the seed's case)."""
    data = curves(seed=3, beta=0.01, loss_sigma=0.005)
    data["loss"] = LN2 - 0.03 * rise(data["steps"].astype(float)) + np.random.default_rng(3).normal(0, 0.005, 400)
    assert "DPO101" not in codes(data, beta=0.01)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_loss_spike_is_found_at_its_steps(seed: int) -> None:
    data = curves(seed=seed)
    data["loss"][250:275] += 0.8
    found = codes(data)
    assert "DPO102" in found
    assert overlaps(found["DPO102"], 251, 275)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_loss_collapse(seed: int) -> None:
    data = curves(seed=seed, loss_sigma=0.01)
    t = data["steps"].astype(float)
    data["loss"] = np.abs(LN2 * np.exp(-t / 40) + np.random.default_rng(seed).normal(0, 0.003, len(t)))
    data["accuracy"] = np.minimum(1.0, 0.5 + t / 100)
    found = codes(data)
    assert "DPO103" in found
    assert overlaps(found["DPO103"], 200, 400)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_margin_negative_absorbs_reward_symptoms(seed: int) -> None:
    data = curves(seed=seed)
    t = data["steps"].astype(float)
    rng = np.random.default_rng(seed)
    data["chosen"] = -0.2 * rise(t) + rng.normal(0, 0.05, 400)
    data["rejected"] = 0.1 * rise(t) + rng.normal(0, 0.05, 400)
    data["margins"] = data["chosen"] - data["rejected"]
    data["accuracy"] = np.clip(0.5 - 0.2 * rise(t) + rng.normal(0, 0.1, 400), 0, 1)
    found = codes(data)
    assert "DPO201" in found and found["DPO201"].severity is Severity.ERROR
    assert "DPO401" not in found and "DPO402" not in found
    assert "DPO301" not in found  # learned backwards is DPO201's case, not chance


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_margin_flat(seed: int) -> None:
    data = curves(seed=seed)
    rng = np.random.default_rng(seed)
    data["chosen"] = rng.normal(0, 0.01, 400)
    data["rejected"] = rng.normal(0, 0.01, 400)
    data["margins"] = data["chosen"] - data["rejected"]
    found = codes(data)
    assert "DPO202" in found
    assert overlaps(found["DPO202"], 100, 400)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_accuracy_chance(seed: int) -> None:
    data = curves(seed=seed)
    data["accuracy"] = np.clip(0.5 + np.random.default_rng(seed).normal(0, 0.1, 400), 0, 1)
    found = codes(data)
    assert "DPO301" in found
    assert overlaps(found["DPO301"], 100, 400)


def test_accuracy_zero_with_zero_margins_is_chance_ties() -> None:
    data = curves(seed=1)
    data["accuracy"] = np.zeros(400)
    data["chosen"] = np.zeros(400)
    data["rejected"] = np.zeros(400)
    data["margins"] = np.zeros(400)
    found = diagnose_run(make_run(data), select=["DPO301"]).findings
    assert [f.code for f in found] == ["DPO301"]
    assert "ties" in found[0].message


def _rewards(seed: int, chosen_nats: float, rejected_nats: float, beta: float = 0.1) -> dict[str, np.ndarray]:
    data = curves(seed=seed, beta=beta)
    t = data["steps"].astype(float)
    rng = np.random.default_rng(seed + 1)
    data["chosen"] = beta * chosen_nats * rise(t) + rng.normal(0, beta * 0.2, 400)
    data["rejected"] = beta * rejected_nats * rise(t) + rng.normal(0, beta * 0.2, 400)
    data["margins"] = data["chosen"] - data["rejected"]
    return data


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_reward_direction_rules(seed: int) -> None:
    # chosen falling while rejected does not makes the margin negative too: one cause, so DPO201 reports it
    # and cites DPO401; the symptom rule alone still fires when selected on its own.
    falling = _rewards(seed, -1.5, -0.1)
    assert "DPO401" in {f.code for f in diagnose_run(make_run(falling), select=["DPO401"]).findings}
    assert any(c.code == "DPO401" for c in codes(falling)["DPO201"].corroborating)
    rising = _rewards(seed, 0.1, 1.5)
    assert "DPO402" in {f.code for f in diagnose_run(make_run(rising), select=["DPO402"]).findings}
    assert any(c.code == "DPO402" for c in codes(rising)["DPO201"].corroborating)
    both_up = codes(_rewards(seed, 6.0, 5.0))
    assert "DPO403" in both_up and "margin" in both_up["DPO403"].message
    steep = codes(_rewards(seed, -5.0, -8.0))
    assert steep["DPO404"].severity is Severity.WARNING
    gentle = codes(_rewards(seed, -1.0, -8.0))
    assert gentle["DPO404"].severity is Severity.INFO


def test_rewards_scale_with_beta() -> None:
    """0.3 reward units is 30 nats at β=0.01 but only 0.3 nats at β=1.0: only the first is a real fall."""
    data = _rewards(5, -30.0, -45.0, beta=0.01)
    assert "DPO404" in codes(data, beta=0.01)
    assert "DPO404" not in codes(data, beta=1.0)


def test_nonfinite_cites_first_step() -> None:
    data = curves(seed=2)
    data["loss"][199:203] = np.nan
    data["margins"][300] = math.inf
    found = codes(data)
    assert found["DPO001"].first_step == 200
    assert found["DPO001"].last_step == 301
    assert found["DPO001"].evidence["count"] == 5


def test_unknown_beta_is_assumed_and_said() -> None:
    report = diagnose_run(make_run(curves(seed=4), beta=None))
    assert report.beta_used == 0.1 and "assumed" in report.beta_note
    assert diagnose_run(make_run(curves(seed=4), beta=None), beta=0.5).beta_note == "given by the user"


def test_missing_metrics_skip_rules_instead_of_passing() -> None:
    data = {"steps": curves()["steps"], "loss": curves()["loss"]}
    report = diagnose_run(make_run(data))
    assert report.skipped["DPO301"] == ["accuracy"]
    assert set(report.skipped["DPO403"]) == {"chosen", "rejected"}


def test_select_and_ignore_by_prefix() -> None:
    run = make_run(curves())  # no logps_chosen nor entropy: DPO405 and DPO407 cannot run
    report = diagnose_run(run, select=["DPO4"])
    assert set(report.checked) | set(report.skipped) == {c for c in RULES if c.startswith("DPO4")}
    assert report.skipped == {"DPO405": ["logps_chosen"], "DPO407": ["entropy"]}
    data = curves(seed=2)
    data["loss"][10] = math.nan
    assert "DPO001" not in {f.code for f in diagnose_run(make_run(data), ignore=["DPO0"]).findings}


def test_registry_is_sorted_unique_and_documented() -> None:
    assert list(RULES) == sorted(RULES)
    for code, r in RULES.items():
        assert CODE_RE.match(code)
        sections = parse_sections(r.doc)
        assert set(SECTIONS) <= set(sections), f"{code} page lacks {set(SECTIONS) - set(sections)}"
        assert all(sections[s] for s in SECTIONS), code
        assert r.summary and r.name


@pytest.mark.parametrize("code", ["DPO001", "DPO101", "DPO102", "DPO103", "DPO201", "DPO202", "DPO301"])
def test_seed_codes_exist(code: str) -> None:
    assert code in RULES


def _repeated_step_run() -> Run:
    """A hand-built frame (not in make_frame's order) whose loss logs step 5 twice: the series keeps both points,
    the summary keeps the last, so the two hold different points."""
    steps = [*range(40), 5]
    values = [*(LN2 - 0.01 * t + 0.02 * math.sin(t) for t in range(40)), 0.1]
    frame = pd.DataFrame(
        {"split": "train", "metric": "loss", "step": steps, "value": values, "wall_time": np.nan},
    )
    return Run(name="hand-built", path=Path("hand-built"), source="test", frame=frame)


@pytest.mark.parametrize("source", ["trl/healthy", "trl/overfit", "diagnosis/noise_0.3", "nan", "repeated"])
def test_context_noise_is_noise_sigma_of_the_series(source: str) -> None:
    """Context.noise reads the curve summary's noise; it must be stats.noise_sigma of the rules' series, to the bit
    (and computed afresh when the series keeps a repeated step the summary dropped)."""
    if source == "nan":
        data = curves(300, seed=5)
        data["loss"] = data["loss"].copy()
        data["loss"][[10, 200]] = [np.nan, -np.inf]
        run = make_run(data)
    elif source == "repeated":
        run = _repeated_step_run()
    else:
        run = load(Path(__file__).parent / "fixtures" / source)[0]
    ctx = Context(run)
    compared = 0
    for split, metric in run.metrics:
        expected = stats.noise_sigma(ctx.series(metric, split))  # type: ignore[arg-type]
        assert ctx.noise(metric, split) == expected  # type: ignore[arg-type]
        compared += expected > 0
    assert compared  # at least one noisy curve was compared
    if source == "repeated":
        assert ctx.curve("loss", "train").n == len(ctx.series("loss", "train")) - 1


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=3, max_size=400),
    window=st.sampled_from([5, 7, 11, 41, 101]),
)
def test_spike_levels_are_pandas_rolling_medians(values: list[float], window: int) -> None:
    """DPO102's levels equal the pandas expressions they replaced, to the bit (ties, ends, short curves)."""
    s = pd.Series(values, dtype=float)
    short, baseline = spike_levels(s.to_numpy(), window)
    expected_short = s.rolling(3, center=True, min_periods=3).median().to_numpy()
    expected_baseline = s.rolling(window, min_periods=window).median().shift(2).to_numpy()
    assert np.array_equal(short, expected_short, equal_nan=True)
    assert np.array_equal(baseline, expected_baseline, equal_nan=True)


@pytest.mark.parametrize("gaps", [False, True])
def test_inconsistent_margins_aligned_and_gapped(gaps: bool) -> None:
    """DPO004 compares the steps all three metrics logged: the same steps (the direct path) or, when chosen has
    non-finite points, only the common ones (the intersection)."""
    data = curves(200, seed=11)
    data["margins"] = data["chosen"] - data["rejected"] + 0.5  # not chosen − rejected
    if gaps:
        data["chosen"] = data["chosen"].copy()
        data["chosen"][[3, 50, 51]] = np.nan
    finding = codes(data)["DPO004"]
    expected = 200 - 3 if gaps else 200
    assert finding.evidence == {"inconsistent_steps": expected, "steps_compared": expected}  # type: ignore[attr-defined]
    data["margins"] = data["chosen"] - data["rejected"]
    assert "DPO004" not in codes(data)


def _long_run(seed: int, name: str) -> Run:
    """A 2,000-step run: its curves are longer than the 256 points summarised in one batch, so each summary takes
    its own rolling median, which Context.rolling reuses."""
    return make_run(curves(2000, seed=seed), name=name)


@pytest.mark.parametrize("source", ["long", "trl/healthy", "nan", "repeated"])
def test_context_rolling_is_the_uncached_rolling_median(source: str) -> None:
    """Context.rolling and Context.late_noise (computed once per run, shared with the curve summaries) give what
    stats.smooth and stats.noise_sigma compute afresh, to the bit, for every curve, part and window; asked twice,
    the same array comes back (computed once)."""
    if source == "long":
        run = _long_run(3, "long")
    elif source == "nan":
        data = curves(600, seed=5)
        data["loss"] = data["loss"].copy()
        data["loss"][[10, 500]] = [np.nan, np.inf]
        run = make_run(data)
    elif source == "repeated":
        run = _repeated_step_run()
    else:
        run = load(Path(__file__).parent / "fixtures" / source)[0]
    ctx = Context(run)
    compared = 0
    for metric in {metric for _, metric in run.metrics}:
        series, late = ctx.series(metric), ctx.late(metric)
        if len(late) < 3:
            continue
        np.testing.assert_array_equal(ctx.rolling(metric), stats.smooth(series).values)
        np.testing.assert_array_equal(ctx.rolling(metric, "late"), stats.smooth(late).values)
        quarter = stats.window_for(len(late), 0.25)
        np.testing.assert_array_equal(ctx.rolling(metric, "late", quarter), stats.smooth(late, quarter).values)
        assert ctx.late_noise(metric) == stats.noise_sigma(late)
        assert ctx.late_median(metric) == stats.median(late.values)
        assert ctx.rolling(metric) is ctx.rolling(metric)
        compared += 1
    assert compared
    if source == "long":  # the summary's rolling median is the one handed out, not a second one
        assert ctx.rolling("loss") is ctx._summary_rolling[("train", "loss")][1]
    if source == "repeated":  # the summary dropped a repeated step: its rolling median is not the series'
        assert ctx.curve("loss").n != len(ctx.series("loss"))


def test_context_rolling_does_not_leak_between_runs() -> None:
    """Two runs with the same curves' names and lengths: each run's context smooths its own values (the cache is the
    run's, keyed by curve and window, never by array contents nor across runs), and diagnosing one run after the
    other gives each the report it gets alone."""
    first, second = _long_run(1, "first"), _long_run(2, "second")
    ctx_first, ctx_second = Context(first), Context(second)
    smoothed_first = ctx_first.rolling("loss")
    smoothed_second = ctx_second.rolling("loss")
    np.testing.assert_array_equal(smoothed_second, stats.smooth(ctx_second.series("loss")).values)
    assert not np.array_equal(smoothed_first, smoothed_second)
    alone = diagnose_run(second)
    diagnose_run(first)
    after = diagnose_run(second)
    assert [(f.code, f.message, f.evidence) for f in after.findings] == [
        (f.code, f.message, f.evidence) for f in alone.findings
    ]
    numbers = ("n", "start", "end", "min_value", "max_value", "noise", "slope", "levelled")
    assert {k: [getattr(c, f) for f in numbers] for k, c in after.curves.items()} == {
        k: [getattr(c, f) for f in numbers] for k, c in alone.curves.items()
    }
