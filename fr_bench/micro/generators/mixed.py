"""Mixed: one response that needs two experts, built from the math, code and instruction-following generators.

Three kinds, each checked by the existing scorers of the domains it mixes (a row is correct only when every check
holds):
- `math_code`: a word problem whose result is the constant of a function ("... Write a function add_apples(x) that
  returns x plus n, where n is the number of apples Tom has now."): the worked arithmetic, then the function.
  Checked by the function's asserts in the sandbox.
- `math_if`: a word problem answered under two IFEval constraints (a title, quotation marks, a closing
  phrase, a postscript). Checked by GSM8K's strict extraction and IFEval's checkers.
- `code_if`: a function, then a one-sentence explanation under two constraints. Checked by the asserts and
  IFEval's checkers.

`segments` in the row is the gold response cut into consecutive pieces, each with the domain whose expert writes
it; the pieces joined are the gold response. The scripted token-level oracle (`fr_bench.micro.oracle`) switches
experts at these boundaries.
"""
from __future__ import annotations

import random
import re
from typing import Any

from . import arithmetic, constraints, functions
from .base import Sample

KINDS = ("math_code", "math_if", "code_if")
GSM8K_PROMPT = ("{question}\n\nSolve the problem step by step. On the last line, write the final answer as a number "
                "in the form \"#### <number>\".")  # fr_bench.tasks.gsm8k.ZERO_SHOT, the math expert's prompt
MBPP_PROMPT = ("You are an expert Python programmer, and here is your task: {text} Your code should pass these "
               "tests:\n\n{tests}")  # fr_bench.tasks.mbpp.PROMPT, the code expert's prompt
EXPLAIN = "Then explain the function in one sentence."

# Function families (fr_bench.micro.generators.functions) whose constant can be the answer of a word problem.
NUMERIC = {"returns x plus {k}": ("add_{k}", "plus_{k}"), "returns x minus {k}": ("subtract_{k}", "minus_{k}"),
           "returns x times {k}": ("times_{k}", "multiply_by_{k}"),
           "returns True if x is greater than {k}": ("is_greater_than_{k}", "above_{k}"),
           "returns True if x is less than {k}": ("is_less_than_{k}", "below_{k}"),
           "returns a list with every item of xs times {k}": ("scale_by_{k}", "multiply_all_by_{k}")}
# Constraints a math answer or a function can carry without breaking its own check, and pairs that cannot go together.
WRAPPERS = ("detectable_format:title", "startend:quotation", "startend:end_checker", "detectable_content:postscript")
# (No case constraint on code: langdetect does not read a lowercase function and one sentence as English.)
CODE_WRAPPERS = ("detectable_format:title", "startend:end_checker", "detectable_content:postscript")
CONFLICTS = ({"startend:end_checker", "detectable_content:postscript"},
             {"startend:quotation", "detectable_content:postscript"})
MAX_MATH_LINES = 2  # at most two arithmetic facts: the math expert's segment stays within what it does reliably
_QUESTION = re.compile(r"^(?P<story>.*) How many (?P<item>\w+) does (?P<name>\w+) have now\?$")


def _problem(rng: random.Random) -> tuple[str, str, str, str, int]:
    """(story without the question, worked lines, item, name, result) of a math word problem of at most
    MAX_MATH_LINES steps."""
    s = arithmetic.sample(rng)
    while s.response.count("\n") > MAX_MATH_LINES:
        s = arithmetic.sample(rng)
    m = _QUESTION.match(s.row["question"])
    if m is None:
        raise ValueError(f"arithmetic question in an unexpected form: {s.row['question']!r}")
    lines, final = s.response.rsplit("\n#### ", 1)
    return m["story"], lines, m["item"], m["name"], int(final)


