"""Prompt-level router for sequence-level collaboration: one expert answers the whole query.

Features: the frozen router-init LM's final hidden states over the prompt, mean-pooled (or the last token's), the
same LM FusionRoute's router starts from, so both routers see the same representation. Head: a linear classifier
(multinomial logistic regression on standardised features), trained full-batch with torch.

Labels (no generation needed): for each SFT row (world.sft_data, the data FusionRoute's SFT uses), the expert whose
mean token log-prob of the gold response is highest, label = argmax_i (1/|y|) Σ_t log π_i(y_t | x, y_<t); the gold
response is encoded exactly as in training (`fr_bench.chat.encode_example`, eos included).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fr_bench.artifacts import register_artifact
from fr_bench.chat import encode_example, format_prompt
from fr_bench.config import ConfigError
from fr_bench.training.data import right_pad
from fr_bench.world import World

HEAD_FILE = "prompt_router.safetensors"
META_FILE = "prompt_router.json"
POOLINGS = ("mean", "last")


@dataclass
class PromptRouterConfig:
    """Training of the prompt classifier; the encoder stays frozen."""

    encoder: str = "router_init"        # router_init | base (world fields) or a checkpoint path
    pooling: str = "mean"               # mean over prompt tokens | last prompt token
    max_rows_per_domain: int | None = 500  # first N rows of each world.sft_data file (the labels cost N_experts passes)
    max_length: int = 1024              # prompt + gold response tokens for the labels (truncated on the right)
    val_fraction: float = 0.1           # rows held out (seeded) to report routing accuracy
    lr: float = 1e-2
    weight_decay: float = 1e-3
    steps: int = 500                    # full-batch AdamW steps on the cached features
    batch_size: int = 8                 # rows per forward when computing labels and features
    dtype: str | None = None            # None = world.dtype
    device: str = "auto"

    def validate(self) -> "PromptRouterConfig":
        if self.pooling not in POOLINGS:
            raise ConfigError(f"PromptRouterConfig.pooling = {self.pooling!r}; use one of {', '.join(POOLINGS)}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"PromptRouterConfig.val_fraction = {self.val_fraction} must be in [0, 1).")
        for key in ("steps", "batch_size", "max_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"PromptRouterConfig.{key} = {getattr(self, key)} must be >= 1.")
        return self

    def encoder_path(self, world: World) -> str:
        return {"router_init": world.router_init, "base": world.base}.get(self.encoder, self.encoder)


# --- shared scoring primitives ---------------------------------------------------------------------------------

@torch.inference_mode()
def mean_response_logprobs(model: nn.Module, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                           pad_id: int, batch_size: int = 8) -> list[float]:
    """Mean log π(y_t | x, y_<t) over the response tokens of each (prompt ids, response ids); −inf for an empty
    response (nothing to score)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        ps, rs = prompts[start:start + batch_size], responses[start:start + batch_size]
        ids, mask = right_pad([list(p) + list(r) for p, r in zip(ps, rs)], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        logp = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
        token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)             # log p of token t+1
        for b, (p, r) in enumerate(zip(ps, rs)):
            n = len(r)
            out.append(token_logp[b, len(p) - 1:len(p) - 1 + n].mean().item() if n else float("-inf"))
    return out


