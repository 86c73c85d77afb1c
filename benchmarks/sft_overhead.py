"""What one router SFT step costs over one plain LM fine-tuning step of the same base, on the same batch.

Router step: forward of the router LM + routing head, L_LM + lambda * L_route (the configured route loss, default the
paper's log-space mixture over the full vocabulary), backward, AdamW step. Plain step: the same LM, L_LM only,
backward, AdamW step. Both include collation and the host-to-device copy of the batch, which for the router carries
the cached expert signals (gold log-probs, informative mask and, for paper_logmix, the experts' fp16 log-probs at
informative positions). The expert forward passes that build the signal cache run once per dataset and are not part
of a step, so the cached table is synthesised here with the right shapes: a fraction `--informative-rate` of the
response positions is informative (the experts disagree). With online signals (`--signals online`, or `auto` at a
vocabulary above 8192, e.g. `--shape smollm2`) there is no table: the router step also runs the three frozen experts
(random, the router's size) forward under no_grad on the batch, as `SFTConfig.expert_signals: online` trains. The
experts are held in `--expert-dtype`: by default bf16 under `--precision bf16`, as a bf16 world (`world.dtype:
bfloat16`, e.g. experiments/smollm2_cpu.yaml) loads them, so autocast does not re-cast their weights every step; the
forward-only floor is then about 2.0 (three expert forwards ~ one forward + backward). Repeats are interleaved
(router, plain, router, ...) and the ratio of medians is reported, so load from other processes hits both alike.
Random weights, no download.

Prints one JSON object as its last line. Run:
  .venv/bin/python benchmarks/sft_overhead.py                                     # micro Llama, CPU
  .venv/bin/python benchmarks/sft_overhead.py --shape llama-3.2-1b --device cuda --precision bf16 --topk 32
  .venv/bin/python benchmarks/sft_overhead.py --shape smollm2 --threads 1 --batch-size 4   # online expert forwards
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import torch

from fr_bench.models.router import RouterModel
from fr_bench.training.configs import SFTConfig
from fr_bench.training.expert_signals import OnlineExpertSignals, SignalTable
from fr_bench.training.data import SFTDataset
from fr_bench.training.sft import RouterSFT, collate_sft, forward_logits, sft_losses

SHAPES = {
    "micro": dict(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048),
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                    max_position_embeddings=8192, tie_word_embeddings=True),
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
                         max_position_embeddings=131072, tie_word_embeddings=True),
}
N_EXPERTS = 3


def random_lm(shape: str, seed: int, device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        return LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))


def synthetic_examples(n: int, prompt_len: int, response_len: int, vocab: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (prompt_len + response_len,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt_len + ids[prompt_len:]})
    return out


def synthetic_signals(examples: list[dict], vocab: int, rate: float, topk: int, with_vocab: bool,
                      seed: int) -> SignalTable:
    """A SignalTable with the shapes compute_expert_signals would produce (values random, timing only)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [len(e["input_ids"]) - 1 for e in examples]
    offsets = torch.tensor([0] + lengths).cumsum(0)
    response = torch.cat([torch.tensor(e["labels"][1:]) != -100 for e in examples])
    informative = response & (torch.rand(len(response), generator=g) < rate)
    table = SignalTable(gold_logps=-torch.rand(len(response), N_EXPERTS, generator=g) * 5, informative=informative,
                        offsets=offsets)
    if with_vocab:
        p = int(informative.sum())
        k = vocab if topk == 0 else N_EXPERTS * topk + 1
        table.vocab_logps = (-torch.rand(p, N_EXPERTS, k, generator=g) * 10).half()
        labels = torch.cat([torch.tensor(e["labels"][1:]) for e in examples])[informative]
        table.gold_index = labels if topk == 0 else torch.zeros(p, dtype=torch.long)
        if topk:
            table.vocab_ids = torch.randint(0, vocab, (p, k), generator=g)
        counts = torch.stack([informative[offsets[i]:offsets[i + 1]].sum() for i in range(len(examples))])
        table.vocab_offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return table


