"""Sentence splitting for long inputs, with pysbd (a rule-based segmenter).

Pieces always concatenate back to exactly the input: pysbd finds the boundaries, and the
text is cut at those offsets here, so white space is never lost or invented.
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import Any

# pysbd's rule sets; other languages use the English rules.
PYSBD_LANGS = frozenset(
    "en hi mr zh es am ar hy bg ur ru pl fa nl da fr my el it ja de kk sk".split()
)


#: How much of a long input is split first to find its first sentence (characters).
HEAD_WINDOWS = (512, 2048)

# A head cut is taken only after sentence-final punctuation, in a first sentence whose
# quotes and brackets are paired: pysbd pairs them across the text, so its cuts near an
# unpaired one depend on text beyond the window.
_SENTENCE_END = re.compile(r"[.!?。！？…]\s*$")


def _paired(text: str) -> bool:
    return (text.count('"') % 2 == 0 and sum(map(text.count, "“”„«»")) % 2 == 0
            and all(text.count(a) == text.count(b) for a, b in ("()", "[]", "{}")))

# A pysbd Segmenter keeps the text being split on itself: one per thread.
_local = threading.local()


def _segmenter(lang: str) -> Any:
    cache: dict[str, Any] = _local.__dict__.setdefault("segmenters", {})
    if lang not in cache:
        import pysbd

        cache[lang] = pysbd.Segmenter(language=lang if lang in PYSBD_LANGS else "en",
                                      clean=False)
    return cache[lang]


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


def split_head(text: str, lang: str = "en") -> tuple[str, str] | None:
    """The first sentence of a long input and the rest, found by splitting only a head
    window (the rest is split later, on its own). None: split the whole text at once.

    The first cut is taken only when the window holds at least two more and the first piece
    ends a sentence with punctuation, so that it does not depend on where the window ends;
    `[first, *split_rest(text, len(first))]` then equals `split_sentences(text)` almost
    always, and it is cut where the full split cuts in any case (tests/test_chunking_props.py)."""
    for window in HEAD_WINDOWS:
        if len(text) <= 2 * window:
            return None
        pieces = split_sentences(text[:window], lang)
        if (len(pieces) >= 3 and _SENTENCE_END.search(pieces[0])
                and _paired(pieces[0])):
            return pieces[0], text[len(pieces[0]):]
    return None


def split_rest(text: str, head_len: int, lang: str = "en") -> list[str]:
    """The text after a head of `head_len` characters, cut where the whole text's split
    cuts it: pysbd's rules (quotes, parentheses) look at what precedes a boundary, so the
    rest alone could be cut elsewhere."""
    cuts, at = [], 0
    for piece in split_sentences(text, lang):
        at += len(piece)
        if head_len < at < len(text):
            cuts.append(at)
    bounds = [head_len, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [text[head_len:]]