@torch.inference_mode()
def prompt_features(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, pooling: str,
                    batch_size: int = 8) -> torch.Tensor:
    """[P, d] float32 pooled final hidden states of the frozen encoder over each prompt's tokens."""
    device = next(model.parameters()).device
    feats = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = right_pad(prompts[start:start + batch_size], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        if pooling == "mean":
            m = mask.unsqueeze(-1).float()
            feats.append(((hidden * m).sum(1) / m.sum(1)).cpu())
        else:
            feats.append(hidden[torch.arange(ids.shape[0], device=device), mask.sum(1) - 1].cpu())
    return torch.cat(feats)


# --- the classifier --------------------------------------------------------------------------------------------

class PromptClassifier(nn.Module):
    """Standardise features with training-set statistics, then a linear layer to expert logits."""

    def __init__(self, dim: int, n_experts: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, n_experts)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


def fit_classifier(features: torch.Tensor, labels: torch.Tensor, n_experts: int, lr: float, weight_decay: float,
                   steps: int, seed: int = 0) -> PromptClassifier:
    """Full-batch AdamW on cross-entropy (features are cached, so one step is one small matmul)."""
    torch.manual_seed(seed)
    clf = PromptClassifier(features.shape[1], n_experts)
    clf.mean.copy_(features.mean(0))
    clf.std.copy_(features.std(0, unbiased=False).clamp(min=1e-6))
    opt = torch.optim.AdamW(clf.linear.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(clf(features), labels).backward()
        opt.step()
    return clf.eval()


def _accuracy(clf: PromptClassifier, features: torch.Tensor, labels: torch.Tensor) -> float | None:
    if len(labels) == 0:
        return None
    with torch.no_grad():
        return (clf(features).argmax(-1) == labels).float().mean().item()


class PromptRouter:
    """Frozen encoder + trained classifier: `route(prompts)` -> expert index per model-input prompt."""

    def __init__(self, encoder: nn.Module, classifier: PromptClassifier, tokenizer: Any, pooling: str,
                 expert_names: list[str], batch_size: int = 8) -> None:
        self.encoder, self.classifier, self.tokenizer = encoder, classifier, tokenizer
        self.pooling, self.expert_names, self.batch_size = pooling, expert_names, batch_size

    @classmethod
    def from_pretrained(cls, directory: str | Path, tokenizer: Any, dtype: str = "float32",
                        device: str = "cpu") -> "PromptRouter":
        from safetensors.torch import load_file

        from fr_bench.models.loading import load_frozen_lm

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        clf = PromptClassifier(meta["dim"], len(meta["expert_names"]))
        clf.load_state_dict(load_file(directory / HEAD_FILE))
        encoder = load_frozen_lm("prompt-router encoder", meta["encoder"], dtype, device)
        return cls(encoder, clf.eval(), tokenizer, meta["pooling"], meta["expert_names"])

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    @torch.inference_mode()
    def route(self, prompts: Sequence[str]) -> list[int]:
        feats = prompt_features(self.encoder, self.encode(prompts), _pad_id(self.tokenizer), self.pooling,
                                self.batch_size)
        return self.classifier(feats).argmax(-1).tolist()


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# --- training --------------------------------------------------------------------------------------------------

def _sft_rows(world: World, max_rows: int | None) -> list[dict[str, str]]:
    rows = []
    for domain, path in world.sft_data.items():
        with open(path) as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
        for n, row in enumerate(lines[:max_rows]):
            if "prompt" not in row or "response" not in row:
                raise KeyError(f"{path} line {n + 1} lacks 'prompt' or 'response'; world.sft_data rows need both.")
            rows.append({"domain": domain, "prompt": row["prompt"], "response": row["response"]})
    if not rows:
        raise ValueError("world.sft_data holds no rows; the prompt router needs labelled prompts to train on.")
    return rows


def expert_label_logprobs(world: World, rows: Sequence[dict[str, str]], tokenizer: Any, cfg: PromptRouterConfig,
                          dtype: str, device: str) -> torch.Tensor:
    """[R, N] mean gold-response log-prob of every row under every expert (one expert in memory at a time)."""
    from fr_bench.models.loading import load_frozen_lm

    enc = [encode_example(tokenizer, r["prompt"], r["response"], cfg.max_length) for r in rows]
    prompts = [[t for t, lab in zip(e["input_ids"], e["labels"]) if lab == -100] for e in enc]
    responses = [[lab for lab in e["labels"] if lab != -100] for e in enc]
    cols = []
    for name, path in world.experts.items():
        model = load_frozen_lm(f"expert '{name}'", path, dtype, device)
        cols.append(mean_response_logprobs(model, prompts, responses, _pad_id(tokenizer), cfg.batch_size))
        del model
    return torch.tensor(cols).T


def train_prompt_router(world: World, cfg: PromptRouterConfig, out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Label world.sft_data prompts by the best expert, fit the classifier, write it (+ per-row labels.jsonl) to
    `out_dir`; returns the metrics written to prompt_router.json."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from fr_bench.decoding.method import resolve_device
    from fr_bench.models.loading import load_frozen_lm

    cfg.validate()
    out_dir = Path(out_dir)
    dtype, device = cfg.dtype or world.dtype, resolve_device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer)
    rows = _sft_rows(world, cfg.max_rows_per_domain)
    logprobs = expert_label_logprobs(world, rows, tokenizer, cfg, dtype, device)
    labels = logprobs.argmax(-1)

    encoder = load_frozen_lm("prompt-router encoder", cfg.encoder_path(world), dtype, device)
    prompt_ids = [tokenizer(format_prompt(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]
                  for r in rows]
    feats = prompt_features(encoder, prompt_ids, _pad_id(tokenizer), cfg.pooling, cfg.batch_size)

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = int(len(rows) * cfg.val_fraction)
    val, train = torch.tensor(order[:n_val], dtype=torch.long), torch.tensor(order[n_val:], dtype=torch.long)
    clf = fit_classifier(feats[train], labels[train], len(world.experts), cfg.lr, cfg.weight_decay, cfg.steps, seed)

    names = world.expert_names
    counts = torch.bincount(labels, minlength=len(names)).tolist()
    metrics = {"rows": len(rows), "train_rows": len(train), "val_rows": len(val),
               "label_counts": dict(zip(names, counts)),
               "majority_accuracy": max(counts) / len(rows),
               "train_accuracy": _accuracy(clf, feats[train], labels[train]),
               "val_accuracy": _accuracy(clf, feats[val], labels[val])}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, out_dir / HEAD_FILE)
    (out_dir / META_FILE).write_text(json.dumps({
        "encoder": cfg.encoder_path(world), "pooling": cfg.pooling, "dim": feats.shape[1], "expert_names": names,
        "label_rule": "argmax_i mean log-prob of the gold response under expert i", "seed": seed,
        "config": asdict(cfg), "metrics": metrics}, indent=2) + "\n")
    val_set = set(val.tolist())
    (out_dir / "labels.jsonl").write_text("".join(json.dumps({
        "domain": r["domain"], "row": i, "split": "val" if i in val_set else "train", "label": names[int(labels[i])],
        "mean_logprob": dict(zip(names, [round(x, 5) for x in logprobs[i].tolist()]))}) + "\n"
        for i, r in enumerate(rows)))
    return metrics


@register_artifact("prompt_router", config=PromptRouterConfig, description="sequence-level prompt classifier")
def build_prompt_router(world: World, cfg: PromptRouterConfig, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    train_prompt_router(world, cfg, out_dir, seed)
