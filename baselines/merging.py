"""Model merging baselines (task arithmetic, TIES, DARE): one generic merge over state dicts, mergekit-style.

Every method is the same three steps per tensor: task vectors τ_i = θ_i − θ_base, an optional sparsification of
each (TIES: keep the top-`density` magnitudes; DARE: drop at random with p = 1 − density and rescale by 1/(1 − p)),
and a combination (sum, or TIES's sign election + disjoint mean), scaled by λ: θ = θ_base + λ · combine(τ_1, …, τ_N).
The paper runs TaskArithmetic with λ = 1 and DARE with p = 0.9, λ = 1 (MergeBench uses λ = 0.4); both are keys.

Experts are read tensor by tensor from their safetensors files, so merging 8B models never holds more than the base
model plus one tensor per expert in memory.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch

from fr_bench.artifacts import register_artifact
from fr_bench.config import ConfigError
from fr_bench.world import World

METHODS = ("task_arithmetic", "ties", "dare", "dare_ties")
# Density used when the config leaves it unset: TIES keeps the top 20% (Yadav et al. 2023's default k);
# DARE drops p = 0.9 (the FusionRoute paper's setting); task arithmetic keeps everything.
DEFAULT_DENSITY = {"task_arithmetic": 1.0, "ties": 0.2, "dare": 0.1, "dare_ties": 0.1}
SHAPE_RULES = ("error", "base")


@dataclass
class MergeConfig:
    """Settings of one merge. The method itself is fixed by the artifact (merge_task_arithmetic, merge_dare, ...)."""

    lam: float = 1.0                    # λ, scale of the combined task vector (paper: 1.0; MergeBench: 0.4)
    density: float | None = None        # fraction of each task vector kept; None = DEFAULT_DENSITY[method]
    on_shape_mismatch: str = "error"    # error: stop, naming the tensor | base: keep the base tensor, no task vector
    dtype: str | None = None            # dtype of the saved model; None = the base checkpoint's dtype

    def validate(self, method: str) -> "MergeConfig":
        if method not in METHODS:
            raise ConfigError(f"merge method {method!r} is not one of {', '.join(METHODS)}.")
        if self.on_shape_mismatch not in SHAPE_RULES:
            raise ConfigError(f"MergeConfig.on_shape_mismatch = {self.on_shape_mismatch!r}; use 'error' or 'base'.")
        d = self.resolved_density(method)
        if not 0.0 < d <= 1.0:
            raise ConfigError(f"MergeConfig.density = {d} must be in (0, 1] (it is the fraction of each task vector "
                              f"kept; DARE's drop rate is 1 - density).")
        if method == "task_arithmetic" and d != 1.0:
            raise ConfigError(f"MergeConfig.density = {d} has no meaning for task_arithmetic (it never sparsifies); "
                              f"remove it, or use merge_ties / merge_dare.")
        return self

    def resolved_density(self, method: str) -> float:
        return DEFAULT_DENSITY[method] if self.density is None else float(self.density)


# --- the per-tensor operations (pure functions) ------------------------------------------------------------------

def topk_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: True on the round(density · numel) largest-magnitude entries of `delta` (exactly that many)."""
    k = int(round(density * delta.numel()))
    mask = torch.zeros(delta.numel(), dtype=torch.bool, device=delta.device)
    if k > 0:
        mask[torch.topk(delta.abs().flatten(), k, sorted=False).indices] = True
    return mask.view_as(delta)


