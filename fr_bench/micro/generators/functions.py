"""Code: MBPP-shaped function-writing tasks ("Write a function add_7(x) that returns x plus 7.") with three asserts.

Each family is a one-line body over one or two arguments (numbers, short strings, short lists). The function name
combines a prefix, a synonym and the family's parameter, so a model has to copy it from the prompt rather than
recall it. The asserts are computed by
running the gold code, so they are right by construction.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Callable

from .base import Sample

WORDS = ("cat", "dog", "sun", "tree", "book", "lamp", "rain", "fish", "bird", "moon", "star", "milk", "door", "hat",
         "cake", "ship", "rock", "leaf", "frog", "bell")
LETTERS = "abcdefghijklmnoprstw"
PREFIXES = ("", "get_", "my_", "calc_", "find_", "do_", "compute_", "make_")

Arg = Callable[[random.Random, Any], Any]  # (rng, the family parameter k) -> one argument value


def _int(rng: random.Random, k: Any) -> int:
    return rng.randint(0, 30)


def _int_near(rng: random.Random, k: Any) -> int:
    return max(0, k + rng.randint(-6, 6))


def _word(rng: random.Random, k: Any) -> str:
    return rng.choice(WORDS)


def _ints(rng: random.Random, k: Any) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(3, 5))]


def _word_starting(rng: random.Random, k: Any) -> str:
    return k + rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(WORDS)


def _word_ending(rng: random.Random, k: Any) -> str:
    return rng.choice(WORDS) + k if rng.random() < 0.5 else rng.choice(WORDS)


@dataclass(frozen=True)
class Family:
    names: tuple[str, ...]  # name patterns, formatted with k
    args: tuple[str, ...]
    text: str               # what the function does, formatted with k and the argument names
    body: str               # the return expression, formatted with k
    arg_gen: tuple[Arg, ...]
    ks: tuple[Any, ...] = (None,)


FAMILIES: tuple[Family, ...] = (
    Family(("add_{k}", "plus_{k}", "increase_by_{k}"), ("x",), "returns x plus {k}", "x + {k}", (_int,),
           tuple(range(1, 41))),
    Family(("subtract_{k}", "minus_{k}", "decrease_by_{k}"), ("x",), "returns x minus {k}", "x - {k}", (_int,),
           tuple(range(1, 41))),
    Family(("times_{k}", "multiply_by_{k}"), ("x",), "returns x times {k}", "x * {k}", (_int,), tuple(range(2, 13))),
    Family(("is_divisible_by_{k}", "divides_by_{k}"), ("x",), "returns True if x is divisible by {k}",
           "x % {k} == 0", (_int,), tuple(range(2, 13))),
    Family(("is_greater_than_{k}", "above_{k}"), ("x",), "returns True if x is greater than {k}", "x > {k}",
           (_int_near,), tuple(range(1, 31))),
    Family(("is_less_than_{k}", "below_{k}"), ("x",), "returns True if x is less than {k}", "x < {k}",
           (_int_near,), tuple(range(1, 31))),
    Family(("scale_by_{k}", "multiply_all_by_{k}"), ("xs",), "returns a list with every item of xs times {k}",
           "[v * {k} for v in xs]", (_ints,), tuple(range(2, 13))),
    Family(("count_{k}", "how_many_{k}"), ("xs",), "returns how many times {k} appears in the list xs",
           "xs.count({k})", (_ints,), tuple(range(0, 10))),
    Family(("repeat_{k}", "copy_{k}_times"), ("s",), "returns the string s repeated {k} times", "s * {k}", (_word,),
           tuple(range(2, 6))),
    Family(("ends_with_{k}", "last_is_{k}"), ("s",), "returns True if the string s ends with '{k}'",
           "s.endswith('{k}')", (_word_ending,), tuple(LETTERS)),
    Family(("starts_with_{k}", "first_is_{k}"), ("s",), "returns True if the string s starts with '{k}'",
           "s.startswith('{k}')", (_word_starting,), tuple(LETTERS)),
    Family(("max_of_two", "larger", "bigger_one"), ("a", "b"), "returns the larger of a and b", "max(a, b)",
           (_int, _int)),
    Family(("min_of_two", "smaller", "smaller_one"), ("a", "b"), "returns the smaller of a and b", "min(a, b)",
           (_int, _int)),
    Family(("add_two", "sum_of_two", "plus"), ("a", "b"), "returns a plus b", "a + b", (_int, _int)),
    Family(("abs_diff", "distance", "gap"), ("a", "b"), "returns the absolute difference of a and b", "abs(a - b)",
           (_int, _int)),
    Family(("square", "squared", "self_product"), ("x",), "returns x squared", "x * x", (_int,)),
    Family(("sum_list", "list_sum", "total"), ("xs",), "returns the sum of the list xs", "sum(xs)", (_ints,)),
    Family(("max_in_list", "largest", "list_max"), ("xs",), "returns the largest item of the list xs", "max(xs)",
           (_ints,)),
    Family(("min_in_list", "smallest", "list_min"), ("xs",), "returns the smallest item of the list xs", "min(xs)",
           (_ints,)),
    Family(("count_items", "list_length", "size"), ("xs",), "returns the number of items in the list xs", "len(xs)",
           (_ints,)),
    Family(("first_item", "head", "front"), ("xs",), "returns the first item of the list xs", "xs[0]", (_ints,)),
    Family(("last_item", "tail_item", "back"), ("xs",), "returns the last item of the list xs", "xs[-1]", (_ints,)),
    Family(("reverse_string", "flip", "backwards"), ("s",), "returns the string s reversed", "s[::-1]", (_word,)),
    Family(("to_upper", "shout", "upper_case"), ("s",), "returns the string s in upper case", "s.upper()", (_word,)),
    Family(("first_char", "initial", "first_letter"), ("s",), "returns the first character of the string s", "s[0]",
           (_word,)),
    Family(("join_two", "concat", "glue"), ("a", "b"), "returns the string a followed by the string b", "a + b",
           (_word, _word)),
)


def _call_repr(args: tuple[Any, ...]) -> str:
    return ", ".join(repr(a) for a in args)


@functools.lru_cache(maxsize=None)
def _compile(code: str, name: str) -> Callable[..., Any]:
    """The gold function itself (our own template), run to compute the asserts' expected values."""
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102
    return namespace[name]


def _test_inputs(fam: Family, k: Any, fn: Callable[..., Any], rng: random.Random,
                 tries: int = 50) -> list[tuple[Any, ...]]:
    """Three distinct argument tuples, redrawn (a few times) until the expected results are not all equal."""
    calls: list[tuple[Any, ...]] = []
    for _ in range(tries):
        calls = []
        while len(calls) < 3:
            args = tuple(gen(rng, k) for gen in fam.arg_gen)
            if args not in calls:
                calls.append(args)
        if len({repr(fn(*a)) for a in calls}) > 1:
            break
    return calls


def sample(rng: random.Random) -> Sample:
    fam = rng.choice(FAMILIES)
    k = rng.choice(fam.ks)
    name = rng.choice(PREFIXES) + rng.choice(fam.names).format(k=k)
    signature = f"{name}({', '.join(fam.args)})"
    prompt = f"Write a function {signature} that {fam.text.format(k=k)}."
    code = f"def {signature}:\n    return {fam.body.format(k=k)}"
    fn = _compile(code, name)
    calls = _test_inputs(fam, k, fn, rng)
    tests = [f"assert {name}({_call_repr(a)}) == {fn(*a)!r}" for a in calls]
    row = {"prompt": prompt, "code": code, "test_list": tests, "test_imports": []}
    return Sample(row=row, response=code, group=prompt)
