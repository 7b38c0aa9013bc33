"""Streaming that reads well (engine double): granularity, long inputs, sessions,
glossaries, the result cache and several targets."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from test_ws_routes import drain

from tolk_server.adapters.echo import EchoEngine
from tolk_server.engine.interface import Delta, GenerationParams
from tolk_server.models.profiles import Profile
from tolk_server.pipeline.context import ContextStore, Turn
from tolk_server.text.glossary import GlossaryStore

RICH = Profile(
    name="rich", family="rich", template="completion", prompt="<2{tgt}>{text}<sep>",
    languages={"en": "English", "fi": "Finnish", "sv": "Swedish", "de": "German"},
    supports_context=True, supports_glossary=True,
)


class RecordingEngine(EchoEngine):
    """Records prompts and peak concurrency; a prompt containing SLOW starts late."""

    def __init__(self, token_delay_s: float = 0.0) -> None:
        super().__init__(token_delay_s=token_delay_s)
        self.prompts: list[str] = []
        self.active = 0
        self.peak = 0

    async def generate(self, prompt: str, params: GenerationParams,
                       request_id: str) -> AsyncGenerator[Delta, None]:
        self.prompts.append(prompt)
        self.active += 1
        self.peak = max(self.peak, self.active)
        gen = super().generate(prompt, params, request_id)
        try:
            if "SLOW" in prompt:
                await asyncio.sleep(0.3)
            async for d in gen:
                yield d
        finally:
            self.active -= 1
            await gen.aclose()


def tr(rid: str, text: str, **kw: Any) -> dict[str, Any]:
    frame = {"type": "translate", "id": rid, "text": text, "source": "en", "target": "fi"}
    frame.update(kw)
    return frame


def chunks(frames: list[dict[str, Any]], kind: str = "token") -> list[str]:
    return [f["token"] if kind == "token" else f["text"] for f in frames if f["type"] == kind]


def test_word_granularity_never_splits_a_word(make_client: Any) -> None:
    c = make_client(engine=EchoEngine())
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("w", "The quick brown fox jumps over the lazy dog", granularity="word"))
        frames = drain(ws, {"w"})["w"]
    words = chunks(frames)
    done = frames[-1]
    assert "".join(words) == done["translation"]
    assert all(w.endswith(" ") for w in words[:-1]) and len(words) > 3
    assert all(" " not in w.strip() for w in words)


def test_segment_granularity_flushes_at_punctuation(make_client: Any) -> None:
    c = make_client(engine=EchoEngine())
    text = "one, two. three! four? five; six"
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("s", text, granularity="segment", split=False))
        frames = drain(ws, {"s"})["s"]
    segs = chunks(frames, "segment")
    assert not chunks(frames, "token")
    assert "".join(segs) == frames[-1]["translation"]
    assert len(segs) >= 4
    for s in segs[:-1]:
        assert s.rstrip()[-1] in ".,!?;:>" or len(s) >= 40, segs
    assert [f["index"] for f in frames if f["type"] == "segment"] == list(range(len(segs)))


def test_segment_flushes_after_max_delay_without_a_boundary(make_client: Any) -> None:
    c = make_client(engine=EchoEngine(token_delay_s=0.05))
    text = "a" * 30 + " " + "b" * 30
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("t", text, granularity="segment", max_delay_ms=80, split=False))
        frames = drain(ws, {"t"})["t"]
    segs = chunks(frames, "segment")
    assert "".join(segs) == frames[-1]["translation"]
    # No punctuation, and no 40 characters before a word break: only the timer flushed.
    assert len(segs) >= 4 and max(len(s) for s in segs[:-1]) < 20


def test_long_input_is_split_translated_in_parallel_and_kept_in_order(make_client: Any) -> None:
    engine = RecordingEngine(token_delay_s=0.005)
    c = make_client(engine=engine)
    sentences = ["SLOW first sentence here.", "Second one follows.", "Third is short.",
                 "Fourth comes next.", "Fifth ends it."]
    text = " ".join(sentences)
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("L", text))
        frames = drain(ws, {"L"})["L"]
    done = frames[-1]
    assert done["sentences"] == 5 and engine.peak == 5
    toks = [f for f in frames if f["type"] == "token"]
    assert "".join(t["token"] for t in toks) == done["translation"]
    seqs = [t["seq"] for t in toks]
    assert seqs == sorted(seqs) and seqs[0] == 0 and seqs[-1] == 4
    # Each sentence translated on its own, joined with the source's white space.
    from tolk_server.adapters.echo import echo_translation

    expected = " ".join(echo_translation(f"<2fi>{s}<sep>") for s in sentences)
    assert done["translation"] == expected


def test_oversized_input_is_too_large(make_client: Any) -> None:
    c = make_client(max_text_chars=50)
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("big", "word " * 20))
        assert ws.receive_json()["code"] == "too_large"


def test_sessions_carry_context_without_bleed(make_client: Any) -> None:
    from fastapi.testclient import TestClient

    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings

    engine = RecordingEngine()
    app = create_app(Settings(engine="fake"), engine=engine, profile=RICH)
    with TestClient(app) as c:
        with c.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            plan = [("a1", "a", "en", "fi", "The weather is sunny today."),
                    ("b1", "b", "fi", "en", "Jalkapallo-ottelu alkaa."),
                    ("a2", "a", "en", "fi", "Rain tomorrow."),
                    ("b2", "b", "fi", "en", "Maali!")]
            for rid, sess, src, tgt, text in plan:
                ws.send_json({"type": "translate", "id": rid, "text": text, "source": src,
                              "target": tgt, "session": sess})
                assert drain(ws, {rid})[rid][-1]["session"] == sess
        with c.websocket_connect("/v1/stream") as ws2:  # another connection: no context
            ws2.receive_json()
            ws2.send_json({"type": "translate", "id": "a3", "text": "Snow.", "source": "en",
                           "target": "fi", "session": "a"})
            drain(ws2, {"a3"})
    p_a2, p_b2, p_a3 = engine.prompts[2], engine.prompts[3], engine.prompts[4]
    assert "weather" in p_a2 and "Jalkapallo" not in p_a2
    assert "Jalkapallo" in p_b2 and "weather" not in p_b2 and "Rain" not in p_b2
    assert p_a3 == "<2fi>Snow.<sep>"


def test_session_store_is_bounded_by_turns_ttl_and_lru() -> None:
    store = ContextStore(max_sessions=2, max_turns=2, ttl_s=10)
    for i in range(3):
        store.add("s", Turn(f"src{i}", f"tr{i}", "en", "fi"), now=0)
    assert [t.source for t in store.context("s", now=1)] == ["src1", "src2"]
    store.add("t", Turn("x", "y", "en", "fi"), now=2)
    store.add("u", Turn("x", "y", "en", "fi"), now=3)
    assert len(store) == 2 and store.context("s", now=4) == []  # LRU evicted the oldest
    assert store.context("u", now=100) == [] and len(store) == 0  # TTL expired


def test_glossary_inline_and_named(make_client: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings

    gfile = tmp_path / "g.json"
    GlossaryStore(gfile).put("eu", {"European Parliament": "Euroopan parlamentti"})
    engine = RecordingEngine()
    app = create_app(Settings(engine="fake", glossary_file=gfile), engine=engine, profile=RICH)
    with TestClient(app) as c, c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("g1", "The meeting starts now.",
                        glossary={"meeting": "kokous", "budget": "budjetti"}))
        done = drain(ws, {"g1"})["g1"][-1]
        report = {r["source"]: r for r in done["glossary"]}
        assert report["meeting"] == {"source": "meeting", "target": "kokous",
                                     "in_source": True, "in_output": True}
        assert report["budget"]["in_source"] is False
        assert '"meeting" → "kokous"' in engine.prompts[-1]
        assert "budjetti" not in engine.prompts[-1]  # only terms found in the source
        ws.send_json(tr("g2", "Welcome to the European Parliament.", glossary_id="eu"))
        done = drain(ws, {"g2"})["g2"][-1]
        assert done["glossary"][0]["in_source"] is True
        assert "Euroopan parlamentti" in engine.prompts[-1]
        ws.send_json(tr("g3", "x", glossary_id="nope"))
        assert ws.receive_json()["code"] == "bad_request"


def test_cache_hit_still_streams_in_the_requested_granularity(make_client: Any) -> None:
    engine = RecordingEngine()
    c = make_client(engine=engine)
    text = "Good morning to all of you here"
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(tr("c1", text))
        first = drain(ws, {"c1"})["c1"][-1]
        ws.send_json(tr("c2", text, granularity="word"))
        frames = drain(ws, {"c2"})["c2"]
    assert len(engine.prompts) == 1
    assert frames[-1]["cached"] is True and frames[-1]["translation"] == first["translation"]
    words = chunks(frames)
    assert "".join(words) == first["translation"] and len(words) > 3
    metrics = c.get("/metrics").text
    assert 'tolk_cache_lookups_total{result="hit"} 1.0' in metrics
    assert 'tolk_cache_lookups_total{result="miss"} 1.0' in metrics
    assert 'tolk_first_chunk_seconds_count{granularity="word"} 1.0' in metrics


def test_several_targets_in_one_request(make_client: Any) -> None:
    from fastapi.testclient import TestClient

    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings

    app = create_app(Settings(engine="fake"), engine=EchoEngine(token_delay_s=0.002),
                     profile=RICH)
    with TestClient(app) as c, c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "id": "m", "text": "Good morning everyone here",
                      "source": "en", "targets": ["fi", "sv", "de"]})
        by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
        terminals = 0
        while terminals < 3:
            f = ws.receive_json()
            by_target[f["target"]].append(f)
            terminals += f["type"] in ("complete", "error")
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}  # nothing else was pending
    assert set(by_target) == {"fi", "sv", "de"}
    for tgt, frames in by_target.items():
        assert frames[0]["type"] == "start" and frames[-1]["type"] == "complete"
        assert sum(f["type"] == "complete" for f in frames) == 1
        assert "".join(chunks(frames)) == frames[-1]["translation"]
        assert f"<2{tgt}>" in frames[-1]["translation"]


def test_cancel_with_several_targets_ends_each_target(make_client: Any) -> None:
    from fastapi.testclient import TestClient

    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings

    app = create_app(Settings(engine="fake"), engine=EchoEngine(token_delay_s=0.02),
                     profile=RICH)
    with TestClient(app) as c, c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "id": "m", "text": "word " * 100, "source": "en",
                      "targets": ["fi", "sv"]})
        assert ws.receive_json()["type"] == "start"
        ws.send_json({"type": "cancel", "id": "m"})
        deadline = time.monotonic() + 5
        cancelled = set()
        while len(cancelled) < 2 and time.monotonic() < deadline:
            f = ws.receive_json()
            assert f["type"] != "complete"
            if f["type"] == "error":
                assert f["code"] == "cancelled"
                cancelled.add(f["target"])
        assert cancelled == {"fi", "sv"}


@pytest.mark.parametrize("body", [
    {"text": "x", "target": "fi", "targets": ["fi"]},
    {"text": "x"},
    {"text": "x", "targets": ["fi", "fi"]},
    {"text": "x", "target": "fi", "granularity": "sentence"},
])
def test_option_validation(make_client: Any, body: dict[str, Any]) -> None:
    c = make_client()
    assert c.post("/v1/translate", json=body).json()["code"] == "bad_request"


@pytest.mark.parametrize("first", ["SLOW start of it.", "Go."])
def test_long_input_is_planned_head_first_and_kept_whole(make_client: Any, first: str) -> None:
    # The first sentence goes to the engine before the rest is split (segmenter.split_head);
    # slow or quick, the reassembled text is every sentence, in order, white space kept.
    from tolk_server.adapters.echo import echo_translation
    from tolk_server.text.segmenter import split_sentences

    engine = RecordingEngine()
    c = make_client(engine=engine)
    text = first + " " + " ".join(f"Sentence {i} is here.\n" if i % 7 == 0 else
                                  f"Number {i} follows it." for i in range(80))
    pieces = split_sentences(text, "en")
    expected = "".join(p[: len(p) - len(p.lstrip())] + echo_translation(f"<2fi>{p.strip()}<sep>")
                       + p[len(p.rstrip()):] for p in pieces)
    with c.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for rid in ("a", "b"):  # b: a cache hit
            ws.send_json(tr(rid, text))
            frames = drain(ws, {rid})[rid]
            done = frames[-1]
            assert done["sentences"] == len(pieces) > 80
            assert done["translation"] == expected
            seqs = [f["seq"] for f in frames if f["type"] == "token"]
            assert seqs == sorted(seqs) and seqs[-1] == (len(pieces) - 1 if rid == "a" else 0)
    assert first in engine.prompts[0] and len(engine.prompts) == len(pieces)
