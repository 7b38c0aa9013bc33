"""Engine priorities by kind of request (engine double): plain, bulk, live, audio."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_audio_ws import audio_start, echo_client, send_pcm, until_complete
from test_live_ws import drain, update

from tolk_bench import speech
from tolk_server.adapters.echo import EchoEngine
from tolk_server.config import Priorities

# Distinct values per kind, so that each one's origin shows in what the engine received.
CUSTOM = {"translate": 3, "live": -2, "audio": -3, "bulk": 7, "bulk_chars": 80}


def post(client: Any, text: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/translate", json={"text": text, "source": "en", "target": "fi",
                                           "stream": False, **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_plain_requests_first_sentence_then_bulk(make_client: Any,
                                                 fake_engine: EchoEngine) -> None:
    client = make_client(cache_entries=0, priorities=CUSTOM)
    post(client, "Hello there.")
    assert [p.priority for p in fake_engine.params_seen] == [3]
    fake_engine.params_seen.clear()
    post(client, "One sentence here. And another one. And a third.")
    assert sorted(p.priority for p in fake_engine.params_seen) == [3, 7, 7]
    fake_engine.params_seen.clear()
    post(client, "a long plain request " * 5, split=False)  # over bulk_chars: bulk
    post(client, "a short one", split=False)
    assert [p.priority for p in fake_engine.params_seen] == [7, 3]


def test_defaults_put_conversation_before_bulk() -> None:
    p = Priorities()
    assert p.of("translate", 20, split=True) == (0, 1)
    assert p.of("translate", 5000, split=False) == (1, 1)
    assert p.of("live", 5000, split=False) == (0, 0)
    assert p.of("audio", 5000, split=True) == (0, 0)


def test_live_updates_reach_the_engine_with_their_priority(make_client: Any,
                                                           fake_engine: EchoEngine) -> None:
    client = make_client(priorities=CUSTOM)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(update("L1", "The meeting will "))
        ws.send_json(update("L1", "The meeting will begin shortly. It is late.", final=True))
        frames = drain(ws, {"L1"})["L1"]
    assert frames[-1]["type"] == "complete"
    seen = [p.priority for p in fake_engine.params_seen]
    assert seen and set(seen) == {-2}, seen


@pytest.fixture(scope="module")
def two_sentence_phrase() -> np.ndarray:
    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    pcm, _ = speech.phrases(["Good morning. The meeting will begin shortly."], pause_s=0.7)
    return pcm


def test_audio_segments_reach_the_engine_with_their_priority(
        make_client: Any, fake_engine: EchoEngine, two_sentence_phrase: np.ndarray) -> None:
    client, _ = echo_client(make_client, priorities=CUSTOM)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start())
        send_pcm(ws, two_sentence_phrase)
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    assert frames[-1]["type"] == "audio_complete"
    seen = [p.priority for p in fake_engine.params_seen]
    # every sentence of a segment is conversation traffic: none at the bulk priority
    assert seen and set(seen) == {-3}, seen
