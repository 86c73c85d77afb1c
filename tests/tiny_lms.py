"""Tiny random causal LMs (Llama, Gemma-2) and a word-level tokenizer for decode-engine tests: each builds in ms."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from fr_bench.models.loading import freeze
from fr_bench.models.router import RouterModel

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORDS = [f"w{i}" for i in range(60)]
VOCAB = 64


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more only adds contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_tokenizer(words: list[str] = WORDS) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")   # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def tiny_lm(family: str, seed: int, vocab: int = VOCAB, **overrides) -> torch.nn.Module:
    """A random 2-layer model; Gemma-2 with a sliding window of 4 (shorter than any test decode) and soft-capping.

    Untied embeddings: a tied random model mostly predicts its input token again, so decodes would be constant."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=256, initializer_range=0.3,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**{**common, **overrides}))
    elif family == "gemma2":
        cfg = Gemma2Config(**{**common, "sliding_window": 4, "final_logit_softcapping": 5.0,
                              "attn_logit_softcapping": 3.0, "query_pre_attn_scalar": 8,
                              "layer_types": ["sliding_attention", "full_attention"], **overrides})
        model = Gemma2ForCausalLM(cfg)
    else:
        raise ValueError(family)
    return freeze(model)


def tiny_router(family: str, seed: int, n_experts: int, head_scale: float = 5.0) -> RouterModel:
    """A router whose random head switches experts often (large weights on a random hidden state)."""
    router = RouterModel(tiny_lm(family, seed), [f"e{i}" for i in range(n_experts)])
    with torch.no_grad():
        router.head.weight.normal_(0, head_scale)
    return freeze(router)


def save_lm(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast | None, folder: Path) -> str:
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return str(folder)


def prompts_of_lengths(lengths: tuple[int, ...], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(len(SPECIALS), VOCAB, (n,), generator=g).tolist() for n in lengths]


def save_tiny_world(root: Path, family: str = "llama", n_experts: int = 3) -> tuple["World", Path]:
    """Tokenizer, base, experts and a saved router (random head) on disk: a World the methods can load."""
    from fr_bench.world import World

    tok = tiny_tokenizer()
    names = ["math", "code", "chat"][:n_experts]
    experts = {name: save_lm(tiny_lm(family, 10 + i), tok, root / name) for i, name in enumerate(names)}
    router = RouterModel(tiny_lm(family, 20), names)
    with torch.no_grad():
        router.head.weight.normal_(0, 5.0)
    router.save_pretrained(root / "router")
    tok.save_pretrained(root / "router")
    world = World(tokenizer=save_lm(tiny_lm(family, 30), tok, root / "base"), base=str(root / "base"),
                  experts=experts, router_init=experts[names[-1]], sft_data={})
    return world, root / "router"
