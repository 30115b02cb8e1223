"""One corpus run, described by how it is made: the settings that go into the trainer and the label of the failure
they induce. The label is decided here, from the recipe, never from what dpodoctor says about the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    """Everything that makes one run. Defaults are the healthy baseline (see grid.py)."""

    name: str
    label: str
    why: str = ""  # one line: what was induced, and what a practitioner should see
    seed: int = 0
    trainer: str = "dpo"  # dpo | cpo | orpo (TRL's experimental CPOTrainer / ORPOTrainer) | kto (trl.KTOTrainer)
    loss_type: tuple[str, ...] = ("sigmoid",)
    loss_weights: tuple[float, ...] | None = None
    beta: float = 0.1
    label_smoothing: float = 0.0
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    pairs: int = 400
    noise: float = 0.15  # share of pairs with chosen and rejected swapped
    template: bool = False  # both answers share a long common tail
    longer: str = (
        ""  # "rejected" | "chosen": that side alone gets a 6-word tail (after the label flips): length separates
    )
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    logging_steps: int = 5
    eval: bool = True
    eval_steps: int = 25
    eval_pairs: int = 64
    kill_at_step: int | None = None  # the process is killed (a real kill, see kill_mode) when this step ends
    kill_mode: str = "sigkill"  # sigkill: nothing is flushed, as with the OOM killer; sigint: Ctrl-C (traceback)
    dead_adapter: bool = False  # base weights frozen, the only trainable tensors an all-zero LoRA: every gradient is 0
    policy_sft_steps: int = 0  # > 0: the policy is first fine-tuned on the chosen answers, the reference is not
    extra: dict[str, Any] = field(default_factory=dict)  # trainer-specific settings (e.g. CPO's loss_type)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The parameters of the baseline recipe: what a manifest row made before a field existed had for it."""
        return cls("", "").params()

    def params(self) -> dict[str, Any]:
        """The grid parameters as plain JSON values (the manifest's columns)."""
        out = asdict(self)
        out["loss_type"] = list(self.loss_type)
        out["loss_weights"] = list(self.loss_weights) if self.loss_weights is not None else None
        return out
