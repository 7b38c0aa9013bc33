"""Audio streams are admitted like requests: the key's concurrent streams, a server-wide
`max_audio_streams`, the key's daily characters (each phrase's translation, live phrases as
they grow), and the voice-activity models are made once, off the event loop, and reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from conftest import TINY_PROFILE, wait_ready
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.audio.pcm import Samples
from tolk_server.audio.service import AudioService
from tolk_server.audio.transcriber import Transcript
from tolk_server.config import Settings
from tolk_server.security.keystore import KeyLimits, KeyStore


class EnergyVad:
    """A voice-activity double: loud windows are speech."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1

    def probability(self, window: Samples) -> float:
        return 1.0 if float(np.abs(window).mean()) > 0.01 else 0.0

    def reset(self) -> None: ...


class Words:
    """A recogniser double whose text grows with the phrase: one word per 0.1 s."""

    name = "words"
    languages = ("en",)

    def transcribe(self, samples: Samples, language: str | None = None) -> Transcript:
        return Transcript(" ".join(["word"] * max(1, len(samples) // 1600)), "en")


def server(tmp_path: Path, **settings: Any) -> tuple[TestClient, KeyStore, AudioService]:
    store = KeyStore(tmp_path / "keys.json")
    s = Settings(engine="fake", key_file=store.path, glossary_file=tmp_path / "g.json",
                 audio_max_speed=1000.0, **settings)
    app = create_app(s, engine=EchoEngine(), profile=TINY_PROFILE)
    svc = AudioService(s, transcriber=Words(), vad_factory=EnergyVad)
    app.state.tolk.audio = svc
    return TestClient(app), store, svc


def start(ws: WebSocketTestSession, rid: str = "A1", **kw: Any) -> None:
    ws.send_json({"type": "audio_start", "id": rid, "source": "en", "targets": ["fi"],
                  "sample_rate": 16000, "channels": 1, **kw})


def speech(seconds: float) -> bytes:
    """A tone for `seconds`, then 0.6 s of silence: one phrase."""
    tone = (np.sin(np.arange(int(16000 * seconds)) * 0.2) * 8000).astype("<i2")
    return tone.tobytes() + np.zeros(9600, "<i2").tobytes()


def send(ws: WebSocketTestSession, data: bytes) -> None:
    for i in range(0, len(data), 3200):
        ws.send_bytes(data[i:i + 3200])


def until_done(ws: WebSocketTestSession) -> list[dict[str, Any]]:
    frames = []
    while True:
        f = ws.receive_json()
        frames.append(f)
        if f["type"] == "audio_complete" or (f["type"] == "error" and "segment" not in f):
            return frames


def connect(client: TestClient, key: str) -> Any:
    return client.websocket_connect("/v1/stream", headers={"Authorization": f"Bearer {key}"})


def test_audio_streams_count_as_the_keys_streams(tmp_path: Path) -> None:
    client, store, svc = server(tmp_path)
    _, key = store.add("one", KeyLimits(concurrent_streams=1))
    with client:
        wait_ready(client)
        with connect(client, key) as a, connect(client, key) as b:
            a.receive_json()
            b.receive_json()
            start(a)
            start(b, "B1")
            refused = b.receive_json()
            assert refused["code"] == "overloaded" and refused["id"] == "B1"
            assert "concurrent stream" in refused["message"]
            send(a, speech(0.5))  # the stream's own translations ride its admission
            a.send_json({"type": "audio_end", "id": "A1"})
            frames = until_done(a)
            assert frames[-1]["type"] == "audio_complete"
            assert [f["type"] for f in frames if f.get("segment") == 0 and "target" in f][-1] \
                == "complete"
            start(b, "B2")  # the slot came back when the stream ended
            b.send_json({"type": "audio_end", "id": "B2"})
            assert until_done(b)[-1]["type"] == "audio_complete"
        with connect(client, key) as c:  # and when its connection went away mid-stream
            c.receive_json()
            start(c, "C1")
            c.send_json({"type": "audio_end", "id": "C1"})
            assert until_done(c)[-1]["type"] == "audio_complete"
    assert svc.streams == 0


def test_server_wide_audio_stream_cap(tmp_path: Path) -> None:
    client, store, _svc = server(tmp_path, max_audio_streams=2)
    _, key = store.add("any")
    with client:
        wait_ready(client)
        with connect(client, key) as a, connect(client, key) as b, connect(client, key) as c:
            for ws, rid in ((a, "A"), (b, "B"), (c, "C")):
                ws.receive_json()
                start(ws, rid)
            refused = c.receive_json()
            assert refused["code"] == "overloaded" and "audio streams" in refused["message"]
        with connect(client, key) as d:  # closed connections gave theirs back
            d.receive_json()
            start(d, "D")
            d.send_json({"type": "audio_end", "id": "D"})
            assert until_done(d)[-1]["type"] == "audio_complete"
    assert client.app.state.tolk.admission.audio_streams == 0  # type: ignore[attr-defined]


def test_voice_activity_models_are_reused(tmp_path: Path) -> None:
    client, store, _ = server(tmp_path)
    _, key = store.add("any")
    EnergyVad.made = 0
    with client:
        wait_ready(client)
        with connect(client, key) as ws:
            ws.receive_json()
            for rid in ("A", "B", "C"):
                start(ws, rid)
                ws.send_json({"type": "audio_end", "id": rid})
                assert until_done(ws)[-1]["type"] == "audio_complete"
    assert EnergyVad.made == 1


def test_live_audio_phrases_count_against_daily_characters(tmp_path: Path) -> None:
    client, store, _ = server(tmp_path)
    rec, key = store.add("chars", KeyLimits(chars_per_day=120))
    with client:
        wait_ready(client)
        with connect(client, key) as ws:
            ws.receive_json()
            start(ws, live=True, partials=True)
            send(ws, speech(6.0))  # one phrase growing to ~60 words (~300 characters)
            ws.send_json({"type": "audio_end", "id": "A1"})
            frames = until_done(ws)
        used = client.app.state.tolk.admission.keys.chars_today(rec.id)  # type: ignore
    errors = [f for f in frames if f["type"] == "error"]
    assert errors and errors[0]["code"] == "overloaded" and errors[0]["segment"] == 0
    assert "daily character" in errors[0]["message"]
    assert not [f for f in frames if f["type"] == "complete"]  # the phrase's request ended
    assert 40 < used <= 120  # what was translated was counted, never beyond the quota


def test_phrase_translations_count_against_daily_characters(tmp_path: Path) -> None:
    client, store, _ = server(tmp_path)
    rec, key = store.add("chars", KeyLimits(chars_per_day=40))
    with client:
        wait_ready(client)
        with connect(client, key) as ws:
            ws.receive_json()
            start(ws)
            send(ws, speech(0.5) + speech(0.5) + speech(0.5) + speech(0.5))
            ws.send_json({"type": "audio_end", "id": "A1"})
            frames = until_done(ws)
        used = client.app.state.tolk.admission.keys.chars_today(rec.id)  # type: ignore
    done = [f for f in frames if f["type"] == "complete"]
    refused = [f for f in frames if f["type"] == "error"]
    assert done and refused and refused[0]["code"] == "overloaded"
    assert 0 < used <= 40  # each translated phrase was counted; a refused one was not
