"""Sequence-level collaboration: each query is answered in full by one expert (no token-level mixing).

Two ways to pick the expert, each a registered method:
- `seq_select` (the paper's "Sequence Selection"): every expert answers greedily, a selector keeps one answer.
  Selectors: `reward_model` (the paper's; the `reward_model` artifact: a Bradley–Terry RM trained on CDPO's pairs, or
  a pretrained one from `artifacts.reward_model.path`), `base_logprob` (mean token log-prob of the answer under the
  common base), `verifier` (the public tests *shown in the prompt*: `assert` lines
  and `>>>` doctest examples, run in the code sandbox; ties and prompts with no such tests are decided by `fallback`).
- `seq_prompt_router`: a classifier on the prompt picks the expert before anything is generated (`prompt_router`
  artifact), so only one expert decodes.
Both decode through the shared engine (`fr_bench.decoding`), one expert at a time, greedy.
"""
from __future__ import annotations

import doctest
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fr_bench.config import ConfigError
from fr_bench.decoding.engine import DecodeEngine, Decoded
from fr_bench.decoding.method import DecodeOptions, EngineMethod
from fr_bench.decoding.policies import SingleModel
from fr_bench.methods import register_method
from fr_bench.types import Generation
from fr_bench.models.expert_pool import ExpertPool

from .prompt_router import PromptRouter, _pad_id, mean_response_logprobs

SELECTORS = ("reward_model", "base_logprob", "verifier")
FALLBACKS = ("reward_model", "base_logprob")

# (prompts, responses) -> (one score per pair, tokens run through the scoring model for each pair)
Scorer = Callable[[Sequence[str], Sequence[str]], tuple[list[float], list[int]]]


# --- public checks: the tests a prompt shows the model ---------------------------------------------------------

_ASSERT = re.compile(r"^\s*(assert\s.+?)\s*$", re.MULTILINE)


def public_checks(prompt: str) -> list[str]:
    """Test snippets visible in the prompt text: every `assert ...` line (MBPP shows its tests) and every `>>>`
    doctest example with an expected output (HumanEval docstrings), as stand-alone test code. Nothing else is read,
    so the verifier never sees a benchmark's hidden tests."""
    checks = [m.group(1) for m in _ASSERT.finditer(prompt)]
    for ex in doctest.DocTestParser().get_examples(prompt):
        want = _before_docstring_end(ex.want)
        if want.strip():
            checks.append("import doctest as _d\n"
                          "_r = _d.DocTestRunner(verbose=False, optionflags=_d.NORMALIZE_WHITESPACE)\n"
                          f"_r.run(_d.DocTest([_d.Example({ex.source!r}, {want!r})], globals(), 'public', None, 0,"
                          " None), out=lambda s: None)\n"
                          "assert _r.failures == 0\n")
    return checks


def _before_docstring_end(want: str) -> str:
    """Expected output up to the closing quotes of the docstring (parsing the raw prompt, not the docstring, lets
    a closing triple quote on the next line look like output)."""
    lines = want.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.strip().startswith(('"""', "'''"))), len(lines))
    return "".join(lines[:end])


def verifier_scores(prompts: Sequence[str], responses: Sequence[str], timeout_s: float = 10.0) -> list[float | None]:
    """Fraction of each prompt's public checks the response's code passes; None where the prompt shows none."""
    from fr_bench.scoring.code import extract_code
    from fr_bench.scoring.sandbox import Program, SandboxConfig, run_programs

    checks = [public_checks(p) for p in prompts]
    programs = [Program(extract_code(r), c) for r, cs in zip(responses, checks) for c in cs]
    results = iter(run_programs(programs, SandboxConfig(timeout_s=timeout_s)) if programs else [])
    return [sum(next(results).passed for _ in cs) / len(cs) if cs else None for cs in checks]


# --- choosing among candidates -----------------------------------------------------------------------------------

def choose(primary: Sequence[Sequence[float | None]], secondary: Sequence[Sequence[float]] | None = None) -> list[int]:
    """Per prompt, the candidate (expert) with the best (primary, secondary) score; scores are [expert][prompt].
    None in `primary` counts as no signal (equal for all); exact ties keep the lowest expert index."""
    n_experts, n_prompts = len(primary), len(primary[0])
    out = []
    for p in range(n_prompts):
        def key(e: int) -> tuple[float, float]:
            first = primary[e][p]
            return (float("-inf") if first is None else first, secondary[e][p] if secondary else 0.0)
        out.append(max(range(n_experts), key=lambda e: (key(e), -e)))
    return out


def _generation(decoded: Decoded, expert: int, cost: int) -> Generation:
    """A decoded answer credited to one expert for all its tokens, with the whole method's cost for this prompt."""
    return Generation(text=decoded.text, token_ids=decoded.token_ids, expert_choices=[expert] * len(decoded.token_ids),
                      cost_tokens=cost)


class _PerExpertMethod(EngineMethod):
    """Loads every expert once and keeps one single-model engine per expert (only that expert runs)."""

    engines: list[DecodeEngine]

    def _load_experts(self) -> ExpertPool:
        pool = ExpertPool.load(self.world.experts, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation)
        self._tok = self.tokenizer()
        self.engines = [DecodeEngine([m], SingleModel(0), self._tok, lazy=self.cfg.lazy) for m in pool.models]
        return pool

    def _decode(self, expert: int, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Decoded]:
        if not prompts:
            return []
        out, _ = self.engines[expert].generate(prompts, max_new_tokens, stop, batch_size=self.cfg.batch_size,
                                               temperature=self.cfg.temperature, seed=self.seed)
        return out


