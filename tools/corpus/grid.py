"""The designed grid: a healthy baseline, each axis varied against it, and the induced failures.

Not a Cartesian product: every run changes one or two things from :data:`BASE` so that its label follows from the
recipe. The order matters: the first :data:`CORE` runs are the baselines and the main failures (made first, so the
rules can be calibrated while the rest trains).

Labels (what was induced; tools/corpus/labels.py maps them to the rule codes expected to fire):
    healthy          a run a practitioner would keep: the loss leaves its start, the preference is learned
    inverted_labels  label noise > 0.5: the data prefers the wrong answer, and the run learns it consistently. The
                     logged curves look healthy; no tool can see label quality from them, so nothing may claim to
    random_labels    label noise 0.5: the data carries no preference; loss stays near its start, accuracy ~0.5
    lr_too_low       1e-9 to 1e-6: nothing moves (loss at its starting value, margins ~0)
    lr_zero          learning rate 0: gradients flow, the weights never change
    grad_dead        every gradient is exactly 0 (frozen base, all-zero adapter): grad_norm 0 at every step
    lr_too_high      3e-2 to 1e-1 with Adam: entropy collapses, chosen and rejected rewards both fall hard
    overfit          48 clean pairs for 60 epochs: train loss → ~0.01, accuracy 1.0, eval loss rises
    collapse         few clean pairs, a high lr: the loss goes to ~0 within a few logs, margins explode
    killed_early     the process was killed (SIGKILL or Ctrl-C) after the warm-up, mid-run; files as it left them
    too_early        killed while the learning rate was still warming up (a few % of the planned steps)
    beta_tiny_drift  β 0.01 with a high lr: the KL leash is weak, the policy drifts far from the reference while the
                     reward margins (β·log-ratio) stay small
    ref_mismatch     the policy was fine-tuned first, the reference is the untouched random init: the reference is not
                     the policy's start, so rewards are far from 0 (~+5, 50 nats) at the first log
    length_separation  one side's answers are much longer than the other's (6 more words, after the label flips):
                     length alone separates the pairs, so accuracy goes to ~1.0 whatever the labels say, and the
                     summed logps of the longer side start ~4x the other's
    borderline       settings between healthy and a failure (lr 1e-5/1e-4, 1e-2; IPO at batch 1, whose eval loss rises;
                     apo_down and discopop, which do not separate the answers on this data); reported, not scored
"""

from __future__ import annotations

from dataclasses import replace

from tools.corpus.spec import RunSpec

# The healthy baseline: 800 pairs (15 % flipped), batch 8, 2 epochs = 200 steps, lr 1e-3, β 0.1, eval every 25 steps.
BASE = RunSpec(
    "base",
    "healthy",
    pairs=800,
    epochs=2,
    learning_rate=1e-3,
    why="baseline: loss 0.69 → ~0.55, accuracy → ~0.8, eval loss falls",
)


def run(name: str, label: str, why: str, **changes: object) -> RunSpec:
    return replace(BASE, name=name, label=label, why=why, **changes)


OVERFIT = {"pairs": 48, "noise": 0.0, "epochs": 60, "learning_rate": 3e-3, "eval_steps": 20}
COLLAPSE = {
    **OVERFIT,
    "learning_rate": 3e-2,
    "beta": 1.0,
    "max_steps": 60,
    "logging_steps": 10,
    "template": True,
    "max_grad_norm": 0.0,
}
REF_MISMATCH = {"policy_sft_steps": 150, "template": True}
BATCH1 = {"batch_size": 1, "pairs": 400, "epochs": 1, "learning_rate": 1e-3, "eval_steps": 100}

