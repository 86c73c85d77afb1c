"""The one training harness: the only place a `lightning.Trainer` is built, and the one optimizer recipe (AdamW with a
per-step warm-up + cosine multiplier). Every stage (router SFT and CDPO, the fine-tuned baseline, the micro world's
LMs, the reward model) trains through `fit`, so a change to how training runs is made once.

The stages differ only in the explicit arguments: the router stages keep the LR constant after warm-up
(`min_lr_ratio=1`) and decay every trainable parameter; the micro LMs decay to `min_lr_ratio` and exempt biases and
norms from weight decay. Lightning is imported when a run starts (it takes seconds), so importing this stays quick.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    import lightning as L
    from torch.utils.data import DataLoader


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear from 1/warmup to 1, then cosine down to `min_ratio` at `total` (1 = constant)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(module: nn.Module, lr: float, weight_decay: float, warmup_steps: int, total_steps: int,
          min_lr_ratio: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
          decay_vectors: bool = True) -> dict[str, Any]:
    """`configure_optimizers` of every stage: AdamW over the parameters that require grad (frozen ones are not even
    in the optimizer), stepped per optimizer step by `warmup_cosine`. `decay_vectors=False` puts biases and norm
    weights (dim < 2) in a group without weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameter: every parameter has requires_grad=False.")
    groups: list[dict[str, Any]] = [{"params": params, "weight_decay": weight_decay}]
    if not decay_vectors:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def seed_everything(seed: int) -> None:
    """Lightning's seeding of python, numpy and torch (imported here, when a run starts)."""
    import lightning as L

    L.seed_everything(seed, verbose=False)


@dataclass
class Fit:
    """What a finished `fit` reports back to its stage."""

    steps: int
    seconds: float
    metrics: dict[str, float]   # Lightning's callback metrics at the end (last logged values)


def fit(module: "L.LightningModule", train: "DataLoader", *, stage: str, log_dir: str | Path, name: str,
        version: str | int, max_steps: int, epochs: int = 0, val: "DataLoader | None" = None,
        val_every: int | None = None, limit_val_batches: int | float = 1.0, accelerator: str = "auto",
        devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1, precision: str = "32-true",
        grad_accum: int = 1, grad_clip: float = 0.0, log_every_n_steps: int = 50, progress_bar: bool = False,
        tensorboard: bool = False, use_distributed_sampler: bool = True) -> Fit:
    """Train `module` on `train` with the NaN guard and CSV logs under log_dir/name/version (plus TensorBoard when
    asked). `epochs` >= 1 bounds the run in epochs, else only `max_steps` does; validation on `val` runs every
    `val_every` steps (None: once per epoch). The module is left in train mode."""
    import lightning as L

    from .guards import NonFiniteLossGuard

    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(str(log_dir), name=name, version=version)]
    if tensorboard:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(str(log_dir), name=name, version=version))
    schedule = {} if val_every is None else {"check_val_every_n_epoch": None, "val_check_interval": val_every}
    trainer = L.Trainer(
        max_epochs=epochs if epochs >= 1 else -1, max_steps=max_steps, accelerator=accelerator, devices=devices,
        strategy=strategy, num_nodes=num_nodes, precision=precision, accumulate_grad_batches=grad_accum,
        gradient_clip_val=grad_clip or None, logger=loggers, callbacks=[NonFiniteLossGuard(stage)],
        log_every_n_steps=log_every_n_steps, enable_checkpointing=False, enable_progress_bar=progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=limit_val_batches,
        use_distributed_sampler=use_distributed_sampler, **schedule)
    start = time.perf_counter()
    module.train()  # from_pretrained models come in eval mode; Lightning keeps module modes as they are
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return Fit(steps=trainer.global_step, seconds=time.perf_counter() - start,
               metrics={k: float(v) for k, v in trainer.callback_metrics.items()})
