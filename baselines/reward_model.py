"""The reward model of Sequence Selection and Collab: a pretrained one from a path, or a Bradley–Terry model trained
on the preference pairs CDPO uses.

The paper's Sequence Selection and Collab baselines score candidates with a public reward model. `path` loads one:
an HF sequence classifier with one output (AutoModelForSequenceClassification, e.g. a Skywork or ArmoRM-style RM) or
a causal LM with a value head (TRL's AutoModelForCausalLMWithValueHead checkpoints: the LM's weights plus
`v_head.summary.weight/bias`); the reward is read at the last token of prompt + response either way. The micro world
has none, so by default we train one the standard way (InstructGPT / TRL RewardTrainer): a sequence classifier with
one output, initialised from the world's base LM, fitted with −log σ(r(x, y_w) − r(x, y_l)). It sees exactly the
pairs CDPO sees, so neither side gets extra supervision.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fr_bench.artifacts import register_artifact
from fr_bench.chat import format_prompt
from fr_bench.config import ConfigError
from fr_bench.training.data import PAIRS_FILE, right_pad
from fr_bench.training.harness import adamw, fit, seed_everything
from fr_bench.world import World


@dataclass
class RewardModelConfig:
    """Training of the reward model; one item of a batch is one (chosen, rejected) pair."""

    path: str | None = None             # a pretrained reward model to use as is (nothing trained, no pairs built)
    head: str = "auto"                  # with path: auto | sequence_classification | value_head
    init: str = "base"                  # base | router_init (world fields) or a checkpoint path
    lr: float = 1e-5                    # a randomly initialised micro world needs ~1e-3
    weight_decay: float = 0.0
    epochs: int = 1
    max_steps: int = -1                 # > 0 caps optimizer steps (overrides epochs when reached first)
    batch_size: int = 8
    grad_accum: int = 1
    grad_clip: float = 1.0              # 0 disables clipping
    max_length: int = 1024              # prompt + response tokens; longer inputs lose the *start* of the prompt
    val_fraction: float = 0.1           # pairs held out (seeded) to report pairwise accuracy
    precision: str = "32-true"          # Lightning precision, e.g. bf16-mixed on GPU
    accelerator: str = "auto"
    log_every_n_steps: int = 10

    def validate(self) -> "RewardModelConfig":
        if self.head not in REWARD_HEADS:
            raise ConfigError(f"RewardModelConfig.head = {self.head!r}; use one of {', '.join(REWARD_HEADS)}.")
        if self.path is not None and not (Path(self.path).expanduser() / "config.json").is_file():
            raise ConfigError(f"RewardModelConfig.path = {self.path!r} is not a model folder (no config.json); point "
                              f"it at a save_pretrained folder of the reward model, or remove it to train one.")
        for key in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"RewardModelConfig.{key} = {getattr(self, key)} must be >= 1.")
        if self.lr <= 0:
            raise ConfigError(f"RewardModelConfig.lr = {self.lr} must be > 0.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"RewardModelConfig.val_fraction = {self.val_fraction} must be in [0, 1).")
        if self.epochs < 1 and self.max_steps <= 0:
            raise ConfigError("RewardModelConfig: set epochs >= 1 or max_steps > 0, otherwise nothing trains.")
        return self

    def init_path(self, world: World) -> str:
        return {"base": world.base, "router_init": world.router_init}.get(self.init, self.init)


REWARD_HEADS = ("auto", "sequence_classification", "value_head")
VALUE_HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean −log σ(r_w − r_l) over pairs."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def encode(tokenizer: Any, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids of the model-input `prompt` followed by `response`, keeping the last `max_length` (the reward is
    read at the final token, so the response end must survive truncation)."""
    ids = (tokenizer(prompt, add_special_tokens=False)["input_ids"]
           + tokenizer(response, add_special_tokens=False)["input_ids"])
    return ids[-max_length:] if ids else [tokenizer.eos_token_id]


