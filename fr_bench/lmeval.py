"""lm-evaluation-harness drives fr_bench: any method of a sweep YAML is an lm-eval model (`--model fr_bench`, alias
`fusionroute`).

    python -m fr_bench.lmeval --model fr_bench \\
        --model_args sweep=experiments/ablations.yaml,method=fusionroute,seed=0 --tasks gsm8k --batch_size 16
    python -m fr_bench.lmeval export-tasks DIR [--sweep YAML] [key=value ...]   # micro tasks as lm-eval tasks

`model_args` name a sweep YAML, one of its `methods:` entries and a seed; every other key=value is a sweep override
(`threads=1`, `artifacts.router_sft.max_steps=50`, `methods.fusionroute.options.lazy=false`). The method is loaded
exactly as the sweep's evaluation cells load it, and the artifacts it needs that are not cached yet are built by the
sweep's own planner and executor first (same keys, same cache: a later sweep finds them built).

`generate_until` decodes every request through the method's own `generate` (the decode engine), in groups of equal
generation settings: `until` (stop strings), `max_gen_toks`, and sampling when `do_sample` or `temperature > 0`
asks for it (seeded by the run seed, as the sweep samples). `loglikelihood` and `loglikelihood_rolling` work for
single-model methods (an expert, the base, a merge, the fine-tuned baseline): they score with that one causal LM.
Multi-model methods raise: their output distribution exists only along their own decode (token-level routing picks
an expert from the decoded prefix, sequence-level methods pick after generating whole candidates), so a forced
continuation has no single defined likelihood; run them on `generate_until` tasks.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from .config import ConfigError
from .lmeval_tasks import export_tasks_main
from .types import Method
from .world import World

# gen_kwargs keys the engine honours, and values of other common keys that change nothing (so are accepted)
NEUTRAL_GEN_KWARGS = {"top_p": (1.0, None), "top_k": (0, None), "num_beams": (1, None)}


def load_sweep_method(sweep: str, method: str, seed: int = 0, overrides: Sequence[str] = (),
                      batch_size: int | None = None, device: str | None = None) -> tuple[Method, World]:
    """The sweep's method `method` for `seed`, loaded like its evaluation cells; missing artifacts are built first
    through the sweep's plan and executor. `batch_size`/`device` override the decode options."""
    from .cache import cache_root
    from .config import load_config
    from .sweep.cells import Job, load_method
    from .sweep.config import SweepConfig
    from .sweep.executor import check_executor, open_executor
    from .sweep.plan import Plan, make_plan
    from .sweep.run import artifact_path, execute
    from .sweep.worlds import planned_tasks, resolve_world, world_keys

    cfg = load_config(SweepConfig, sweep, [*overrides, f"seeds=[{int(seed)}]"])
    if method not in cfg.methods:
        raise ConfigError(f"model_args method='{method}': not a method of {sweep}; its methods: "
                          f"{', '.join(cfg.methods)}.")
    check_executor(cfg.executor)
    plan = make_plan(cfg, world_keys(cfg), planned_tasks(cfg))
    cell = next(c for c in plan.cells if c.method == method)
    needed = set(cell.artifacts.values())
    own = Plan(plan.world_keys, [n for n in plan.artifacts if n.key in needed], [cell])
    with open_executor(cfg.executor, cfg.threads) as executor:
        world = resolve_world(cfg, executor.processes)
        execute(own, {cell.seed: world}, cfg, executor, cells=False, progress=False)
    options = {**cell.entry.options, **({"device": device} if device else {})}
    job = Job(world, method, cell.entry.method, options, cell.seed if cell.seeded else 0,
              {a: str(artifact_path(k)) for a, k in cell.artifacts.items()}, [], batch_size or cfg.batch_size,
              str(cache_root()), cfg.threads)
    return load_method(job), world


