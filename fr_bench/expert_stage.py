"""Experts trained from a pretrained base, as a world stage: `world.experts.<name>` may name a base, domain data and a
recipe instead of a finished checkpoint; each such expert is built once as a cached artifact (MergeBench-style
domain experts, on any base).

Domain data (`data:`), each a list of {"prompt", "response"} rows, prompts in the evaluation task's own format (the
expert learns the answer format it is scored on):
- `gsm8k_train`: GSM8K's train split (`source`: its train.jsonl); response = the reference solution without the
  `<<...>>` calculator annotations, ending in "#### <answer>" (what the strict extraction reads).
- `mbpp_train`: MBPP rows outside the test split (task_id 11-510 is never used): prompt (2-10), validation (511-600)
  and train (601-974) of `source`, minus rows whose description equals a test problem's (sanitized-mbpp.json: 170
  such rows, 169 kept; task 569 repeats test task 104); response = the reference code in a ```python block.
- `if_generated`: instruction following without IFEval's prompts. The project's generator
  (`fr_bench.micro.generators.constraints.sample`) writes prompts about its own topics with one or two IFEval
  instructions (IFEval's instruction ids and kwargs, so IFEval's checkers verify them). `if_samples` responses per
  prompt are sampled from the base through the decode engine and kept only when IFEval's checkers (strict) pass them
  all; prompts with no passing sample are dropped. No IFEval test prompt can appear (tested against input_data.jsonl).
- any other value: a JSONL file with `prompt` / `response` rows.

Each trained expert's folder also holds `train_rows.jsonl` (its SFT rows) and `task_rows.jsonl` (the domain's rows in
the benchmark's schema, which its task scores); in the world, `sft_data.<domain>: <expert name>` and
`pref_prompts.<domain>: <expert name>` point at them, so the router trains on the experts' domains.

Recipes, both trained by the SFT stage's module on a plain LM (loss L_LM, `train` = SFTConfig keys):
- `full`: every weight is fine-tuned.
- `lora`: peft LoRA adapters (`lora:` = LoraSpec) on the targeted linear layers, the base frozen; after training the
  adapters are merged into the base weights, so the saved folder is a plain checkpoint with the base's keys (the
  decode engine, merges and routers see an ordinary causal LM). Non-target weights stay bit-equal to the base's.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from .cache import artifact_dir, atomic_dir, atomic_write_json, atomic_write_jsonl, is_complete
from .config import ConfigError
from .training.configs import SFTConfig

DATA_BUILDERS = ("gsm8k_train", "mbpp_train", "if_generated")
RECIPES = ("full", "lora")
MBPP_TEST_IDS = range(11, 511)
EXPERT_VERSION = 2
TRAIN_ROWS = "train_rows.jsonl"        # the expert's SFT rows: `world.sft_data.<d>: <expert name>` reads them
TASK_ROWS = "task_rows.jsonl"          # its domain prompts in the benchmark schema: `world.pref_prompts.<d>: <name>`


@dataclass
class LoraSpec:
    """LoRA adapters for `recipe: lora` (defaults: Llama's attention projections, scale alpha / r = 2)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def validate(self, where: str) -> None:
        if self.r <= 0:
            raise ConfigError(f"{where}.r = {self.r}: the adapter rank must be >= 1 (e.g. r: 8).")
        if self.alpha <= 0:
            raise ConfigError(f"{where}.alpha = {self.alpha}: must be > 0 (the update is scaled by alpha / r; "
                              "e.g. alpha: 16 with r: 8).")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout = {self.dropout}: must be in [0, 1).")
        if not self.target_modules:
            raise ConfigError(f"{where}.target_modules: empty; name the linear layers to adapt "
                              "(e.g. [q_proj, k_proj, v_proj, o_proj]).")


def linear_module_names(model: Any) -> list[str]:
    """Qualified names of the model's torch.nn.Linear layers (what LoRA adapts here)."""
    import torch

    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def check_lora_targets(names: list[str], lora: LoraSpec, where: str) -> None:
    """Each target must name a linear layer, matched as peft matches (the full name or its last dotted parts)."""
    for target in lora.target_modules:
        if not any(n == target or n.endswith("." + target) for n in names):
            offered = sorted({n.rsplit(".", 1)[-1] for n in names})
            raise ConfigError(f"{where}.target_modules: '{target}' is not a linear layer of the base; its linear "
                              f"layers are {', '.join(offered)}.")


def base_linear_names(base: str) -> list[str] | None:
    """The linear layer names of a local base folder, from its config on the meta device (no weights read);
    None for a Hub name (checked when the expert is built)."""
    if not (Path(base).expanduser() / "config.json").is_file():
        return None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    return linear_module_names(model)


@dataclass
class ExpertSpec:
    """One expert to train: `base` fine-tuned on `data` with `recipe` (module docstring lists the data builders)."""

    base: str = ""                        # checkpoint folder (or Hub name) the expert starts from
    tokenizer: str | None = None          # None = the world's tokenizer (in a sweep), else the base's
    data: str = ""                        # gsm8k_train | mbpp_train | if_generated | a prompt/response JSONL path
    source: str | None = None             # the file the builder reads (gsm8k train.jsonl, an MBPP json/jsonl)
    recipe: str = "full"                  # full | lora
    lora: LoraSpec = field(default_factory=LoraSpec)   # recipe lora only
    max_rows: int | None = None           # cap on training rows (after a seeded shuffle)
    if_prompts: int = 200                 # if_generated: prompts generated
    if_samples: int = 4                   # if_generated: samples per prompt from the base
    if_temperature: float = 0.7
    if_max_new_tokens: int = 160
    seed: int = 0
    train: SFTConfig = field(default_factory=lambda: SFTConfig(lr=2e-5, epochs=1, lambda_route=0.0))

    def validate(self, where: str) -> "ExpertSpec":
        if not self.base:
            raise ConfigError(f"{where}.base: required (the checkpoint the expert is fine-tuned from).")
        if self.recipe not in RECIPES:
            raise ConfigError(f"{where}.recipe = {self.recipe!r}: not a recipe; use one of {', '.join(RECIPES)}.")
        if self.recipe == "lora":
            self.lora.validate(f"{where}.lora")
            names = base_linear_names(self.base)
            if names is not None:
                check_lora_targets(names, self.lora, f"{where}.lora")
        if not self.data:
            raise ConfigError(f"{where}.data: required: one of {', '.join(DATA_BUILDERS)} or a prompt/response JSONL.")
        if self.data in ("gsm8k_train", "mbpp_train") and not (self.source and Path(self.source).expanduser().is_file()):
            raise ConfigError(f"{where}.source = {self.source!r}: data {self.data} reads a local file; point source at "
                              "it (e.g. ../shared/data/gsm8k/train.jsonl or ../shared/data/mbpp/sanitized-mbpp.json).")
        if self.data not in DATA_BUILDERS and not Path(self.data).expanduser().is_file():
            raise ConfigError(f"{where}.data: '{self.data}' is neither a builder ({', '.join(DATA_BUILDERS)}) nor an "
                              "existing JSONL file.")
        if self.if_samples < 1 or self.if_prompts < 1:
            raise ConfigError(f"{where}: if_prompts and if_samples must be >= 1.")
        self.train.validate()
        return self


def _read_rows(path: str) -> list[dict[str, Any]]:
    text = Path(path).expanduser().read_text()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def gsm8k_rows(source: str) -> list[dict[str, str]]:
    from .tasks import get_task

    task = get_task("gsm8k")
    rows = []
    for row in _read_rows(source):
        rows.append({"prompt": task.user_message(row), "response": gsm8k_solution(row)})
    return rows


def gsm8k_solution(row: dict[str, Any]) -> str:
    """The reference solution without GSM8K's `<<...>>` calculator annotations (it still ends in "#### n")."""
    return re.sub(r"<<[^>]*>>", "", row["answer"])


def mbpp_solution(row: dict[str, Any]) -> str:
    return f"```python\n{row['code'].strip()}\n```"


def mbpp_train_split(source: str) -> list[dict[str, Any]]:
    """MBPP rows outside the test split (task_id 11-510) whose description is not also a test problem's."""
    raw = [{**r, "prompt": r.get("prompt", r.get("text"))} for r in _read_rows(source)]
    test = {r["prompt"] for r in raw if r["task_id"] in MBPP_TEST_IDS}
    return [r for r in raw if isinstance(r["task_id"], int) and r["task_id"] not in MBPP_TEST_IDS
            and r["prompt"] not in test]


def mbpp_rows(source: str) -> list[dict[str, str]]:
    """`mbpp_train_split` in the mbpp task's zero-shot prompt format, the reference code as the response."""
    from .tasks import get_task

    task = get_task("mbpp")
    return [{"prompt": task.user_message(row), "response": mbpp_solution(row)} for row in mbpp_train_split(source)]


def if_prompts(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` distinct generated prompts with IFEval instruction ids and kwargs (`key` = index, for the checkers)."""
    from .micro.generators.constraints import sample

    rng, seen, rows = random.Random(seed), set(), []
    for _ in range(50 * n):
        row = sample(rng).row
        if row["prompt"] in seen:
            continue
        seen.add(row["prompt"])
        rows.append({**row, "key": len(rows), "id": str(len(rows))})
        if len(rows) == n:
            break
    return rows


def if_rows(spec: ExpertSpec, tokenizer: Any, model: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Generated prompts with the base's own responses that pass IFEval's strict checkers."""
    from .tasks import get_task
    from .training.preferences import single_model_engine

    task = get_task("ifeval", max_new_tokens=spec.if_max_new_tokens)
    prompts = if_prompts(spec.if_prompts, spec.seed)
    engine = single_model_engine(model, tokenizer)
    samples = []
    for k in range(spec.if_samples):
        decoded, _ = engine.generate([task.prompt(r, tokenizer) for r in prompts], spec.if_max_new_tokens,
                                     batch_size=spec.train.batch_size, temperature=spec.if_temperature,
                                     seed=spec.seed + k)
        samples.append([d.text for d in decoded])
    rows, passed = passing_responses(task, prompts, samples)
    return rows, {"if_prompts": len(prompts), "if_samples": len(prompts) * spec.if_samples,
                  "if_sample_pass_rate": passed / (len(prompts) * spec.if_samples), "if_prompts_kept": len(rows)}


def passing_responses(task: Any, prompts: list[dict[str, Any]],
                      samples: list[list[str]]) -> tuple[list[dict[str, str]], int]:
    """(one {"prompt", "response"} row per prompt with a sample every instruction of which passes the task's strict
    check, the first such sample; the number of passing samples). `samples[k][i]` = sample k of prompt i."""
    kept: dict[int, str] = {}
    passed = 0
    for outputs in samples:
        for i, result in enumerate(task.score(prompts, outputs)):
            passed += result.correct
            if result.correct and i not in kept:
                kept[i] = outputs[i]
    return [{"prompt": prompts[i]["prompt"], "response": kept[i]} for i in sorted(kept)], passed


def task_rows(spec: ExpertSpec, sft_rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The domain's rows in the benchmark's own schema, which its task scores (the world's pref_prompts), each with
    its gold `response` (pairs.gold_as_chosen reads it); if_generated: the prompts that kept a sample."""
    if spec.data == "gsm8k_train":
        return [{**r, "response": gsm8k_solution(r)} for r in _read_rows(spec.source)]
    if spec.data == "mbpp_train":
        return [{**r, "response": mbpp_solution(r)} for r in mbpp_train_split(spec.source)]
    if spec.data == "if_generated":
        kept = {r["prompt"]: r["response"] for r in sft_rows}
        return [{**r, "response": kept[r["prompt"]]} for r in if_prompts(spec.if_prompts, spec.seed)
                if r["prompt"] in kept]
    return []


def domain_rows(spec: ExpertSpec, tokenizer: Any, model: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The expert's SFT rows ({"prompt", "response"}, shuffled, capped by max_rows) and facts about them."""
    if spec.data == "gsm8k_train":
        rows, info = gsm8k_rows(spec.source), {}
    elif spec.data == "mbpp_train":
        rows, info = mbpp_rows(spec.source), {}
    elif spec.data == "if_generated":
        rows, info = if_rows(spec, tokenizer, model)
    else:
        rows, info = [{"prompt": r["prompt"], "response": r["response"]} for r in _read_rows(spec.data)], {}
    random.Random(spec.seed).shuffle(rows)
    if not rows:
        raise ValueError(f"expert data '{spec.data}' gave no training row (if_generated: no sample passed the "
                         "checkers; raise if_samples or if_prompts).")
    return rows[: spec.max_rows], info


def with_lora(lm: Any, spec: ExpertSpec) -> Any:
    """`lm` wrapped in peft LoRA adapters per spec.lora (only the adapters require grad)."""
    from peft import LoraConfig, get_peft_model

    check_lora_targets(linear_module_names(lm), spec.lora, f"expert of base {spec.base}: lora")
    cfg = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                     target_modules=list(spec.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(lm, cfg)


def train_expert(spec: ExpertSpec, out_dir: Path) -> Path:
    """spec.base fine-tuned on its domain rows (L_LM) by spec.recipe; out_dir gets the LM (LoRA: merged into the
    base weights), tokenizer, data and metrics."""
    import lightning as L
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .chat import encode_example
    from .training.losses import IGNORE_INDEX
    from .training.sft import RouterSFT, SFTDataset, collate_sft
    from .training.stages import fit_module, loss_summary

    L.seed_everything(spec.seed, verbose=False)
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer or spec.base)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lm = AutoModelForCausalLM.from_pretrained(spec.base, dtype=torch.float32)
    lm.eval()
    rows, info = domain_rows(spec, tokenizer, lm)
    examples = [encode_example(tokenizer, r["prompt"], r["response"], spec.train.max_length) for r in rows]
    examples = [e for e in examples if any(x != IGNORE_INDEX for x in e["labels"][1:])]
    cfg = replace(spec.train, lambda_route=0.0, seed=spec.seed)
    model = with_lora(lm, spec) if spec.recipe == "lora" else lm
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    module = RouterSFT(model, cfg, stage="expert_sft")
    seconds = fit_module(module, SFTDataset(examples), partial(collate_sft, pad_id=pad or 0), cfg, out_dir, "expert_sft")
    if spec.recipe == "lora":
        lm = model.merge_and_unload()
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_jsonl(out_dir / TRAIN_ROWS, rows)
    atomic_write_jsonl(out_dir / TASK_ROWS, task_rows(spec, rows))
    atomic_write_json(out_dir / "metrics.json", {"stage": "expert_sft", "recipe": spec.recipe,
                                                 "trainable_params": trainable, "data": spec.data, "rows": len(rows),
                                                 "examples": len(examples), "steps": module.global_steps,
                                                 "seconds": seconds, **info, **loss_summary(module.history)})
    return out_dir


def _file_digest(path: str | None) -> str | None:
    if not path or not Path(path).expanduser().is_file():
        return None
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


def expert_key(spec: ExpertSpec) -> dict[str, Any]:
    """What the trained expert depends on: the spec (its recipe, and for lora its LoRA settings; a full expert's key
    leaves the unused `lora` out, so it is the key it had before LoRA existed), the base's weights (cheap
    fingerprint) and the data files."""
    from .config import to_dict
    from .training.expert_signals import checkpoint_fingerprint

    fields = to_dict(spec)
    if spec.recipe != "lora":
        del fields["lora"]
    return {"version": EXPERT_VERSION, "spec": fields, "base": checkpoint_fingerprint(spec.base),
            "source": _file_digest(spec.source), "data_file": _file_digest(spec.data)}


def expert_folder(spec: ExpertSpec) -> Path:
    """Where the trained expert is cached (it may not be built yet)."""
    return artifact_dir("trained_expert", expert_key(spec))


def build_expert(spec: ExpertSpec) -> Path:
    """The trained expert's checkpoint folder, from the cache or built now (atomically)."""
    folder = expert_folder(spec)
    if not is_complete(folder):
        with atomic_dir(folder) as tmp:
            train_expert(spec, tmp)
    return folder


def build_experts(specs: dict[str, ExpertSpec], pool: Executor | None = None) -> dict[str, Path]:
    """`build_expert` of each labelled spec; with a process pool (`fr_bench.parallel.WorkerPool`) the missing ones
    train at once, one per worker. Each training seeds itself and runs with its worker's torch threads, so the weights
    are those of a serial build. A failure is raised, naming its label, after every other expert finished (and was
    cached). Specs with one key (the same expert under two labels) train once."""
    if pool is None:
        return {label: build_expert(spec) for label, spec in specs.items()}
    folders = {label: expert_folder(spec) for label, spec in specs.items()}
    todo = {folders[label]: (label, spec) for label, spec in specs.items() if not is_complete(folders[label])}
    futures = {pool.submit(build_expert, spec): label for label, spec in todo.values()}
    failures = [(futures[f], f.exception()) for f in as_completed(futures) if f.exception() is not None]
    if failures:
        label, exc = failures[0]
        raise RuntimeError(f"training the expert world.experts.{label} failed: {type(exc).__name__}: {exc}") from exc
    return folders
