"""Instruction following: IFEval-shaped writing prompts with one or two verifiable constraints.

Instruction ids and kwargs are IFEval's own (lm-eval's checkers score them, kwargs hold exactly the keys each
checker's `build_description` takes, as in IFEval's input_data.jsonl). Every prompt has one *active* constraint,
one that an answer written without reading the instruction fails (lowercase, a title, bullets, a closing phrase,
...); most also get a second one, and a prompt counts only when both hold. The gold response is a short templated
text about the topic, transformed to satisfy every constraint.
"""
from __future__ import annotations

import random
import re
from typing import Any

from .base import Sample

TOPICS = ("the sea", "winter", "coffee", "music", "dogs", "cats", "a garden", "the moon", "rain", "bread", "trains",
          "books", "the city", "summer", "tea", "bikes", "mountains", "the forest", "birds", "a river", "snow",
          "football", "the night sky", "apples", "a small town", "cooking", "the beach", "school", "a lake", "flowers")
REQUESTS = ("Write a short note about {t}.", "Write a few sentences about {t}.", "Describe {t}.",
            "Tell me about {t}.")
ADJECTIVES = ("calm", "bright", "quiet", "warm", "simple", "lovely", "gentle", "fresh", "kind", "happy")
OPENING = "I think that {t} can be {a} and {b}."
SENTENCES = ("Many people enjoy {t}, and I do too.", "I often think about {t} when I feel {c}.",
             "{T} can make a normal day feel {c}.", "There is always something new to learn about {t}.",
             "My friends and I talk about {t}, and we smile.", "I would like to see {t} again, maybe soon.",
             "For me, {t} would be a good thing to write about.", "Even on a bad day, {t} can make me feel {c}.")
KEYWORDS = ("river", "light", "story", "music", "green", "window", "friend", "morning", "paper", "garden")
END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have additional questions.",
               "Any other questions?", "That is all for now.")
WORD_COUNTS = (20, 25, 30)
TWO_CONSTRAINTS = 0.8  # share of prompts with a second constraint

ACTIVE = ("change_case:english_lowercase", "change_case:english_capital", "startend:quotation",
          "startend:end_checker", "detectable_format:title", "detectable_format:number_bullet_lists",
          "keywords:existence", "length_constraints:number_words", "detectable_content:postscript")
SECONDARY = ACTIVE + ("punctuation:no_comma",)
CONFLICTS = ({"change_case:english_lowercase", "change_case:english_capital"},
             {"startend:quotation", "detectable_format:number_bullet_lists"},
             {"detectable_content:postscript", "startend:end_checker"},
             {"length_constraints:number_words", "detectable_format:number_bullet_lists"})


def _kwargs(instruction: str, rng: random.Random) -> dict[str, Any]:
    if instruction == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if instruction == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.randint(2, 4)}
    if instruction == "keywords:existence":
        return {"keywords": [rng.choice(KEYWORDS)]}
    if instruction == "length_constraints:number_words":
        return {"relation": "at least", "num_words": rng.choice(WORD_COUNTS)}
    if instruction == "detectable_content:postscript":
        return {"postscript_marker": "P.S."}
    return {}


def describe(instruction: str, kw: dict[str, Any]) -> str:
    """How the prompt states a constraint (close to IFEval's own wording)."""
    return {
        "change_case:english_lowercase": "Your entire response should be in English, and in all lowercase letters.",
        "change_case:english_capital": "Your entire response should be in English, and in all capital letters.",
        "startend:quotation": "Wrap your entire response with double quotation marks.",
        "startend:end_checker": f"Finish your response with this exact phrase: {kw.get('end_phrase')}",
        "detectable_format:title": "Your answer must contain a title, wrapped in double angular brackets, "
                                   "such as <<poem of joy>>.",
        "detectable_format:number_bullet_lists": f"Your answer must contain exactly {kw.get('num_bullets')} "
                                                 "markdown bullet points such as:\n* This is a point.",
        "keywords:existence": f"Include the keyword {', '.join(kw.get('keywords', []))} in the response.",
        "length_constraints:number_words": f"Answer with at least {kw.get('num_words')} words.",
        "detectable_content:postscript": "At the end of your response, please explicitly add a postscript "
                                         "starting with P.S.",
        "punctuation:no_comma": "Do not use any commas in your response.",
    }[instruction]


def _count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # what IFEval's checker counts (nltk RegexpTokenizer(r"\w+"))


def respond(topic: str, ids: list[str], kwargs: list[dict[str, Any]], rng: random.Random) -> str:
    """A response about `topic` that satisfies every constraint in `ids`."""
    kw = {i: k for i, k in zip(ids, kwargs)}
    adj = rng.sample(ADJECTIVES, 3)
    fill = {"t": topic, "T": topic[0].upper() + topic[1:], "a": adj[0], "b": adj[1], "c": adj[2]}
    extra = [s.format(**fill) for s in rng.sample(SENTENCES, len(SENTENCES))]
    # case-changed text gets a third sentence: langdetect misreads very short all-caps / lowercase English
    n_extra = 2 if {"change_case:english_lowercase", "change_case:english_capital"} & set(ids) else 1
    sentences = [OPENING.format(**fill)] + extra[:n_extra]
    rest = extra[n_extra:]
    if "keywords:existence" in kw:
        sentences.append(f"It reminds me of the {kw['keywords:existence']['keywords'][0]}.")
    if "detectable_format:number_bullet_lists" in kw:
        n = kw["detectable_format:number_bullet_lists"]["num_bullets"]
        items = (sentences[:1] + sentences[n_extra + 1:] + sentences[1:n_extra + 1] + rest)[:n]
        body = "\n".join(f"* {s}" for s in items)
    else:
        if "length_constraints:number_words" in kw:
            while _count_words(" ".join(sentences)) < kw["length_constraints:number_words"]["num_words"]:
                sentences.append(rest.pop(0))
        body = " ".join(sentences)
    if "detectable_format:title" in kw:
        body = f"<<{topic}>>\n{body}"
    if "detectable_content:postscript" in kw:
        body += f"\nP.S. I will write more about {topic} soon."
    if "startend:end_checker" in kw:
        body += " " + kw["startend:end_checker"]["end_phrase"]
    if "punctuation:no_comma" in kw:
        body = body.replace(",", "")
    if "change_case:english_lowercase" in kw:
        body = body.lower()
    if "change_case:english_capital" in kw:
        body = body.upper()
    if "startend:quotation" in kw:
        body = f'"{body}"'
    return body


def sample(rng: random.Random) -> Sample:
    topic = rng.choice(TOPICS)
    ids = [rng.choice(ACTIVE)]
    if rng.random() < TWO_CONSTRAINTS:
        options = [s for s in SECONDARY if s not in ids and not any({ids[0], s} <= c for c in CONFLICTS)]
        ids.append(rng.choice(options))
    kwargs = [_kwargs(i, rng) for i in ids]
    prompt = " ".join([rng.choice(REQUESTS).format(t=topic)] + [describe(i, k) for i, k in zip(ids, kwargs)])
    row = {"prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}
    return Sample(row=row, response=respond(topic, ids, kwargs, rng), group=prompt)