def _batch_size(value: Any) -> int | None:
    """lm-eval's `--batch_size`: an integer is the decode batch; `auto` (nothing to tune here) keeps the sweep's."""
    if value is None or str(value).startswith("auto"):
        return None
    try:
        size = int(value)
    except ValueError:
        raise ConfigError(f"batch_size='{value}': give an integer or 'auto' (the sweep's batch_size).") from None
    if size < 1:
        raise ConfigError(f"batch_size={size}: must be at least 1.")
    return size


def _device(value: str | None) -> str | None:
    """lm-eval's `--device` (default `cuda:0`): CUDA only where there is one, else the method's own `device`
    option (auto), as lm-eval's HF model falls back to the CPU."""
    if value and str(value).startswith("cuda") and not torch.cuda.is_available():
        return None
    return value


def sampling_temperature(gen_kwargs: dict[str, Any]) -> float:
    """0 for greedy; the asked temperature (1.0 when only `do_sample` asks) for sampling, as transformers does."""
    unknown = sorted(k for k in gen_kwargs if k not in ("until", "max_gen_toks", "do_sample", "temperature")
                     and gen_kwargs[k] not in NEUTRAL_GEN_KWARGS.get(k, ()))
    if unknown:
        raise ValueError(f"gen_kwargs {unknown[0]}={gen_kwargs[unknown[0]]!r}: the fr_bench decode engine supports "
                         f"only until, max_gen_toks, do_sample and temperature; drop it from the task's "
                         f"generation_kwargs or --gen_kwargs.")
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        return 0.0
    if gen_kwargs.get("do_sample"):
        return temperature or 1.0
    return temperature


@contextlib.contextmanager
def _decoding_temperature(method: Method, temperature: float) -> Iterator[None]:
    """Decode with `temperature` instead of the method's configured one (the decode options' `temperature`)."""
    cfg = getattr(method, "cfg", None)
    if cfg is None or not hasattr(cfg, "temperature"):
        if temperature > 0:
            raise ValueError(f"method '{method.name}' has no temperature option; it can only decode greedily.")
        yield
        return
    before, cfg.temperature = cfg.temperature, temperature
    try:
        yield
    finally:
        cfg.temperature = before


