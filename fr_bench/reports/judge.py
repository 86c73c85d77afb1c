"""General quality with real models: a pairwise LLM judge (the paper's GPT-4o win rate), pluggable.

The judge is any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, ...), called with
the standard library only. Each held-out general prompt is judged twice, with the method's answer first and then
second, to cancel position bias. Per prompt, from the method's side:

- win: it wins in both orders; loss: it loses in both orders;
- tie: anything else (a tie in either order, the two orders disagree, or a verdict could not be parsed),
  which is MT-Bench's "inconsistent = tie" rule.

Win rate = (wins + 0.5 ties) / n, with a percentile bootstrap CI over prompts. The reference method's own row is
0.5 by definition (no calls). In the micro world there is no judge: general quality is the micro_general task's
own score.

Verdicts are cached like cells: one unit per (method, seed) under `$FR_BENCH_CACHE/judge/<key>/`, the key covering
what shapes a verdict (the `VERDICT_FIELDS` of the config, the opponent's name, and every judged (id, prompt, answer,
opponent answer)). A re-run judges only what changed. The report folder's `judge.json` records the configs run on
it, so the sweep's `assemble`, which rewrites results.jsonl from the cells, re-attaches the win rates whose answers
are unchanged (`attach_judged`) instead of dropping them.

    python -m fr_bench.reports.judge reports/<sweep> --config judge.yaml [key=value ...]

`transport` is injectable so tests use a fake judge and never touch the network.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..cache import atomic_dir, atomic_write_json, atomic_write_jsonl, cache_root, config_hash, is_complete
from ..config import MISSING, ConfigError, load_config
from .schema import ResultRow, Sweep, SweepFormatError, load_sweep, write_meta, write_results, write_samples
from .stats import bootstrap_interval

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = """\
You are an impartial judge. Compare the two assistant answers to the user's question below and decide which one \
is more helpful, correct, relevant and complete. Do not let the order of the answers, their length or the \
assistants' names influence you. Explain briefly, then give your verdict on the last line, exactly "[[A]]" if \
answer A is better, "[[B]]" if answer B is better, or "[[C]]" for a tie.

[Question]
{question}

[Answer A]
{answer_a}
[End of Answer A]

[Answer B]
{answer_b}
[End of Answer B]"""
PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")
PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
VERDICT = re.compile(r"\[\[(A|B|C)\]\]")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# The config fields a verdict depends on (the rest say how calls are made, or what is judged and where it is shown).
VERDICT_FIELDS = ("base_url", "model", "prompt_template", "system_prompt", "temperature", "max_tokens")
JUDGE_FILE = "judge.json"   # in a report folder: output_task -> the JudgeConfig run on it


@dataclass
class JudgeConfig:
    """Who judges (endpoint, model, prompt) and what is judged (task, methods, opponent)."""

    base_url: str = MISSING            # e.g. https://api.openai.com/v1 ("/chat/completions" is appended)
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the env variable holding the key; "" = send no auth header
    prompt_template: str = DEFAULT_TEMPLATE  # must contain {question}, {answer_a}, {answer_b}
    system_prompt: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 120.0
    max_retries: int = 4               # per call, on network errors and HTTP 429/5xx (exponential back-off)
    backoff_s: float = 2.0
    concurrency: int = 4               # calls in flight
    task: str = "general"              # display name of the sweep's held-out general-prompt task
    reference_method: str = "finetuned"  # the opponent (the paper: the Fine-tuned Model)
    methods: list[str] = field(default_factory=list)  # empty: every method that ran `task`
    output_task: str = "win_rate"      # display name of the win-rate column written into the sweep


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something unusable; the message says what to check."""


class TransportError(JudgeError):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# (url, headers, JSON payload, timeout seconds) -> parsed JSON response
Transport = Callable[[str, dict[str, str], dict[str, Any], float], dict[str, Any]]


def urllib_transport(url: str, headers: dict[str, str], payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:500]
        raise TransportError(f"HTTP {exc.code} from {url}: {body}", exc.code in RETRYABLE_STATUS) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransportError(f"cannot reach {url}: {exc}", True) from exc


@dataclass(frozen=True)
class Verdict:
    choice: str        # "A", "B", "tie" or "invalid"
    raw: str
    tokens: int = 0    # judge tokens used (prompt + completion), when the endpoint reports them


@dataclass(frozen=True)
class PairJudgment:
    """Both orders of one prompt; `method_first` has the method's answer as A."""

    method_first: Verdict
    method_second: Verdict

    def _side(self, verdict: Verdict, method_letter: str) -> int:
        if verdict.choice in ("tie", "invalid"):
            return 0
        return 1 if verdict.choice == method_letter else -1

    @property
    def outcome(self) -> str:
        first, second = self._side(self.method_first, "A"), self._side(self.method_second, "B")
        if first == second == 1:
            return "win"
        if first == second == -1:
            return "loss"
        return "tie"

    @property
    def score(self) -> float:
        return {"win": 1.0, "tie": 0.5, "loss": 0.0}[self.outcome]


