"""Property tests of chunking, sentence splitting and ordered reassembly (hypothesis)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tolk_server.pipeline.chunking import CJK_PUNCT, SPACED_PUNCT, Chunker
from tolk_server.pipeline.reassembly import OrderedJoiner
from tolk_server.text.segmenter import HEAD_WINDOWS, split_head, split_rest, split_sentences

ALPHABET = st.sampled_from(
    list("abcäöå ÄÖ  \n.,!?;:…-'\"0123") + list("你好世界。！？，、；") + ["ﾃ", "🙂"]
)
TEXT = st.text(ALPHABET, max_size=300)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(TEXT)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=40)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@given(chunked(), st.sampled_from(["token", "word", "segment"]),
       st.lists(st.floats(0, 500), min_size=1, max_size=50))
@settings(max_examples=300, deadline=None)
def test_chunks_concatenate_exactly(case: tuple[str, list[str]], gran: str,
                                    gaps: list[float]) -> None:
    text, deltas = case
    c = Chunker(gran, max_delay_ms=300)  # type: ignore[arg-type]
    out: list[str] = []
    now = 0.0
    for i, d in enumerate(deltas):
        now += gaps[i % len(gaps)]
        out += c.poll(now)
        out += c.push(d, now)
    out += c.finish()
    assert "".join(out) == text
    assert all(out)  # no empty chunks


@given(chunked())
@settings(max_examples=200, deadline=None)
def test_word_chunks_never_split_a_word(case: tuple[str, list[str]]) -> None:
    _text, deltas = case
    c = Chunker("word")
    out: list[str] = []
    for d in deltas:
        out += c.push(d, 0)
    out += c.finish()
    for chunk in out[:-1]:
        assert chunk[-1].isspace(), out


@given(chunked())
@settings(max_examples=200, deadline=None)
def test_segments_end_at_boundaries_without_time_flush(case: tuple[str, list[str]]) -> None:
    _text, deltas = case
    c = Chunker("segment", max_delay_ms=10**9)
    out: list[str] = []
    for d in deltas:
        out += c.push(d, 0)
    out += c.finish()
    for chunk in out[:-1]:
        core = chunk.rstrip()
        ends_clause = bool(core) and core[-1] in SPACED_PUNCT and core != chunk
        ends_cjk = bool(core) and core[-1] in CJK_PUNCT
        long_at_break = len(chunk) >= 40 and chunk[-1].isspace()
        assert ends_clause or ends_cjk or long_at_break, (chunk, out)


@given(TEXT, st.sampled_from(["en", "fi", "zh", "de"]))
@settings(max_examples=200, deadline=None)
def test_sentence_split_is_lossless(text: str, lang: str) -> None:
    pieces = split_sentences(text, lang)
    assert "".join(pieces) == text
    assert all(pieces) or text == ""


@given(st.data(), st.lists(st.lists(st.text(ALPHABET, max_size=8), max_size=6), min_size=1,
                           max_size=6))
@settings(max_examples=300, deadline=None)
def test_joiner_releases_strictly_in_order(data: st.DataObject, parts: list[list[str]]) -> None:
    joiner = OrderedJoiner(len(parts))
    # Random interleaving of every part's deltas and its finish event.
    events = [(k, i) for k, deltas in enumerate(parts) for i in range(len(deltas) + 1)]
    order = data.draw(st.permutations(events))
    cursor = [0] * len(parts)
    out: list[tuple[int, str]] = []
    for k, _ in sorted(order, key=lambda e: order.index(e)):
        i = cursor[k]
        cursor[k] += 1
        if i < len(parts[k]):
            out += joiner.push(k, parts[k][i])
        else:
            out += joiner.finish(k)
    assert joiner.done
    assert "".join(t for _, t in out) == "".join("".join(p) for p in parts)
    seqs = [k for k, _ in out]
    assert seqs == sorted(seqs)


LONG = (Path(__file__).parents[1] / "benchmarks" / "data" / "long-500w.en.txt").read_text(
    encoding="utf-8")
FIXED = [
    LONG,
    "Dr. Smith arrived at 5 p.m. on Jan. 3. He said: \"Stop.\" Then he left! " * 30,
    "Tämä on lause. Toinen lause tulee tässä… Kolmas? Kyllä, U.S.A. ja n. 5 km. " * 30,
    "你好世界。今天天气很好！我们去公园吧？好的。" * 60,
    "One sentence without an end " * 100 + ". Two. Three.",
]


@pytest.mark.parametrize("text", FIXED)
def test_head_first_split_equals_the_full_split(text: str) -> None:
    lang = "zh" if "你" in text else "en"
    head = split_head(text, lang)
    full = split_sentences(text, lang)
    if head is None:
        assert len(text) <= 2 * HEAD_WINDOWS[0] or "without" in text
        return
    first, rest = head
    assert first + rest == text
    assert [first, *split_rest(text, len(first), lang)] == full


WORDS = st.sampled_from("The cat sat . Mr. Smith , 3.5 km ! ? \" ( ) e.g. U.S. said "
                        "tämä on 你好。 \n".split(" "))


@given(st.lists(WORDS, min_size=250, max_size=600), st.sampled_from(["en", "fi", "de"]))
@settings(max_examples=120, deadline=None)
def test_head_first_split_equals_the_full_split_generated(words: list[str],
                                                          lang: str) -> None:
    text = " ".join(words)
    head = split_head(text, lang)
    if head is not None:
        full = split_sentences(text, lang)
        pieces = [head[0], *split_rest(text, len(head[0]), lang)]
        assert "".join(pieces) == text and all(pieces)
        # the head ends where the full split ends its first sentence, and the rest is cut
        # exactly where the full split cuts it
        assert pieces == full
