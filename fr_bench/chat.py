"""One way to turn a user message into model input, shared by training and evaluation.

Training encodes `format_prompt(tok, user) + response + eos`, evaluation decodes from `format_prompt(tok, user)`,
so what a model is trained on and what it is asked at test time can never drift apart.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence


def format_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """The chat-templated prompt when the tokenizer has a template, else the raw text."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return user
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_example(tokenizer: Any, user: str, response: str, max_length: int | None = None,
                   spans: Sequence[tuple[str, bool]] | None = None) -> dict[str, list[int]]:
    """Token ids and labels for one (prompt, response) pair; prompt tokens are masked with -100.

    `spans`: the response cut into (text, trained) pieces that join to `response`; tokens of untrained pieces are
    masked too (a token belongs to the piece its first character is in; the eos to the last piece)."""
    prompt_ids = tokenizer(format_prompt(tokenizer, user), add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=spans is not None)
    response_ids = enc["input_ids"] + eos
    trained = [True] * len(response_ids)
    if spans is not None:
        if "".join(t for t, _ in spans) != response:
            raise ValueError("encode_example: the spans do not join to the response")
        ends = list(itertools.accumulate(len(t) for t, _ in spans))
        piece = [next((k for k, e in enumerate(ends) if start < e), len(spans) - 1)
                 for start, _ in enc["offset_mapping"]] + [len(spans) - 1]
        trained = [spans[k][1] for k in piece]
    input_ids = prompt_ids + response_ids
    labels = [-100] * len(prompt_ids) + [t if keep else -100 for t, keep in zip(response_ids, trained)]
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}
