"""What FusionRoute decoding costs over one expert decoding alone, and what it holds in memory.

Same prompts, greedy, a fixed number of new tokens (eos disabled, so every method decodes the same lengths):
(a) one expert alone, (b) FusionRoute (router + 3 equal-size experts, lazy catch-up), (c) the naive engine (every
model every step), (d) FusionRoute whose rows never leave the home expert, at batch 1 and batch 8; repeats are
interleaved (a, b, c, d, d, c, b, a, ...) and each ratio is the median over repeats of b/a (c/a, d/a) within a
repeat, so load from other processes hits all of them alike (`_range`: the smallest and largest per-repeat fusion
ratio, for the spread). (d) splits the fusion ratio: `fusion_no_switch_over_single` is what every step costs (two
forwards, routing head, combination) and the rest of `fusion_over_single` is the catch-ups that switches cost.
Models have random weights of a given shape (no download).

Routing realism: a random routing head switches experts at almost every token (or never, when a random model loops).
The benchmark therefore draws expert choices from a seeded schedule (`ScheduledRouting`): each row stays on the home
expert of its same-domain batch (e.g. all GSM8K -> math) and spends a `--router-switch-rate` share of tokens on the
other experts, in excursions of mean length `--excursion` tokens (1: independent per token, the worst case for
catch-up since every excursion is two switches). The router still runs every step and the rest of the FusionRoute
policy is the real one. Each repeat draws a fresh schedule (fusion and naive share it), so the median is the cost
at the requested rate rather than at one draw's (one draw at batch 8 covers only ~1000 tokens: seed 0 alone gives
1.3 % for 1 %); the mean measured rate is reported. The default, 1 % in one-token excursions, is above what the
trained micro-world FusionRoute does on its domain benchmarks (0.03-0.45 % of tokens off the home expert, excursions
1.0-1.8 tokens: `benchmarks/routing_stats.py` on reports/ablations); `--stress-switch-rate` (default 5 %) repeats
the fusion/single measurement at a harsher rate (keys `stress_*`; 0 skips it). Mixed-domain prompts (the micro
general task) switch far more: 16 % of tokens.

Times: wall clock (`perf_counter`), and on CPU also process CPU time (keys `*_cpu`): with `--threads 1` the CPU time
is the work done, unaffected by other processes taking the core (these machines are shared and noisy).

Memory (measured first, before the timed runs): torch.cuda.max_memory_allocated (GPU) or the peak RSS (CPU: /proc
VmHWM, reset before the run, minus what the process held apart from the weights just before it) during a
FusionRoute batch-8 run, over the bytes of all model weights plus the KV caches that run allocated.

Prints one JSON object as its last line. Run:
  .venv/bin/python benchmarks/decode_overhead.py                                # micro Llama models, CPU
  .venv/bin/python benchmarks/decode_overhead.py --shape llama-3.2-1b --device cuda --dtype bfloat16
  .venv/bin/python benchmarks/decode_overhead.py --shape smollm2 --threads 1     # SmolLM2-135M (49k vocabulary)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from fr_bench.decoding.engine import DecodeEngine, ModelOutput
from fr_bench.decoding.policies import FusionRoute, SingleModel
from fr_bench.models.loading import freeze, torch_dtype
from fr_bench.models.router import RouterModel

SHAPES = {
    "micro": ("llama", dict(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)),
    "micro-gemma2": ("gemma2", dict(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                    num_attention_heads=8, num_key_value_heads=4, head_dim=32, sliding_window=32,
                                    final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                    query_pre_attn_scalar=32, max_position_embeddings=2048)),
    "smollm2": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                              num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                              max_position_embeddings=8192, tie_word_embeddings=True)),   # SmolLM2-135M
    "llama-3.2-1b": ("llama", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
                                   max_position_embeddings=131072, tie_word_embeddings=True)),
    "gemma-2-2b": ("gemma2", dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                  num_attention_heads=8, num_key_value_heads=4, head_dim=256, sliding_window=4096,
                                  final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                  query_pre_attn_scalar=256, max_position_embeddings=8192)),
}
N_EXPERTS = 3


def random_lm(shape: str, seed: int, dtype: torch.dtype, device: str) -> torch.nn.Module:
    """A causal LM of `shape` with transformers' random init, built directly on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig

    family, kwargs = SHAPES[shape]
    config = (LlamaConfig if family == "llama" else Gemma2Config)(**kwargs)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return freeze(model)