CORE = [
    run("healthy_s0", "healthy", "the baseline"),
    run("healthy_s1", "healthy", "the baseline, seed 1", seed=1),
    run("healthy_log1", "healthy", "the baseline logged at every step", logging_steps=1),
    run("healthy_log25_long", "healthy", "logged every 25 of 400 steps (16 points)", logging_steps=25, epochs=4),
    run("healthy_batch1_log1", "healthy", "batch 1, logged every step: accuracy is 0 or 1", logging_steps=1, **BATCH1),
    run("lr_1e-9", "lr_too_low", "lr 1e-9: nothing moves", learning_rate=1e-9),
    run("lr_1e-7", "lr_too_low", "lr 1e-7: nothing moves", learning_rate=1e-7),
    run("lr_1e-1", "lr_too_high", "lr 1e-1: entropy collapses, rewards both fall", learning_rate=1e-1),
    run("lr_3e-2", "lr_too_high", "lr 3e-2: entropy collapses, chosen reward negative", learning_rate=3e-2),
    run("overfit", "overfit", "48 clean pairs, 60 epochs: loss → 0.01, eval loss 0.69 → 1.1", **OVERFIT),
    run(
        "collapse",
        "collapse",
        "short log (6 points): 48 clean pairs, long answers, β 1, lr 3e-2 unclipped: loss → 0.03, rewards → -15",
        **COLLAPSE,
    ),
    run("random_labels", "random_labels", "label noise 0.5: no preference in the data", noise=0.5),
    run("inverted_labels", "inverted_labels", "label noise 1.0: the wrong answer is always 'chosen'", noise=1.0),
    run("killed_sigkill_mid", "killed_early", "SIGKILL at step 100 of 200", kill_at_step=100),
    run(
        "killed_warmup",
        "too_early",
        "warm-up 40 of 400 steps, SIGKILL at step 16 (4 %)",
        epochs=4,
        warmup_steps=40,
        logging_steps=1,
        kill_at_step=16,
    ),
    run("grad_dead_adapter", "grad_dead", "frozen base, all-zero adapter: grad_norm 0 throughout", dead_adapter=True),
    run("lr_zero", "lr_zero", "lr 0: the weights never change", learning_rate=0.0),
    run("beta_0.01", "healthy", "β 0.01: the loss leaves ln 2 slowly", beta=0.01),
    run("beta_1.0", "healthy", "β 1.0: larger, noisier rewards", beta=1.0),
    run(
        "ref_mismatch",
        "ref_mismatch",
        "policy fine-tuned first, reference = the random init: rewards ~+5 at the first log",
        **REF_MISMATCH,
    ),
    run(
        "beta_tiny_drift",
        "beta_tiny_drift",
        "β 0.01 at lr 1e-2: the policy drifts, margins stay small",
        beta=0.01,
        learning_rate=1e-2,
    ),
    run("healthy_ipo", "healthy", "IPO, β 0.5 (starts at 1/(4β²) = 1)", loss_type=("ipo",), beta=0.5),
    run("healthy_hinge", "healthy", "hinge (starts at 1)", loss_type=("hinge",)),
    run(
        "healthy_sigmoid_sft",
        "healthy",
        "RPO: sigmoid + sft, weights 1/1 (starts at ln 2 + NLL)",
        loss_type=("sigmoid", "sft"),
        loss_weights=(1.0, 1.0),
    ),
]

REST: list[RunSpec] = []
# --- seeds
REST += [run(f"healthy_s{s}", "healthy", f"the baseline, seed {s}", seed=s) for s in (2, 3, 4)]
REST += [run(f"lr_1e-9_s{s}", "lr_too_low", f"lr 1e-9, seed {s}", learning_rate=1e-9, seed=s) for s in (1, 2)]
REST += [run(f"lr_1e-1_s{s}", "lr_too_high", f"lr 1e-1, seed {s}", learning_rate=1e-1, seed=s) for s in (1, 2)]
REST += [run(f"overfit_s{s}", "overfit", f"overfit recipe, seed {s}", seed=s, **OVERFIT) for s in (1, 2)]
REST += [run(f"random_labels_s{s}", "random_labels", f"noise 0.5, seed {s}", noise=0.5, seed=s) for s in (1, 2)]
# --- learning rate, 1e-9 … 1e-1
for lr, label in [
    (1e-8, "lr_too_low"),
    (1e-6, "lr_too_low"),
    (1e-5, "borderline"),
    (1e-4, "borderline"),
    (3e-4, "healthy"),
    (3e-3, "healthy"),
    (1e-2, "borderline"),
]:
    REST.append(run(f"lr_{lr:g}", label, f"lr {lr:g}", learning_rate=lr))
