"""Final answers of competition-math outputs: the last \\boxed{...}, compared by math-verify.

math-verify bounds its sympy work with `signal.alarm`, which only works in the main thread; elsewhere (a scoring
thread pool, a Lightning callback thread) we turn its timeout off rather than crash, and say so in the docs.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

_BOX = re.compile(r"\\(boxed|fbox)")
TIMEOUT_S = 5


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} (nested braces kept), or of `\\boxed 5`; None if there is none."""
    starts = [m for m in _BOX.finditer(text)]
    for m in reversed(starts):
        rest = text[m.end():]
        if rest.lstrip().startswith("{"):
            i = m.end() + (len(rest) - len(rest.lstrip()))
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j]
            continue  # unbalanced (cut-off output): try an earlier box
        token = re.match(r"\s+([^\s$]+)", rest)
        if token:
            return token.group(1)
    return None


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_boxed(content: str) -> Any:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse("$\\boxed{" + content + "}$", extraction_config=config, parsing_timeout=_timeout())


def equivalent(pred: str, gold: str) -> bool:
    """Whether two boxed contents denote the same answer (e.g. \\frac12, \\dfrac{1}{2}, 0.5; x=3 and 3)."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse_boxed(gold), _parse_boxed(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_timeout()))