def _constraints(rng: random.Random, options: tuple[str, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    """Two compatible constraints (one alone is a wrapper that replayed data teaches every expert)."""
    ids = [rng.choice(options)]
    rest = [o for o in options if o != ids[0] and not any({ids[0], o} <= c for c in CONFLICTS)]
    ids.append(rng.choice(rest))
    ids.sort(key=options.index)  # a fixed order: the gold response applies them in one way
    return ids, [constraints._kwargs(i, rng) for i in ids]


def _wrap(body: list[tuple[str, str]], ids: list[str], kwargs: list[dict[str, Any]], title: str,
          tail: str = "") -> list[tuple[str, str]]:
    """The segments of `body` (+ an `if` explanation `tail`) under the constraints `ids`; the wrapping text is the
    `if` expert's. `title` is the topic of the title and the postscript (a word problem's item, or "functions")."""
    kw = dict(zip(ids, kwargs))
    head, end = "", tail
    if "detectable_format:title" in kw:
        head += f"<<{title}>>\n"
    if "detectable_content:postscript" in kw:
        end += f"\nP.S. I will write more about {title} soon."
    if "startend:end_checker" in kw:
        end += " " + kw["startend:end_checker"]["end_phrase"]
    if "startend:quotation" in kw:
        head, end = '"' + head, end + '"'
    return ([("if", head)] if head else []) + body + ([("if", end)] if end else [])


def _math_code(rng: random.Random) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    story, lines, item, name, value = _problem(rng)
    text = rng.choice(sorted(NUMERIC))
    fam = next(f for f in functions.FAMILIES if f.text == text)
    fname = rng.choice(functions.PREFIXES) + rng.choice(NUMERIC[text]).format(k=item)
    signature = f"{fname}({', '.join(fam.args)})"
    code = f"def {signature}:\n    return {fam.body.format(k=value)}"
    fn = functions._compile(code, fname)
    tests = [f"assert {fname}({functions._call_repr(a)}) == {fn(*a)!r}"
             for a in functions._test_inputs(fam, value, fn, rng)]
    prompt = (f"{story} Write a function {signature} that {text.format(k='n')}, where n is the number of {item} "
              f"{name} has now.")
    checks = {"mbpp": {"code": code, "test_list": tests, "test_imports": []}}
    return prompt, [("math", lines + "\n"), ("code", code)], checks


def _math_if(rng: random.Random) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    story, lines, item, name, value = _problem(rng)
    question = f"{story} How many {item} does {name} have now?"
    ids, kwargs = _constraints(rng, WRAPPERS)
    prompt = " ".join([GSM8K_PROMPT.format(question=question)]
                      + [constraints.describe(i, k) for i, k in zip(ids, kwargs)])
    answer = f"{lines}\n#### {value}"
    checks = {"gsm8k": {"answer": answer}, "ifeval": {"instruction_id_list": ids, "kwargs": kwargs}}
    return prompt, _wrap([("math", answer)], ids, kwargs, item), checks


def _code_if(rng: random.Random) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    s = functions.sample(rng)
    row = s.row
    text = row["prompt"].removeprefix("Write a function ").removesuffix(".")  # "add_7(x) that returns x plus 7"
    does = text.split(" that ", 1)[1]
    ids, kwargs = _constraints(rng, CODE_WRAPPERS)
    prompt = " ".join([MBPP_PROMPT.format(text=row["prompt"], tests="\n".join(row["test_list"])), EXPLAIN]
                      + [constraints.describe(i, k) for i, k in zip(ids, kwargs)])
    checks = {"mbpp": {"code": row["code"], "test_list": row["test_list"], "test_imports": []},
              "ifeval": {"instruction_id_list": ids, "kwargs": kwargs}}
    tail = f"\nThis function {does}."
    return prompt, _wrap([("code", row["code"])], ids, kwargs, "functions", tail), checks


def sample(rng: random.Random) -> Sample:
    kind = rng.choice(KINDS)
    prompt, segments, checks = {"math_code": _math_code, "math_if": _math_if, "code_if": _code_if}[kind](rng)
    row = {"prompt": prompt, "kind": kind, "checks": checks,
           "segments": [{"domain": d, "text": t} for d, t in segments]}
    return Sample(row=row, response="".join(t for _, t in segments), group=prompt)