@dataclass
class ScheduledRouting(FusionRoute):
    """FusionRoute whose expert choices follow a seeded schedule; the router still runs (and costs) every step.

    Each row stays on expert 0 (the home expert of a same-domain batch) and spends a `switch_rate` share of tokens
    on other experts, in excursions of mean length `excursion` tokens (a Markov chain per row; 1 = independent
    per token, the worst case for catch-up since every excursion is two switches)."""

    switch_rate: float = 0.05
    excursion: float = 1.0

    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.current: torch.Tensor | None = None

    def choose(self, router: ModelOutput) -> torch.Tensor:
        rows = router.logits.shape[0]
        if self.current is None:
            self.current = torch.zeros(rows, dtype=torch.long)
        back = 1.0 / self.excursion                                     # P(return home | away)
        leave = self.switch_rate * back / (1.0 - self.switch_rate)      # stationary away share = switch_rate
        u = torch.rand(rows, generator=self.generator)
        other = torch.randint(1, len(self.experts), (rows,), generator=self.generator)
        home = self.current == 0
        self.current = torch.where(home, torch.where(u < leave, other, 0), torch.where(u < back, 0, self.current))
        return self.current.to(router.logits.device)


def peak_memory_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")     # resets VmHWM (Linux)


def peak_memory(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) * 1024


def base_memory(device: str) -> int:
    """RSS now (CPU; 0 on GPU): with the weights subtracted, what the interpreter and libraries hold."""
    if device.startswith("cuda"):
        return 0
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) * 1024