def last_token_rewards(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scalar rewards [B] of a sequence classifier (`base_model` + `score` head) read at each row's last real token
    (right padding); pooling by the attention mask, not by the pad id, so an eos-as-pad tokenizer is safe."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = attention_mask.sum(dim=1) - 1
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return model.score(pooled).squeeze(-1).float()


class RewardModel:
    """A trained reward model: `score(prompts, responses)`, prompts given as model input (chat-formatted)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_length: int = 1024) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def pad_id(self) -> int:
        t = self.tokenizer
        return t.pad_token_id if t.pad_token_id is not None else t.eos_token_id

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: str = "float32",
                        device: str | torch.device = "cpu") -> "RewardModel":
        """The `reward_model` artifact: a trained model in `directory`, or the pretrained one its
        `reward_model.json` names (`source`, `head`)."""
        from transformers import AutoTokenizer

        from fr_bench.models.loading import freeze

        directory = Path(directory)
        meta = json.loads((directory / "reward_model.json").read_text())
        source = Path(meta.get("source") or directory)
        model = load_reward_backbone(source, meta.get("head", "sequence_classification"), dtype)
        return cls(freeze(model.to(device)), AutoTokenizer.from_pretrained(source), meta["max_length"])

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(responses)} responses; pass one each.")
        seqs = [encode(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        device = next(self.model.parameters()).device
        out: list[float] = []
        for start in range(0, len(seqs), batch_size):
            ids, mask = right_pad(seqs[start:start + batch_size], self.pad_id)
            out += last_token_rewards(self.model, ids.to(device), mask.to(device)).tolist()
        return out

    def token_counts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[int]:
        """Tokens `score` runs through the model for each pair (for cost accounting)."""
        return [len(encode(self.tokenizer, p, r, self.max_length)) for p, r in zip(prompts, responses)]


class ValueHeadRewardModel(torch.nn.Module):
    """A causal LM's backbone with a linear value head, shaped like a sequence classifier (`base_model`, `score`,
    `config`) so `last_token_rewards` and the Collab engine read it the same way."""

    def __init__(self, lm: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.backbone = lm.base_model
        self.config = lm.config
        self.score = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            self.score.weight.copy_(weight)
            if bias is not None:
                self.score.bias.copy_(bias)

    @property
    def base_model(self) -> torch.nn.Module:
        return self.backbone


def _value_head_tensors(source: Path) -> dict[str, torch.Tensor]:
    """`v_head.*` tensors from the checkpoint's safetensors or PyTorch files (TRL saves them beside the LM's)."""
    found: dict[str, torch.Tensor] = {}
    for file in sorted(source.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(file), "pt") as fh:
            found.update({k: fh.get_tensor(k) for k in fh.keys() if k in VALUE_HEAD_KEYS})
    for file in sorted(source.glob("pytorch_model*.bin")):
        state = torch.load(file, map_location="cpu", weights_only=True)
        found.update({k: v for k, v in state.items() if k in VALUE_HEAD_KEYS})
    return found


def load_reward_backbone(source: Path, head: str, dtype: str = "float32") -> torch.nn.Module:
    """A reward model with `base_model` + one-output `score` head from a pretrained folder. `head: auto` takes a
    `*ForSequenceClassification` architecture as a classifier and a checkpoint holding `v_head.summary.weight` as a
    causal LM with a value head."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from fr_bench.models.loading import torch_dtype

    if head == "auto":
        archs = AutoConfig.from_pretrained(source).architectures or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            head = "sequence_classification"
        elif VALUE_HEAD_KEYS[0] in _value_head_tensors(source):
            head = "value_head"
        else:
            raise ValueError(f"reward model {source}: neither a sequence classifier (architectures {archs}) nor a "
                             f"causal LM with a value head ({VALUE_HEAD_KEYS[0]} in its weights); set "
                             f"artifacts.reward_model.head, or use such a model.")
    if head == "value_head":
        tensors = _value_head_tensors(source)
        if VALUE_HEAD_KEYS[0] not in tensors:
            raise ValueError(f"reward model {source}: head=value_head but no {VALUE_HEAD_KEYS[0]} in its weights.")
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype(dtype))
        weight = tensors[VALUE_HEAD_KEYS[0]].to(lm.dtype)
        bias = tensors.get(VALUE_HEAD_KEYS[1])
        model: torch.nn.Module = ValueHeadRewardModel(lm, weight, None if bias is None else bias.to(lm.dtype))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch_dtype(dtype))
        if not hasattr(model, "score"):
            raise ValueError(f"reward model {source}: {type(model).__name__} has no `score` head; fr_bench reads "
                             f"rewards from `score` (Llama, Gemma, Mistral, Qwen classifiers have one).")
    outputs = model.score.weight.shape[0]
    if outputs != 1:
        raise ValueError(f"reward model {source}: its head has {outputs} outputs; a reward model has one.")
    return model


