"""The decode engine is exact: lazy catch-up, batching and the FusionRoute rule change cost, never the tokens."""
from __future__ import annotations

import pytest
import torch
from tiny_lms import one_thread, prompts_of_lengths, tiny_lm, tiny_router, tiny_tokenizer

from fr_bench.decoding.engine import DecodeEngine, ModelOutput
from fr_bench.decoding.policies import FusionRoute, SingleModel, routed_logits
from fr_bench.decoding.row_cache import RowCache

FAMILIES = ["llama", "gemma2"]
LENGTHS = (3, 9, 5, 1, 7)
NEW = 24                       # > the Gemma-2 sliding window (4), so catch-ups cross it


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def fusion_engine(family: str, tok, lazy: bool = True, complement: bool = True, router=None) -> DecodeEngine:
    router = router or tiny_router(family, 0, n_experts=3)
    experts = [tiny_lm(family, seed) for seed in (1, 2, 3)]
    policy = FusionRoute(router=0, experts=[1, 2, 3], complement=complement)
    return DecodeEngine([router, *experts], policy, tok, eos_ids=set(), lazy=lazy)


@pytest.mark.parametrize("family", FAMILIES)
def test_lazy_catch_up_equals_naive(family, tok):
    prompts = prompts_of_lengths(LENGTHS)
    lazy, naive = fusion_engine(family, tok, lazy=True), fusion_engine(family, tok, lazy=False)
    for batch_size in (1, 8):
        got, stats = lazy.generate_ids(prompts, NEW, batch_size=batch_size)
        ref, ref_stats = naive.generate_ids(prompts, NEW, batch_size=batch_size)
        assert [g.token_ids for g in got] == [r.token_ids for r in ref]
        assert [g.expert_choices for g in got] == [r.expert_choices for r in ref]
        assert ref_stats.catch_up_steps == 0 and stats.catch_up_steps > 0     # lazy really skipped forwards
        assert sum(stats.forwards) < sum(ref_stats.forwards)
    assert all(len(set(g.expert_choices)) > 1 for g in got)                 # the router switches experts


class Scripted(FusionRoute):
    """FusionRoute with expert choices from a script: {step: {row: expert}}, expert 0 otherwise."""

    def __init__(self, script: dict[int, dict[int, int]], **kw) -> None:
        super().__init__(**kw)
        self.script, self.step_no = script, 0

    def choose(self, router: ModelOutput) -> torch.Tensor:
        choices = torch.zeros(router.logits.shape[0], dtype=torch.long)
        for row, expert in self.script.get(self.step_no, {}).items():
            choices[row] = expert
        self.step_no += 1
        return choices


