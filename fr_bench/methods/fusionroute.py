"""FusionRoute and its two ablations as methods: a trained router + the frozen experts, decoded by the engine.

- `fusionroute`: router after SFT then CDPO, complementary logits on (the full method).
- `fusionroute_no_complement`: same router, logits of the selected expert only (the paper's ablation). It routes
  with FusionRoute's own CDPO router by default, so the row differs from FusionRoute in one factor, the
  complementary logits (CDPO freezes the head but moves the LM under it, so the two routers can pick differently);
  `stages: [sft]` routes with the SFT router instead.
- `fusionroute_sft_only`: router after SFT only, complementary logits on (the CDPO ablation).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..decoding.engine import DecodeEngine
from ..decoding.method import DecodeOptions, EngineMethod
from ..decoding.policies import POLICIES
from ..models.expert_pool import ExpertPool
from ..models.loading import check_same_vocabulary, checkpoint_location, freeze, torch_dtype
from ..models.router import RouterModel
from . import register_method

STAGE_ARTIFACTS = {("sft",): "router_sft", ("sft", "cdpo"): "router_cdpo"}


@dataclass
class FusionRouteOptions(DecodeOptions):
    complement: bool = True            # add the router's logits to the selected expert's (False = ablation)
    stages: list[str] = field(default_factory=lambda: ["sft", "cdpo"])   # which trained router to use
    # The decode policy (a name in fr_bench.decoding.policies.POLICIES, built-in or from a plug-in), built as
    # cls(router=0, experts=[1..N], **policy_options); `fusionroute` takes `complement` from the key above.
    policy: str = "fusionroute"
    policy_options: dict[str, Any] = field(default_factory=dict)


@register_method("fusionroute")
class FusionRouteMethod(EngineMethod):
    options_schema = FusionRouteOptions
    defaults: dict = {}

    def __init__(self, world, options=None, seed: int = 0) -> None:
        super().__init__(world, {**self.defaults, **(options or {})}, seed)
        if tuple(self.cfg.stages) not in STAGE_ARTIFACTS:
            raise ConfigError(f"method '{self.name}': stages {self.cfg.stages} are not a trained router; use one of "
                              f"{[list(s) for s in STAGE_ARTIFACTS]}")
        try:
            inspect.signature(self.policy_class()).bind(router=0, experts=[], **self.policy_kwargs())
        except KeyError as exc:
            raise ConfigError(f"method '{self.name}': policy: {exc.args[0]}") from exc
        except TypeError as exc:
            raise ConfigError(f"method '{self.name}': policy_options {dict(self.cfg.policy_options)} do not fit "
                              f"policy '{self.cfg.policy}' ({exc}); see its class's fields.") from exc

    def policy_class(self) -> type:
        return POLICIES.get(self.cfg.policy)

    def policy_kwargs(self) -> dict[str, Any]:
        if self.cfg.policy == "fusionroute":
            return {"complement": self.cfg.complement, **self.cfg.policy_options}
        return dict(self.cfg.policy_options)

    def requires(self) -> list[str]:
        return [STAGE_ARTIFACTS[tuple(self.cfg.stages)]]

    def code_objects(self) -> list[object]:
        return [type(self), self.policy_class()]

    def load(self, artifacts: dict[str, Path]) -> None:
        name = self.requires()[0]
        if name not in artifacts:
            raise KeyError(f"method '{self.name}' needs artifact '{name}' (the trained router); it was not built")
        router_dir = checkpoint_location("router", str(artifacts[name]))
        vocab_size = check_same_vocabulary("router", router_dir, self.world.tokenizer, None)
        router = RouterModel.from_pretrained(router_dir, dtype=torch_dtype(self.dtype))
        if router.expert_names != self.world.expert_names:
            raise ValueError(f"router '{router_dir}' was trained for experts {router.expert_names} but the world has "
                             f"{self.world.expert_names} (names and order must match: the head's outputs index them); "
                             "retrain the router for this world or fix world.experts")
        if self.cfg.attn_implementation is not None:
            router.lm.set_attn_implementation(self.cfg.attn_implementation)
        pool = ExpertPool.load(self.world.experts, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation, vocab_size=vocab_size)
        policy = self.policy_class()(router=0, experts=list(range(1, len(pool) + 1)), **self.policy_kwargs())
        self.engine = DecodeEngine([freeze(router.to(self.device)), *pool.models], policy, self.tokenizer(),
                                   lazy=self.cfg.lazy)


@register_method("fusionroute_no_complement")
class FusionRouteNoComplement(FusionRouteMethod):
    defaults = {"complement": False}


@register_method("fusionroute_sft_only")
class FusionRouteSFTOnly(FusionRouteMethod):
    defaults = {"stages": ["sft"]}