REST.append(
    run("lr_1e-1_noclip", "lr_too_high", "lr 1e-1 without gradient clipping", learning_rate=1e-1, max_grad_norm=0.0)
)
REST.append(run("lr_3e-2_log1", "lr_too_high", "lr 3e-2 logged every step", learning_rate=3e-2, logging_steps=1))
REST.append(run("lr_1e-9_log1", "lr_too_low", "lr 1e-9 logged every step", learning_rate=1e-9, logging_steps=1))
# --- β 0.01 … 1
REST += [run(f"beta_{b:g}", "healthy", f"β {b:g}", beta=b) for b in (0.03, 0.3)]
REST.append(run("beta_0.01_log1", "healthy", "β 0.01 logged every step", beta=0.01, logging_steps=1))
REST.append(run("beta_1.0_batch1", "healthy", "β 1.0 at batch 1", beta=1.0, **BATCH1))
REST.append(run("beta_tiny_drift_lr3e-2", "beta_tiny_drift", "β 0.01 at lr 3e-2", beta=0.01, learning_rate=3e-2))
# --- label noise 0 … 1
REST += [run(f"noise_{n:g}", "healthy", f"label noise {n:g}", noise=n) for n in (0.0, 0.1, 0.3)]
REST += [run(f"noise_{n:g}", "inverted_labels", f"label noise {n:g}: mostly inverted", noise=n) for n in (0.7, 0.85)]
REST.append(run("inverted_labels_s1", "inverted_labels", "label noise 1.0, seed 1", noise=1.0, seed=1))
REST.append(run("random_labels_log1", "random_labels", "noise 0.5 logged every step", noise=0.5, logging_steps=1))
# --- logging interval and batch size
REST.append(run("healthy_log25", "healthy", "logged every 25 steps (8 points)", logging_steps=25))
REST.append(run("healthy_log25_short", "healthy", "100 steps logged every 25 (4 points)", logging_steps=25, epochs=1))
REST.append(run("healthy_log5_short", "healthy", "50 steps (10 points)", epochs=0.5))
REST.append(run("healthy_batch1", "healthy", "batch 1, logged every 5 steps", **BATCH1))
REST.append(run("healthy_batch1_log25", "healthy", "batch 1, logged every 25 steps", logging_steps=25, **BATCH1))
REST.append(
    run("healthy_batch1_s1", "healthy", "batch 1, seed 1, logged every step", logging_steps=1, seed=1, **BATCH1)
)
REST.append(
    run("lr_1e-9_batch1", "lr_too_low", "lr 1e-9 at batch 1", logging_steps=1, **{**BATCH1, "learning_rate": 1e-9})
)
REST.append(run("lr_1e-1_batch1", "lr_too_high", "lr 1e-1 at batch 1", **{**BATCH1, "learning_rate": 1e-1}))
REST.append(run("random_labels_batch1", "random_labels", "noise 0.5 at batch 1", noise=0.5, **BATCH1))
# --- warm-up and schedules
REST.append(run("warmup_50", "healthy", "linear warm-up over 50 of 200 steps", warmup_steps=50))
REST.append(run("warmup_50_cosine", "healthy", "warm-up 50, cosine decay", warmup_steps=50, lr_scheduler_type="cosine"))
REST.append(
    run(
        "warmup_constant",
        "healthy",
        "constant lr after 20 warm-up steps",
        warmup_steps=20,
        lr_scheduler_type="constant_with_warmup",
    )
)
# --- killed runs
REST.append(
    run(
        "killed_sigint_mid",
        "killed_early",
        "Ctrl-C at step 80 of 200 (traceback in train.log)",
        kill_at_step=80,
        kill_mode="sigint",
    )
)
REST.append(
    run(
        "killed_sigkill_log1",
        "killed_early",
        "SIGKILL at step 120 of 200, logged every step",
        kill_at_step=120,
        logging_steps=1,
    )
)
REST.append(
    run(
        "killed_sigkill_noeval",
        "killed_early",
        "SIGKILL at step 60 of 400, no eval",
        kill_at_step=60,
        epochs=4,
        eval=False,
    )
)
REST.append(
    run(
        "killed_warmup_log5",
        "too_early",
        "warm-up 100 of 400, SIGKILL at step 30",
        epochs=4,
        warmup_steps=100,
        kill_at_step=30,
    )
)
REST.append(
    run(
        "killed_warmup_sigint",
        "too_early",
        "warm-up 40 of 400, Ctrl-C at step 12",
        epochs=4,
        warmup_steps=40,
        logging_steps=1,
        kill_at_step=12,
        kill_mode="sigint",
    )
)
REST.append(
    run(
        "killed_warmup_ipo",
        "too_early",
        "IPO β 0.5, warm-up 40 of 400, SIGKILL at step 16",
        loss_type=("ipo",),
        beta=0.5,
        epochs=4,
        warmup_steps=40,
        logging_steps=1,
        kill_at_step=16,
    )
)
# --- eval on and off
REST.append(run("healthy_noeval", "healthy", "the baseline without eval", eval=False))
REST.append(run("overfit_noeval", "overfit", "the overfit recipe without eval", eval=False, **OVERFIT))
REST.append(run("healthy_eval_sparse", "healthy", "eval only every 100 steps", eval_steps=100))
# --- grad dead
REST.append(
    run(
        "grad_dead_adapter_log1", "grad_dead", "all-zero adapter, logged every step", dead_adapter=True, logging_steps=1
    )
)
REST.append(
    run(
        "grad_dead_adapter_ipo",
        "grad_dead",
        "all-zero adapter under IPO β 0.5",
        dead_adapter=True,
        loss_type=("ipo",),
        beta=0.5,
    )
)
REST.append(run("ref_mismatch_s1", "ref_mismatch", "reference not the start, seed 1", **REF_MISMATCH, seed=1))
REST.append(run("collapse_s1", "collapse", "the collapse recipe, seed 1", **COLLAPSE, seed=1))
# --- loss types: healthy, stuck (lr 1e-9) and too-high (lr 1e-1) for each
LOSSES: list[tuple[str, dict[str, object]]] = [
    ("ipo", {"loss_type": ("ipo",), "beta": 0.5}),
    ("ipo_beta0.1", {"loss_type": ("ipo",), "beta": 0.1}),
    ("hinge", {"loss_type": ("hinge",)}),
    ("sppo_hard", {"loss_type": ("sppo_hard",), "beta": 1.0}),
    ("nca_pair", {"loss_type": ("nca_pair",)}),
    ("bco_pair", {"loss_type": ("bco_pair",)}),
    ("apo_zero", {"loss_type": ("apo_zero",)}),
    ("apo_down", {"loss_type": ("apo_down",)}),
    ("discopop", {"loss_type": ("discopop",)}),
    ("robust_ls0.1", {"loss_type": ("robust",), "label_smoothing": 0.1}),
    ("exo_pair_ls1e-3", {"loss_type": ("exo_pair",), "label_smoothing": 1e-3}),
    ("exo_pair_ls0.1", {"loss_type": ("exo_pair",), "label_smoothing": 0.1}),
    ("sigmoid_sft", {"loss_type": ("sigmoid", "sft"), "loss_weights": (1.0, 1.0)}),
    ("sigmoid_sft_template", {"loss_type": ("sigmoid", "sft"), "loss_weights": (1.0, 1.0), "template": True}),
    ("sigmoid_template", {"template": True}),
]
# apo_down lowers both rewards by design and discopop hardly moves at this lr: on this data neither separates the
# answers (accuracy stays ~0.5), so they are not called healthy.
NOT_SEPARATING = ("apo_down", "discopop")
for key, settings in LOSSES:
    if key in NOT_SEPARATING:
        REST.append(run(f"baseline_{key}", "borderline", f"{key} at the baseline lr: no separation", **settings))
    elif key not in ("ipo", "hinge", "sigmoid_sft"):  # those three are in CORE
        REST.append(run(f"healthy_{key}", "healthy", f"{key} at the baseline lr", **settings))
