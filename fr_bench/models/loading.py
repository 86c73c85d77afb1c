"""Loading frozen causal LMs for decoding, and refusing models that cannot share one vocabulary.

Token-level collaboration adds or swaps next-token distributions position by position, so every model in the decode
must index the same vocabulary. The check runs before any weights are read: a mismatch costs a config read and, only
when the tokenizer files differ byte for byte, two tokenizer loads.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "unk_token_id")


class VocabularyMismatchError(ValueError):
    """A model's tokenizer or vocabulary differs from the reference one."""


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype '{name}' is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def checkpoint_location(role: str, path: str) -> str:
    """`path` if it is a local checkpoint folder or a Hub name; a clear error for a local path that does not exist."""
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{role}: '{path}' has no config.json, so it is not a transformers checkpoint; "
                                    "point it at a folder written by save_pretrained")
        return str(local)
    if path.startswith(("/", "./", "../", "~")) or path.count("/") != 1:
        raise FileNotFoundError(f"{role}: checkpoint '{path}' does not exist; fix the path in the world config "
                                "(or give a Hub name of the form 'org/name')")
    return path


def _tokenizer_fingerprint(location: str) -> str | None:
    """Hash of the tokenizer files of a local folder; None when there are none (or the location is a Hub name)."""
    folder = Path(location)
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _tokenizer(location: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location)


def _has_tokenizer(location: str) -> bool:
    return not Path(location).exists() or _tokenizer_fingerprint(location) is not None


def vocabulary_differences(location: str, reference: str) -> list[str]:
    """Human-readable differences between two tokenizers' vocabularies and special ids ([] = same)."""
    fp_a, fp_b = _tokenizer_fingerprint(location), _tokenizer_fingerprint(reference)
    if fp_a is not None and fp_a == fp_b:
        return []
    tok, ref = _tokenizer(location), _tokenizer(reference)
    diffs: list[str] = []
    vocab, ref_vocab = tok.get_vocab(), ref.get_vocab()
    if vocab != ref_vocab:
        only = sorted(set(vocab) - set(ref_vocab))[:5]
        missing = sorted(set(ref_vocab) - set(vocab))[:5]
        moved = sum(1 for t, i in vocab.items() if t in ref_vocab and ref_vocab[t] != i)
        diffs.append(f"vocabulary size {len(vocab)} vs {len(ref_vocab)} in the reference"
                     + (f"; tokens only in it: {only}" if only else "")
                     + (f"; tokens it lacks: {missing}" if missing else "")
                     + (f"; {moved} shared tokens have different ids" if moved else ""))
    for attr in SPECIAL_IDS:
        a, b = getattr(tok, attr, None), getattr(ref, attr, None)
        if a != b:
            diffs.append(f"{attr} {a} vs {b} in the reference")
    return diffs


def check_same_vocabulary(role: str, location: str, reference_tokenizer: str, reference_vocab_size: int | None) -> int:
    """Refuse (VocabularyMismatchError) a model whose tokenizer or logit size differs; returns its vocab size."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(location)
    except OSError as err:
        raise FileNotFoundError(f"{role}: cannot read the config of '{location}': it is not a local checkpoint folder "
                                f"and not in the Hugging Face cache (runs are offline). Original error: {err}") from err
    vocab_size = config.get_text_config().vocab_size
    diffs = []
    if reference_vocab_size is not None and vocab_size != reference_vocab_size:
        diffs.append(f"config.vocab_size (logit width) {vocab_size} vs {reference_vocab_size} for the other models")
    if _has_tokenizer(location):
        diffs += vocabulary_differences(location, reference_tokenizer)
    if diffs:
        raise VocabularyMismatchError(
            f"{role} ('{location}') does not share the vocabulary of the reference tokenizer '{reference_tokenizer}': "
            + "; ".join(diffs) + ". Token-level collaboration combines next-token distributions position by position, "
            "so every model must use one tokenizer. Fix: use models fine-tuned from the same base (same tokenizer), "
            f"or drop {role} from the world config.")
    return vocab_size


def load_frozen_lm(role: str, location: str, dtype: str = "float32", device: str | torch.device = "cpu",
                   attn_implementation: str | None = None) -> torch.nn.Module:
    """A causal LM in eval mode with gradients off: experts are never trained, only read."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as err:
        raise FileNotFoundError(f"{role}: cannot load '{location}': it is not a local checkpoint folder and not in "
                                f"the Hugging Face cache (runs are offline). Original error: {err}") from err
    return freeze(model.to(device))


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
