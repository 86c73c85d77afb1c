"""Stage 1, router SFT: L = L_LM + lambda * L_route, as a thin LightningModule over the pure losses.

The router LM and the routing head both train (paper); the frozen experts appear through the cached `SignalTable`
(see `expert_signals`), so no expert is in memory while the router trains, or, with `expert_signals: online`,
through `OnlineExpertSignals`, which runs them (frozen, no grad) on each batch. The same module trains the direct
fine-tuning baseline: given a plain causal LM instead of a `RouterModel`, the loss is L_LM alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
from torch import nn

from ..chat import encode_example
from ..models.router import RouterModel
from ..world import World
from .configs import SFTConfig
# SFTDataset is re-exported: fr_bench.expert_stage imports it from here
from .data import SFTDataset, collate, read_jsonl  # noqa: F401
from .expert_signals import OnlineExpertSignals
from .harness import adamw
from .losses import IGNORE_INDEX, ExpertSignal, lm_loss, routing_loss


def load_sft_examples(world: World, tokenizer: Any, max_length: int, domains: Sequence[str] | None = None,
                      max_examples: int | None = None) -> list[dict[str, Any]]:
    """Encoded (prompt, response) rows of world.sft_data, in domain order; rows whose response is cut away entirely
    by `max_length` are dropped (they carry no loss)."""
    chosen = list(world.sft_data) if domains is None else list(domains)
    unknown = [d for d in chosen if d not in world.sft_data]
    if unknown:
        raise KeyError(f"SFTConfig.domains names {unknown}, which world.sft_data lacks; it has {list(world.sft_data)}.")
    examples = []
    for domain in chosen:
        rows = read_jsonl(world.sft_data[domain])
        for n, row in enumerate(rows[:max_examples]):
            if "prompt" not in row or "response" not in row:
                raise KeyError(f"{world.sft_data[domain]} line {n + 1} lacks 'prompt' or 'response'; SFT data rows "
                               "must have both fields.")
            enc = encode_example(tokenizer, row["prompt"], row["response"], max_length)
            if any(label != IGNORE_INDEX for label in enc["labels"][1:]):
                examples.append({**enc, "domain": domain})
    if not examples:
        raise ValueError(f"no SFT example left for domains {chosen} (max_length={max_length}); check world.sft_data.")
    return examples


def collate_sft(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad sequences and their signals; vocab rows are concatenated in row-major order of the informative mask."""
    batch = collate(items, pad_id)
    if "gold_logps" not in items[0]:
        return batch
    width = batch["input_ids"].shape[1] - 1
    n = items[0]["gold_logps"].shape[-1]
    batch["gold_logps"] = torch.zeros(len(items), width, n)
    batch["informative"] = torch.zeros(len(items), width, dtype=torch.bool)
    for row, it in enumerate(items):
        s = it["gold_logps"].shape[0]
        batch["gold_logps"][row, :s] = it["gold_logps"]
        batch["informative"][row, :s] = it["informative"]
    if "vocab_logps" in items[0]:
        for key in ("vocab_logps", "gold_index", "vocab_valid"):
            if key in items[0]:
                batch[key] = torch.cat([it[key] for it in items])
    return batch


def forward_logits(model: nn.Module, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(LM logits [B, T, V], routing scores [B, T, N] or None for a plain LM)."""
    if isinstance(model, RouterModel):
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits, out.routing_logits
    return model(input_ids=input_ids, attention_mask=attention_mask).logits, None


def sft_losses(logits: torch.Tensor, routing_logits: torch.Tensor | None, batch: dict[str, torch.Tensor],
               cfg: SFTConfig, with_route: bool = True,
               online: OnlineExpertSignals | None = None) -> dict[str, torch.Tensor]:
    """{"loss", "lm_loss"[, "route_loss"]} for one padded SFT batch (shifting happens here). The expert signals are
    the batch's (from the cached table) or, with `online`, computed here from the batch's tokens."""
    lm = lm_loss(logits[:, :-1], batch["labels"][:, 1:])
    if routing_logits is None or not with_route or cfg.lambda_route == 0:
        return {"loss": lm, "lm_loss": lm}
    if online is not None:
        batch = {**batch, **online(batch["input_ids"], batch["attention_mask"], batch["labels"])}
    signal = ExpertSignal(gold_logps=batch["gold_logps"], vocab_logps=batch.get("vocab_logps"),
                          gold_index=batch.get("gold_index"), vocab_valid=batch.get("vocab_valid"))
    route = routing_loss(routing_logits[:, :-1], signal, batch["informative"], cfg.route_loss, cfg.route_weights)
    return {"loss": lm + cfg.lambda_route * route, "lm_loss": lm, "route_loss": route}


class LossHistory:
    """Mixin: per-batch loss values kept on the module (metrics.json, the NaN guard's message) and logged."""

    stage: str = "train"
    last_losses: dict[str, torch.Tensor]
    history: list[dict[str, float]]

    def record(self, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        self.last_losses = losses
        self.history.append({k: float(v.detach()) for k, v in losses.items()})
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=True, on_epoch=False,
                        prog_bar=False, batch_size=batch_size)


class RouterSFT(LossHistory, L.LightningModule):
    """Router SFT (or plain-LM SFT when `model` is not a RouterModel)."""

    def __init__(self, model: nn.Module, cfg: SFTConfig, stage: str = "router_sft",
                 online: OnlineExpertSignals | None = None) -> None:
        super().__init__()
        self.model, self.cfg, self.stage, self.online = model, cfg, stage, online
        self.last_losses, self.history = {}, []
        if isinstance(model, RouterModel) and not cfg.train_lm:
            model.lm.requires_grad_(False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, routing = forward_logits(self.model, batch["input_ids"], batch["attention_mask"])
        losses = sft_losses(logits, routing, batch, self.cfg, online=self.online)
        self.record(losses, batch["input_ids"].shape[0])
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw(self, self.cfg.lr, self.cfg.weight_decay, self.cfg.warmup_steps, self.cfg.max_steps)
