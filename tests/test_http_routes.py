"""HTTP routes: JSON and SSE translation, readiness, metrics, offline docs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.testclient import TestClient

from conftest import TINY_PROFILE
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings


def sse_frames(body: str) -> list[dict[str, Any]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        frame = json.loads(lines["data"])
        assert lines["event"] == frame["type"]
        out.append(frame)
    return out


def test_translate_json(make_client: Any) -> None:
    c = make_client()
    r = c.post("/v1/translate", json={"id": "h1", "text": "good morning", "source": "en",
                                      "target": "fi", "stream": False})
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "complete" and body["id"] == "h1" and body["translation"]


def test_translate_sse_carries_the_same_frames(make_client: Any) -> None:
    c = make_client()
    r = c.post("/v1/translate", json={"text": "good morning to you", "source": "en",
                                      "target": "fi", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(r.text)
    assert frames[0]["type"] == "start" and frames[-1]["type"] == "complete"
    text = "".join(f["token"] for f in frames if f["type"] == "token")
    assert text == frames[-1]["translation"]


def test_http_errors_map_to_status_codes(make_client: Any) -> None:
    c = make_client(api_keys=["k1"], max_text_chars=10)
    auth = {"Authorization": "Bearer k1"}
    assert c.post("/v1/translate", json={"text": "x", "target": "fi"}).status_code == 401
    r = c.post("/v1/translate", content=b"{nope",
               headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = c.post("/v1/translate", json={"text": "x" * 11, "target": "fi"}, headers=auth)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    r = c.post("/v1/translate", json={"text": "x", "target": "zz"}, headers=auth)
    assert r.status_code == 422 and r.json()["code"] == "unsupported_language"
    r = c.post("/v1/translate", json={"text": "hello", "source": "en", "target": "fi",
                                      "stream": False}, headers=auth)
    assert r.status_code == 200


def test_overloaded_is_503_with_retry_after(make_client: Any) -> None:
    c = make_client(max_inflight_total=1)
    tr = c.app.state.tolk.admission
    tr.inflight = 1  # as if one request held the only slot
    r = c.post("/v1/translate", json={"text": "hello", "source": "en", "target": "fi"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["code"] == "overloaded"
    tr.inflight = 0


def test_languages_health_metrics(make_client: Any) -> None:
    c = make_client()
    assert c.get("/health").json() == {"status": "ok"}
    langs = c.get("/v1/languages").json()
    assert [x["code"] for x in langs["languages"]] == ["en", "fi"]
    c.post("/v1/translate", json={"text": "hello", "source": "en", "target": "fi",
                                  "stream": False})
    c.post("/v1/translate", json={"text": "hello", "target": "xx"})
    text = c.get("/metrics").text
    for name in ("tolk_first_token_seconds_bucket", "tolk_request_duration_seconds_bucket",
                 "tolk_output_tokens_total", "tolk_active_connections",
                 "tolk_inflight_requests", 'tolk_errors_total{code="unsupported_language"} 1.0',
                 "tolk_engine_running_requests"):
        assert name in text


def test_ready_is_503_until_the_engine_loads() -> None:
    gate = asyncio.Event()

    class SlowEngine(EchoEngine):
        async def start(self) -> None:
            await gate.wait()
            await super().start()

    engine = SlowEngine()
    app = create_app(Settings(engine="fake"), engine=engine, profile=TINY_PROFILE)
    with TestClient(app) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert c.get("/health").status_code == 200
        c.portal.call(gate.set)  # type: ignore[union-attr]
        for _ in range(100):
            if c.get("/ready").status_code == 200:
                break
        assert c.get("/ready").status_code == 200


def test_docs_work_without_a_cdn(make_client: Any) -> None:
    c = make_client()
    html = c.get("/docs").text
    assert "/_static/swagger/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert c.get("/_static/swagger/swagger-ui-bundle.js").status_code == 200
    schema = c.get("/openapi.json").json()
    assert "/v1/translate" in schema["paths"]
