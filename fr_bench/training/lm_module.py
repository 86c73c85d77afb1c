"""The LightningModule behind `fit_causal_lm`: a causal LM trained on its own shifted cross-entropy."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from .harness import adamw

if TYPE_CHECKING:
    from .lm import LMTrainConfig


class CausalLMModule(L.LightningModule):
    """Wraps a causal LM; the loss is the model's own shifted cross-entropy over labels != -100. The optimizer is the
    harness recipe with the config's cosine decay, betas, and no weight decay on biases and norms."""

    def __init__(self, model: torch.nn.Module, cfg: "LMTrainConfig") -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.tokens_seen = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        self.tokens_seen += int(batch["attention_mask"].sum())
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("tokens", float(self.tokens_seen), batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self(batch), prog_bar=True, batch_size=batch["input_ids"].shape[0])

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        return adamw(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio,
                     (cfg.beta1, cfg.beta2), decay_vectors=False)
