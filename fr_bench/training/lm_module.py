"""The LightningModule behind `fit_causal_lm`: a causal LM trained on its own shifted cross-entropy."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import lightning as L
import torch

if TYPE_CHECKING:
    from .lm import LMTrainConfig


class CausalLMModule(L.LightningModule):
    """Wraps a causal LM; the loss is the model's own shifted cross-entropy over labels != -100. `lr_lambda` maps
    the optimizer step to the LR multiplier (the caller's schedule, so this module needs nothing from `lm`)."""

    def __init__(self, model: torch.nn.Module, cfg: "LMTrainConfig", lr_lambda: Callable[[int], float]) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.lr_lambda = lr_lambda
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
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
