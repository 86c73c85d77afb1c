"""Tiny real models for the baseline tests: a word-level tokenizer and random Llama checkpoints saved to folders."""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 + - = ? . , : "
         "yes no good bad cat dog red blue add sum answer question").split()


def make_tokenizer(folder: Path):
    """A WordLevel tokenizer (whitespace split) wrapped as a fast tokenizer; saved to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *WORDS])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                                  eos_token="<eos>")
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return tok


def make_lm(folder: Path, tokenizer, seed: int, hidden: int = 16, layers: int = 1, tie: bool = False):
    """A random tiny Llama causal LM with `tokenizer`'s vocabulary, saved (with the tokenizer) to `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128, tie_word_embeddings=tie, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def train_to_say(folder: Path, tokenizer, prompts: list[str], response: str, seed: int, steps: int = 60):
    """A tiny LM fitted (plain torch loop) to answer every prompt with `response` + eos; saved to `folder`."""
    from fr_bench.chat import encode_example

    model = make_lm(folder, tokenizer, seed).train()
    batch = [encode_example(tokenizer, p, response) for p in prompts]
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.tensor([b["input_ids"] + [tokenizer.pad_token_id] * (width - len(b["input_ids"])) for b in batch])
    labels = torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long(), labels=labels).loss.backward()
        opt.step()
    model.eval().save_pretrained(folder)
    return model