def parse_verdict(text: str) -> str:
    """The last [[A]]/[[B]]/[[C]] in the judge's reply ("C" = tie); "invalid" when there is none."""
    found = VERDICT.findall(text)
    if not found:
        return "invalid"
    return "tie" if found[-1] == "C" else found[-1]


class PairwiseJudge:
    def __init__(self, config: JudgeConfig, transport: Transport = urllib_transport,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        missing = [p for p in PLACEHOLDERS if p not in config.prompt_template]
        if missing:
            raise ConfigError(f"judge prompt_template lacks {missing}; it must contain {', '.join(PLACEHOLDERS)}.")
        self.config = config
        self.transport = transport
        self.sleep = sleep
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"judge api_key_env = '{config.api_key_env}' but that environment variable is not "
                                  f"set; export it, or set api_key_env: '' for an endpoint without authentication.")
            self.headers["Authorization"] = f"Bearer {key}"

    def prompt(self, question: str, answer_a: str, answer_b: str) -> str:
        # one pass over the template, not str.format or chained replaces: templates may hold other braces, and an
        # answer that contains "{answer_b}" must stay as written
        values = {"{question}": question, "{answer_a}": answer_a, "{answer_b}": answer_b}
        return PLACEHOLDER_RE.sub(lambda m: values[m.group(0)], self.config.prompt_template)

    def verdict(self, question: str, answer_a: str, answer_b: str) -> Verdict:
        cfg = self.config
        messages = ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + [
            {"role": "user", "content": self.prompt(question, answer_a, answer_b)}]
        payload = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                   "max_tokens": cfg.max_tokens}
        for attempt in range(cfg.max_retries + 1):
            try:
                response = self.transport(self.url, self.headers, payload, cfg.timeout_s)
                break
            except TransportError as exc:
                if not exc.retryable or attempt == cfg.max_retries:
                    raise JudgeError(f"judge call failed after {attempt + 1} attempt(s): {exc}. Check base_url, "
                                     f"model and the API key, or raise max_retries.") from exc
                self.sleep(cfg.backoff_s * 2 ** attempt)
        try:
            text = response["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"{self.url} answered without choices[0].message.content ({str(response)[:300]}); "
                             f"is it an OpenAI-compatible chat-completions endpoint?") from exc
        tokens = int((response.get("usage") or {}).get("total_tokens") or 0)
        return Verdict(parse_verdict(text), text, tokens)

    def judge_pair(self, question: str, method_answer: str, reference_answer: str) -> PairJudgment:
        return PairJudgment(method_first=self.verdict(question, method_answer, reference_answer),
                            method_second=self.verdict(question, reference_answer, method_answer))

    def judge_many(self, items: list[tuple[str, str, str]]) -> list[PairJudgment]:
        """Judge (question, method answer, reference answer) triples, `concurrency` calls at a time, in order."""
        if self.config.concurrency <= 1:
            return [self.judge_pair(*item) for item in items]
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(lambda item: self.judge_pair(*item), items))


@dataclass
class WinRate:
    method: str
    reference: str
    seed: int
    rows: list[dict[str, Any]]    # per-sample rows (samples schema + "judge")
    result: ResultRow
    cached: bool = False          # read from the judge cache, no call made


@dataclass
class _Unit:
    """One cached unit of verdicts: a method's answers on one seed against the reference method's, paired by id."""

    method: str
    seed: int
    pairs: list[tuple[dict[str, Any], dict[str, Any]]]   # (method's sample, reference's sample)
    key: str

    @property
    def folder(self) -> Path:
        return cache_root() / "judge" / self.key


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {"verdict": v.choice, "raw": v.raw, "tokens": v.tokens}


def win_rate_row(sweep: str, method: str, output_task: str, seed: int, judgments: list[PairJudgment],
                 cost_tokens: int, wall_s: float, method_group: str | None) -> ResultRow:
    """The results row of one method's win rate: fractions of wins, ties, losses, invalid verdicts and of verdicts
    for the first-shown answer (position bias; 0.5 = none)."""
    n = len(judgments)
    outcomes = [j.outcome for j in judgments]
    verdicts = [v for j in judgments for v in (j.method_first, j.method_second)]
    decided = [v for v in verdicts if v.choice in ("A", "B")]
    win_rate = sum(j.score for j in judgments) / n
    metrics = {"win_rate": win_rate, "win": outcomes.count("win") / n, "tie": outcomes.count("tie") / n,
               "loss": outcomes.count("loss") / n,
               "invalid": sum(v.choice == "invalid" for v in verdicts) / len(verdicts),
               "first_position": sum(v.choice == "A" for v in decided) / len(decided) if decided else 0.5}
    return ResultRow(sweep=sweep, method=method, task=output_task, domain="general", seed=seed, n=n,
                     primary_metric="win_rate", primary=win_rate, metrics=metrics, cost_tokens=cost_tokens,
                     wall_s=wall_s, method_group=method_group)


