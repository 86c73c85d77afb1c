"""Writes tests/data/sweep_small/, the hand-made sweep the report tests render (run from the repo root).

Four methods x three tasks x three seeds x four samples (ids q0..q3). Per-sample correctness is chosen so the
numbers can be checked by hand and the bootstrap markers do not depend on the random stream:
- micro_math: fusionroute is right on q0-q2 always and on q3 in seed 0 only (100/75/75 -> 83.3 +- 35.9);
  no_complement never on q3 (75.0 +- 0.0, not significant: the difference is on one id of four);
  collab never right (0.0; 100/75/75 vs 0/0/0 over three seeds is p = 0.01 by the seed test, not significant after
  Holm over the table's 12 comparisons); expert_math always right (100.0, best).
- expert_math does not depend on the seed (seeded: false): one run, shown with a bootstrap CI over ids (‡).
- micro_code: fusionroute, no_complement and collab are identical (75/75/50); expert_math fails q2 (50.0).
- micro_general (domain general: shown after Avg, not averaged): fusionroute and collab q0,q1; the others q0.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "sweep_small"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fr_bench.reports.schema import ResultRow, SweepMeta, write_meta, write_results, write_samples  # noqa: E402

SEEDS = (0, 1, 2)
IDS = ("q0", "q1", "q2", "q3")
METHODS = {"collab": "baseline", "expert_math": "expert", "fusionroute": "fusionroute", "no_complement": "ablation"}
TASKS = {"micro_code": ("code", "pass@1"), "micro_general": ("general", "acc"), "micro_math": ("math", "exact_match")}
COST = {"collab": 30, "expert_math": 5, "fusionroute": 10, "no_complement": 10}
ALWAYS, NEVER = (1, 1, 1), (0, 0, 0)
# (task, method) -> per id, per seed: correct?
CORRECT = {
    ("micro_math", "fusionroute"): (ALWAYS, ALWAYS, ALWAYS, (1, 0, 0)),
    ("micro_math", "no_complement"): (ALWAYS, ALWAYS, ALWAYS, NEVER),
    ("micro_math", "collab"): (NEVER,) * 4,
    ("micro_math", "expert_math"): (ALWAYS,) * 4,
    ("micro_code", "fusionroute"): (ALWAYS, ALWAYS, (1, 1, 0), NEVER),
    ("micro_code", "no_complement"): (ALWAYS, ALWAYS, (1, 1, 0), NEVER),
    ("micro_code", "collab"): (ALWAYS, ALWAYS, (1, 1, 0), NEVER),
    ("micro_code", "expert_math"): (ALWAYS, ALWAYS, NEVER, NEVER),
    ("micro_general", "fusionroute"): (ALWAYS, ALWAYS, NEVER, NEVER),
    ("micro_general", "no_complement"): (ALWAYS, NEVER, NEVER, NEVER),
    ("micro_general", "collab"): (ALWAYS, ALWAYS, NEVER, NEVER),
    ("micro_general", "expert_math"): (ALWAYS, NEVER, NEVER, NEVER),
}
# Generated tokens and the expert (index into expert_names) that produced each, for the routed methods.
TOKENS = {
    "micro_math": (["The", " answer", " is", " 4", "."], [2, 0, 0, 0, 0]),
    "micro_code": (["def", " f", "(x", "):", "\n", "  return", " x"], [1, 1, 1, 1, 2, 1, 1]),
    "micro_general": (["Sure", ",", " here", " it", " is", "."], [2, 2, 2, 0, 2, 2]),
}
CONFIG_YAML = """\
name: small
world:
  kind: micro
methods:
  collab: {method: collab, group: baseline}
  expert_math: {method: expert, group: expert, options: {expert: math}}
  fusionroute: {method: fusionroute, group: fusionroute}
  no_complement: {method: fusionroute, group: ablation, options: {complementary_logits: false}}
seeds: [0, 1, 2]
reference_method: fusionroute
"""


def main() -> None:
    rows = []
    for (task, method), table in CORRECT.items():
        domain, metric = TASKS[task]
        for s, seed in enumerate(SEEDS):
            samples = []
            for i, sid in enumerate(IDS):
                ok = bool(table[i][s])
                metrics = {metric: float(ok)}
                if task == "micro_math":
                    metrics["flexible"] = 1.0 if (ok or method != "collab" or sid == "q0") else 0.0
                tokens, choices = TOKENS[task]
                routed = method in ("fusionroute", "no_complement")
                samples.append({"id": sid, "prompt": f"{task} question {sid}", "output": "".join(tokens),
                                "extracted": "4" if ok else "5", "gold": "4", "correct": ok, "metrics": metrics,
                                "expert_choices": choices if routed else None, "tokens": tokens if routed else None,
                                "cost_tokens": COST[method]})
            write_samples(ROOT, method, task, seed, samples)
            means = {k: sum(x["metrics"][k] for x in samples) / len(samples) for k in samples[0]["metrics"]}
            rows.append(ResultRow(sweep="small", method=method, task=task, domain=domain, seed=seed, n=len(samples),
                                  primary_metric=metric, primary=means[metric], metrics=means,
                                  cost_tokens=COST[method] * len(samples), wall_s=1.5, method_group=METHODS[method],
                                  seeded=method != "expert_math"))
    write_results(ROOT, rows)
    write_meta(ROOT, SweepMeta(sweep="small", expert_names=["math", "code", "if"], reference_method="fusionroute",
                               methods=list(METHODS), tasks=list(TASKS), seeds=list(SEEDS),
                               created="2026-01-01T00:00:00+00:00"))
    (ROOT / "config.yaml").write_text(CONFIG_YAML)


if __name__ == "__main__":
    main()
