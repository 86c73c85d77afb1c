"""The LightningModule behind `fit_causal_lm`: a causal LM trained on its own shifted cross-entropy."""
from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch

from .lm import LMTrainConfig, warmup_cosine


class CausalLMModule(L.LightningModule):
    """Wraps a causal LM; the loss is the model's own shifted cross-entropy over labels != -100."""

    def __init__(self, model: torch.nn.Module, cfg: LMTrainConfig) -> None:
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
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, partial(warmup_cosine, warmup=cfg.warmup_steps, total=cfg.max_steps, min_ratio=cfg.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
