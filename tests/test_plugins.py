"""Plug-ins: a routing idea in one file outside the repo, named by the sweep's `plugins:` key, runs like a built-in
(also in worker processes); a bad entry fails before any work."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fr_bench.sweep.__main__ import main as sweep_main

REPO = Path(__file__).resolve().parents[1]

# The whole plug-in: one policy class. Route each row to the expert whose next-token distribution has the lowest
# entropy, then add 0.5 x the router's log-probs.
POLICY = '''
from dataclasses import dataclass

import torch

from fr_bench.decoding.policies import register_policy


@register_policy("lowest_entropy")
@dataclass
class LowestEntropy:
    router: int
    experts: list
    router_weight: float = 0.5

    def step(self, run):
        logp = [run(i).logits.log_softmax(-1) for i in self.experts]
        entropy = [-(lp.exp() * lp).nansum(-1) for lp in logp]            # [B] per expert
        choices = torch.stack(entropy).argmin(0)
        chosen = torch.stack(logp)[choices, torch.arange(len(choices))]
        return chosen + self.router_weight * run(self.router).logits.log_softmax(-1), choices
'''


def sweep_yaml(folder: Path, plugin: str, workers: int) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(f"""
name: plugin_smoke
plugins: [{plugin}]
world: {{kind: micro, micro_config: {REPO / "experiments" / "micro_smoke.yaml"}}}
seeds: [0]
limit: 3
batch_size: 4
threads: 1
methods:
  lowest_entropy: {{method: fusionroute, options: {{policy: lowest_entropy, stages: [sft],
                                                  policy_options: {{router_weight: 0.5}}}}}}
artifacts:
  router_sft: {{lr: 1.0e-3, max_steps: 5, batch_size: 8, max_length: 256}}
executor: {{kind: local, workers: {workers}}}
""")
    return path


def test_missing_plugin_file_is_a_config_error_naming_the_entry(tmp_path, capsys):
    assert sweep_main([str(sweep_yaml(tmp_path, "nowhere/idea.py", 1)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "plugins[0]: file 'nowhere/idea.py' not found" in err


def test_unknown_policy_option_fails_at_planning(tmp_path, capsys):
    # one process registers a name once: this test's plug-in uses its own policy name
    (tmp_path / "idea.py").write_text(POLICY.replace('"lowest_entropy"', '"lowest_entropy_typo"'))
    cfg = sweep_yaml(tmp_path, "idea.py", 1)
    cfg.write_text(cfg.read_text().replace("router_weight: 0.5", "router_wieght: 0.5")
                   .replace("policy: lowest_entropy,", "policy: lowest_entropy_typo,"))
    assert sweep_main([str(cfg), "--dry-run"]) == 2
    assert "policy_options {'router_wieght': 0.5} do not fit policy 'lowest_entropy_typo'" in capsys.readouterr().err


@pytest.mark.slow
def test_policy_from_a_file_outside_the_repo_runs_on_two_workers(tmp_path):
    plugin_dir = tmp_path / "my_idea"              # tmp_path is outside the repo
    plugin_dir.mkdir()
    (plugin_dir / "lowest_entropy.py").write_text(POLICY)
    cfg = sweep_yaml(tmp_path, "my_idea/lowest_entropy.py", 2)
    os.environ["FR_BENCH_CACHE"] = str(tmp_path / "cache")
    assert sweep_main([str(cfg), "--out", str(tmp_path / "out"), "--no-report"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"lowest_entropy"} and len(rows) == 5     # the five micro tasks
    samples = [json.loads(line) for f in (tmp_path / "out" / "samples").rglob("*.jsonl")
               for line in f.read_text().splitlines()]
    assert samples and all(s["expert_choices"] is not None for s in samples)        # routed by the plug-in policy


def test_the_policy_example_in_docs_decoding_runs(tmp_path):
    """The `my_idea.py` of docs/decoding.md, loaded as a plug-in: with threshold 0 it always mixes in the router
    (= FusionRoute), above 1 never (= the no-complement ablation), on a tiny router and three tiny experts."""
    from tiny_lms import tiny_lm, tiny_router, tiny_tokenizer

    from fr_bench.decoding.engine import DecodeEngine
    from fr_bench.decoding.policies import POLICIES, FusionRoute
    from fr_bench.plugins import load_plugins

    doc = (REPO / "docs" / "decoding.md").read_text()
    block = next(b for b in doc.split("```python\n")[1:] if '@register_policy("confident_complement")' in b)
    (tmp_path / "my_idea.py").write_text(block.split("```")[0])
    load_plugins([str(tmp_path / "my_idea.py")])
    idea = POLICIES.get("confident_complement")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tok = tiny_tokenizer()
        models = [tiny_router("llama", 0, n_experts=3), *[tiny_lm("llama", s) for s in (1, 2, 3)]]
        prompts = ["a b c", "d e"]

        def decode(policy):
            return [o.token_ids for o in DecodeEngine(models, policy, tok, eos_ids=set()).generate(prompts, 6, [])[0]]

        assert decode(idea(router=0, experts=[1, 2, 3], threshold=0.0)) == decode(FusionRoute(0, [1, 2, 3]))
        assert decode(idea(router=0, experts=[1, 2, 3], threshold=1.1)) == decode(
            FusionRoute(0, [1, 2, 3], complement=False))
    finally:
        torch.set_num_threads(threads)
