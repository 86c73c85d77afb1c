"""General: small tasks no expert is trained on, scored by exact match.

Word-order reversal, joining words with dashes, numbers in words and capital cities from a fixed table. The table
is small, so the same fact can reach the test split in one phrasing and the training split in another: these rows
test what the base keeps and the experts forget, not generalisation.
"""
from __future__ import annotations

import random

from .base import NUMBER_WORDS, Sample

WORDS = ("red", "cat", "sun", "box", "tree", "blue", "dog", "map", "cup", "star", "hill", "fox", "pen", "road",
         "ice", "owl", "bag", "key", "leaf", "ship")
CAPITALS = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Japan": "Tokyo",
            "Egypt": "Cairo", "Peru": "Lima", "Kenya": "Nairobi", "Norway": "Oslo", "Greece": "Athens",
            "Canada": "Ottawa", "Chile": "Santiago", "Cuba": "Havana", "Poland": "Warsaw", "Austria": "Vienna",
            "Ireland": "Dublin", "Portugal": "Lisbon", "Russia": "Moscow", "China": "Beijing", "India": "New Delhi"}
CAPITAL_QUESTIONS = ("What is the capital of {c}?", "Name the capital city of {c}.",
                     "Which city is the capital of {c}?")
NUMBER_QUESTIONS = ("Write the number {n} in words.", "Spell out the number {n}.")


def sample(rng: random.Random) -> Sample:
    kind = rng.choice(("reverse", "dashes", "number", "capital"))
    if kind in ("reverse", "dashes"):
        words = rng.sample(WORDS, 3)
        if kind == "reverse":
            prompt, answer = f"Reverse the order of these words: {' '.join(words)}", " ".join(reversed(words))
        else:
            prompt, answer = f"Join these words with dashes: {' '.join(words)}", "-".join(words)
    elif kind == "number":
        n = rng.randint(0, len(NUMBER_WORDS) - 1)
        prompt, answer = rng.choice(NUMBER_QUESTIONS).format(n=n), NUMBER_WORDS[n]
    else:
        country = rng.choice(sorted(CAPITALS))
        prompt, answer = rng.choice(CAPITAL_QUESTIONS).format(c=country), CAPITALS[country]
    return Sample(row={"prompt": prompt, "answer": answer}, response=answer, group=prompt)
