"""The FusionRoute router: a causal LM plus a linear routing head on its final hidden state.

One forward gives both the router's own next-token logits (the complementary logits) and routing scores over the N
experts. Saved as a normal transformers checkpoint plus `routing_head.safetensors` and `routing.json`, so the LM part
loads through `AutoModelForCausalLM` like any checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

HEAD_FILE = "routing_head.safetensors"
META_FILE = "routing.json"


@dataclass
class RouterOutput:
    logits: torch.Tensor          # [B, T, V] router LM logits (complementary logits)
    routing_logits: torch.Tensor  # [B, T, N] routing head scores (softmax -> routing weights)
    past_key_values: Any = None


class RouterModel(nn.Module):
    def __init__(self, lm: nn.Module, expert_names: list[str], head_bias: bool = True) -> None:
        super().__init__()
        self.lm = lm
        self.expert_names = list(expert_names)
        hidden = lm.config.hidden_size
        self.head = nn.Linear(hidden, len(expert_names), bias=head_bias)
        nn.init.normal_(self.head.weight, std=0.02)
        if head_bias:
            nn.init.zeros_(self.head.bias)
        self.head.to(dtype=next(lm.parameters()).dtype)

    @property
    def config(self) -> Any:
        return self.lm.config

    @property
    def n_experts(self) -> int:
        return len(self.expert_names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool = False, logits_to_keep: int = 0) -> RouterOutput:
        out = self.lm.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            past_key_values=past_key_values, use_cache=use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_logits(hidden)
        return RouterOutput(logits=logits, routing_logits=self.head(hidden.to(self.head.weight.dtype)),
                            past_key_values=out.past_key_values if use_cache else None)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits from final hidden states, with the family's soft-capping (Gemma-2) applied."""
        logits = self.lm.lm_head(hidden)
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        self.lm.save_pretrained(directory)
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, directory / HEAD_FILE)
        (directory / META_FILE).write_text(json.dumps({"expert_names": self.expert_names,
                                                       "head_bias": self.head.bias is not None}, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype | None = None) -> "RouterModel":
        """Load a saved router; a plain LM checkpoint (no routing head yet) is an error: use `from_lm`."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise FileNotFoundError(f"{directory} has no {META_FILE}: it is not a saved router. "
                                    "Build a new router from an LM with RouterModel.from_lm(path, expert_names).")
        meta = json.loads((directory / META_FILE).read_text())
        lm = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
        model = cls(lm, meta["expert_names"], head_bias=meta.get("head_bias", True))
        model.head.load_state_dict(load_file(directory / HEAD_FILE))
        return model

    @classmethod
    def from_lm(cls, path: str | Path, expert_names: list[str], dtype: torch.dtype | None = None) -> "RouterModel":
        """A fresh router: the LM at `path` (local folder or Hub name) with a newly initialised routing head."""
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_pretrained(path, dtype=dtype), expert_names)
