"""Tables rendered from the hand-made sweep in tests/data/sweep_small (see tests/data/make_sweep_small.py for how
each number arises). The bootstrap uses 20000 resamples here so that every bound printed below sits well inside
a block of its discrete bootstrap distribution: the strings do not depend on the random stream."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fr_bench.reports import tables as T
from fr_bench.reports.schema import (ResultRow, SweepFormatError, SweepMeta, load_sweep, write_meta, write_results,
                                   write_samples)
from fr_bench.reports.summary import AVG, summarize

SWEEP = Path(__file__).resolve().parent / "data" / "sweep_small"

MAIN_MD = """\
| Method | micro_math | micro_code | Avg | micro_general |
|:---|:---:|:---:|:---:|:---:|
| fusionroute | 83.3 ± 35.9 | **66.7** ± 35.9 | **75.0** ± 31.1 | **50.0** ± 0.0 |
| no_complement | 75.0 ± 0.0 | **66.7** ± 35.9 | 70.8 ± 17.9 | 25.0 ± 0.0 |
| collab | 0.0 ± 0.0 | **66.7** ± 35.9 | 33.3 ± 17.9 | **50.0** ± 0.0 |
| expert_math | **100.0** ± 0.0‡ | 50.0 ± 50.0‡ | **75.0** ± 25.0‡ | 25.0 ± 37.5‡ |
"""

MAIN_TEX = r"""% fr_bench sweep 'small'. Scores x100, mean +/- half-width of the 95% t-interval over 3 seeds; double dagger: the method does not depend on the seed, one run with a 95% bootstrap CI over sample ids. Avg = mean of micro_math, micro_code. Bold: best in column. dagger: different from fusionroute at the 5% level: a t-test over seeds (training variance) and the paired bootstrap over sample ids (benchmark sampling) both reject, Holm-corrected over the table's 12 comparisons.
\begin{tabular}{lcccc}
\toprule
 & \multicolumn{1}{c}{Math} & \multicolumn{1}{c}{Code} &  & \multicolumn{1}{c}{General} \\
