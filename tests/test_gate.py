"""One admission gate (`pipeline/gate.py`): every surface (WebSocket, REST, LibreTranslate,
DeepL, audio, the operator endpoints) asks it for the key and for ready/draining, and answers
its refusals in its own shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import TINY_PROFILE, wait_ready
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.audio.service import AudioService
from tolk_server.config import Settings
from tolk_server.pipeline.gate import Gate

KEY = "k-gate"
AUTH = {"authorization": f"Bearer {KEY}"}


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    s = Settings(engine="fake", api_keys=[KEY], glossary_file=tmp_path / "g.json",
                 key_file=tmp_path / "keys.json", **settings)
    app = create_app(s, engine=EchoEngine(), profile=TINY_PROFILE)
    app.state.tolk.audio = AudioService(s, transcriber=object())  # type: ignore[arg-type]
    return TestClient(app)


def _ws_refusal(c: TestClient, frame: dict[str, Any]) -> dict[str, Any]:
    with c.websocket_connect("/v1/stream", headers=AUTH) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json(frame)
        got: dict[str, Any] = ws.receive_json()
        return got


def test_every_surface_refuses_new_work_while_draining(tmp_path: Path) -> None:
    """A drain that starts under open connections: each surface refuses new work; the frames
    of tolk's own protocol all say `overloaded` (audio too), the HTTP APIs answer 503."""
    c = _client(tmp_path)
    with c:
        wait_ready(c)
        with c.websocket_connect("/v1/stream", headers=AUTH) as ws:
            assert ws.receive_json()["type"] == "ready"
            c.app.state.tolk.draining = True  # type: ignore[attr-defined]
            ws.send_json({"type": "translate", "id": "t1", "text": "hi", "target": "fi"})
            text = ws.receive_json()
            ws.send_json({"type": "audio_start", "id": "a1", "source": "en", "targets": ["fi"],
                          "sample_rate": 16000, "channels": 1})
            audio = ws.receive_json()
        for frame, rid in ((text, "t1"), (audio, "a1")):
            assert frame["type"] == "error" and frame["id"] == rid, frame
            assert frame["code"] == "overloaded", frame
            assert frame["message"] == "the server is shutting down", frame
        r = c.post("/v1/translate", json={"text": "hi", "target": "fi"}, headers=AUTH)
        assert r.status_code == 503 and r.json()["code"] == "overloaded"
        r = c.post("/translate", json={"q": "hi", "source": "en", "target": "fi",
                                       "api_key": KEY})
        assert r.status_code == 503 and r.json() == {"error": "the server is not ready"}
        r = c.post("/v2/translate", json={"text": ["hi"], "target_lang": "FI"},
                   headers={"authorization": f"DeepL-Auth-Key {KEY}"})
        assert r.status_code == 503 and r.json() == {"message": "the server is not ready"}
        c.app.state.tolk.draining = False  # type: ignore[attr-defined]
        r = c.post("/v1/translate", json={"text": "hi", "target": "fi"}, headers=AUTH)
        assert r.status_code == 200, r.text


def test_every_surface_asks_the_one_gate_for_the_key(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each surface takes its caller from `Gate.principal`: swap the key there and every
    surface follows (none keeps a key check of its own)."""
    asked: list[str | None] = []
    real = Gate.principal

    def principal(self: Gate, key: str | None, *args: Any) -> Any:
        asked.append(key)
        return real(self, KEY if key == "other" else key, *args)

    monkeypatch.setattr(Gate, "principal", principal)
    c = _client(tmp_path)
    other = {"authorization": "Bearer other"}
    with c:
        wait_ready(c)
        with c.websocket_connect("/v1/stream", headers=other) as ws:
            assert ws.receive_json()["type"] == "ready"
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_json({"type": "auth", "api_key": "other"})
            assert ws.receive_json()["type"] == "ready"
        r = c.post("/v1/translate", json={"text": "hi", "target": "fi"}, headers=other)
        assert r.status_code == 200, r.text
        assert c.get("/metrics", headers=other).status_code == 200
        r = c.post("/translate", json={"q": "hi", "source": "en", "target": "fi",
                                       "api_key": "other"})
        assert r.status_code == 200, r.text
        r = c.post("/detect", json={"q": "hello there", "api_key": "other"})
        assert r.status_code == 200, r.text
        r = c.get("/v2/usage", headers={"authorization": "DeepL-Auth-Key other"})
        assert r.status_code == 200, r.text
    assert asked == ["other"] * 7
