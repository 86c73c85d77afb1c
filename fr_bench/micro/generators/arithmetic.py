"""Math: GSM8K-shaped word problems of 1-3 small arithmetic steps, with a worked solution ending in `#### n`.

Numbers stay small (every intermediate value in 0..40) so that a model of a million parameters can learn the
arithmetic facts; the solution writes one fact per line, which is what makes the multi-step problems learnable.
"""
from __future__ import annotations

import random

from .base import Sample

NAMES = (("Tom", "he"), ("Ben", "he"), ("Sam", "he"), ("Max", "he"), ("Leo", "he"), ("Dan", "he"),
         ("Ana", "she"), ("Mia", "she"), ("Zoe", "she"), ("Eva", "she"), ("Lily", "she"), ("Nina", "she"))
ITEMS = ("apples", "pens", "books", "coins", "cards", "eggs", "cups", "toys", "stamps", "shells", "marbles", "bags")
BOXES = ("boxes", "bags", "jars", "baskets")
ADD = ("{p} buys {b} more.", "{p} finds {b} more.", "{p} gets {b} more from a friend.", "{p} makes {b} more.")
SUB = ("{p} gives {b} to a friend.", "{p} loses {b}.", "{p} sells {b}.", "{p} gives away {b}.")
MUL = ("Then the number of {item} doubles.", "Then the number of {item} triples.")
MAX_VALUE = 20


def sample(rng: random.Random) -> Sample:
    name, pron = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    steps = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
    lines: list[str] = []
    sentences: list[str] = []
    if rng.random() < 0.25:  # a product as the first step
        a, b = rng.randint(2, 5), rng.randint(2, 6)
        box = rng.choice(BOXES)
        sentences.append(f"{name} has {a} {box} with {b} {item} in each.")
        value = a * b
        lines.append(f"{a} * {b} = {value}")
        steps -= 1
    else:
        value = rng.randint(2, 12)
        sentences.append(f"{name} has {value} {item}.")
    for _ in range(steps):
        weights = {"add": 4 if value < MAX_VALUE else 0, "sub": 4 if value >= 1 else 0,
                   "mul": 1 if value * 2 <= MAX_VALUE else 0}
        op = rng.choices(list(weights), weights=list(weights.values()))[0]
        if op == "add":
            b = rng.randint(1, min(9, MAX_VALUE - value))
            sentences.append(rng.choice(ADD).format(p=pron.capitalize(), b=b))
            lines.append(f"{value} + {b} = {value + b}")
            value += b
        elif op == "mul":
            k = 2 if value * 3 > MAX_VALUE else rng.choice((2, 3))
            sentences.append(MUL[k - 2].format(item=item))
            lines.append(f"{value} * {k} = {value * k}")
            value *= k
        else:
            b = rng.randint(1, min(9, value))
            sentences.append(rng.choice(SUB).format(p=pron.capitalize(), b=b))
            lines.append(f"{value} - {b} = {value - b}")
            value -= b
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    answer = "\n".join(lines) + f"\n#### {value}"
    return Sample(row={"question": question, "answer": answer}, response=answer, group=question)
