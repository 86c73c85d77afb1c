"""The world a sweep works in: one tokenizer, a base LM, N frozen experts, training data and evaluation tasks.

The micro world (`fr_bench.micro`) builds one from scratch; the real path fills the same fields with checkpoint
folders or Hub names. Everything downstream (training stages, methods, the sweep) sees only this.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskSpec:
    """A task registered in `fr_bench.tasks` and the data it reads (None = the Hub)."""

    task: str
    data: str | None = None
    limit: int | None = None
    max_new_tokens: int = 400
    split: str = "test"       # a micro world's tasks: the split read (test | validation); explicit `data` ignores it


@dataclass
class World:
    tokenizer: str                       # folder or Hub name loadable by AutoTokenizer
    base: str                            # the common base LM of the experts (merging base, fine-tune init)
    experts: dict[str, str]              # expert name -> checkpoint; order = routing-head index order
    router_init: str                     # LM the router is post-trained from (paper: the IF expert)
    sft_data: dict[str, str]             # domain -> JSONL with `prompt`/`response` (router SFT, direct FT)
    pref_prompts: dict[str, str] = field(default_factory=dict)  # domain -> JSONL rows a verifier can score
    tasks: dict[str, TaskSpec] = field(default_factory=dict)    # evaluation tasks by display name
    dtype: str = "float32"

    @property
    def expert_names(self) -> list[str]:
        return list(self.experts)
