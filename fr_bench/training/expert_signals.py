"""What the frozen experts say about the SFT data, computed once per dataset and cached on disk.

The routing loss needs, at each response position t of each example (teacher forcing, positions aligned as in
`losses`): every expert's log-prob of the gold token, whether the position is *informative* (the experts' greedy
tokens are not all equal), and for `paper_logmix` the experts' log-probs over the vocabulary at informative positions.
None of it depends on the router, so it is computed in one pass over the data with one expert in memory at a time
and reused by every epoch, by CDPO's mixed-in SFT samples and by every seed. For real vocabularies that table is too
big (below); `OnlineExpertSignals` computes the same signals per training batch from experts kept in memory.

Size of the vocabulary table: P informative positions x N experts x K entries x 2 bytes (fp16). With a full
vocabulary (K = |V|) that is 3 x 128k x 2 B = 768 kB per informative position for Llama-3 and three experts, i.e.
~77 GB for 100k informative positions; `topk = k` keeps, per position, only the union of the experts' top-k tokens
and the gold token (K = N*k + 1, padded) and takes the log-softmax of the mixture over that set.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..cache import artifact_dir, atomic_dir, atomic_write_json, is_complete
from .data import collate
from .losses import IGNORE_INDEX

SIGNAL_FILE = "signals.safetensors"
FORMAT_VERSION = 1

ExpertSource = nn.Module | str | Callable[[], nn.Module]


@dataclass
class SignalTable:
    """Signals of a whole dataset, flattened over examples (example i owns rows offsets[i]:offsets[i+1]).

    gold_logps [S, N] float32, informative [S] bool (False outside response positions), where example i has
    S_i = len(input_ids_i) - 1 positions. vocab_* rows belong to informative positions in order
    (vocab_offsets): vocab_logps [P, N, K] fp16, gold_index [P] int64, vocab_ids [P, K] int64 (top-k mode, -1 =
    padding; None in full-vocab mode, where entry k is token k).
    """

    gold_logps: torch.Tensor
    informative: torch.Tensor
    offsets: torch.Tensor
    vocab_logps: torch.Tensor | None = None
    gold_index: torch.Tensor | None = None
    vocab_ids: torch.Tensor | None = None
    vocab_offsets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def has_vocab(self) -> bool:
        return self.vocab_logps is not None

    def example(self, i: int) -> dict[str, torch.Tensor]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        out = {"gold_logps": self.gold_logps[a:b], "informative": self.informative[a:b]}
        if self.vocab_logps is not None:
            va, vb = int(self.vocab_offsets[i]), int(self.vocab_offsets[i + 1])
            out["vocab_logps"] = self.vocab_logps[va:vb]
            out["gold_index"] = self.gold_index[va:vb]
            if self.vocab_ids is not None:
                out["vocab_valid"] = self.vocab_ids[va:vb] >= 0
        return out

    def stats(self) -> dict[str, float]:
        return {"signal_positions": int(self.informative.numel()), "informative_positions": int(self.informative.sum()),
                "vocab_table_mb": 0.0 if self.vocab_logps is None else
                self.vocab_logps.numel() * self.vocab_logps.element_size() / 2**20}

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in vars(self).items() if v is not None}
        save_file(tensors, str(directory / SIGNAL_FILE))

    @classmethod
    def load(cls, directory: Path) -> "SignalTable":
        from safetensors.torch import load_file

        return cls(**load_file(str(directory / SIGNAL_FILE)))


def _batches(examples: Sequence[dict[str, list[int]]], batch_size: int, pad_id: int,
             device: torch.device) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Right-padded (indices, input_ids, attention_mask, shifted labels) batches in dataset order."""
    for start in range(0, len(examples), batch_size):
        idx = list(range(start, min(start + batch_size, len(examples))))
        batch = collate([examples[i] for i in idx], pad_id)
        yield idx, batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["labels"][:, 1:].to(device)