\cmidrule(lr){2-2} \cmidrule(lr){3-3} \cmidrule(lr){5-5}
Method & micro\_math & micro\_code & Avg & micro\_general \\
\midrule
fusionroute & 83.3$\pm$35.9 & \textbf{66.7}$\pm$35.9 & \textbf{75.0}$\pm$31.1 & \textbf{50.0}$\pm$0.0 \\
\midrule
no\_complement & 75.0$\pm$0.0 & \textbf{66.7}$\pm$35.9 & 70.8$\pm$17.9 & 25.0$\pm$0.0 \\
\midrule
collab & 0.0$\pm$0.0 & \textbf{66.7}$\pm$35.9 & 33.3$\pm$17.9 & \textbf{50.0}$\pm$0.0 \\
\midrule
expert\_math & \textbf{100.0}$\pm$0.0$^{\ddagger}$ & 50.0$\pm$50.0$^{\ddagger}$ & \textbf{75.0}$\pm$25.0$^{\ddagger}$ & 25.0$\pm$37.5$^{\ddagger}$ \\
\bottomrule
\end{tabular}
"""

MAIN_CSV = """\
method,method_group,benchmark,domain,mean,ci_low,ci_high,ci_kind,n,diff_vs_reference,diff_low,diff_high,p_ids,p_seeds,seed_test,p,p_holm,significant,one_run
fusionroute,fusionroute,micro_math,math,0.833333,0.474779,1.191888,t,3,,,,,,,,,,False
fusionroute,fusionroute,micro_code,code,0.666667,0.308112,1.025221,t,3,,,,,,,,,,False
fusionroute,fusionroute,Avg,,0.750000,0.439483,1.060517,t,3,,,,,,,,,,False
fusionroute,fusionroute,micro_general,general,0.500000,0.500000,0.500000,t,3,,,,,,,,,,False
no_complement,ablation,micro_math,math,0.750000,0.750000,0.750000,t,3,-0.083333,-0.250000,0.000000,0.249238,0.422650,paired,0.422650,1.000000,False,False
no_complement,ablation,micro_code,code,0.666667,0.308112,1.025221,t,3,0.000000,0.000000,0.000000,1.000000,1.000000,paired,1.000000,1.000000,False,False
no_complement,ablation,Avg,,0.708333,0.529056,0.887611,t,3,-0.041667,-0.125000,0.000000,0.249238,0.422650,paired,0.422650,1.000000,False,False
no_complement,ablation,micro_general,general,0.250000,0.250000,0.250000,t,3,-0.250000,-0.750000,0.000000,0.248917,0.000000,paired,0.248917,1.000000,False,False
collab,baseline,micro_math,math,0.000000,0.000000,0.000000,t,3,-0.833333,-1.000000,-0.500000,0.000000,0.009852,paired,0.009852,0.118229,False,False
collab,baseline,micro_code,code,0.666667,0.308112,1.025221,t,3,0.000000,0.000000,0.000000,1.000000,1.000000,paired,1.000000,1.000000,False,False
collab,baseline,Avg,,0.333333,0.154056,0.512611,t,3,-0.416667,-0.500000,-0.250000,0.000000,0.009852,paired,0.009852,0.118229,False,False
collab,baseline,micro_general,general,0.500000,0.500000,0.500000,t,3,0.000000,0.000000,0.000000,1.000000,1.000000,paired,1.000000,1.000000,False,False
expert_math,expert,micro_math,math,1.000000,1.000000,1.000000,bootstrap,4,0.166667,0.000000,0.500000,0.244932,0.183503,one-sample,0.244932,1.000000,False,True
expert_math,expert,micro_code,code,0.500000,0.000000,1.000000,bootstrap,4,-0.166667,-0.500000,0.000000,0.245598,0.183503,one-sample,0.245598,1.000000,False,True
expert_math,expert,Avg,,0.750000,0.500000,1.000000,bootstrap,8,0.000000,-0.166667,0.166667,1.000000,1.000000,one-sample,1.000000,1.000000,False,True
expert_math,expert,micro_general,general,0.250000,0.000000,0.750000,bootstrap,4,-0.250000,-0.750000,0.000000,0.255212,0.000000,one-sample,0.255212,1.000000,False,True
"""

METRICS_MATH_MD = """\
| Method | exact_match | flexible |
|:---|:---:|:---:|
| fusionroute | 83.3 ± 35.9 | **100.0** ± 0.0 |
| no_complement | 75.0 ± 0.0 | **100.0** ± 0.0 |
| collab | 0.0 ± 0.0 | 25.0 ± 0.0 |
| expert_math | **100.0** ± 0.0 | **100.0** ± 0.0 |
"""

METRICS_CSV_HEAD = """\
method,benchmark,metric,mean,ci_low,ci_high,ci_kind,n
fusionroute,micro_math,exact_match,0.833333,0.474779,1.191888,t,3
fusionroute,micro_math,flexible,1.000000,1.000000,1.000000,t,3
"""

ROUTING_MD = """\
| Method | Benchmark | Domain | Tokens | math % | code % | if % |
|:---|:---:|:---:|:---:|:---:|:---:|:---:|
| fusionroute | micro_math | math | 60 | 80.0 | 0.0 | 20.0 |
| fusionroute | micro_code | code | 84 | 0.0 | 85.7 | 14.3 |
| fusionroute | micro_general | general | 72 | 16.7 | 0.0 | 83.3 |
| no_complement | micro_math | math | 60 | 80.0 | 0.0 | 20.0 |
| no_complement | micro_code | code | 84 | 0.0 | 85.7 | 14.3 |
| no_complement | micro_general | general | 72 | 16.7 | 0.0 | 83.3 |
"""

COST_CSV = """\
method,method_group,avg,cost_tokens_per_sample,cost_vs_single_expert,wall_s
fusionroute,fusionroute,0.750000,10.000000,2.000000,13.500000
no_complement,ablation,0.708333,10.000000,2.000000,13.500000
collab,baseline,0.333333,30.000000,6.000000,13.500000
expert_math,expert,0.750000,5.000000,1.000000,13.500000
"""


@pytest.fixture(scope="module")
def summary():
    return summarize(load_sweep(SWEEP), n_resamples=20000)


def test_order_reference_then_groups_and_domains(summary) -> None:
    # meta lists methods alphabetically and tasks code, general, math: the table reorders both
    assert summary.methods == ["fusionroute", "no_complement", "collab", "expert_math"]
    assert summary.tasks == ["micro_math", "micro_code", "micro_general"]
    assert summary.columns() == ["micro_math", "micro_code", AVG, "micro_general"]


def test_main_table_markdown(summary) -> None:
    assert T.main_table_markdown(summary) == MAIN_MD


def test_main_table_latex(summary) -> None:
    assert T.main_table_latex(summary) == MAIN_TEX


def test_main_table_csv(summary) -> None:
    assert T.main_table_csv(summary) == MAIN_CSV


def test_secondary_routing_and_cost_tables(summary) -> None:
    assert METRICS_MATH_MD in T.metrics_markdown(summary)
    assert "### micro_math (math; primary metric: exact_match)" in T.metrics_markdown(summary)
    assert T.metrics_csv(summary).startswith(METRICS_CSV_HEAD)
    assert T.metrics_latex(summary).count(r"\toprule") == 3
    assert T.routing_grid(summary).to_markdown() == ROUTING_MD
    assert "no_complement,micro_code,code,code,72,0.857143\n" in T.routing_csv(summary)
    assert T.cost_csv(summary) == COST_CSV


def test_write_tables(summary, tmp_path: Path) -> None:
    files = T.write_tables(summary, tmp_path)
    assert files["main"] == ["main.md", "main.tex", "main.csv"]
    assert (tmp_path / "main.md").read_text() == MAIN_MD
    assert {p.name for p in tmp_path.iterdir()} == {f for names in files.values() for f in names}


def test_latex_escape_and_cells() -> None:
    assert T.latex_escape("a_b & 50% #1 {x} ~^\\") == \
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert T.Cell(None).markdown() == "–" and T.Cell(None).latex() == "--"
    assert T.Cell("56.6", None, bold=True, marker=True).markdown() == "**56.6**†"
    assert T.benchmark_label("humaneval") == "HumanEval" and T.benchmark_label("micro_if") == "micro_if"


def _one_seed_copy(tmp_path: Path) -> Path:
    root = tmp_path / "one_seed"
    shutil.copytree(SWEEP, root)
    sweep = load_sweep(root)
    write_results(root, [r for r in sweep.results if r.seed == 0])
    return root


def test_one_seed_uses_sample_bootstrap(tmp_path: Path) -> None:
    s = summarize(load_sweep(_one_seed_copy(tmp_path)), n_resamples=20000)
    code = s.scores[("fusionroute", "micro_code")].interval
    # seed 0 on micro_code: (1, 1, 1, 0); mean of 4 draws = 1 - k/4 with k ~ Bin(4, 1/4):
    # P(k = 0) = 0.32 -> upper 1.0; P(k >= 3) = 5.1% > 2.5% > P(k = 4) = 0.4% -> lower 0.25
    assert (code.kind, code.n, code.mean, code.low, code.high) == ("bootstrap", 4, 0.75, 0.25, 1.0)
    avg = s.scores[("fusionroute", AVG)].interval
    # micro_math is 1.0 on every sample, so Avg* = (1 + code*) / 2 in [0.625, 1.0]
    assert (avg.kind, avg.mean, avg.low, avg.high) == ("bootstrap", 0.875, 0.625, 1.0)
    assert "| fusionroute | **100.0** ± 0.0 | **75.0** ± 37.5 | **87.5** ± 18.8 |" in T.main_table_markdown(s)
    assert "percentile bootstrap over samples" in T.main_caption(s)


def test_sample_counts_are_not_metric_columns(tmp_path: Path) -> None:
    """Real cells carry the scorers' counts (`n`, and `samples` for pass@k) among their metrics: not scores."""
    root = tmp_path / "with_counts"
    shutil.copytree(SWEEP, root)
    lines = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    for row in lines:
        row["metrics"].update(n=row["n"], samples=row["n"])
    (root / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    s = summarize(load_sweep(root), n_resamples=20000)
    assert METRICS_MATH_MD in T.metrics_markdown(s)
    assert all(not {"n", "samples"} & set(names) for names in s.metric_names.values())


def test_missing_samples_drop_the_marker_not_the_row(tmp_path: Path) -> None:
    root = tmp_path / "no_samples"
    shutil.copytree(SWEEP, root)
    shutil.rmtree(root / "samples" / "collab")
    s = summarize(load_sweep(root), n_resamples=200)
    score = s.scores[("collab", "micro_math")]
    assert score.vs_reference is None and not score.significant
    assert "| collab | 0.0 ± 0.0 | **66.7** ± 35.9 | 33.3 ± 17.9 | **50.0** ± 0.0 |" in T.main_table_markdown(s)


def test_schema_errors_name_the_problem(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    shutil.copytree(SWEEP, root)
    lines = (root / "results.jsonl").read_text().splitlines()
    (root / "results.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(SweepFormatError, match="both"):
        load_sweep(root)
    row = json.loads(lines[0])
    del row["primary"]
    (root / "results.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SweepFormatError, match="field 'primary' is missing"):
        load_sweep(root)
    row = json.loads(lines[0]) | {"domain": "poetry"}
    (root / "results.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SweepFormatError, match="domain 'poetry'"):
        load_sweep(root)
    (root / "results.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(SweepFormatError, match=r"results.jsonl:2: not valid JSON"):
        load_sweep(root)
    with pytest.raises(SweepFormatError, match="not a finished sweep"):
        load_sweep(tmp_path / "nowhere")


def _seeded_sweep(root: Path, correct: dict[str, list[list[int]]]) -> Path:
    """correct[method][seed] = per-sample 0/1 over ids s0..; one task (micro_math), reference fusionroute."""
    rows = []
    for method, per_seed in correct.items():
        for seed, values in enumerate(per_seed):
            write_samples(root, method, "micro_math", seed, [
                {"id": f"s{i}", "prompt": "p", "output": "o", "extracted": None, "gold": None, "correct": bool(v),
                 "metrics": {"acc": float(v)}, "expert_choices": None, "tokens": None, "cost_tokens": 1}
                for i, v in enumerate(values)])
            rows.append(ResultRow(sweep="s", method=method, task="micro_math", domain="math", seed=seed,
                                  n=len(values), primary_metric="acc", primary=sum(values) / len(values),
                                  metrics={"acc": sum(values) / len(values)}, cost_tokens=len(values), wall_s=0.1,
                                  method_group="fusionroute" if method == "fusionroute" else "baseline"))
    write_results(root, rows)
    write_meta(root, SweepMeta(sweep="s", expert_names=[], reference_method="fusionroute", methods=list(correct),
                               tasks=["micro_math"], seeds=[0, 1, 2], created="2026-01-01T00:00:00"))
    return root


def test_dagger_needs_seeds_and_ids_to_agree(tmp_path: Path) -> None:
    """`worse` loses 20 of 60 ids under every seed: †. `lucky_ids` differs from the reference on its ids as much
    in total, but in opposite directions from seed to seed (training noise): the id bootstrap alone would mark it,
    the seed test does not."""
    ref = [[1] * 40 + [0] * 20] * 3
    worse = [[1] * 20 + [0] * 40] * 3
    lucky = [[1] * 60, [1] * 20 + [0] * 40, [1] * 60]
    s = summarize(load_sweep(_seeded_sweep(tmp_path / "s", {"fusionroute": ref, "worse": worse,
                                                          "lucky_ids": lucky})), n_resamples=2000)
    w, lk = s.scores[("worse", "micro_math")], s.scores[("lucky_ids", "micro_math")]
    assert w.significant and w.test.seeds.kind == "paired" and w.test.p_adjusted <= 4 * w.test.p
    assert not lk.significant and lk.test.p_ids < 0.05 < lk.test.seeds.p
    md = T.main_table_markdown(s)
    assert "| worse | 33.3 ± 0.0† |" in md and "| lucky_ids | **77.8** ± 95.6 |" in md
    assert s.n_comparisons == 4  # two methods x (micro_math, Avg)
