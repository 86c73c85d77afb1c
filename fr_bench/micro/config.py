"""The micro world's config: data sizes, tokenizer, model shape, the base and expert training budgets, evaluation.

Every key is listed here with its default; `experiments/micro.yaml` and `key=value` overrides only fill them in.
Budgets are optimizer steps, never seconds, so the same config always builds the same world.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..training.lm import LMTrainConfig
from .generators import DOMAINS

EXPERT_DOMAINS = ("math", "code", "if")


@dataclass
class MicroDataConfig:
    seed: int = 0
    n_train: int = 4000       # rows per domain the base and the experts train on
    n_router: int = 300       # more rows per domain, held out: router SFT, direct fine-tuning, preference prompts
    n_validation: int = 200   # rows per domain: validation loss during training and the specialisation table
    n_test: int = 200         # rows per domain in the evaluation tasks (read by the sweep only)


@dataclass
class MicroTokenizerConfig:
    vocab_size: int = 1024
    numbers: str = "isolate"  # bpe | isolate (a number is one token wherever it stands) | digits (one per digit)
    cross_word: bool = True   # merges may span spaces: fixed instruction text costs a token or two


@dataclass
class MicroModelConfig:
    """LlamaConfig fields of every micro model (the experts share the base's shape: they are fine-tuned from it)."""

    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    init_seed: int = 0


@dataclass
class MicroEvalConfig:
    batch_size: int = 50
    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"math": 48, "code": 48, "if": 160, "general": 16, "mixed": 96})


@dataclass
class MicroConfig:
    data: MicroDataConfig = field(default_factory=MicroDataConfig)
    tokenizer: MicroTokenizerConfig = field(default_factory=MicroTokenizerConfig)
    model: MicroModelConfig = field(default_factory=MicroModelConfig)
    # Defaults as in experiments/micro.yaml, except that the step budgets live only there: a config that sets
    # expert.max_steps gets exactly that. The base's batch 16 and 100 warm-up steps leave the early plateau at the
    # same point on every seed and kernel set (docs/micro_world.md); the experts' batch 8 learns more per token.
    base: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(max_steps=1000, batch_size=16, warmup_steps=100))
    # The domains the base trains on (default all; experiments/micro.yaml leaves out "mixed", so that no single model
    # sees a whole mixed response and only the experts' segments, expert_mixed_segments, teach its parts).
    base_domains: list[str] = field(default_factory=lambda: list(DOMAINS))
    expert: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(max_steps=900, batch_size=8, warmup_steps=30))
    expert_steps: dict[str, int] = field(default_factory=dict)  # per-domain override of expert.max_steps
    # Replay: each expert also trains on this many rows of every other replayed domain per row of its own, so it
    # stays fluent outside its domain (as fine-tunes of one instruct model do). 0 = its own domain only.
    expert_replay: float = 0.0
    replay_domains: list[str] = field(default_factory=lambda: ["math", "code", "if", "general"])
    # Each expert also trains on its own segments of the mixed rows (the other experts' segments are context, not
    # targets), so it can write its part inside a mixed response without learning the other parts.
    expert_mixed_segments: bool = False
    eval: MicroEvalConfig = field(default_factory=MicroEvalConfig)
    # The model the router (and the direct fine-tuning baseline) starts from: base | expert_math | expert_code |
    # expert_if. The paper initialises its router from the instruction-following expert.
    router_init: str = "expert_if"
    threads: int = 1  # torch intra-op threads (0 = torch's default); one is fastest for these models on a shared CPU

    def validate(self) -> "MicroConfig":
        unknown = sorted(set(self.expert_steps) - set(EXPERT_DOMAINS))
        if unknown:
            raise ConfigError(f"expert_steps has unknown domain(s) {unknown}; use {', '.join(EXPERT_DOMAINS)}.")
        if self.expert_replay < 0:
            raise ConfigError(f"expert_replay = {self.expert_replay} must be >= 0 (0 = no replay).")
        unknown = sorted(set(self.replay_domains) - set(DOMAINS))
        if unknown:
            raise ConfigError(f"replay_domains has unknown domain(s) {unknown}; use {', '.join(DOMAINS)}.")
        unknown = sorted(set(self.base_domains) - set(DOMAINS))
        if unknown or not self.base_domains:
            raise ConfigError(f"base_domains = {self.base_domains} must name one or more of {', '.join(DOMAINS)}.")
        missing = sorted(set(DOMAINS) - set(self.eval.max_new_tokens))
        if missing:
            raise ConfigError(f"eval.max_new_tokens lacks domain(s) {missing}; give a budget for each.")
        if self.data.n_train < 1 or self.data.n_test < 1:
            raise ConfigError("data.n_train and data.n_test must be >= 1.")
        inits = ("base", *(f"expert_{d}" for d in EXPERT_DOMAINS))
        if self.router_init not in inits:
            raise ConfigError(f"router_init = {self.router_init!r} is not one of {', '.join(inits)}.")
        self.base.validate()
        self.expert.validate()
        return self

    def for_seed(self, seed: int) -> "MicroConfig":
        """The same world trained with every training seed (weight init, base and expert batch order) offset by
        `seed`. The data, and so every evaluation row, stays the same: seeds differ in training only, and a paired
        test can compare two methods row by row within a seed."""
        from dataclasses import replace

        return replace(self, model=replace(self.model, init_seed=self.model.init_seed + seed),
                       base=replace(self.base, seed=self.base.seed + seed),
                       expert=replace(self.expert, seed=self.expert.seed + seed))

    def expert_train(self, domain: str) -> LMTrainConfig:
        from dataclasses import replace

        return replace(self.expert, max_steps=self.expert_steps.get(domain, self.expert.max_steps))
