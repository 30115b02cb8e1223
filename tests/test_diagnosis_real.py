"""Issue 13's classes, each on a real TRL run (tests/fixtures/diagnosis, made by tools/corpus/generate.py).

Each test names the class it guards: false alarms on healthy runs (1), misses (2), the headline cause (3) and losses
other than sigmoid DPO (4). The label of each run comes from how it was made (tools/corpus/manifest.jsonl).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import dpodoctor
from dpodoctor.results import RunReport, Severity

RUNS = Path(__file__).parent / "fixtures" / "diagnosis"


def report(name: str) -> RunReport:
    checked = dpodoctor.check([RUNS / name], use_config=False, cache=False)
    assert len(checked.runs) == 1
    return checked.runs[0]


def loud(rr: RunReport) -> dict[str, Severity]:
    return {f.code: f.severity for f in rr.findings if f.severity is not Severity.INFO}


@pytest.mark.parametrize(
    "name", ["healthy_batch1_log1", "healthy_ipo", "healthy_robust_ls0.1", "healthy_sigmoid_sft", "noise_0.3"]
)
def test_class1_healthy_runs_of_other_setups_get_no_warning(name: str) -> None:
    rr = report(name)
    assert not loud(rr), [f"{f.code}: {f.message}" for f in rr.findings]


def test_class1_batch1_accuracy_is_judged_as_a_binomial_mean() -> None:
    rr = report("healthy_batch1_log1")
    assert rr.expectations.noise.accuracy_quantum == 1.0 and rr.expectations.noise.coarse_accuracy
    assert not {"DPO301", "DPO303", "DPO502"} & {f.code for f in rr.findings}


def test_class1_a_log_killed_in_its_warm_up_is_too_early_never_an_error() -> None:
    rr = report("killed_warmup")
    codes = {f.code: f for f in rr.findings}
    assert "DPO006" in codes and codes["DPO006"].severity is Severity.INFO
    assert "DPO005" in codes  # the log did stop: say so, as a warning
    assert rr.worst() is not Severity.ERROR
    assert any("too early to judge" in needs[0] for needs in rr.skipped.values())


def test_class2_and_3_a_short_collapse_is_flagged_with_its_cause() -> None:
    rr = report("collapse")  # 6 logged points, loss 0.80 → 0.04, learning rate 2.5e-2
    assert rr.worst() is not None and rr.worst().rank >= Severity.WARNING.rank
    head = rr.findings[0]
    assert head.code == "DPO603", [f.code for f in rr.findings]  # the learning rate is the cause
    assert any(c.code == "DPO103" for c in head.corroborating)  # the collapse is its symptom
    assert "DPO601" not in {f.code for f in rr.findings}


def test_class2_reference_that_is_not_the_start_is_seen_at_the_first_log() -> None:
    rr = report("ref_mismatch")
    found = {f.code: f for f in rr.findings}
    assert "DPO406" in found and found["DPO406"].severity is Severity.WARNING
    first = rr.curves[("train", "chosen")]
    assert f"at step {first.first_step}" in found["DPO406"].message  # quotes the logged value at the cited step


def test_class2_eval_divergence_is_found_on_logged_eval_points() -> None:
    rr = report("overfit")
    found = {f.code: f for f in rr.findings}
    assert "DPO501" in found
    ev = rr.curves[("eval", "loss")]
    assert f"at step {ev.last_step}" in found["DPO501"].message


def test_class3_grad_norm_exactly_zero_is_the_headline() -> None:
    rr = report("grad_dead_adapter")
    assert [f.code for f in rr.findings] == ["DPO601"]
    head = rr.findings[0]
    assert "exactly 0 at every one" in head.message
    assert any(c.code == "DPO101" for c in head.corroborating)
    assert "learning rate" not in head.cause.split(".")[0]  # not "lr 0": grad_norm is measured before the step


@pytest.mark.parametrize(("name", "family", "start"), [("lr_1e-9_ipo", "ipo", 1.0), ("lr_1e-9_hinge", "hinge", 1.0)])
def test_class4_a_stuck_run_is_one_finding_at_its_own_starting_value(name: str, family: str, start: float) -> None:
    rr = report(name)
    assert rr.expectations.family.name == family and rr.expectations.family.start == pytest.approx(start)
    assert [f.code for f in rr.findings if f.severity is not Severity.INFO] == ["DPO101"]
    assert "expected start" in rr.findings[0].message and family in rr.findings[0].message


def test_class4_sft_term_is_recognised_from_the_config() -> None:
    rr = report("healthy_sigmoid_sft")
    family = rr.expectations.family
    assert family.extra_term and family.start is None and not loud(rr)


def test_every_report_quotes_one_end_value_per_metric() -> None:
    rr = report("overfit")
    loss = rr.curves[("train", "loss")]
    assert loss.level_text("end") in rr.health["loss"]


@pytest.mark.parametrize(
    ("name", "longer"),
    [("length_rejected_longer", "rejected"), ("length_chosen_longer", "chosen"), ("length_random_labels", "rejected")],
)
def test_class2_separation_by_length_is_its_own_finding(name: str, longer: str) -> None:
    """One side's answers 6 words longer (after the label flips): accuracy 1.0 from length alone, even when the
    content's labels are random. The length is the cause; the loss collapse and the saturated (eval) accuracy it
    produces are folded in as its symptoms."""
    rr = report(name)
    head = rr.findings[0]
    assert head.code == "DPO305" and head.severity is Severity.WARNING, [f.code for f in rr.findings]
    assert head.evidence["longer"] == longer and head.evidence["logps_ratio"] >= 2.5
    assert f"logps/{longer} starts" in head.message and "length alone separates the pairs" in head.message
    assert set(loud(rr)) == {"DPO305"}
    folded = {c.code for c in head.corroborating}
    assert "DPO503" in folded  # the eval accuracy is 1.0 from the first eval on: a symptom of the same cause


def test_class2_eval_accuracy_saturation_is_seen_on_its_own() -> None:
    rr = dpodoctor.check([RUNS / "length_rejected_longer"], use_config=False, cache=False, select=["DPO503"]).runs[0]
    [finding] = rr.findings
    assert finding.code == "DPO503" and finding.split == "eval"
    assert finding.first_step == 25 and finding.evidence["evals"] == 8  # every eval, from the first at step 25
    assert "1 at step 25" in finding.message  # the logged values at the cited steps


def test_class1_a_small_eval_set_at_8_of_8_is_not_called_saturated() -> None:
    """Clean labels and an eval set of 8 pairs: the eval accuracy climbs to 8/8 late in the run and stays there.
    That is a healthy run whose eval set is small, not a leak: DPO503 is not judged (its accuracies are multiples of
    1/8) and nothing warns."""
    rr = report("healthy_noise0_eval8")
    assert not loud(rr), [f"{f.code}: {f.message}" for f in rr.findings]
    assert "multiples of 1/8" in rr.skipped["DPO503"][0]


def test_class4_a_real_kto_run() -> None:
    """TRL 1.16's KTOTrainer (unpaired, shuffled): the loss family is KTO (no reward accuracy by design, starts at
    0.5); a healthy run gets no warning and is not asked for an accuracy, and one at lr 1e-9 is stuck at 0.5."""
    rr = report("healthy_kto")
    assert rr.expectations.family.name == "kto" and not rr.expectations.family.has_accuracy
    assert rr.expectations.family.start == pytest.approx(0.5)
    assert not loud(rr), [f"{f.code}: {f.message}" for f in rr.findings]
    stuck = report("lr_1e-9_kto")
    assert [f.code for f in stuck.findings if f.severity is not Severity.INFO] == ["DPO101"]
    assert "0.5" in stuck.findings[0].message and "kto" in stuck.findings[0].message


LLAMAFACTORY = ["lf_sigmoid", "lf_ftx", "lf_ipo", "lf_hinge", "lf_simpo", "lf_orpo", "lf_kto_pair"]


@pytest.mark.parametrize("name", LLAMAFACTORY)
def test_class4_real_llamafactory_runs_of_each_pref_loss_get_no_warning(name: str) -> None:
    """Real LLaMA-Factory 0.9.5 DPO runs (``llamafactory-cli train``, the tiny model on CPU), one per pref_loss it
    offers: sigmoid, ipo (β 0.5), hinge, simpo, orpo, kto_pair, and sigmoid + pref_ftx 1.0. Healthy recipes, so no
    warning; β comes from the LLaMA-Factory YAML beside the run (its TensorBoard args and trainer_log.jsonl do not
    carry pref_beta)."""
    rr = report(name)
    assert rr.run.source == "tensorboard"
    assert not loud(rr), [f"{f.code}: {f.message}" for f in rr.findings]
    assert rr.beta_note == f"from dpo_{name[3:]}.yaml" and rr.beta_used == (0.5 if name == "lf_ipo" else 0.1)
    if name == "lf_orpo":  # recognised from its own logged keys
        assert rr.expectations.family.name == "orpo"


def test_class4_llamafactory_trainer_log_alone_says_what_it_lacks() -> None:
    """LLaMA-Factory's own trainer_log.jsonl carries loss and accuracy only: read alone, the run is judged on those
    and DPO002 names the rewards it does not log (never a made-up verdict on them)."""
    rr = dpodoctor.check([RUNS / "lf_sigmoid" / "trainer_log.jsonl"], use_config=False, cache=False).runs[0]
    assert rr.run.source == "llamafactory" and rr.run.steps == 200
    assert {f.code for f in rr.findings if f.severity is not Severity.INFO} == {"DPO002"}


@pytest.mark.parametrize(("name", "family"), [("lf_ipo", "ipo"), ("lf_ftx", "sigmoid+sft×1 (pref_ftx)")])
def test_class4_llamafactory_loss_family_comes_from_its_yaml(name: str, family: str) -> None:
    assert report(name).expectations.family.name == family
