"""Configs of the two FusionRoute training stages (and the direct fine-tuning baseline, which reuses them).

Every detail the paper leaves open is a key here, with the paper's value (when it states one) as the default; see
docs/training.md for the formulas each switch selects. YAML files and `key=value` overrides fill these in through
`fr_bench.config.load_config`; `validate()` rejects combinations that have no defined meaning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError

ROUTE_LOSSES = ("paper_logmix", "mixture", "argmax")
ROUTE_WEIGHTS = ("softmax", "raw")
CDPO_FORMS = ("combined", "paper")
MIX_SFT_LOSSES = ("lm+route", "lm")
EXPERT_SIGNALS = ("auto", "cache", "online")
# `expert_signals: auto` caches up to this vocabulary size: 3 experts x 8192 x 2 B = 48 kB per informative position.
AUTO_CACHE_MAX_VOCAB = 8192


def _check_choice(cls: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{cls}.{key} = {value!r} is not one of {', '.join(map(repr, choices))}; pick one of those.")


@dataclass
class SFTConfig:
    """Stage 1: router SFT, loss = L_LM + lambda_route * L_route (L_route on informative positions only)."""

    lr: float = 1e-5                      # paper: 1e-5; a randomly initialised micro world needs ~1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0                 # linear warm-up, then constant
    epochs: int = 1                       # paper: 1 epoch
    max_steps: int = -1                   # > 0 caps optimizer steps (overrides epochs when reached first)
    batch_size: int = 8
    grad_accum: int = 1
    grad_clip: float = 1.0                # 0 disables clipping
    max_length: int = 1024                # prompt + response tokens, truncated on the right
    max_examples: int | None = None       # per domain; None = all rows of world.sft_data[domain]
    domains: list[str] | None = None      # subset of world.sft_data; None = all domains
    lambda_route: float = 1.0 / 3.0       # paper: 1/3
    route_loss: str = "paper_logmix"      # paper_logmix | mixture | argmax (docs/training.md)
    route_weights: str = "softmax"        # softmax(head scores) or the raw head scores (paper: "output of the linear layer")
    route_vocab_topk: int = 0             # paper_logmix only: 0 = exact full-vocab log-softmax; k > 0 = softmax over
    #                                       the union of the experts' top-k tokens and the gold token (bounded cache)
    train_lm: bool = True                 # paper: the whole router LM trains; False = routing head only
    precision: str = "32-true"            # Lightning precision, e.g. bf16-mixed on GPU
    accelerator: str = "auto"
    devices: str = "auto"                 # Lightning Trainer devices / strategy / num_nodes (the sweep sets these)
    strategy: str = "auto"
    num_nodes: int = 1
    signal_batch_size: int = 8            # batch size of the one-off frozen-expert pass that builds the signal cache
    expert_signals: str = "auto"          # cache (one-off pass, on disk) | online (expert forwards every step, exact,
    #                                       no disk) | auto: online for full-vocab paper_logmix above 8192 tokens
    seed: int = 0
    log_every_n_steps: int = 1

    def validate(self) -> "SFTConfig":
        _check_choice("SFTConfig", "route_loss", self.route_loss, ROUTE_LOSSES)
        _check_choice("SFTConfig", "route_weights", self.route_weights, ROUTE_WEIGHTS)
        if self.route_weights == "raw" and self.route_loss != "paper_logmix":
            raise ConfigError(f"SFTConfig.route_weights = 'raw' is only defined for route_loss 'paper_logmix' "
                              f"(route_loss {self.route_loss!r} needs a probability vector); set route_weights=softmax.")
        if self.route_vocab_topk < 0:
            raise ConfigError(f"SFTConfig.route_vocab_topk = {self.route_vocab_topk} must be >= 0 (0 = full vocab).")
        if self.lambda_route < 0:
            raise ConfigError(f"SFTConfig.lambda_route = {self.lambda_route} must be >= 0.")
        for key in ("batch_size", "grad_accum", "max_length", "signal_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"SFTConfig.{key} = {getattr(self, key)} must be >= 1.")
        if self.epochs < 1 and self.max_steps <= 0:
            raise ConfigError("SFTConfig: set epochs >= 1 or max_steps > 0, otherwise nothing trains.")
        _check_choice("SFTConfig", "expert_signals", self.expert_signals, EXPERT_SIGNALS)
        return self

    def signals_online(self, vocab_size: int) -> bool:
        """Whether the experts' signals are computed per batch (True) or read from the on-disk table (False)."""
        if self.expert_signals != "auto":
            return self.expert_signals == "online"
        return self.needs_vocab_signal and self.route_vocab_topk == 0 and vocab_size > AUTO_CACHE_MAX_VOCAB

    @property
    def needs_vocab_signal(self) -> bool:
        return self.route_loss == "paper_logmix" and self.lambda_route > 0