def weight_bytes(models: list[torch.nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in models for p in m.parameters())


def timed(engine: DecodeEngine, prompts: list[list[int]], new_tokens: int, device: str, seed: int = 0):
    """(wall seconds, process CPU seconds, outputs, stats) of one decode; `seed` draws the routing schedule."""
    if isinstance(engine.policy, ScheduledRouting):
        engine.policy.reseed(seed)               # fusion and naive see the same schedule
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    outputs, stats = engine.generate_ids(prompts, new_tokens, batch_size=len(prompts))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, outputs, stats


def measure(engines: dict[str, DecodeEngine], prompts: list[list[int]], new_tokens: int, repeats: int,
            device: str, prefix: str = "") -> dict[str, float | bool]:
    """Interleaved repeats of every engine on `prompts`, keyed `<prefix>..._b<B>`. A ratio is the median over repeats
    of (engine time / single time in the same repeat): runs seconds apart share the machine's state, and the order
    alternates between repeats so slow drifts hit both sides alike."""
    batch, result = len(prompts), {}
    for engine in engines.values():                              # warm-up (allocator, lazy imports, kernels)
        timed(engine, prompts, 4, device)
    wall: dict[str, list[float]] = {name: [] for name in engines if name != "single"}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    single_wall: list[float] = []
    exact, counts = True, {"forwards": [], "positions": [], "catch_up": [], "switched": []}
    for repeat in range(repeats):
        outs, stats, seconds, cpu_seconds = {}, {}, {}, {}
        for name in (list(engines) if repeat % 2 == 0 else list(engines)[::-1]):
            run = timed(engines[name], prompts, new_tokens, device, seed=repeat)
            seconds[name], cpu_seconds[name], outs[name], stats[name] = run
        for name in wall:
            wall[name].append(seconds[name] / seconds["single"])
            cpu[name].append(cpu_seconds[name] / cpu_seconds["single"])
        single_wall.append(seconds["single"])
        if "naive" in outs:
            exact &= [o.token_ids for o in outs["fusion"]] == [o.token_ids for o in outs["naive"]]
        fusion, single = stats["fusion"], stats["single"]               # contention-free work counts
        counts["forwards"].append(sum(fusion.forwards) / sum(single.forwards))
        counts["positions"].append(sum(fusion.tokens) / sum(single.tokens))
        counts["catch_up"].append(fusion.catch_up_share)
        choices = [c for o in outs["fusion"] for c in o.expert_choices]
        counts["switched"].append(sum(c != 0 for c in choices) / len(choices))
    key = f"_b{batch}"
    for name in wall:
        result[f"{prefix}{name}_over_single{key}"] = round(statistics.median(wall[name]), 3)
        if not device.startswith("cuda"):
            result[f"{prefix}{name}_over_single{key}_cpu"] = round(statistics.median(cpu[name]), 3)
    result[f"{prefix}fusion_over_single{key}_range"] = [round(min(wall["fusion"]), 3), round(max(wall["fusion"]), 3)]
    if "naive" in engines:
        result[f"fusion_equals_naive{key}"] = exact
    mean = {name: statistics.mean(values) for name, values in counts.items()}     # over the repeats' schedules
    result[f"{prefix}fusion_forwards_over_single{key}"] = round(mean["forwards"], 3)
    result[f"{prefix}fusion_positions_over_single{key}"] = round(mean["positions"], 3)
    result[f"{prefix}catch_up_share" + ("" if batch == 1 else key)] = round(mean["catch_up"], 3)
    result[f"{prefix}measured_switch_rate{key}"] = round(mean["switched"], 4)
    if not prefix:
        result[f"single_ms_per_token{key}"] = round(1000 * statistics.median(single_wall) / new_tokens, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="micro")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=64, help="mean prompt length (batch rows vary +-25%%)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--router-switch-rate", type=float, default=0.01, help="share of tokens off the home expert")
    parser.add_argument("--excursion", type=float, default=1.0, help="mean tokens per stay off the home expert")
    parser.add_argument("--stress-switch-rate", type=float, default=0.05,
                        help="also measure fusion/single at this rate (keys stress_*); 0 skips it")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dtype = torch_dtype(args.dtype)
    vocab = SHAPES[args.shape][1]["vocab_size"]
    router = RouterModel(random_lm(args.shape, 0, dtype, args.device), [f"expert{i}" for i in range(N_EXPERTS)])
    router = freeze(router.to(args.device))
    experts = [random_lm(args.shape, 1 + i, dtype, args.device) for i in range(N_EXPERTS)]
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=None, decode=lambda ids, **kw: "")   # no text needed

    def fusion(rate: float, lazy: bool = True) -> DecodeEngine:
        policy = ScheduledRouting(router=0, experts=[1, 2, 3], switch_rate=rate, excursion=args.excursion)
        return DecodeEngine([router, *experts], policy, tok, eos_ids=set(), lazy=lazy)

    single = DecodeEngine([experts[0]], SingleModel(), tok, eos_ids=set())
    engines = {"single": single, "fusion": fusion(args.router_switch_rate),
               "naive": fusion(args.router_switch_rate, lazy=False), "fusion_no_switch": fusion(0.0)}
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(int(args.prompt_len * 0.75), int(args.prompt_len * 1.25) + 1, (8,), generator=g)
    all_prompts = [torch.randint(0, vocab, (int(n),), generator=g).tolist() for n in lengths]

    result: dict[str, float | int | str | bool] = {}
    # Memory first, in a process that has decoded nothing big yet: pages freed by earlier runs would hide the growth.
    timed(engines["fusion"], all_prompts[:1], 4, args.device)        # lazy imports and kernels, not counted
    mem_before = base_memory(args.device) - weight_bytes([router, *experts])
    peak_memory_reset(args.device)
    _, _, _, stats = timed(engines["fusion"], all_prompts, args.new_tokens, args.device)
    weights = weight_bytes([router, *experts])
    kv = stats.cache_bytes
    peak = peak_memory(args.device) - mem_before
    result.update(peak_mem_bytes_fusion_b8=peak, weights_bytes=weights, kv_bytes_fusion_b8=kv,
                  peak_mem_over_weights_plus_kv=round(peak / (weights + kv), 3))
    for batch in (1, 8):
        result.update(measure(engines, all_prompts[:batch], args.new_tokens, args.repeats, args.device))
    if args.stress_switch_rate:
        stress = {"single": single, "fusion": fusion(args.stress_switch_rate)}
        for batch in (1, 8):
            result.update(measure(stress, all_prompts[:batch], args.new_tokens, args.repeats, args.device, "stress_"))

    result.update(shape=args.shape, device=args.device, dtype=args.dtype, new_tokens=args.new_tokens,
                  repeats=args.repeats, router_switch_rate=args.router_switch_rate, excursion=args.excursion,
                  stress_switch_rate=args.stress_switch_rate,
                  threads=torch.get_num_threads(),
                  load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