def open_frozen(source: ExpertSource, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """A module as given; a path or loader becomes a frozen (eval, requires_grad False) model on `device`."""
    if isinstance(source, nn.Module):
        return source
    if isinstance(source, str):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    else:
        model = source()
    model.eval().requires_grad_(False)
    return model.to(device)


# CausalLM types whose forward is `lm_head(model(...).last_hidden_state)`, Gemma-2 then softcapping the logits
# (checked against transformers 5.23's modeling files); any other type takes the full forward.
HEAD_ONLY_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo2", "smollm3"})
LOGIT_SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale", "lm_head_multiplier")


def response_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    response: torch.Tensor) -> torch.Tensor:
    """Next-token logits [R, V] at the True positions of `response` [B, T-1] (shifted: position t predicts token
    t+1), row-major, i.e. `model(...).logits[:, :-1][response]`.

    The output head is the one per-position cost that grows with the vocabulary (49k columns for SmolLM2, 128k for
    Llama-3), so it is applied only to the selected positions: the backbone (`get_decoder()`, final norm included)
    runs on the whole batch, then the head and Gemma-2's `final_logit_softcapping`. That equals the full forward
    only for CausalLMs whose logits are exactly head(last hidden state) [+ that softcap]; models that scale logits
    otherwise (`logit_scale`, `logits_scaling`, ...), any other model type, classes from outside transformers (a
    subclass may change forward) and modules without a decoder or output embeddings take the full forward and
    select afterwards.
    """
    config = getattr(model, "config", None)
    head_only = (getattr(config, "model_type", None) in HEAD_ONLY_TYPES
                 and type(model).__module__.startswith("transformers.") and hasattr(model, "get_decoder")
                 and hasattr(model, "get_output_embeddings")
                 and not any(getattr(config, name, None) is not None for name in LOGIT_SCALES))
    head = model.get_output_embeddings() if head_only else None
    if head is None:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][response]
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = head(hidden.last_hidden_state[:, :-1][response])
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is not None:                                  # as Gemma2ForCausalLM.forward does it, op for op
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def _expert_logps(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """fp32 log-probs [P, V] at the True positions of `select` [B, T-1]."""
    return response_logits(model, ids, mask, select).float().log_softmax(-1)


def _scatter(values: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """[P, ...] rows at the True positions of `select` [B, T-1], zeros elsewhere."""
    out = values.new_zeros(*select.shape, *values.shape[1:])
    out[select] = values
    return out


def _candidates(topk_ids: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of the experts' top-k ids and the gold id per position, -1 padded: ([P, N*k+1] ids, [P] gold index)."""
    ids = torch.cat([topk_ids.flatten(1), gold[:, None]], dim=1).sort(dim=1).values
    dup = torch.zeros_like(ids, dtype=torch.bool)
    dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
    ids = ids.masked_fill(dup, -1)
    return ids, (ids == gold[:, None]).float().argmax(-1)


def compute_expert_signals(experts: Sequence[ExpertSource], examples: Sequence[dict[str, list[int]]], *,
                           vocab: bool = False, topk: int = 0, batch_size: int = 8, pad_id: int = 0,
                           device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SignalTable:
    """One teacher-forced pass per expert (two with `vocab`), never more than one expert loaded from a path at once.

    `experts`: loaded modules (left as they are), checkpoint paths, or zero-argument loaders (loaded, used, freed).
    """
    device = torch.device(device)
    lengths = [len(e["input_ids"]) - 1 for e in examples]
    offsets = torch.tensor([0] + lengths).cumsum(0)
    n = len(experts)
    gold_logps = torch.zeros(int(offsets[-1]), n)
    greedy = torch.zeros(int(offsets[-1]), n, dtype=torch.long)
    response = torch.zeros(int(offsets[-1]), dtype=torch.bool)
    topk_ids = torch.zeros(int(offsets[-1]), n, max(topk, 1), dtype=torch.long) if vocab and topk else None

    def rows(idx: list[int]) -> list[slice]:
        return [slice(int(offsets[i]), int(offsets[i + 1])) for i in idx]

    for e, source in enumerate(experts):
        model = open_frozen(source, device, dtype)
        for idx, ids, mask, labels in _batches(examples, batch_size, pad_id, device):
            resp = labels != IGNORE_INDEX                                  # only these rows are ever read
            logp = _expert_logps(model, ids, mask, resp)                   # [R, V]
            gold = _scatter(logp.gather(-1, labels[resp][:, None]).squeeze(-1), resp)
            best = _scatter(logp.argmax(-1), resp)
            if topk_ids is not None and topk > logp.shape[-1]:
                raise ValueError(f"route_vocab_topk = {topk} exceeds the vocabulary ({logp.shape[-1]}); use 0 (full "
                                 "vocabulary) or a smaller k.")
            top = _scatter(logp.topk(topk, dim=-1).indices, resp) if topk_ids is not None else None
            for row, sl in enumerate(rows(idx)):
                s = sl.stop - sl.start
                gold_logps[sl, e] = gold[row, :s].cpu()
                greedy[sl, e] = best[row, :s].cpu()
                response[sl] = labels[row, :s].cpu() != IGNORE_INDEX
                if top is not None:
                    topk_ids[sl, e] = top[row, :s].cpu()
        if model is not source:
            del model
    informative = response & (greedy != greedy[:, :1]).any(-1)
    table = SignalTable(gold_logps=gold_logps.where(response[:, None], torch.zeros(())), informative=informative,
                        offsets=offsets)
    if vocab:
        _add_vocab_table(table, experts, examples, topk_ids, batch_size, pad_id, device, dtype)
    return table


def _add_vocab_table(table: SignalTable, experts: Sequence[ExpertSource], examples: Sequence[dict[str, list[int]]],
                     topk_ids: torch.Tensor | None, batch_size: int, pad_id: int, device: torch.device,
                     dtype: torch.dtype | None) -> None:
    """Second pass: the experts' log-probs over the vocabulary (or the top-k candidate set) at informative positions."""
    inf_pos = table.informative.nonzero().squeeze(-1)                      # flat positions, in example order
    labels_flat = torch.cat([torch.tensor(e["labels"][1:]) for e in examples]) if len(examples) else torch.zeros(0)
    gold = labels_flat[inf_pos].long()
    ids = index = None
    if topk_ids is not None:
        ids, index = _candidates(topk_ids[inf_pos], gold)
    vocab_size = None
    vocab_logps: torch.Tensor | None = None
    counts = torch.zeros(len(table), dtype=torch.long)
    for e, source in enumerate(experts):
        model = open_frozen(source, device, dtype)
        cursor = 0
        for idx, b_ids, mask, labels in _batches(examples, batch_size, pad_id, device):
            select = torch.zeros(labels.shape, dtype=torch.bool)           # the batch's informative positions
            for row, i in enumerate(idx):
                a, b = int(table.offsets[i]), int(table.offsets[i + 1])
                select[row, :b - a] = table.informative[a:b]
                if e == 0:
                    counts[i] = int(select[row].sum())
            if vocab_logps is not None and not select.any():
                continue
            here = _expert_logps(model, b_ids, mask, select.to(device))   # [p, V], rows in example order
            if vocab_logps is None:
                vocab_size = here.shape[-1]
                k = vocab_size if ids is None else ids.shape[1]
                vocab_logps = torch.zeros(len(inf_pos), len(experts), k, dtype=torch.float16)
            if ids is not None:
                here = here.gather(-1, ids[cursor:cursor + len(here)].clamp_min(0).to(device))
            vocab_logps[cursor:cursor + len(here), e] = here.half().cpu()
            cursor += len(here)
        if model is not source:
            del model
    if vocab_logps is None:  # empty dataset
        vocab_logps = torch.zeros(0, len(experts), 1, dtype=torch.float16)
    table.vocab_logps = vocab_logps
    table.gold_index = gold if ids is None else index
    table.vocab_ids = ids
    table.vocab_offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


# Rows per fp32 copy when normalising [R, V] logits: a few MB at a time instead of one [R, V] fp32 temporary (150 MB
# for SmolLM2 at R = 768), which the CPU allocator maps and zeroes afresh on every step.
_ROWS_PER_CHUNK = 64


class OnlineExpertSignals(nn.Module):
    """The signals of `compute_expert_signals`, computed per training batch from experts held in memory instead of
    read from the on-disk table (`SFTConfig.expert_signals: online`): exact full-vocabulary paper_logmix at any
    vocabulary size, for N expert forwards per step and no disk.

    The experts are frozen (requires_grad False, never in the optimizer), always in eval mode (`train()` is a
    no-op) and run under no_grad in the dtype they were loaded in; being submodules, they follow the LightningModule
    to its device. Per expert the output head runs on the response positions only (`response_logits`), whose
    logits are kept (in the model's dtype) until the informative mask is known; the log-softmax is taken in fp32,
    as the cached pass does.
    """

    def __init__(self, experts: Sequence[nn.Module], vocab: bool, topk: int = 0) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts).requires_grad_(False)
        self.vocab, self.topk = vocab, topk if vocab else 0
        super().train(False)

    def train(self, mode: bool = True) -> "OnlineExpertSignals":
        return super().train(False)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Signals of one right-padded batch (unshifted `labels`), keyed and aligned as `collate_sft` pads them."""
        shifted = labels[:, 1:]
        response = shifted != IGNORE_INDEX
        gold_ids = shifted[response]                                          # [R]
        rows, norms, gold, greedy = [], [], [], []
        for model in self.experts:
            logits = response_logits(model, input_ids, attention_mask, response)                         # [R, V]
            norm = torch.cat([c.float().logsumexp(-1) for c in logits.split(_ROWS_PER_CHUNK)])
            rows.append(logits)
            norms.append(norm)
            gold.append(logits.gather(-1, gold_ids[:, None]).squeeze(-1).float() - norm)
            greedy.append(logits.argmax(-1))
        choice = torch.stack(greedy, -1)
        informative_r = (choice != choice[:, :1]).any(-1)                     # [R]
        informative = torch.zeros_like(response)
        informative[response] = informative_r
        gold_logps = torch.zeros(*shifted.shape, len(self.experts), device=input_ids.device)
        gold_logps[response] = torch.stack(gold, -1)
        out = {"gold_logps": gold_logps, "informative": informative}
        if self.vocab:
            vocab = rows[0].new_empty(int(informative_r.sum()), len(rows), rows[0].shape[-1], dtype=torch.float32)
            for i, (r, n) in enumerate(zip(rows, norms)):                     # in place: no [P, V] fp32 temporaries
                vocab[:, i].copy_(r[informative_r]).sub_(n[informative_r, None])
            target = gold_ids[informative_r]
            if self.topk:
                if self.topk > vocab.shape[-1]:
                    raise ValueError(f"route_vocab_topk = {self.topk} exceeds the vocabulary ({vocab.shape[-1]}); "
                                     "use 0 (full vocabulary) or a smaller k.")
                ids, index = _candidates(vocab.topk(self.topk, dim=-1).indices, target)
                out["vocab_logps"] = vocab.gather(-1, ids.clamp_min(0)[:, None, :].expand(-1, vocab.shape[1], -1))
                out["gold_index"], out["vocab_valid"] = index, ids >= 0
            else:
                out["vocab_logps"], out["gold_index"] = vocab, target
        return out


def examples_fingerprint(examples: Sequence[dict[str, list[int]]]) -> str:
    """Hash of the token ids and labels: covers the data files' content, the tokenizer, max_length and row choice."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(torch.tensor(e["input_ids"], dtype=torch.int64).numpy().tobytes())
        digest.update(torch.tensor(e["labels"], dtype=torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def checkpoint_fingerprint(path: str) -> dict[str, Any]:
    """The path plus, for a local folder, config.json and every weight file's name, size and mtime (cheap: no reads
    of the weights, so an 8B expert is not hashed; a rebuilt checkpoint at the same path changes mtimes)."""
    folder = Path(path)
    if not folder.is_dir():
        return {"path": path}
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    config = folder / "config.json"
    return {"path": str(folder.resolve()),
            "config": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
            "weights": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]}


def load_or_compute_signals(expert_paths: dict[str, str], examples: Sequence[dict[str, list[int]]], *,
                            vocab: bool, topk: int, batch_size: int, pad_id: int, device: str | torch.device,
                            dtype: torch.dtype | None) -> tuple[SignalTable, Path, bool]:
    """The cached SignalTable for these experts and examples: (table, cache folder, hit?)."""
    key = {"version": FORMAT_VERSION, "experts": {k: checkpoint_fingerprint(v) for k, v in expert_paths.items()},
           "examples": examples_fingerprint(examples), "vocab": vocab, "topk": topk if vocab else 0,
           "dtype": str(dtype)}
    folder = artifact_dir("expert_signals", key)
    if is_complete(folder):
        return SignalTable.load(folder), folder, True
    table = compute_expert_signals(list(expert_paths.values()), examples, vocab=vocab, topk=topk,
                                   batch_size=batch_size, pad_id=pad_id, device=device, dtype=dtype)
    with atomic_dir(folder) as tmp:
        table.save(tmp)
        atomic_write_json(tmp / "key.json", {**key, **table.stats()})
    return table, folder, False