@dataclass
class PairsConfig:
    """How preference pairs are made: sampled from the stage-1 system and labelled by the domain verifiers, or read."""

    source: str = "sample"                # sample (micro world: verifiers label samples) | file (JSONL / Hub dataset)
    n_samples: int = 4                    # samples per prompt
    temperature: float = 1.0
    batch_size: int = 32                  # prompts decoded together while sampling (tiny models: bigger is faster)
    max_new_tokens: int | None = None     # None = the domain task's max_new_tokens
    max_prompts: int | None = None        # per domain; None = all rows of world.pref_prompts[domain]
    pairs_per_prompt: int = 1
    max_pairs: int | None = None          # overall cap after building (a seeded shuffle picks which)
    gold_as_chosen: bool = False          # prompts with no correct sample use the row's gold response as chosen
    gold_field: str = "response"          # the row field holding the gold response for gold_as_chosen
    path: str | None = None               # source=file: JSONL path or Hub dataset name
    split: str = "train"
    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"

    def validate(self) -> "PairsConfig":
        _check_choice("PairsConfig", "source", self.source, ("sample", "file"))
        if self.source == "file" and not self.path:
            raise ConfigError("pairs.source = 'file' needs pairs.path (a JSONL file or Hub dataset with "
                              "prompt/chosen/rejected columns).")
        if self.batch_size < 1:
            raise ConfigError(f"pairs.batch_size = {self.batch_size} must be >= 1.")
        if self.source == "sample" and self.n_samples < 2:
            raise ConfigError(f"pairs.n_samples = {self.n_samples}: need >= 2 samples per prompt to find a "
                              "correct and an incorrect one.")
        return self


@dataclass
class CDPOConfig:
    """Stage 2: complemented DPO on preference pairs, mixed 1:mix_ratio with SFT samples under one optimizer."""

    form: str = "paper"                   # paper: router-LM DPO + stop-gradient expert bias (the paper's CDPO) |
    #                                       combined: DPO of log_softmax(z_e + z_r), fr_bench's variant; docs/training.md
    beta: float = 0.1                     # paper: 0.1
    lr: float = 1e-6                      # not stated in the paper
    weight_decay: float = 0.0
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int = -1
    batch_size: int = 8                   # items per batch; an item is one pair or one SFT sample
    grad_accum: int = 1
    grad_clip: float = 1.0
    max_length: int = 1024
    mix_ratio: float = 1.0                # SFT samples per CDPO pair (paper: 1:1); 0 = CDPO pairs only
    mix_sft_loss: str = "lm+route"        # loss of the mixed-in SFT samples; the paper's text is ambiguous
    max_precompute_gb: float = 8.0        # form=combined keeps the selected expert's log-softmax per response token
    pairs: PairsConfig = field(default_factory=PairsConfig)
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precompute_batch_size: int = 8
    seed: int = 0
    log_every_n_steps: int = 1

    def validate(self) -> "CDPOConfig":
        _check_choice("CDPOConfig", "form", self.form, CDPO_FORMS)
        _check_choice("CDPOConfig", "mix_sft_loss", self.mix_sft_loss, MIX_SFT_LOSSES)
        if self.beta <= 0:
            raise ConfigError(f"CDPOConfig.beta = {self.beta} must be > 0.")
        if self.mix_ratio < 0:
            raise ConfigError(f"CDPOConfig.mix_ratio = {self.mix_ratio} must be >= 0.")
        for key in ("batch_size", "grad_accum", "max_length", "precompute_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"CDPOConfig.{key} = {getattr(self, key)} must be >= 1.")
        if self.epochs < 1 and self.max_steps <= 0:
            raise ConfigError("CDPOConfig: set epochs >= 1 or max_steps > 0, otherwise nothing trains.")
        self.pairs.validate()
        return self


@dataclass
class FinetuneConfig:
    """The direct fine-tuning baseline: the router's init, the same SFT then DPO recipe, no routing (paper)."""

    sft: SFTConfig = field(default_factory=SFTConfig)     # route keys are unused (there is no routing head)
    dpo: CDPOConfig = field(default_factory=CDPOConfig)   # form is unused: plain DPO of the LM
    pairs_from: str = "self"              # self: pairs sampled from the fine-tuned SFT model (paper's recipe) |
    #                                       given: the pairs handed in (e.g. the FusionRoute SFT system's pairs)
    devices: str = "auto"                 # copied into sft/dpo by preference_stages.train_finetuned_from_config
    strategy: str = "auto"
    num_nodes: int = 1

    def validate(self) -> "FinetuneConfig":
        _check_choice("FinetuneConfig", "pairs_from", self.pairs_from, ("self", "given"))
        self.sft.validate()
        self.dpo.validate()
        return self
