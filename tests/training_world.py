"""A tiny complete World for the training tests: word-level chat tokenizer, random Llama experts, copy/reverse data.

Two domains ("copy": repeat the words, "rev": reverse them), each verified by a small task registered here, three
random 2-layer experts that disagree often (so informative positions exist) and a router initialised from one of
them, like the paper's router initialised from an expert. Builds in well under a second.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from fr_bench.tasks import register_task
from fr_bench.tasks.base import SampleResult, Task
from fr_bench.world import TaskSpec, World
from tiny_lms import one_thread

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]
WORDS = ["copy", "reverse"] + [f"w{i}" for i in range(8)]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' ' }}"
                 "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}")


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", additional_special_tokens=SPECIALS[4:],
                                   chat_template=CHAT_TEMPLATE)


def make_lm(tokenizer: PreTrainedTokenizerFast, seed: int, init_range: float = 0.3) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      initializer_range=init_range, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg)


def _answer(domain: str, words: list[str]) -> str:
    return " ".join(words if domain == "copy" else words[::-1])


def _rows(domain: str, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [f"w{rng.randrange(8)}" for _ in range(rng.randint(2, 4))]
        verb = "copy" if domain == "copy" else "reverse"
        rows.append({"id": f"{domain}-{i}", "prompt": f"{verb} {' '.join(words)}", "response": _answer(domain, words)})
    return rows


class _WordTask(Task):
    metric_names = ("acc",)
    primary_metric = "acc"

    def load(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in open(self.data)]

    def user_message(self, row: dict[str, Any]) -> str:
        return row["prompt"]

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        return [SampleResult(id=row["id"], extracted=out.strip(), gold=row["response"],
                             correct=out.strip() == row["response"], metrics={"acc": float(out.strip() == row["response"])})
                for row, out in zip(rows, outputs)]


@register_task("training_test_copy")
class CopyTask(_WordTask):
    domain = "copy"


@register_task("training_test_rev")
class ReverseTask(_WordTask):
    domain = "rev"


def _train_expert(lm: LlamaForCausalLM, tok: PreTrainedTokenizerFast, rows: list[dict], steps: int) -> None:
    """A few full-batch AdamW steps so the expert is actually good at its domain (informative routing signal)."""
    from fr_bench.chat import encode_example
    from fr_bench.training.data import collate

    batch = collate([encode_example(tok, r["prompt"], r["response"]) for r in rows], tok.pad_token_id)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    for _ in range(steps):
        lm(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    lm.eval()


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def build_world(root: Path, n_sft: int = 24, n_pref: int = 6, router_nan: bool = False,
                expert_steps: int = 40) -> World:
    """Save tokenizer, three experts, the router init and data under `root`; return the World pointing at them."""
    root.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer()
    tok.save_pretrained(root / "tokenizer")
    sft_rows = {d: _rows(d, n_sft, seed=1 + j) for j, d in enumerate(["copy", "rev"])}
    experts = {}
    for i, name in enumerate(["copy", "rev", "other"]):
        lm = make_lm(tok, seed=10 + i)
        if name in sft_rows and expert_steps:  # the domain experts know their domain's SFT data
            _train_expert(lm, tok, sft_rows[name], expert_steps)
        lm.save_pretrained(root / f"expert_{name}")
        experts[name] = str(root / f"expert_{name}")
    router_init = make_lm(tok, seed=10)  # same init as the first expert, untrained: it must learn both domains
    if router_nan:
        with torch.no_grad():
            router_init.model.norm.weight.fill_(float("nan"))
    router_init.save_pretrained(root / "router_init")
    sft = {d: _write_jsonl(root / f"sft_{d}.jsonl", rows) for d, rows in sft_rows.items()}
    pref = {d: _write_jsonl(root / f"pref_{d}.jsonl", _rows(d, n_pref, seed=100 + j))
            for j, d in enumerate(["copy", "rev"])}
    tasks = {"copy": TaskSpec("training_test_copy", data=pref["copy"], max_new_tokens=6),
             "rev": TaskSpec("training_test_rev", data=pref["rev"], max_new_tokens=6)}
    return World(tokenizer=str(root / "tokenizer"), base=experts["copy"], experts=experts,
                 router_init=str(root / "router_init"), sft_data=sft, pref_prompts=pref, tasks=tasks)


def write_pairs(path: Path, world: World) -> str:
    """Fixed preference pairs (gold response chosen, a wrong answer rejected) for fits that need no sampling."""
    rows = []
    for domain, pref in world.pref_prompts.items():
        for row in map(json.loads, open(pref)):
            wrong = " ".join(reversed(row["response"].split())) if domain == "copy" else row["response"] + " w0"
            if wrong == row["response"]:
                wrong = row["response"] + " w1"
            rows.append({"prompt": row["prompt"], "chosen": row["response"], "rejected": wrong})
    return _write_jsonl(path, rows)


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Import into a test module to run its tiny models single-threaded (far faster on a shared 2-core machine)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Import into a test module for one default World shared by the module's tests."""
    return build_world(tmp_path_factory.mktemp("world"))
