"""`python -m fr_bench.compare A B` on sweeps built with known per-sample differences."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fr_bench.compare import main as compare_main
from fr_bench.compare import pick_methods
from fr_bench.reports.schema import ResultRow, SweepMeta, load_sweep, write_meta, write_results, write_samples

DOMAIN = {"t_math": "math", "t_code": "code", "t_general": "general", "t_extra": "if"}


def make_sweep(root: Path, scores: dict[str, dict[str, list[float]]], seeds=(0,), reference="fusionroute") -> Path:
    """scores[method][task] = per-sample correctness for ids s0..s{n-1}; identical for every seed."""
    rows = []
    for method, tasks in scores.items():
        for task, values in tasks.items():
            for seed in seeds:
                samples = [{"id": f"s{i}", "prompt": f"p{i}", "output": "o", "extracted": None, "gold": None,
                            "correct": bool(v), "metrics": {"acc": float(v)}, "expert_choices": None,
                            "tokens": None, "cost_tokens": 1} for i, v in enumerate(values)]
                write_samples(root, method, task, seed, samples)
                rows.append(ResultRow(sweep=root.name, method=method, task=task, domain=DOMAIN[task], seed=seed,
                                      n=len(values), primary_metric="acc", primary=sum(values) / len(values),
                                      metrics={"acc": sum(values) / len(values)}, cost_tokens=len(values),
                                      wall_s=0.1))
    write_results(root, rows)
    write_meta(root, SweepMeta(sweep=root.name, expert_names=[], reference_method=reference, methods=list(scores),
                               tasks=sorted({t for v in scores.values() for t in v}), seeds=list(seeds),
                               created="2026-01-01T00:00:00"))
    return root


BASE = [1.0] * 20 + [0.0] * 20                     # 50%
BETTER = [1.0] * 20 + [1.0] * 10 + [0.0] * 10      # 75%: +1 on ten ids, never worse


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, dict]:
    code = compare_main(list(argv))
    out = capsys.readouterr().out
    return code, out, json.loads(out.strip().splitlines()[-1])


def test_b_beats_a(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE, "t_code": BASE, "t_general": BASE}})
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BETTER, "t_code": BASE, "t_general": BASE}})
    code, out, result = run(capsys, str(a), str(b))
    assert code == 0
    math_ = result["benchmarks"]["t_math"]
    assert (math_["mean_a"], math_["mean_b"], math_["diff"]) == (0.5, 0.75, 0.25)
    # the ten gained ids: the mean of 40 draws of (0 x 30, +1 x 10) is 0.25 +- ~0.14 and never below 0
    assert 0.05 < math_["ci_low"] < 0.25 < math_["ci_high"] < 0.45
    assert math_["verdict"] == "B better" and math_["n_ids"] == 40
    assert (result["benchmarks"]["t_code"]["ci_low"], result["benchmarks"]["t_code"]["ci_high"]) == (0.0, 0.0)
    assert result["benchmarks"]["t_code"]["verdict"] == "no significant difference"
    assert result["avg"]["diff"] == 0.125          # t_general is reported but not averaged
    assert result["b_beats_a"] is True
    assert "t_math" in out and "B better" in out and "B beats A on Avg: yes" in out


def test_same_sweep_shows_no_difference_and_reverse_is_worse(tmp_path: Path, capsys) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE}})
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BETTER}})
    _, _, same = run(capsys, str(a), str(a))
    assert same["avg"]["diff"] == 0.0 and not same["b_beats_a"]
    _, _, reverse = run(capsys, str(b), str(a))
    assert reverse["benchmarks"]["t_math"]["verdict"] == "B worse" and not reverse["b_beats_a"]


def test_method_defaults_and_flags(tmp_path: Path, capsys) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE}, "collab": {"t_math": BETTER}})
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BASE}, "new_idea": {"t_math": BETTER}})
    sa, sb = load_sweep(a), load_sweep(b)
    assert pick_methods(sa, sb, None, None) == ("fusionroute", "fusionroute")
    assert pick_methods(sa, sb, "new_idea", None) == ("fusionroute", "new_idea")   # not in A: A's reference
    assert pick_methods(sb, sa, "collab", None) == ("fusionroute", "collab")
    assert pick_methods(sa, sa, "collab", None) == ("collab", "collab")             # same name on both sides
    _, _, result = run(capsys, str(a), str(b), "--method", "new_idea")
    assert (result["method_a"], result["method_b"], result["b_beats_a"]) == ("fusionroute", "new_idea", True)
    _, _, result = run(capsys, str(a), str(b), "--method", "new_idea", "--reference-method", "collab")
    assert result["avg"]["diff"] == 0.0


def test_different_seeds_pair_on_ids(tmp_path: Path, capsys) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE}}, seeds=(0, 1))
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BETTER}}, seeds=(7,))
    _, _, result = run(capsys, str(a), str(b))
    assert result["benchmarks"]["t_math"]["diff"] == 0.25 and result["benchmarks"]["t_math"]["n_ids"] == 40


def test_partial_overlap_is_reported(tmp_path: Path, capsys) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE, "t_code": BASE}})
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BASE[:30], "t_extra": BASE}})
    _, out, result = run(capsys, str(a), str(b))
    assert result["benchmarks"]["t_math"]["n_ids"] == 30
    assert result["skipped"] == {"t_extra": "not run by fusionroute in A", "t_code": "not run by fusionroute in B"}
    assert "skipped: not run by fusionroute in A" in out


def test_unusable_input_exits_2(tmp_path: Path, capsys) -> None:
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE}})
    assert compare_main([str(a), str(a), "--method", "nope"]) == 2
    assert "pass --method with one of ['fusionroute']" in capsys.readouterr().err
    assert compare_main([str(a), str(tmp_path / "missing")]) == 2


def test_training_noise_is_not_a_regression(tmp_path: Path, capsys) -> None:
    """The same code trained twice: B's three seeds land below and above A's. Resampling ids alone calls the
    difference significant; the seed-level test (Welch over the two sweeps' seeds) does not."""
    def seeded(root: Path, per_seed: list[list[float]]) -> Path:
        rows = []
        for seed, values in enumerate(per_seed):
            write_samples(root, "fusionroute", "t_math", seed, [
                {"id": f"s{i}", "prompt": "p", "output": "o", "extracted": None, "gold": None, "correct": bool(v),
                 "metrics": {"acc": v}, "expert_choices": None, "tokens": None, "cost_tokens": 1}
                for i, v in enumerate(values)])
            rows.append(ResultRow(sweep=root.name, method="fusionroute", task="t_math", domain="math", seed=seed,
                                  n=len(values), primary_metric="acc", primary=sum(values) / len(values),
                                  metrics={"acc": sum(values) / len(values)}, cost_tokens=1, wall_s=0.1))
        write_results(root, rows)
        write_meta(root, SweepMeta(sweep=root.name, expert_names=[], reference_method="fusionroute",
                                   methods=["fusionroute"], tasks=["t_math"], seeds=[0, 1, 2], created="x"))
        return root

    a = seeded(tmp_path / "A", [[1.0] * 60 + [0.0] * 40, [1.0] * 70 + [0.0] * 30, [1.0] * 65 + [0.0] * 35])
    b = seeded(tmp_path / "B", [[1.0] * 40 + [0.0] * 60, [1.0] * 75 + [0.0] * 25, [1.0] * 50 + [0.0] * 50])
    _, out, result = run(capsys, str(a), str(b))
    row = result["benchmarks"]["t_math"]
    assert row["p_ids"] < 0.05 < row["p_seeds"] and row["seed_test"] == "welch"
    assert row["verdict"] == "no significant difference" and not result["b_beats_a"]


def test_all_methods_flags_only_the_method_that_moved(tmp_path: Path, capsys) -> None:
    """--all-methods: every common method against itself; the Avg p-values are Holm-corrected across methods."""
    a = make_sweep(tmp_path / "A", {"fusionroute": {"t_math": BASE, "t_code": BASE}, "collab": {"t_math": BASE},
                                    "only_a": {"t_math": BASE}})
    b = make_sweep(tmp_path / "B", {"fusionroute": {"t_math": BASE, "t_code": BASE}, "collab": {"t_math": BETTER},
                                    "only_b": {"t_math": BASE}})
    code, out, result = run(capsys, str(a), str(b), "--all-methods")
    assert code == 0 and sorted(result["methods"]) == ["collab", "fusionroute"]
    assert result["significant_methods"] == ["collab"]
    assert (result["max_abs_diff_points"], result["max_abs_diff_at"]) == (25.0, "collab/t_math")
    moved = result["methods"]["collab"]["avg_across_methods"]
    assert moved["verdict"] == "B better" and moved["p_holm"] >= moved["p"]   # two methods in the family
    assert result["methods"]["fusionroute"]["avg_across_methods"]["diff"] == 0.0
    assert "methods whose Avg differs significantly: 1 of 2 (collab)" in out
    with pytest.raises(SystemExit):
        compare_main([str(a), str(b), "--all-methods", "--method", "collab"])
    c = make_sweep(tmp_path / "C", {"other": {"t_math": BASE}})
    assert compare_main([str(a), str(c), "--all-methods"]) == 2
    assert "no method in common" in capsys.readouterr().err