def _units(sweep: Sweep, config: JudgeConfig) -> list[_Unit]:
    """The (method, seed) units `config` judges in `sweep`, each keyed by what its verdicts depend on."""
    ref = config.reference_method
    ran = [m for m in sweep.method_order() if sweep.rows(m, config.task)]
    if ref not in ran:
        raise SweepFormatError(f"judge reference_method '{ref}' has no results on task '{config.task}' in "
                               f"{sweep.root}; choose one of {ran} (or set task to the general-prompt task).")
    methods = config.methods or ran
    unknown = [m for m in methods if m not in ran]
    if unknown:
        raise SweepFormatError(f"judge methods {unknown} have no results on task '{config.task}'; choose among {ran}.")
    verdict_config = {f: getattr(config, f) for f in VERDICT_FIELDS}
    units = []
    for method in methods:
        for row in sweep.rows(method, config.task):
            ours = sweep.samples(method, config.task, row.seed)
            theirs = sweep.samples(ref, config.task, row.seed)
            if ours is None or theirs is None:
                raise SweepFormatError(f"samples of {method if ours is None else ref}/{config.task}/seed{row.seed} "
                                       f"are missing in {sweep.root}; the judge needs both answers.")
            by_id = {str(s["id"]): s for s in theirs}
            pairs = [(s, by_id[str(s["id"])]) for s in ours if str(s["id"]) in by_id]
            if not pairs:
                raise SweepFormatError(f"{method} and {ref} share no sample id on {config.task}/seed{row.seed}.")
            judged = [(str(s["id"]), str(s["prompt"]), str(s["output"]), str(r["output"])) for s, r in pairs]
            # a self-match is a tie by definition, never judged: it must not share a key with a judged method
            # whose answers happen to equal the reference's
            key = config_hash("judge", verdict_config, ref, {"self_match": method == ref}, judged)
            units.append(_Unit(method, row.seed, pairs, key))
    return units


def _judged(unit: _Unit, config: JudgeConfig, judge: "PairwiseJudge | None") -> tuple[list[dict[str, Any]], dict]:
    """Per-sample rows and the results row (as JSON) of one unit, judging it now (`judge`: None for a self-match)."""
    start = time.time()
    if judge is None:  # a method against itself ties by definition
        tie = Verdict("tie", "(same method: tie by definition, not judged)")
        judgments = [PairJudgment(tie, tie) for _ in unit.pairs]
    else:
        judgments = judge.judge_many([(str(s["prompt"]), str(s["output"]), str(r["output"])) for s, r in unit.pairs])
    wall = time.time() - start
    rows = []
    for (s, r), j in zip(unit.pairs, judgments):
        rows.append({"id": s["id"], "prompt": s["prompt"], "output": s["output"], "extracted": j.outcome,
                     "gold": None, "correct": j.outcome == "win", "metrics": {"win_rate": j.score},
                     "expert_choices": None, "tokens": None, "cost_tokens": int(s.get("cost_tokens") or 0),
                     "judge": {"model": config.model, "reference_method": config.reference_method,
                               "reference_output": r["output"], "outcome": j.outcome,
                               "method_first": _verdict_json(j.method_first),
                               "method_second": _verdict_json(j.method_second)}})
    result = win_rate_row("", unit.method, config.output_task, unit.seed, judgments,
                          sum(x["cost_tokens"] for x in rows), wall, None)
    return rows, result.to_json()


def _win_rate(unit: _Unit, sweep: Sweep, config: JudgeConfig, cached: bool) -> WinRate:
    """A unit's WinRate from its cache folder, labelled for `sweep` (name, output task, method group)."""
    rows = [json.loads(line) for line in (unit.folder / "samples.jsonl").read_text().splitlines() if line]
    stored = json.loads((unit.folder / "result.json").read_text())
    result = ResultRow.from_json({**stored, "sweep": sweep.name, "method": unit.method, "task": config.output_task,
                                  "seed": unit.seed, "method_group": sweep.method_groups().get(unit.method)},
                                 str(unit.folder / "result.json"))
    return WinRate(unit.method, config.reference_method, unit.seed, rows, result, cached)