@register_model("fr_bench", "fusionroute")
class FrBenchLM(TemplateLM):
    """A sweep's method as an lm-eval LM (see the module docstring for `model_args`)."""

    def __init__(self, sweep: str, method: str, seed: int = 0, batch_size: Any = None, max_batch_size: Any = None,
                 device: str | None = None, max_gen_toks: int = 256, **overrides: Any) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.method_name = method
        self.method, self.world = load_sweep_method(str(sweep), str(method), int(seed),
                                                    [f"{k}={v}" for k, v in overrides.items()],
                                                    _batch_size(batch_size), _device(device))
        self.tokenizer = AutoTokenizer.from_pretrained(self.world.tokenizer)
        self.max_gen_toks = int(max_gen_toks)
        self._device = getattr(self.method, "device", "cpu")

    # --- tokenization (what TemplateLM's loglikelihood and chat templating build on) ---

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context conditions on: bos when the tokenizer has one, else eos (as lm-eval's HFLM)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """No special tokens by default, as the decode engine encodes prompts (a chat template writes its own)."""
        return self.tokenizer(string, add_special_tokens=bool(add_special_tokens))["input_ids"]

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The tokenizer's chat template, as fr_bench's own prompts use it (`fr_bench.chat.format_prompt`)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of this world ({self.world.tokenizer}) has no chat template; run "
                             f"without --apply_chat_template.")
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # --- generation ---

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Decode the requests through the method: one `generate` call per task and generation settings, in the
        requests' (document) order, so batches are those of the sweep's cells (sampled outputs included)."""
        groups: dict[tuple[str | None, tuple[str, ...], int, float], list[int]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = (until,) if isinstance(until, str) else tuple(until)
            max_toks = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            groups.setdefault((req.task_name, until, max_toks, sampling_temperature(gen_kwargs)), []).append(i)
        out: list[str] = [""] * len(requests)
        for (_, until, max_toks, temperature), indices in groups.items():
            with _decoding_temperature(self.method, temperature):
                gens = self.method.generate([requests[i].args[0] for i in indices], max_new_tokens=max_toks,
                                            stop=list(until))
            for i, gen in zip(indices, gens, strict=True):
                out[i] = gen.text
                self.cache_hook.add_partial("generate_until", requests[i].args, gen.text)
        return out

    # --- likelihoods (single-model methods) ---

    def scoring_model(self) -> torch.nn.Module:
        """The one causal LM a single-model method decodes with; a clear error for any other method."""
        engine = getattr(self.method, "engine", None)
        if engine is None or len(engine.models) != 1:
            count = len(engine.models) if engine is not None else len(getattr(self.method, "engines", [])) or "several"
            raise NotImplementedError(
                f"method '{self.method_name}' ({self.method.name}) decodes with {count} models; loglikelihood tasks "
                f"need one model's likelihood of a forced continuation, which only single-model methods (an expert, "
                f"the base, a merge, the fine-tuned baseline) define. Score this method on generate_until tasks.")
        return engine.models[0].model

    @property
    def max_length(self) -> int:
        return int(self.scoring_model().config.max_position_embeddings)

    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        """Sum of the continuation's log-probs and whether greedy decoding would produce it, batched right-padded
        (longest first); a sequence longer than the model's context keeps its last `max_length` tokens."""
        model = self.scoring_model()
        device = next(model.parameters()).device
        batch_size = int(getattr(getattr(self.method, "cfg", None), "batch_size", 8))
        seqs = [((ctx + cont)[-(self.max_length + 1):][:-1], cont) for _, ctx, cont in requests]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
        results: dict[int, tuple[float, bool]] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(seqs[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), self.eot_token_id, dtype=torch.long, device=device)
            mask = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
            for b, i in enumerate(chunk):
                ids[b, :len(seqs[i][0])] = torch.tensor(seqs[i][0], device=device)
                mask[b, :len(seqs[i][0])] = 1
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for b, i in enumerate(chunk):
                inp, cont = seqs[i]
                rows = logprobs[b, len(inp) - len(cont):len(inp)]
                target = torch.tensor(cont, device=device)
                picked = rows.gather(1, target[:, None]).squeeze(1)
                results[i] = (float(picked.sum()), bool((rows.argmax(-1) == target).all()))
        for i, (key, _, _) in enumerate(requests):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, results[i])
        return [results[i] for i in range(len(requests))]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Whole-text log-likelihood over disjoint windows of the model's context (lm-eval's rolling windows)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for req in requests:
            (text,) = req.args
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            total = sum(ll for ll, _ in self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows]))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out


def evaluate(sweep: str, method: str, tasks: Sequence[str] | str, seed: int = 0,
             overrides: dict[str, Any] | None = None, include_path: str | Path | None = None,
             **kwargs: Any) -> dict[str, Any] | None:
    """`lm_eval.simple_evaluate` on the sweep's method: `kwargs` go to it unchanged (`limit`, `num_fewshot`,
    `apply_chat_template`, `log_samples`, `confirm_run_unsafe_code`, ...); `include_path` adds task folders (e.g.
    the exported micro tasks)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        kwargs["task_manager"] = TaskManager(include_path=str(include_path))
    model_args = {"sweep": str(sweep), "method": method, "seed": seed, **(overrides or {})}
    return lm_eval.simple_evaluate(model="fr_bench", model_args=model_args,
                                   tasks=[tasks] if isinstance(tasks, str) else list(tasks), **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """lm-eval's own CLI with the adapter registered: every argument is lm-eval's (`--model fr_bench ...`)."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    cli = HarnessCLI()
    saved, sys.argv = sys.argv, ["lm-eval", *argv]  # HarnessCLI reads sys.argv (it inserts `run` when omitted)
    try:
        args = cli.parse_args()
    finally:
        sys.argv = saved
    cli.execute(args)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(export_tasks_main(args[1:]) if args[:1] == ["export-tasks"] else main(args))