@pytest.mark.parametrize("family", FAMILIES)
def test_an_expert_runs_only_the_rows_that_chose_it(family, tok):
    """Row 1 visits expert 2 at steps 5 and 6 and row 2 at step 9: expert 2 runs each row's own prefix once (not the
    batch's, nor the padding in front of it), in three forwards; the home expert stays in lock-step (row 1 rides
    along while away) and runs one forward per step. Tokens equal the naive engine's."""
    prompts = prompts_of_lengths((4, 6, 7), seed=7)          # sorted by length: batch row i = prompt i
    width, script = 7, {5: {1: 2}, 6: {1: 2}, 9: {2: 2}}
    models = [tiny_router(family, 0, n_experts=3), *[tiny_lm(family, seed) for seed in (1, 2, 3)]]

    def engine(lazy: bool) -> DecodeEngine:
        return DecodeEngine(models, Scripted(script, router=0, experts=[1, 2, 3]), tok, eos_ids=set(), lazy=lazy)

    got, stats = engine(True).generate_ids(prompts, NEW, batch_size=3)
    ref, _ = engine(False).generate_ids(prompts, NEW, batch_size=3)
    assert [g.token_ids for g in got] == [r.token_ids for r in ref]
    assert [g.expert_choices[5:10] for g in got] == [[0] * 5, [2, 2, 0, 0, 0], [0, 0, 0, 0, 2]]
    assert stats.forwards == [NEW, NEW, 0, 3]
    assert stats.tokens[3] == (6 + 5) + 1 + (7 + 9)      # row 1 (pad 1) from its prompt, then 1 more; row 2 too
    assert stats.tokens[0] == stats.tokens[1] == 3 * (width + NEW - 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_models_of_a_step_share_one_attention_mask(family, tok, monkeypatch):
    """Padded batch: the router and the home expert take one mask (Gemma-2: one per layer type) per step, built by
    the engine with transformers' own function, and decode the tokens they decode when each builds its own."""
    import fr_bench.decoding.engine as engine_module

    prompts = prompts_of_lengths((4, 6, 7), seed=8)
    models = [tiny_router(family, 0, n_experts=3), *[tiny_lm(family, seed) for seed in (1, 2, 3)]]

    def decode():
        engine = DecodeEngine(models, Scripted({3: {0: 1}}, router=0, experts=[1, 2, 3]), tok, eos_ids=set())
        return engine.generate_ids(prompts, NEW, batch_size=3)

    builds = []
    build = engine_module.create_masks_for_generate
    monkeypatch.setattr(engine_module, "create_masks_for_generate", lambda **kw: builds.append(kw) or build(**kw))
    shared, stats = decode()
    assert sum(stats.forwards) == 2 * NEW + 1                     # router, home expert, and expert 2 once (row 0)
    assert len(builds) == NEW + 1                                 # one per step, and one for row 0's catch-up
    assert all(kw["attention_mask"].shape[0] in (1, 3) for kw in builds)
    monkeypatch.setattr(engine_module, "mask_signature", lambda model: None)
    own, _ = decode()
    assert [s.token_ids for s in shared] == [o.token_ids for o in own]


def test_row_cache_writes_rows_and_grows():
    """Writes land at (rows, columns); attention sees columns [0, end); growth keeps what was written."""
    cache = RowCache(layers=1, batch=3, initial_capacity=2, max_capacity=8)
    layer = cache.layers[0]
    a = torch.randn(3, 2, 2, 4)
    cache.select(None, 0)
    keys, values = layer.update(a, -a)
    assert torch.equal(keys, a) and torch.equal(values, -a) and cache.get_seq_length() == 0
    b = torch.randn(1, 2, 3, 4)
    cache.select(torch.tensor([1]), 2)                    # row 1 alone, columns 2..4: the storage grows to 5
    keys, _ = layer.update(b, -b)
    assert keys.shape == (1, 2, 5, 4) and torch.equal(keys[0, :, :2], a[1]) and torch.equal(keys[0, :, 2:], b[0])
    assert layer.keys.shape[2] == 5 and cache.get_mask_sizes(3, 0) == (5, 0)
    assert torch.equal(layer.keys[0, :, :2], a[0]) and not layer.keys[0, :, 2:].any()   # other rows untouched
    cache.keep(torch.tensor([1, 2]))
    assert cache.batch == 2 and torch.equal(layer.keys[0, :, 2:5], b[0])
    assert cache.nbytes() == 2 * 2 * 2 * 5 * 4 * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_one_by_one(family, tok):
    prompts = prompts_of_lengths(LENGTHS, seed=1)
    engine = fusion_engine(family, tok)
    batched, _ = engine.generate_ids(prompts, NEW, batch_size=len(prompts))
    for prompt, out in zip(prompts, batched):
        alone, _ = engine.generate_ids([prompt], NEW)
        assert alone[0].token_ids == out.token_ids
        assert alone[0].expert_choices == out.expert_choices


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_leaving_the_batch_do_not_disturb_the_others(family, tok):
    """With frequent eos ids rows finish at different steps and are dropped from every cache, lagging ones too."""
    prompts = prompts_of_lengths(LENGTHS, seed=6)
    engine = fusion_engine(family, tok)
    engine.eos_ids = set(range(10, 18))
    batched, _ = engine.generate_ids(prompts, NEW, batch_size=len(prompts))
    assert len({len(out.token_ids) for out in batched}) > 2                 # rows did finish at different steps
    for prompt, out in zip(prompts, batched):
        alone, _ = engine.generate_ids([prompt], NEW)
        assert alone[0].token_ids == out.token_ids and alone[0].finish_reason == out.finish_reason


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_router_logits_reduce_to_routed_experts(family, tok):
    """With z_router = 0 the complement is a constant, so FusionRoute = routing alone (the no-complement ablation)."""
    router = tiny_router(family, 0, n_experts=3)
    head = router.lm.lm_head
    router.lm.lm_head = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    torch.nn.init.zeros_(router.lm.lm_head.weight)
    prompts = prompts_of_lengths(LENGTHS, seed=2)
    fused, _ = fusion_engine(family, tok, router=router).generate_ids(prompts, NEW)
    routed, _ = fusion_engine(family, tok, router=router, complement=False).generate_ids(prompts, NEW)
    assert [f.token_ids for f in fused] == [r.token_ids for r in routed]
    full, _ = fusion_engine(family, tok).generate_ids(prompts, NEW)     # and the real complement does change tokens
    assert [f.token_ids for f in full] != [r.token_ids for r in routed]


@pytest.mark.parametrize("family", FAMILIES)
def test_single_model_greedy_equals_hf_generate(family, tok):
    model = tiny_lm(family, 5)
    prompts = prompts_of_lengths(LENGTHS, seed=3)
    got, _ = DecodeEngine([model], SingleModel(), tok, eos_ids=set()).generate_ids(prompts, NEW, batch_size=8)
    for prompt, out in zip(prompts, got):
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False, eos_token_id=None,
                             pad_token_id=0)
        assert out.token_ids == ref[0, len(prompt):].tolist()
        assert out.cost_tokens == len(prompt) + NEW - 1     # the last token is never fed back


def test_gemma2_sliding_window_is_in_effect(tok):
    """Guard for the tests above: with window 4 the tiny Gemma-2 decodes differently than with a long window."""
    prompts = prompts_of_lengths(LENGTHS, seed=3)
    short = DecodeEngine([tiny_lm("gemma2", 5)], SingleModel(), tok, eos_ids=set()).generate_ids(prompts, NEW)[0]
    long = DecodeEngine([tiny_lm("gemma2", 5, sliding_window=256)], SingleModel(), tok,
                        eos_ids=set()).generate_ids(prompts, NEW)[0]
    assert [s.token_ids for s in short] != [g.token_ids for g in long]


