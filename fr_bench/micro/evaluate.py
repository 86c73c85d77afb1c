"""Greedy decoding for the specialisation table.

A stop-gap: HF `generate` with left padding and stop-string truncation. It should move onto the project's decode
engine (`fr_bench.decoding`) once that serves plain models, so every number comes from one decoding path.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from ..world import TaskSpec


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest stop string (exclusive)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


@torch.inference_mode()
def greedy_generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                    stop: Sequence[str] = (), batch_size: int = 32) -> list[str]:
    """Greedy completions of already-formatted prompts (chat template applied), in input order.

    Prompts are batched by length (left padded); each completion is cut at EOS by `generate` and at the first stop
    string here.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                 eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, text in zip(idx, texts):
                out[i] = truncate_at_stop(text, stop)
    finally:
        tokenizer.padding_side = side
    return out


def evaluate_checkpoint(model_dir: str | Path, tasks: dict[str, "TaskSpec"], batch_size: int,
                        out_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Greedy outputs of the checkpoint at `model_dir` on every task, scored by the task's own scorer.

    Returns {task display name: {"primary": value, "metrics": all aggregate metrics}}; with `out_dir`, per-sample
    outputs and scores go to `samples_<name>.jsonl` there.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..cache import atomic_write_jsonl
    from ..tasks import get_task

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    summary: dict[str, dict[str, Any]] = {}
    for name, spec in tasks.items():
        task = get_task(spec.task, data=spec.data, limit=spec.limit, max_new_tokens=spec.max_new_tokens)
        rows = task.load()
        outputs = greedy_generate(model, tokenizer, [task.prompt(r, tokenizer) for r in rows], spec.max_new_tokens,
                                  task.stop_sequences, batch_size)
        results = task.score(rows, outputs)
        metrics = task.aggregate(results)
        summary[name] = {"task": spec.task, "primary": metrics[task.primary_metric], "metrics": metrics}
        if out_dir is not None:
            atomic_write_jsonl(Path(out_dir) / f"samples_{name}.jsonl",
                               [{**r.to_json(), "output": o} for r, o in zip(results, outputs)])
    return summary
