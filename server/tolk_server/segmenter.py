"""Sentence splitting for long inputs, with pysbd (a rule-based segmenter).

Pieces always concatenate back to exactly the input: pysbd finds the boundaries, and the
text is cut at those offsets here, so white space is never lost or invented.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

# pysbd's rule sets; other languages use the English rules.
PYSBD_LANGS = frozenset(
    "en hi mr zh es am ar hy bg ur ru pl fa nl da fr my el it ja de kk sk".split()
)


@lru_cache(maxsize=32)
def _segmenter(lang: str) -> Any:
    import pysbd

    return pysbd.Segmenter(language=lang if lang in PYSBD_LANGS else "en", clean=False)


def split_sentences(text: str, lang: str = "en") -> list[str]:
    """Split into sentences; each piece keeps the white space that follows it."""
    try:
        found = _segmenter(lang.split("-")[0]).segment(text)
    except Exception:  # a segmenter bug must never lose text: fall back to one piece
        return [text]
    cuts: list[int] = []
    cursor = 0
    for sent in found:
        core = sent.strip()
        if not core:
            continue
        at = text.find(core, cursor)
        if at < 0:
            return [text]
        if cursor:  # every sentence but the first starts a new piece
            cuts.append(at)
        cursor = at + len(core)
    bounds = [0, *[c for c in cuts if 0 < c < len(text)], len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return pieces or [text]
