"""Stage 2, CDPO: DPO of the router against the frozen SFT-stage system, mixed with SFT samples, one optimizer.

What never changes during the stage is computed once, before the first step, by `precompute_pair_tables`:
- e_t, the routing choice at every position of every chosen/rejected sequence under teacher forcing, by the SFT
  router (its head is frozen in this stage, so these are the choices it makes; the LM drifting under the head is the
  paper's design, and keeping e_t fixed makes the expert term an exact constant);
- the selected expert's log-softmax at every response position (form "combined") or its sequence log-prob of the
  response (form "paper"), from the frozen experts, with no graph: no gradient can reach an expert, and no expert
  is in memory while the router trains;
- the reference log-probs of the SFT-stage system (TRL's precompute_ref_log_probs), so the policy equals the
  reference at step 0 bit for bit and the first loss is log 2.

Forms (CDPOConfig.form; docs/training.md):
- combined: log pi(y|x) = sum_t log_softmax(z_{e_t} + z_router)[y_t], reference = the same with the SFT router.
- paper:    DPO of the router LM vs the frozen SFT router LM, plus the stop-gradient bias
            beta * (log pi_expert(y_w) - log pi_expert(y_l)) inside the sigmoid, pi_expert = argmax-routed expert.
- plain:    ordinary DPO of a plain LM (the direct fine-tuning baseline; not a CDPOConfig choice).
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import ConfigError
from ..models.router import RouterModel
from .configs import CDPOConfig, SFTConfig
from .data import SFTDataset, collate
from .expert_signals import ExpertSource, OnlineExpertSignals, open_frozen
from .losses import IGNORE_INDEX, cdpo_loss, combined_logps, sequence_logps
from .harness import adamw
from .sft import LossHistory, collate_sft, forward_logits, sft_losses

FORMS = ("combined", "paper", "plain")


def _batches(seqs: Sequence[dict[str, list[int]]], batch_size: int, pad_id: int, device: torch.device):
    for start in range(0, len(seqs), batch_size):
        idx = list(range(start, min(start + batch_size, len(seqs))))
        batch = collate([seqs[i] for i in idx], pad_id)
        yield idx, {k: v.to(device) for k, v in batch.items()}


def dense_expert_logps(selected: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """[B, T, V] float: row b's stored [R_b, V] log-probs scattered onto its labelled positions (zeros elsewhere).

    `labels` are the shifted labels [B, T]; R_b = number of labelled positions of row b."""
    vocab = selected[0].shape[-1]
    dense = torch.zeros(*labels.shape, vocab, device=labels.device)
    for row, sel in enumerate(selected):
        dense[row, labels[row] != IGNORE_INDEX] = sel.to(labels.device, torch.float32)
    return dense


@torch.no_grad()
def precompute_pair_tables(router: nn.Module, experts: Sequence[ExpertSource], seqs: Sequence[dict[str, list[int]]],
                           form: str, *, batch_size: int = 8, pad_id: int = 0, device: str | torch.device = "cpu",
                           dtype: torch.dtype | None = None, max_gb: float = 8.0) -> dict[str, Any]:
    """Per sequence: routing choices, reference log-prob and the expert term (see the module docstring).

    Returns {"ref_logps": [S], "expert_logps": [S] (sum_t log p_{e_t}(y_t)), "choices": list of [T_i] long,
    "selected": list of [R_i, V] fp16 (form combined only)}. `router` is the SFT-stage system (a RouterModel, or a
    plain LM for form "plain", which needs no experts)."""
    if form not in FORMS:
        raise ValueError(f"form {form!r}: use one of {FORMS}")
    device = torch.device(device)
    was_training = router.training
    router.eval()
    n = len(seqs)
    ref = torch.zeros(n)
    expert_logps = torch.zeros(n)
    choices: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * n
    for idx, b in _batches(seqs, batch_size, pad_id, device):
        logits, routing = forward_logits(router, b["input_ids"], b["attention_mask"])
        labels = b["labels"][:, 1:]
        if routing is not None:
            pick = routing[:, :-1].argmax(-1).cpu()
            for row, i in enumerate(idx):
                choices[i] = pick[row, :len(seqs[i]["input_ids"]) - 1]
        if form != "combined":
            ref[idx] = sequence_logps(logits[:, :-1], labels).cpu()
    if form == "plain":
        router.train(was_training)
        return {"ref_logps": ref, "expert_logps": expert_logps, "choices": None, "selected": None}
    responses = [torch.tensor(s["labels"][1:]) != IGNORE_INDEX for s in seqs]
    selected: list[torch.Tensor] | None = None
    if form == "combined":
        rows = sum(int(r.sum()) for r in responses)
        vocab = router.config.vocab_size
        need_gb = rows * vocab * 2 / 2**30
        if need_gb > max_gb:
            raise ConfigError(f"CDPO form 'combined' would keep {need_gb:.1f} GB of expert log-probs ({rows} response "
                              f"tokens x {vocab} vocab x fp16) > CDPOConfig.max_precompute_gb = {max_gb}. Raise "
                              "max_precompute_gb, use fewer pairs / a smaller max_length, or form 'paper'.")
        selected = [torch.zeros(int(r.sum()), vocab, dtype=torch.float16) for r in responses]
    for e, source in enumerate(experts):
        model = open_frozen(source, device, dtype)
        for idx, b in _batches(seqs, batch_size, pad_id, device):
            logp = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            logp = logp.log_softmax(-1)
            gold = logp.gather(-1, b["labels"][:, 1:].clamp_min(0)[..., None]).squeeze(-1).cpu()
            for row, i in enumerate(idx):
                t = len(seqs[i]["input_ids"]) - 1
                here = responses[i] & (choices[i] == e)
                expert_logps[i] += gold[row, :t][here].sum()
                if selected is not None:
                    selected[i][here[responses[i]]] = logp[row, :t][here.to(device)].half().cpu()
        if model is not source:
            del model
    if selected is not None:
        for idx, b in _batches(seqs, batch_size, pad_id, device):
            logits, _ = forward_logits(router, b["input_ids"], b["attention_mask"])
            labels = b["labels"][:, 1:]
            dense = dense_expert_logps([selected[i] for i in idx], labels)
            ref[idx] = combined_logps(logits[:, :-1], labels, dense).cpu()
    router.train(was_training)
    return {"ref_logps": ref, "expert_logps": expert_logps, "choices": choices, "selected": selected}


def encode_pairs(pairs: Sequence[dict[str, str]], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Chosen sequences then rejected sequences, encoded like SFT data; a pair whose chosen or rejected response is
    cut away entirely by `max_length` is dropped (both log-ratios would be 0: a constant loss)."""
    from ..chat import encode_example

    chosen, rejected = [], []
    for p in pairs:
        c = encode_example(tokenizer, p["prompt"], p["chosen"], max_length)
        r = encode_example(tokenizer, p["prompt"], p["rejected"], max_length)
        if any(x != IGNORE_INDEX for x in c["labels"][1:]) and any(x != IGNORE_INDEX for x in r["labels"][1:]):
            chosen.append(c)
            rejected.append(r)
    return chosen + rejected


