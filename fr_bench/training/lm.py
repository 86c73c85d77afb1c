"""Plain causal-LM fine-tuning (next-token loss on response tokens) with Lightning, for any AutoModelForCausalLM.

Trains the micro world's base and experts through the training harness (`harness.fit`). Budgets are optimizer
steps, so a run is deterministic given its config and data; logs go to CSV (and TensorBoard when asked). Lightning is
imported only when a run starts (it takes seconds to import), so code that merely reads these configs stays quick.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from ..config import ConfigError
from .data import LengthGroupedBatchSampler, SFTDataset, collate
from .harness import fit, seed_everything


@dataclass
class LMTrainConfig:
    """One fine-tuning run; `max_steps` optimizer steps of `batch_size` rows, warm-up then cosine decay."""

    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.1      # the cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 50
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0         # 0 disables clipping
    max_length: int = 512          # prompt + response tokens, truncated on the right
    precision: str = "32-true"     # Lightning precision; "bf16-mixed" = bf16 autocast (also on CPU)
    accelerator: str = "auto"
    seed: int = 0
    val_every: int = 0             # steps between validation runs; 0 = once, at the end
    limit_val_batches: int = 8
    log_every_n_steps: int = 20
    progress_bar: bool = True
    tensorboard: bool = False

    def validate(self) -> "LMTrainConfig":
        for key in ("max_steps", "batch_size", "max_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"LMTrainConfig.{key} = {getattr(self, key)} must be >= 1.")
        if self.lr <= 0:
            raise ConfigError(f"LMTrainConfig.lr = {self.lr} must be > 0.")
        return self


@dataclass
class FitResult:
    steps: int
    tokens: int
    seconds: float
    train_loss: float
    val_loss: float | None


def _loader(ds: SFTDataset, cfg: LMTrainConfig, pad_id: int, shuffle: bool) -> DataLoader:
    sampler = LengthGroupedBatchSampler(ds.lengths(), cfg.batch_size, seed=cfg.seed, shuffle=shuffle)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=partial(collate, pad_id=pad_id))


def fit_causal_lm(model: torch.nn.Module, tokenizer: Any, train_rows: Sequence[dict[str, str]],
                  val_rows: Sequence[dict[str, str]], cfg: LMTrainConfig, log_dir: str | Path,
                  name: str = "lm") -> FitResult:
    """Train `model` in place on (prompt, response) rows for `cfg.max_steps` steps; CSV logs under log_dir/name."""
    from .lm_module import CausalLMModule

    cfg.validate()
    if not train_rows:
        raise ValueError("fit_causal_lm got no training rows; check the SFT data paths.")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train = _loader(SFTDataset.from_rows(train_rows, tokenizer, cfg.max_length), cfg, pad_id, shuffle=True)
    val = (_loader(SFTDataset.from_rows(val_rows, tokenizer, cfg.max_length), cfg, pad_id, shuffle=False)
           if val_rows else None)
    seed_everything(cfg.seed)
    module = CausalLMModule(model, cfg)
    run = fit(module, train, stage=name, log_dir=log_dir, name=name, version=0, max_steps=cfg.max_steps, val=val,
              val_every=cfg.val_every or cfg.max_steps, limit_val_batches=cfg.limit_val_batches,
              accelerator=cfg.accelerator, precision=cfg.precision, grad_clip=cfg.grad_clip,
              log_every_n_steps=cfg.log_every_n_steps, progress_bar=cfg.progress_bar, tensorboard=cfg.tensorboard,
              use_distributed_sampler=False)
    model.eval()
    return FitResult(steps=run.steps, tokens=module.tokens_seen, seconds=run.seconds,
                     train_loss=run.metrics["train_loss"], val_loss=run.metrics.get("val_loss"))