def test_stop_strings_and_eos(tok):
    model = tiny_lm("llama", 7)
    prompts = prompts_of_lengths((4, 6), seed=4)
    free, _ = DecodeEngine([model], SingleModel(), tok, eos_ids=set()).generate_ids(prompts, NEW)
    first = free[0].token_ids
    stop = tok.decode([first[5]])                       # a word the first row generates at step 6
    cut = free[0].text.find(stop)
    got, _ = DecodeEngine([model], SingleModel(), tok, eos_ids=set()).generate_ids(prompts, NEW, stop=[stop])
    assert got[0].finish_reason == "stop" and got[0].text == free[0].text[:cut]
    assert got[0].token_ids == first[:len(got[0].token_ids)] and len(got[0].token_ids) <= 6
    assert stop not in got[1].text and got[1].token_ids == free[1].token_ids[:len(got[1].token_ids)]

    eos = first[3]                                       # pretend the 4th token is eos
    ended, _ = DecodeEngine([model], SingleModel(), tok, eos_ids={eos}).generate_ids(prompts, NEW)
    n = first.index(eos) + 1
    assert ended[0].finish_reason == "eos" and ended[0].token_ids == first[:n]
    assert ended[0].text == tok.decode(first[:n - 1])
    if eos not in free[1].token_ids:                     # the other row is unaffected by row 0 leaving the batch
        assert ended[1].token_ids == free[1].token_ids


def test_sampling_is_seeded(tok):
    engine = fusion_engine("llama", tok)
    prompts = prompts_of_lengths((3, 5), seed=5)
    a = engine.generate_ids(prompts, NEW, temperature=1.0, seed=0)[0]
    b = engine.generate_ids(prompts, NEW, temperature=1.0, seed=0)[0]
    c = engine.generate_ids(prompts, NEW, temperature=1.0, seed=1)[0]
    greedy = engine.generate_ids(prompts, NEW)[0]
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]
    assert [x.token_ids for x in a] != [x.token_ids for x in greedy]


def test_fusionroute_rule_per_row():
    """The combination rule on fixed logits: row b adds the router's term to expert choices[b]'s logits."""
    g = torch.Generator().manual_seed(0)
    z_router, z_experts = torch.randn(3, 10, generator=g), torch.randn(2, 3, 10, generator=g)
    routing = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])          # rows choose experts 0, 1, 0
    outputs = {0: ModelOutput(z_router, routing), 1: ModelOutput(z_experts[0]), 2: ModelOutput(z_experts[1])}
    called, asked = [], {}

    def run(i, rows=None):
        called.append(i)
        asked[i] = rows
        return outputs[i]

    logits, choices = FusionRoute(router=0, experts=[1, 2]).step(run)
    assert choices.tolist() == [0, 1, 0] and sorted(called) == [0, 1, 2]
    assert asked == {0: None, 1: [0, 2], 2: [1]}             # each expert only for the rows that chose it
    chosen = z_experts[choices, torch.arange(3)]
    torch.testing.assert_close(logits, chosen.log_softmax(-1) + z_router.log_softmax(-1), rtol=0, atol=0)
    torch.testing.assert_close(logits.softmax(-1), (chosen + z_router).softmax(-1))   # = adding the raw logits
    alone, _ = FusionRoute(router=0, experts=[1, 2], complement=False).step(run)
    torch.testing.assert_close(alone, chosen, rtol=0, atol=0)
    outputs[0] = ModelOutput(z_router, torch.tensor([[1.0, 0.0]] * 3))       # every row picks expert 0 ...
    called.clear()
    FusionRoute(router=0, experts=[1, 2]).step(run)
    assert called == [0, 1]                                                  # ... so expert 1 never runs


class LogitSum(FusionRoute):
    """FusionRoute with the raw logits added, z_e + z_r, instead of their log-softmaxes."""

    def step(self, run):
        router = run(self.router)
        choices = self.choose(router)
        return routed_logits(run, self.experts, choices) + router.logits, choices


@pytest.mark.parametrize("family", FAMILIES)
def test_logprob_and_logit_addition_decode_alike(family, tok):
    """The two log-normalisers are one constant per row, so the paper's log-prob sum and a plain logit sum pick the
    same tokens, greedy and sampled: there is no separate logit rule to ablate."""
    prompts = prompts_of_lengths(LENGTHS)
    paper = fusion_engine(family, tok)
    plain = DecodeEngine([m.model for m in paper.models], LogitSum(router=0, experts=[1, 2, 3]), tok, eos_ids=set())
    for temperature in (0.0, 1.0):
        a, _ = paper.generate_ids(prompts, NEW, batch_size=8, temperature=temperature, seed=3)
        b, _ = plain.generate_ids(prompts, NEW, batch_size=8, temperature=temperature, seed=3)
        assert [x.token_ids for x in a] == [x.token_ids for x in b]
        assert [x.expert_choices for x in a] == [x.expert_choices for x in b]
