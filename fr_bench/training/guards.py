"""Stop a training stage at the first non-finite loss, before it is back-propagated into the weights.

A NaN/inf loss raises `NonFiniteLossError` out of `Trainer.fit`, so the stage function never reaches its
`save_pretrained` and the caller's `atomic_dir` discards the scratch folder: no broken artifact is ever cached.
"""
from __future__ import annotations

import math

import lightning as L
import torch


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite during training."""


class NonFiniteLossGuard(L.Callback):
    """Checks the total loss and every component the module exposes in `last_losses` before each backward."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        parts = {"loss": loss, **getattr(pl_module, "last_losses", {})}
        for name, value in parts.items():
            v = float(value.detach())
            if not math.isfinite(v):
                raise NonFiniteLossError(
                    f"stage '{self.stage}': loss '{name}' is {v} at global step {trainer.global_step} "
                    f"(epoch {trainer.current_epoch}); training stopped and nothing was saved. Lower the learning "
                    "rate, check the data and the initial checkpoints for NaN weights, or use a wider precision.")
