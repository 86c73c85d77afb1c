"""One way to turn a user message into model input, shared by training and evaluation.

Training encodes `format_prompt(tok, user) + response + eos`, evaluation decodes from `format_prompt(tok, user)`,
so what a model is trained on and what it is asked at test time can never drift apart.
"""
from __future__ import annotations

from typing import Any


def format_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """The chat-templated prompt when the tokenizer has a template, else the raw text."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return user
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_example(tokenizer: Any, user: str, response: str, max_length: int | None = None) -> dict[str, list[int]]:
    """Token ids and labels for one (prompt, response) pair; prompt tokens are masked with -100."""
    prompt_ids = tokenizer(format_prompt(tokenizer, user), add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + eos
    input_ids = prompt_ids + response_ids
    labels = [-100] * len(prompt_ids) + response_ids
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}
