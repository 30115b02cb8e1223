"""Synthetic DPO curves with realistic batch noise, for rule tests.

The healthy shape follows the seed's reference table: loss from ln 2 down to a positive plateau, margins up from 0,
accuracy from 0.5 toward ~0.83, chosen up, rejected down. Rewards are β × log-ratio, so reward sizes scale with β.
"""

from __future__ import annotations

import math

import numpy as np

from dpodoctor.model import Ended, Run, make_frame

LN2 = math.log(2)


def rise(steps: np.ndarray, tau: float = 100.0) -> np.ndarray:
    """0 → 1 saturating curve."""
    return 1.0 - np.exp(-steps / tau)


def curves(n: int = 400, *, seed: int = 0, beta: float = 0.1, loss_sigma: float = 0.1) -> dict[str, np.ndarray]:
    """A healthy run logged every step: loss noise σ=0.1 as at logging_steps=1."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    r = rise(t)
    chosen = beta * 2.0 * r + rng.normal(0, beta * 0.5, n)
    rejected = -beta * 4.0 * r + rng.normal(0, beta * 0.5, n)
    return {
        "steps": t.astype(int),
        "loss": LN2 - 0.2 * r + rng.normal(0, loss_sigma, n),
        "chosen": chosen,
        "rejected": rejected,
        "margins": chosen - rejected,
        "accuracy": np.clip(0.5 + 0.33 * r + rng.normal(0, 0.1, n), 0, 1),
    }


def make_run(data: dict[str, np.ndarray], *, beta: float | None = 0.1, name: str = "synthetic") -> Run:
    steps = data["steps"]
    split, metric, step, value = [], [], [], []
    for key, values in data.items():
        if key == "steps":
            continue
        split += ["train"] * len(values)
        metric += [key] * len(values)
        step += list(steps)
        value += list(values)
    return Run(
        name=name,
        path=__import__("pathlib").Path(name),
        source="synthetic",
        frame=make_frame(split, metric, step, value),
        beta=beta,
        beta_source="test" if beta else None,
        ended=Ended.FINISHED,
    )