for key, settings in LOSSES[:9] + LOSSES[12:13]:
    REST.append(
        run(
            f"lr_1e-9_{key}",
            "lr_too_low",
            f"{key} at lr 1e-9: stuck at its starting value",
            **{**settings, "learning_rate": 1e-9},
        )
    )
for key, settings in (LOSSES[0], LOSSES[2], LOSSES[6], LOSSES[12]):
    REST.append(run(f"lr_1e-1_{key}", "lr_too_high", f"{key} at lr 1e-1", **{**settings, "learning_rate": 1e-1}))
for key, settings in (LOSSES[0], LOSSES[2], LOSSES[12]):
    REST.append(run(f"overfit_{key}", "overfit", f"{key}, overfit recipe", **{**settings, **OVERFIT}))
    REST.append(run(f"random_labels_{key}", "random_labels", f"{key}, noise 0.5", **{**settings, "noise": 0.5}))
    REST.append(
        run(
            f"healthy_{key}_batch1_log1" if key != "ipo" else "batch1_log1_ipo",
            "healthy" if key != "ipo" else "borderline",  # IPO at batch 1: eval loss 1.17 → 1.22, eval accuracy ↓
            f"{key} at batch 1, every step"
            + (": eval loss rises slightly, eval accuracy falls" if key == "ipo" else ""),
            logging_steps=1,
            **{**settings, **BATCH1},
        )
    )