def use_pretrained_reward_model(cfg: RewardModelConfig, out_dir: str | Path) -> dict[str, Any]:
    """The artifact for `cfg.path`: a `reward_model.json` naming the model (it is read in place, not copied), after
    checking that it loads as a one-output reward model."""
    cfg.validate()
    source = Path(cfg.path).expanduser().resolve()
    model = load_reward_backbone(source, cfg.head)
    head = "value_head" if isinstance(model, ValueHeadRewardModel) else "sequence_classification"
    meta = {"max_length": cfg.max_length, "source": str(source), "head": head}
    (Path(out_dir) / "reward_model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --- training --------------------------------------------------------------------------------------------------

def read_pairs(path: str | Path) -> list[dict[str, str]]:
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
            if missing:
                raise KeyError(f"{path} line {i + 1} lacks {missing}: preference rows need prompt/chosen/rejected "
                               f"(got keys {sorted(row)}).")
            rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
    if not rows:
        raise ValueError(f"{path} holds no preference pairs; the reward model has nothing to learn from.")
    return rows


def encode_pairs(rows: Sequence[dict[str, str]], tokenizer: Any, max_length: int) -> list[tuple[list[int], list[int]]]:
    """Pairs from the JSONL (prompt = the raw user message) -> (chosen ids, rejected ids) after chat formatting."""
    out = []
    for r in rows:
        prompt = format_prompt(tokenizer, r["prompt"])
        out.append((encode(tokenizer, prompt, r["chosen"], max_length),
                    encode(tokenizer, prompt, r["rejected"], max_length)))
    return out


def collate_pairs(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch of 2B rows: the B chosen sequences, then the B rejected ones."""
    ids, mask = right_pad([c for c, _ in pairs] + [r for _, r in pairs], pad_id)
    return {"input_ids": ids, "attention_mask": mask}


class RewardModule(L.LightningModule):
    """Wires pair batches to `bradley_terry_loss`; logs loss and pairwise accuracy."""

    def __init__(self, model: torch.nn.Module, cfg: RewardModelConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        rewards = last_token_rewards(self.model, batch["input_ids"], batch["attention_mask"])
        chosen, rejected = rewards.chunk(2)
        loss = bradley_terry_loss(chosen, rejected)
        n = chosen.shape[0]
        self.log(f"{prefix}_loss", loss, prog_bar=True, batch_size=n)
        self.log(f"{prefix}_acc", (chosen > rejected).float().mean(), batch_size=n)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        return adamw(self, self.cfg.lr, self.cfg.weight_decay, warmup_steps=0, total_steps=self.cfg.max_steps)


def pairwise_accuracy(rm: RewardModel, pairs: Sequence[dict[str, str]], batch_size: int = 8) -> float:
    """Share of pairs with r(chosen) > r(rejected); prompts are raw user messages as in the pairs JSONL."""
    prompts = [format_prompt(rm.tokenizer, r["prompt"]) for r in pairs]
    chosen = rm.score(prompts, [r["chosen"] for r in pairs], batch_size)
    rejected = rm.score(prompts, [r["rejected"] for r in pairs], batch_size)
    return sum(c > r for c, r in zip(chosen, rejected)) / max(len(pairs), 1)


def train_reward_model(world: World, pairs_path: str | Path, cfg: RewardModelConfig, out_dir: str | Path,
                       seed: int = 0) -> dict[str, Any]:
    """Fit the reward model on `pairs_path` and write it (save_pretrained + tokenizer + reward_model.json) to
    `out_dir`; returns the metrics written there (pairwise accuracy on the train and held-out pairs)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cfg.validate()
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = read_pairs(pairs_path)
    random.Random(seed).shuffle(rows)
    n_val = int(len(rows) * cfg.val_fraction)
    val_rows, train_rows = rows[:n_val], rows[n_val:]

    seed_everything(seed)
    model = AutoModelForSequenceClassification.from_pretrained(cfg.init_path(world), num_labels=1,
                                                               dtype=torch.float32)
    model.config.pad_token_id = pad_id
    loader = partial(DataLoader, batch_size=cfg.batch_size, collate_fn=partial(collate_pairs, pad_id=pad_id))
    train = loader(encode_pairs(train_rows, tokenizer, cfg.max_length), shuffle=True,
                   generator=torch.Generator().manual_seed(seed))
    val = loader(encode_pairs(val_rows, tokenizer, cfg.max_length)) if val_rows else None
    run = fit(RewardModule(model, cfg), train, stage="reward_model", log_dir=out_dir, name="logs", version=0,
              max_steps=cfg.max_steps, epochs=cfg.epochs, val=val, accelerator=cfg.accelerator,
              precision=cfg.precision, grad_accum=cfg.grad_accum, grad_clip=cfg.grad_clip,
              log_every_n_steps=cfg.log_every_n_steps)
    model.eval()

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    rm = RewardModel(model, tokenizer, cfg.max_length)
    metrics = {"train_pairs": len(train_rows), "val_pairs": len(val_rows), "steps": run.steps,
               "seconds": round(run.seconds, 2), "train_accuracy": pairwise_accuracy(rm, train_rows, cfg.batch_size),
               "val_accuracy": pairwise_accuracy(rm, val_rows, cfg.batch_size) if val_rows else None}
    (out_dir / "reward_model.json").write_text(json.dumps(
        {"max_length": cfg.max_length, "init": cfg.init_path(world), "pairs": str(pairs_path), "seed": seed,
         "config": asdict(cfg), "metrics": metrics}, indent=2) + "\n")
    return metrics


@register_artifact("reward_model", config=RewardModelConfig, conditional_deps=(("pref_pairs", "path", None),),
                   description="Bradley-Terry reward model on CDPO's pairs, or a pretrained one (path)")
def build_reward_model(world: World, cfg: RewardModelConfig, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    if cfg.path is not None:
        use_pretrained_reward_model(cfg, out_dir)
    else:
        train_reward_model(world, deps["pref_pairs"] / PAIRS_FILE, cfg, out_dir, seed)