def make_step(module: RouterSFT, items: list[dict], cfg: SFTConfig, device: str, autocast: torch.dtype | None):
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.lr)

    def step() -> None:
        batch = collate_sft(items, pad_id=0)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device_type=device.split(":")[0], dtype=autocast, enabled=autocast is not None):
            logits, routing = forward_logits(module.model, batch["input_ids"], batch["attention_mask"])
            loss = sft_losses(logits, routing, batch, cfg, online=module.online)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="micro")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast (fp32 weights)")
    ap.add_argument("--expert-dtype", choices=["auto", "fp32", "bf16"], default="auto",
                    help="online experts' weights (auto = bf16 under --precision bf16, as a bf16 world loads them)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--response-len", type=int, default=192)
    ap.add_argument("--informative-rate", type=float, default=0.5)
    ap.add_argument("--route-loss", default="paper_logmix", choices=["paper_logmix", "mixture", "argmax"])
    ap.add_argument("--topk", type=int, default=0, help="paper_logmix vocabulary truncation (0 = full vocabulary)")
    ap.add_argument("--signals", choices=["auto", "cache", "online"], default="auto",
                    help="expert signals: the cached table or online expert forwards (SFTConfig.expert_signals)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SFTConfig(route_loss=args.route_loss, route_vocab_topk=args.topk, expert_signals=args.signals).validate()
    vocab = SHAPES[args.shape]["vocab_size"]
    examples = synthetic_examples(args.batch_size, args.prompt_len, args.response_len, vocab, seed=0)
    plain_items = [SFTDataset(examples)[i] for i in range(len(examples))]
    online = None
    if cfg.signals_online(vocab):
        expert_dtype = args.precision if args.expert_dtype == "auto" else args.expert_dtype
        dtype = torch.bfloat16 if expert_dtype == "bf16" else torch.float32
        experts = [random_lm(args.shape, 1 + i, args.device).to(dtype) for i in range(N_EXPERTS)]
        online = OnlineExpertSignals(experts, vocab=cfg.needs_vocab_signal, topk=args.topk)
        signals, router_items = None, plain_items
    else:
        signals = synthetic_signals(examples, vocab, args.informative_rate, args.topk, cfg.needs_vocab_signal, seed=1)
        router_items = [SFTDataset(examples, signals)[i] for i in range(len(examples))]
    router = RouterModel(random_lm(args.shape, 0, args.device), [f"e{i}" for i in range(N_EXPERTS)]).to(args.device)
    plain = random_lm(args.shape, 0, args.device)
    autocast = torch.bfloat16 if args.precision == "bf16" else None
    steps = {"router": make_step(RouterSFT(router, cfg, online=online).train(), router_items, cfg, args.device,
                                 autocast),
             "plain": make_step(RouterSFT(plain, cfg).train(), plain_items, cfg, args.device, autocast)}
    times: dict[str, list[float]] = {"router": [], "plain": []}
    for r in range(args.warmup + args.repeats):
        for name, step in steps.items():
            t = timed(step, args.device)
            if r >= args.warmup:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "sft_over_plain": round(med["router"] / med["plain"], 4),
        "router_step_s": round(med["router"], 5), "plain_step_s": round(med["plain"], 5),
        "shape": args.shape, "device": args.device, "precision": args.precision, "batch_size": args.batch_size,
        "tokens_per_row": args.prompt_len + args.response_len, "route_loss": args.route_loss, "topk": args.topk,
        "expert_signals": "online" if online is not None else "cache",
        "expert_dtype": None if online is None else str(next(online.parameters()).dtype).removeprefix("torch."),
        "informative_positions": None if signals is None else int(signals.informative.sum()),
        "vocab_table_mb_per_batch": 0.0 if signals is None else round(signals.stats()["vocab_table_mb"], 2),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
