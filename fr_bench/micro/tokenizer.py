"""The micro world's one tokenizer: byte-level BPE trained on the micro corpus, saved as a transformers tokenizer.

Role markers are special tokens and the chat template is Jinja, so `fr_bench.chat.format_prompt` and
`apply_chat_template` work on it exactly as on a real chat model's tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS) + ROLE_TOKENS

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


NUMBER_MODES = ("bpe", "isolate", "digits")


def train_tokenizer(texts: Iterable[str], vocab_size: int, numbers: str = "isolate", cross_word: bool = True):
    """A PreTrainedTokenizerFast with BPE merges learned from `texts`.

    `cross_word`: merges may span spaces, so the benchmarks' fixed instructions ("Solve the problem step by step...",
    "You are an expert Python programmer...") become a token or two and training spends its compute on the part
    of each prompt that varies.
    `numbers`: "bpe" merges digits like any text (" 14" and "14" at a line start are different tokens), "isolate"
    splits digit runs from the space before them (so a number is the same token wherever it stands), "digits" makes
    every digit its own token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not cross_word)
    if numbers not in NUMBER_MODES:
        raise ValueError(f"tokenizer numbers={numbers!r}; choose one of {', '.join(NUMBER_MODES)}")
    tok.pre_tokenizer = (byte_level if numbers == "bpe" else pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=numbers == "digits"), byte_level]))
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=list(ROLE_TOKENS), chat_template=CHAT_TEMPLATE,
                                   padding_side="left", model_max_length=4096)


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))