def judge_sweep(sweep: Sweep, config: JudgeConfig, transport: Transport = urllib_transport,
                sleep: Callable[[float], None] = time.sleep) -> list[WinRate]:
    """Judge every method's answers on `config.task` against the reference method's, per seed, paired by id; units
    already in the judge cache are read from it without a call."""
    units = _units(sweep, config)
    judge = None
    out = []
    for unit in units:
        cached = is_complete(unit.folder)
        if not cached:
            if judge is None and unit.method != config.reference_method:
                judge = PairwiseJudge(config, transport, sleep)
            rows, result = _judged(unit, config, None if unit.method == config.reference_method else judge)
            with atomic_dir(unit.folder) as tmp:
                atomic_write_jsonl(tmp / "samples.jsonl", rows)
                atomic_write_json(tmp / "result.json", result)
        out.append(_win_rate(unit, sweep, config, cached))
    return out


def write_win_rates(sweep: Sweep, config: JudgeConfig, win_rates: list[WinRate]) -> None:
    """Store the per-sample judgments as samples of `output_task` and its rows in results.jsonl (replacing any
    earlier judge run), so tables, plots and compare treat the win rate as one more general benchmark; record the
    config in the folder's `judge.json` for `attach_judged`."""
    for w in win_rates:
        write_samples(sweep.root, w.method, config.output_task, w.seed, w.rows)
    new = {(w.method, w.seed) for w in win_rates}
    kept = [r for r in sweep.results if not (r.task == config.output_task and (r.method, r.seed) in new)]
    write_results(sweep.root, kept + [w.result for w in win_rates])
    meta = sweep.meta
    if config.output_task not in meta.tasks:
        write_meta(sweep.root, dataclasses.replace(meta, tasks=meta.tasks + [config.output_task]))
    runs = {**_judge_runs(sweep.root), config.output_task: dataclasses.asdict(config)}
    atomic_write_json(sweep.root / JUDGE_FILE, runs)


def _judge_runs(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(sweep_dir) / JUDGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def attach_judged(sweep_dir: str | Path) -> int:
    """Re-attach the cached win rates of every judge config recorded in the folder (after the sweep rewrote its
    results from the cells); returns how many units were attached. A unit whose answers changed is not in the cache:
    it is left out, with a warning to re-run the judge."""
    attached = 0
    for output_task, fields in _judge_runs(Path(sweep_dir)).items():
        config = JudgeConfig(**fields)
        sweep = load_sweep(sweep_dir)
        try:
            units = _units(sweep, config)
        except SweepFormatError as exc:
            log.warning("judge results '%s' not re-attached: %s", output_task, exc)
            continue
        done = [u for u in units if is_complete(u.folder)]
        if len(done) < len(units):
            log.warning("judge results '%s': %d of %d run(s) have new answers since they were judged; re-run "
                        "`fr-bench judge %s` for them", output_task, len(units) - len(done), len(units), sweep_dir)
        if done:
            write_win_rates(sweep, config, [_win_rate(u, sweep, config, True) for u in done])
            attached += len(done)
    return attached


def format_win_rates(win_rates: list[WinRate]) -> str:
    lines = [f"{'method':<20}{'seed':>5}{'n':>6}{'win rate':>10}  95% CI          {'win':>6}{'tie':>6}{'loss':>6}"
             "  (c = from the judge cache)"]
    for w in win_rates:
        iv = bootstrap_interval([r["metrics"]["win_rate"] for r in w.rows], seed=w.seed)
        m = w.result.metrics
        lines.append(f"{w.method:<20}{w.seed:>5}{w.result.n:>6}{100 * iv.mean:>10.1f}  "
                     f"[{100 * iv.low:5.1f}, {100 * iv.high:5.1f}]  {100 * m['win']:>6.1f}{100 * m['tie']:>6.1f}"
                     f"{100 * m['loss']:>6.1f}{'  c' if w.cached else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.reports.judge",
                                     description="Pairwise LLM-judge win rates for a finished sweep.")
    parser.add_argument("sweep_dir")
    parser.add_argument("--config", help="YAML with JudgeConfig keys (base_url is required)")
    parser.add_argument("--no-render", action="store_true", help="do not re-render report.md afterwards")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the judge config")
    args = parser.parse_intermixed_args(argv)
    try:
        config = load_config(JudgeConfig, args.config, args.overrides)
        sweep = load_sweep(args.sweep_dir)
        win_rates = judge_sweep(sweep, config)
    except (ConfigError, SweepFormatError, JudgeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_win_rates(sweep, config, win_rates)
    print(format_win_rates(win_rates))
    if not args.no_render:
        from .report_md import render_report

        print(render_report(Path(args.sweep_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
