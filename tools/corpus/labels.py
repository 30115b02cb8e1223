"""What each corpus label expects from dpodoctor: THE table the scoreboard (benchmarks/accuracy.py) scores against.

Edit here when rules change: a new code that should catch a failure goes into that label's ``codes``; a code that is
an acceptable side finding goes into ``also_ok``. A label's ``kind`` says how a run is judged:

- ``"healthy"``: no finding at warning or error (every one is a false alarm). ``inverted_labels`` is judged so too:
  its curves look healthy, and the tool must never claim to see label quality.
- ``"failure"``: detected when at least one of ``codes`` fires at warning or error. ``codes=()`` means no rule exists
  yet for it: every run of the label counts as missed until one is added here. Findings at warning or error outside
  ``codes`` and ``also_ok`` count as false positives of their rule. ``worst`` caps the severity: "warning" means an
  error on such a run is wrong (a run too early to judge must never get one).
- ``"unscored"``: listed with its findings, counted nowhere (settings between healthy and a failure).

Labels come from how a run was made (tools/corpus/grid.py), never from what the tool says about it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Expectation:
    kind: str  # "healthy" | "failure" | "unscored"
    codes: tuple[str, ...] = ()  # failure: any one of them at >= warning detects the run
    also_ok: tuple[str, ...] = ()  # findings that are not false positives on this label
    worst: str = "error"  # the highest severity a correct report may give this run
    why: str = ""


EXPECTATIONS: dict[str, Expectation] = {
    # ---- corpus labels (induced; see tools/corpus/grid.py)
    "healthy": Expectation("healthy", why="nothing at warning or error, whatever the loss type, β, interval or batch"),
    "inverted_labels": Expectation(
        "healthy", why="the flipped preference is learned consistently: the curves look healthy"
    ),
    "random_labels": Expectation(
        "failure", ("DPO101", "DPO301", "DPO202"), why="no preference signal: stuck loss, chance accuracy"
    ),
    "lr_too_low": Expectation(
        "failure", ("DPO101",), also_ok=("DPO202", "DPO301", "DPO601"), why="stuck at the loss's starting value"
    ),
    "lr_zero": Expectation("failure", ("DPO101", "DPO601"), also_ok=("DPO202", "DPO301"), why="weights never change"),
    "grad_dead": Expectation(
        "failure",
        ("DPO601",),
        also_ok=("DPO101", "DPO202", "DPO301"),
        why="grad_norm exactly 0: the cause, before the stuck loss",
    ),
    "lr_too_high": Expectation(
        "failure",
        ("DPO401", "DPO404", "DPO405", "DPO102", "DPO105", "DPO603", "DPO406", "DPO407", "DPO106", "DPO001"),
        also_ok=("DPO602", "DPO201", "DPO301", "DPO204", "DPO103"),
        why="damage: entropy and logps/chosen collapse, chosen reward falls",
    ),
    "overfit": Expectation(
        "failure",
        ("DPO103", "DPO501", "DPO302"),
        also_ok=("DPO204", "DPO407"),
        why="train loss → 0 while eval loss rises",
    ),
    "collapse": Expectation(
        "failure",
        ("DPO103", "DPO204", "DPO106", "DPO603"),
        also_ok=("DPO302", "DPO601", "DPO406", "DPO407"),
        why="loss → 0 within a few logs, margins explode",
    ),
    "killed_early": Expectation("failure", ("DPO005",), why="the log stops mid-run"),
    "too_early": Expectation(
        "failure", ("DPO005",), worst="warning", why="stopped in the warm-up: too early to judge, never an error"
    ),
    "beta_tiny_drift": Expectation(
        "failure", ("DPO204", "DPO405", "DPO404"), why="weak KL leash: the policy drifts far from the reference"
    ),
    "ref_mismatch": Expectation("failure", ("DPO406",), also_ok=("DPO104",), why="rewards far from 0 at the first log"),
    "length_separation": Expectation(
        "failure",
        ("DPO305",),
        also_ok=("DPO103", "DPO204", "DPO302", "DPO503"),
        why="one side 6 words longer: accuracy 1.0 from length alone (its collapse and saturation are symptoms)",
    ),
    "borderline": Expectation("unscored", why="between healthy and a failure; listed, not scored"),
    # ---- hand labels of public logs (../shared/real-logs): NOT induced, taken from issue 13's and SOURCES.md's text
    "real:collapse": Expectation(
        "failure",
        ("DPO103", "DPO204", "DPO106"),
        also_ok=("DPO601", "DPO003"),
        why="issue 13: loss 0.69 → 0, margin/β 1400 nats, grad_norm 0",
    ),
    "real:eval_divergence": Expectation(
        "failure", ("DPO501",), why="issue 13: eval loss 0.255 → 0.369 while train loss falls"
    ),
    "real:too_early": Expectation(
        "failure", ("DPO005",), worst="warning", why="issue 13: stopped at 4 % of its steps in the warm-up"
    ),
    "real:killed_early": Expectation("failure", ("DPO005",), why="SOURCES.md: killed (SLURM CANCELLED / SIGINT)"),
    "real:unlabelled": Expectation("unscored", why="no hand label: findings listed for reading, not scored"),
}

# The public logs (directory under ../shared/real-logs → label), with where the label comes from.
REAL_LOGS: dict[str, tuple[str, str]] = {
    "distill-safety": ("real:collapse", "issue 13, class 2: 4 points, loss 0.69 → 0.16 → 0 → 0, grad_norm 0"),
    "dario-translation-42429": ("real:eval_divergence", "issue 13, class 2: eval loss 0.255 → 0.369"),
    "llamafactory-360": ("real:too_early", "issue 13, class 1: stopped at 4 % while the lr was warming up"),
    "dario-translation-62080426": ("real:killed_early", "SOURCES.md: 400 of 1605 steps, slurmstepd CANCELLED"),
    "cn-miniphi3": ("real:too_early", "SOURCES.md: a single dict line, then SIGINT"),
}