class MixedDataset(Dataset):
    """CDPO pairs and SFT samples (about mix_ratio per pair), shuffled together by the loader."""

    def __init__(self, seqs: Sequence[dict[str, list[int]]], tables: dict[str, Any], sft: SFTDataset | None,
                 mix_ratio: float, seed: int) -> None:
        self.seqs, self.tables, self.sft = seqs, tables, sft
        self.n_pairs = len(seqs) // 2
        n_sft = round(mix_ratio * self.n_pairs) if sft is not None else 0
        rng = random.Random(seed)
        picks: list[int] = []
        while sft is not None and len(picks) < n_sft:  # without replacement while the SFT data lasts
            order = list(range(len(sft)))
            rng.shuffle(order)
            picks += order[:n_sft - len(picks)]
        self.items = [("pair", j) for j in range(self.n_pairs)] + [("sft", k) for k in picks]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        kind, j = self.items[i]
        if kind == "sft":
            return {"kind": "sft", **self.sft[j]}
        t, n = self.tables, self.n_pairs
        item = {"kind": "pair", "chosen": self.seqs[j], "rejected": self.seqs[n + j],
                "ref": (t["ref_logps"][j], t["ref_logps"][n + j]),
                "expert": (t["expert_logps"][j], t["expert_logps"][n + j])}
        if t.get("selected") is not None:
            item["selected"] = (t["selected"][j], t["selected"][n + j])
        return item


