"""What every micro generator returns, and small word lists they share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")


@dataclass
class Sample:
    row: dict[str, Any]  # the task row in its benchmark's schema (ids are added when a split is written)
    response: str        # the gold assistant response
    group: str           # rows with the same group always land in the same split