def dare_sparsify(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: drop each entry with probability p = 1 − density, rescale survivors by 1/(1 − p) (unbiased)."""
    if density >= 1.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator, device=delta.device) < density
    return torch.where(keep, delta / density, torch.zeros_like(delta))


def sign_consensus_mean(deltas: torch.Tensor) -> torch.Tensor:
    """TIES elect + disjoint merge over stacked task vectors [N, ...]: per entry, the sign with the larger total
    magnitude (sign of the sum) wins, and the merged value is the mean of the non-zero entries that agree with it."""
    elected = torch.sign(deltas.sum(dim=0))
    agree = (torch.sign(deltas) == elected) & (deltas != 0)
    count = agree.sum(dim=0).clamp(min=1)
    return (deltas * agree).sum(dim=0) / count


def _tensor_seed(seed: int, key: str, expert: int) -> int:
    """A per-(tensor, expert) seed, so DARE's masks do not depend on the order tensors are visited in."""
    return (seed * 1_000_003 + zlib.crc32(f"{key}\0{expert}".encode())) % (2**63 - 1)


def merge_tensor(key: str, base: torch.Tensor, experts: Sequence[torch.Tensor], method: str, lam: float,
                 density: float, seed: int = 0) -> torch.Tensor:
    """θ_base + λ · combine(sparsify(θ_i − θ_base)) for one tensor, in float32, returned in the base's dtype."""
    b = base.float()
    deltas = [e.to(device=b.device, dtype=torch.float32) - b for e in experts]
    if method == "ties":
        deltas = [d * topk_mask(d, density) for d in deltas]
    elif method in ("dare", "dare_ties"):
        deltas = [dare_sparsify(d, density, torch.Generator(device=b.device).manual_seed(_tensor_seed(seed, key, i)))
                  for i, d in enumerate(deltas)]
    stacked = torch.stack(deltas)
    combined = sign_consensus_mean(stacked) if method in ("ties", "dare_ties") else stacked.sum(dim=0)
    return (b + lam * combined).to(base.dtype)


def merge(base_state: Mapping[str, torch.Tensor], expert_states: Sequence[Mapping[str, torch.Tensor]],
          method: str = "task_arithmetic", lam: float = 1.0, density: float | None = None, seed: int = 0,
          on_shape_mismatch: str = "error", expert_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Merge `expert_states` into `base_state` (same keys). Non-float tensors (buffers, ids) are copied from base.

    `expert_states` may be lazy mappings (`SafetensorsCheckpoint`): each tensor is read when it is merged.
    """
    cfg = MergeConfig(lam=lam, density=density, on_shape_mismatch=on_shape_mismatch).validate(method)
    d = cfg.resolved_density(method)
    names = list(expert_names) if expert_names is not None else [f"expert {i}" for i in range(len(expert_states))]
    if not expert_states:
        raise ValueError("merge() got no expert state dicts; pass at least one.")
    out: dict[str, torch.Tensor] = {}
    for key, base in base_state.items():
        if not torch.is_floating_point(base):
            out[key] = base.clone()
            continue
        tensors = []
        for name, state in zip(names, expert_states):
            if key not in state:
                raise KeyError(f"{name} has no tensor '{key}' (the base has it, shape {tuple(base.shape)}): experts "
                               f"must share the base's architecture and parameter names.")
            tensors.append(state[key])
        bad = [(n, tuple(t.shape)) for n, t in zip(names, tensors) if t.shape != base.shape]
        if bad and cfg.on_shape_mismatch == "error":
            raise ValueError(
                f"cannot merge tensor '{key}': base shape {tuple(base.shape)} vs "
                + ", ".join(f"{n} shape {s}" for n, s in bad)
                + ". Task vectors need identical shapes (a resized embedding or a different architecture breaks this). "
                  "Merge experts fine-tuned from this base without vocabulary changes, or set "
                  "on_shape_mismatch=base to keep the base's tensor wherever shapes differ.")
        if bad:  # on_shape_mismatch == "base"
            out[key] = base.clone()
            continue
        out[key] = merge_tensor(key, base, tensors, method, cfg.lam, d, seed)
    return out


# --- checkpoints on disk ----------------------------------------------------------------------------------------

class SafetensorsCheckpoint(Mapping[str, torch.Tensor]):
    """Read-only, lazy `{name: tensor}` view of a checkpoint folder's safetensors file(s) (single or sharded)."""

    def __init__(self, path: str | Path) -> None:
        self.path = _local_dir(path)
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            self._file_of = {k: self.path / f for k, f in json.loads(index.read_text())["weight_map"].items()}
        else:
            single = self.path / "model.safetensors"
            if not single.is_file():
                raise FileNotFoundError(f"{self.path} holds no model.safetensors(.index.json); merging reads "
                                        f"safetensors checkpoints: re-save the model with save_pretrained().")
            from safetensors import safe_open

            with safe_open(single, framework="pt") as fh:
                self._file_of = {k: single for k in fh.keys()}

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(self._file_of[key], framework="pt") as fh:
            return fh.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._file_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)


def _local_dir(path: str | Path) -> Path:
    """A local checkpoint folder, or the cached snapshot of a Hub name (downloaded when a network is there)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(path), allow_patterns=["*.safetensors", "*.json"]))


def _dedup_tied(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop keys whose tensor shares storage with an earlier key (tied embeddings); return (unique, alias->key)."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, t in state.items():
        ident = (t.untyped_storage().data_ptr(), tuple(t.shape))
        if ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
            unique[key] = t
    return unique, aliases


def build_merged_model(base_path: str | Path, expert_paths: Sequence[str | Path], cfg: MergeConfig,
                       out_dir: str | Path, *, method: str, seed: int = 0,
                       tokenizer_path: str | Path | None = None) -> Path:
    """Merge the experts into the base and write a `save_pretrained` model + tokenizer (from `tokenizer_path`,
    default the base) + `merge.json` (settings and per-tensor statistics) to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg.validate(method)
    out_dir = Path(out_dir)
    dtype = getattr(torch, cfg.dtype) if cfg.dtype else "auto"
    model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype)
    base_state, aliases = _dedup_tied(model.state_dict())
    experts = [SafetensorsCheckpoint(p) for p in expert_paths]
    merged = merge(base_state, experts, method=method, lam=cfg.lam, density=cfg.density, seed=seed,
                   on_shape_mismatch=cfg.on_shape_mismatch, expert_names=[str(p) for p in expert_paths])
    floats = [k for k, t in merged.items() if torch.is_floating_point(t)]
    n_changed = sum(int((merged[k] != base_state[k]).sum()) for k in floats)
    changed = n_changed / max(sum(merged[k].numel() for k in floats), 1)
    missing, unexpected = model.load_state_dict(merged, strict=False)
    if unexpected or set(missing) - set(aliases):
        raise RuntimeError(f"merged state does not fit the base model: missing {sorted(set(missing) - set(aliases))}, "
                           f"unexpected {sorted(unexpected)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(str(tokenizer_path or base_path)).save_pretrained(out_dir)
    (out_dir / "merge.json").write_text(json.dumps({
        "method": method, "seed": seed, "density": cfg.resolved_density(method), **asdict(cfg),
        "base": str(base_path), "experts": [str(p) for p in expert_paths],
        "fraction_of_parameters_changed": changed}, indent=2) + "\n")
    return out_dir


def _register_merge(method: str, seeded: bool, description: str) -> None:
    """Artifact `merge_<method>`: the merge of the world's experts into its base (one builder per merge method)."""
    def build(world: World, cfg: MergeConfig, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
        build_merged_model(world.base, list(world.experts.values()), cfg, out_dir, method=method, seed=seed,
                           tokenizer_path=world.tokenizer)

    build.__name__ = build.__qualname__ = f"merge_{method}"
    register_artifact(f"merge_{method}", config=MergeConfig, seeded=seeded, description=description)(build)


_register_merge("task_arithmetic", False, "task arithmetic merge of the experts")
_register_merge("ties", False, "TIES merge of the experts")
_register_merge("dare", True, "DARE merge of the experts (random drop mask: seeded)")