def collate_mixed(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """One padded batch: chosen rows, rejected rows, then SFT rows; group tensors keep their own widths."""
    pairs = [it for it in items if it["kind"] == "pair"]
    sfts = [it for it in items if it["kind"] == "sft"]
    seqs = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs] + sfts
    batch: dict[str, Any] = collate(seqs, pad_id)
    batch["n_pairs"] = len(pairs)
    if pairs:
        pair_part = collate([p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], pad_id)
        batch["pair_width"] = pair_part["input_ids"].shape[1]
        for key in ("ref", "expert"):
            batch[f"{key}_chosen"] = torch.stack([torch.as_tensor(p[key][0]) for p in pairs])
            batch[f"{key}_rejected"] = torch.stack([torch.as_tensor(p[key][1]) for p in pairs])
        if "selected" in pairs[0]:
            labels = pair_part["labels"][:, 1:]
            batch["pair_expert_logps"] = dense_expert_logps(
                [p["selected"][0] for p in pairs] + [p["selected"][1] for p in pairs], labels)
    if sfts:
        sft_part = collate_sft([{k: v for k, v in s.items() if k != "kind"} for s in sfts], pad_id)
        batch["sft"] = sft_part
    return batch


class RouterCDPO(LossHistory, L.LightningModule):
    """CDPO (or plain DPO) mixed with SFT samples. Only the router LM trains: the routing head is frozen here."""

    def __init__(self, model: nn.Module, cfg: CDPOConfig, sft_cfg: SFTConfig, form: str | None = None,
                 stage: str = "router_cdpo", online: OnlineExpertSignals | None = None) -> None:
        super().__init__()
        self.model, self.cfg, self.sft_cfg, self.stage, self.online = model, cfg, sft_cfg, stage, online
        self.form = form or cfg.form
        if self.form not in FORMS:
            raise ValueError(f"form {self.form!r}: use one of {FORMS}")
        if (self.form == "plain") == isinstance(model, RouterModel):
            raise ValueError(f"form {self.form!r} does not fit a {type(model).__name__}: 'plain' is for a plain LM, "
                             "'combined'/'paper' for a RouterModel.")
        if isinstance(model, RouterModel):
            model.head.requires_grad_(False)
        self.last_losses, self.history = {}, []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits, routing = forward_logits(self.model, batch["input_ids"], batch["attention_mask"])
        n_p = batch["n_pairs"]
        n_s = batch["input_ids"].shape[0] - 2 * n_p
        losses: dict[str, torch.Tensor] = {}
        total = logits.new_zeros(())
        if n_p:
            width = batch["pair_width"]
            labels = batch["labels"][:2 * n_p, 1:width]
            pair_logits = logits[:2 * n_p, :width - 1]
            if self.form == "combined":
                logps = combined_logps(pair_logits, labels, batch["pair_expert_logps"])
            else:
                logps = sequence_logps(pair_logits, labels)
            bias = None
            if self.form == "paper":
                bias = self.cfg.beta * (batch["expert_chosen"] - batch["expert_rejected"])
            per_pair, chosen_r, rejected_r = cdpo_loss(logps[:n_p], logps[n_p:], batch["ref_chosen"],
                                                       batch["ref_rejected"], self.cfg.beta, bias)
            losses["cdpo_loss"] = per_pair.mean()
            total = total + n_p * losses["cdpo_loss"]
            self.log_dict({"train/reward_margin": (chosen_r - rejected_r).mean(),
                           "train/reward_accuracy": (chosen_r > rejected_r).float().mean()},
                          on_step=True, on_epoch=False, batch_size=n_p)
        if n_s:
            sub = batch["sft"]
            width = sub["input_ids"].shape[1]
            sft = sft_losses(logits[2 * n_p:, :width], None if routing is None else routing[2 * n_p:, :width], sub,
                             self.sft_cfg, with_route=self.cfg.mix_sft_loss == "lm+route", online=self.online)
            losses.update({f"sft_{k}" if k == "loss" else k: v for k, v in sft.items()})
            total = total + n_s * sft["loss"]
        losses = {"loss": total / (n_p + n_s), **losses}
        self.record(losses, n_p + n_s)
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw(self, self.cfg.lr, self.cfg.weight_decay, self.cfg.warmup_steps, self.cfg.max_steps)