# --- seq_select --------------------------------------------------------------------------------------------------

@dataclass
class SeqSelectOptions(DecodeOptions):
    selector: str = "reward_model"     # reward_model (paper) | base_logprob | verifier (public tests in the prompt)
    fallback: str = "base_logprob"     # verifier only: decides ties and prompts without public tests
    verifier_timeout_s: float = 10.0   # per public check, in the code sandbox


@register_method("seq_select")
class SequenceSelection(_PerExpertMethod):
    """Every expert answers; the selector keeps one answer per prompt. cost_tokens = all experts' prompt + generated
    tokens plus the tokens the selector's model (reward model or base) scores."""

    options_schema = SeqSelectOptions

    def __init__(self, world: Any, options: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(world, options, seed)
        if self.cfg.selector not in SELECTORS:
            raise ConfigError(f"options of method '{self.name}': selector={self.cfg.selector!r}; use one of "
                              f"{', '.join(SELECTORS)}.")
        if self.cfg.fallback not in FALLBACKS:
            raise ConfigError(f"options of method '{self.name}': fallback={self.cfg.fallback!r}; use one of "
                              f"{', '.join(FALLBACKS)}.")

    @property
    def model_selector(self) -> str:
        """The selector that needs a model: the selector itself, or the verifier's fallback."""
        return self.cfg.fallback if self.cfg.selector == "verifier" else self.cfg.selector

    def requires(self) -> list[str]:
        return ["reward_model"] if self.model_selector == "reward_model" else []

    def load(self, artifacts: dict[str, Path]) -> None:
        from fr_bench.models.loading import load_frozen_lm

        self._load_experts()
        if self.model_selector == "reward_model":
            from .reward_model import RewardModel

            rm = RewardModel.from_pretrained(artifacts["reward_model"], self.dtype, self.device)
            self.scorer: Scorer = lambda ps, rs: (rm.score(ps, rs, self.cfg.batch_size), rm.token_counts(ps, rs))
        else:
            base = load_frozen_lm("base", self.world.base, self.dtype, self.device)
            self.scorer = lambda ps, rs: self._base_logprob(base, ps, rs)

    def _base_logprob(self, base: torch.nn.Module, prompts: Sequence[str],
                      responses: Sequence[str]) -> tuple[list[float], list[int]]:
        tok = self._tok
        p_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        r_ids = [tok(r, add_special_tokens=False)["input_ids"] for r in responses]
        scores = mean_response_logprobs(base, p_ids, r_ids, _pad_id(tok), self.cfg.batch_size)
        return scores, [len(p) + len(r) for p, r in zip(p_ids, r_ids)]

    def select(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> tuple[list[int], list[int]]:
        """(chosen expert per prompt, selector tokens per prompt) for candidates [expert][prompt]."""
        scored = [self.scorer(prompts, texts) for texts in candidates]
        model_scores = [s for s, _ in scored]
        cost = [sum(tokens[i] for _, tokens in scored) for i in range(len(prompts))]
        if self.cfg.selector == "verifier":
            checks = [verifier_scores(prompts, texts, self.cfg.verifier_timeout_s) for texts in candidates]
            return choose(checks, model_scores), cost
        return choose(model_scores), cost

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Generation]:
        decoded = [self._decode(e, prompts, max_new_tokens, stop) for e in range(len(self.engines))]
        chosen, select_cost = self.select(prompts, [[d.text for d in per] for per in decoded])
        return [_generation(decoded[e][i], e, sum(per[i].cost_tokens for per in decoded) + select_cost[i])
                for i, e in enumerate(chosen)]


# --- seq_prompt_router -------------------------------------------------------------------------------------------

@register_method("seq_prompt_router")
class PromptRouted(_PerExpertMethod):
    """A prompt classifier picks one expert per query, which then answers alone. cost_tokens = the encoder's prompt
    tokens + the chosen expert's prompt and generated tokens."""

    def requires(self) -> list[str]:
        return ["prompt_router"]

    def load(self, artifacts: dict[str, Path]) -> None:
        pool = self._load_experts()
        self.router = PromptRouter.from_pretrained(artifacts["prompt_router"], self._tok, self.dtype, self.device)
        if self.router.expert_names != pool.names:
            raise ValueError(f"the prompt_router artifact was trained for experts {self.router.expert_names}, but "
                             f"this world has {pool.names}; rebuild the artifact for this world.")

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Generation]:
        routes = self.router.route(prompts)
        encoder_cost = [len(ids) for ids in self.router.encode(prompts)]
        out: list[Generation | None] = [None] * len(prompts)
        for e in range(len(self.engines)):
            idx = [i for i, r in enumerate(routes) if r == e]
            for i, d in zip(idx, self._decode(e, [prompts[i] for i in idx], max_new_tokens, stop)):
                out[i] = _generation(d, e, d.cost_tokens + encoder_cost[i])
        return out  # type: ignore[return-value]