REST.append(
    run(
        "killed_sigkill_sft",
        "killed_early",
        "sigmoid+sft, SIGKILL at step 100",
        loss_type=("sigmoid", "sft"),
        loss_weights=(1.0, 1.0),
        kill_at_step=100,
    )
)
# --- TRL's CPO and ORPO trainers (trl.experimental): reference-free rewards β·logp, negative from the start
REST.append(run("healthy_cpo", "healthy", "CPOTrainer (sigmoid)", trainer="cpo"))
REST.append(
    run(
        "healthy_cpo_simpo",
        "healthy",
        "CPOTrainer, SimPO loss",
        trainer="cpo",
        extra={"loss_type": "simpo", "cpo_alpha": 0.0},
    )
)
REST.append(run("healthy_orpo", "healthy", "ORPOTrainer", trainer="orpo"))
REST.append(run("lr_1e-9_cpo", "lr_too_low", "CPOTrainer at lr 1e-9", trainer="cpo", learning_rate=1e-9))
REST.append(run("lr_1e-9_orpo", "lr_too_low", "ORPOTrainer at lr 1e-9", trainer="orpo", learning_rate=1e-9))
REST.append(run("lr_1e-1_orpo", "lr_too_high", "ORPOTrainer at lr 1e-1", trainer="orpo", learning_rate=1e-1))
REST.append(
    run(
        "killed_warmup_orpo",
        "too_early",
        "ORPOTrainer, warm-up 40 of 400, SIGKILL at step 16",
        trainer="orpo",
        epochs=4,
        warmup_steps=40,
        logging_steps=1,
        kill_at_step=16,
    )
)

# --- separation by length (issue 13, class 2): the preference is learnable from the answers' length alone
REST.append(
    run(
        "length_rejected_longer",
        "length_separation",
        "rejected answers 6 words longer: accuracy → 1.0",
        longer="rejected",
    )
)
REST.append(
    run("length_chosen_longer", "length_separation", "chosen answers 6 words longer: accuracy → 1.0", longer="chosen")
)
REST.append(
    run(
        "length_random_labels",
        "length_separation",
        "label noise 0.5 (no preference in the content), rejected answers 6 words longer: accuracy → 1.0 from length",
        noise=0.5,
        longer="rejected",
    )
)
# --- a small eval set (8 pairs, the same every eval): its accuracy is coarse (steps of 1/8) and can sit at 1.0 on a
# healthy run; the eval-accuracy saturation check (DPO503) must not call that a leak
REST.append(run("healthy_eval8", "healthy", "eval on 8 pairs: eval accuracy in steps of 1/8", eval_pairs=8))
REST.append(
    run(
        "healthy_noise0_eval8",
        "healthy",
        "clean labels, eval on 8 clean pairs: eval accuracy may reach 8/8 and stay",
        noise=0.0,
        eval_pairs=8,
    )
)
# --- TRL's KTOTrainer (trl.KTOTrainer in 1.16): unpaired, logs kl and no reward accuracy
REST.append(run("healthy_kto", "healthy", "KTOTrainer at the baseline (pairs unpaired and shuffled)", trainer="kto"))
REST.append(run("lr_1e-9_kto", "lr_too_low", "KTOTrainer at lr 1e-9: stuck at 0.5", trainer="kto", learning_rate=1e-9))
REST.append(run("lr_1e-1_kto", "lr_too_high", "KTOTrainer at lr 1e-1", trainer="kto", learning_rate=1e-1))

GRID: list[RunSpec] = CORE + REST
assert len({s.name for s in GRID}) == len(GRID), "run names must be unique"
