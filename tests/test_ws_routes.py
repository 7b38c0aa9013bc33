"""WebSocket route tests against the fast engine double: concurrency, cancel, disconnect, bad frames."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tolk_server.adapters.echo import EchoEngine


def drain(ws: WebSocketTestSession, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Read frames until every id in `ids` has its terminal frame."""
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    pending = set(ids)
    n = 0
    while pending:
        msg = ws.receive_json()
        msg["_seq"] = n
        n += 1
        frames[msg.get("id", "")].append(msg)
        if msg["type"] in ("complete", "error"):
            assert msg["id"] in pending, f"second terminal frame for {msg['id']}"
            pending.discard(msg["id"])
    return frames


def translate(rid: str, text: str = "The meeting will begin shortly.", **kw: Any) -> dict[str, Any]:
    return {"type": "translate", "id": rid, "text": text, "source": "en", "target": "fi", **kw}


def test_ready_then_stream(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "ready" and hello["protocol"] == 1
        assert hello["languages"] == ["en", "fi"]
        ws.send_json(translate("r1"))
        frames = drain(ws, {"r1"})["r1"]
    assert frames[0]["type"] == "start"
    tokens = [f for f in frames if f["type"] == "token"]
    done = frames[-1]
    assert done["type"] == "complete"
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["token"] for t in tokens) == done["translation"]
    assert done["tokens"] == len(tokens) and done["finish_reason"] == "stop"
    assert done["latency_ms"] >= done["first_token_ms"] >= 0


def test_fifty_concurrent_ids_on_one_socket(make_client: Any) -> None:
    client = make_client(engine=EchoEngine(token_delay_s=0.01))
    ids = {f"r{i}" for i in range(50)}
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for i in range(50):
            ws.send_json(translate(f"r{i}", f"sentence number {i} " * (1 + i % 5)))
        frames = drain(ws, ids)
    for rid in ids:
        seq = frames[rid]
        assert seq[0]["type"] == "start" and seq[-1]["type"] == "complete"
        text = "".join(f["token"] for f in seq if f["type"] == "token")
        assert text == seq[-1]["translation"]
    # Requests ran concurrently: many had started before the first one completed.
    first_done = min(seq[-1]["_seq"] for seq in frames.values())
    started_before = sum(1 for seq in frames.values() if seq[0]["_seq"] < first_done)
    assert started_before > 10


def test_server_assigns_ids(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "text": "hello there", "target": "fi", "source": "en"})
        first = ws.receive_json()
        assert first["type"] == "start" and first["id"].startswith("srv-")
        drain(ws, {first["id"]})


def test_stream_false_sends_no_tokens(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(translate("q", stream=False))
        frames = drain(ws, {"q"})["q"]
    assert [f["type"] for f in frames] == ["start", "complete"]
    assert frames[-1]["translation"]


def test_cancel_stops_generation(make_client: Any) -> None:
    engine = EchoEngine(token_delay_s=0.02)
    client = make_client(engine=engine)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(translate("c1", "word " * 200))
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["type"] == "token"
        ws.send_json({"type": "cancel", "id": "c1"})
        frames = drain(ws, {"c1"})["c1"]
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "cancelled"
        assert len(frames) < 50  # far fewer than the ~330 tokens of the whole answer
        # The connection keeps working and nothing more arrives for c1.
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    assert engine.running() == 0
    assert engine.aborted and engine.aborted[-1]


def test_cancel_right_behind_translate_still_ends_the_request(make_client: Any) -> None:
    engine = EchoEngine(token_delay_s=0.01)
    client = make_client(engine=engine)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for _ in range(20):  # back to back: the cancel may arrive before the task ever runs
            ws.send_json(translate("r0", "word " * 50))
            ws.send_json({"type": "cancel", "id": "r0"})
            frames = drain(ws, {"r0"})["r0"]
            assert frames[-1]["type"] in ("error", "complete")
            if frames[-1]["type"] == "error":
                assert frames[-1]["code"] == "cancelled"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json(translate("r0"))  # the id is free again
        assert drain(ws, {"r0"})["r0"][-1]["type"] == "complete"
    assert engine.running() == 0


def test_disconnect_aborts_engine_requests(make_client: Any) -> None:
    engine = EchoEngine(token_delay_s=0.02)
    client = make_client(engine=engine)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for i in range(5):
            ws.send_json(translate(f"d{i}", "word " * 200))
        assert ws.receive_json()["type"] == "start"
    deadline = time.monotonic() + 5
    while engine.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.running() == 0
    assert len(engine.aborted) == 5


def test_bad_frames_get_errors_and_the_connection_survives(make_client: Any) -> None:
    client = make_client(max_text_chars=100)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_text("{oops")
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_json({"type": "dance"})
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_json({"type": "cancel", "id": "ghost"})
        err = ws.receive_json()
        assert err == {"type": "error", "id": "ghost", "code": "bad_request",
                       "message": "no request in flight with this id", "about": "cancel"}
        ws.send_json(translate("e1", "   "))
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_json(translate("e2", "x" * 101))
        assert ws.receive_json() | {"message": ""} == {
            "type": "error", "id": "e2", "code": "too_large", "message": ""}
        ws.send_json({"type": "translate", "id": "e3", "text": "hei", "target": "xx"})
        assert ws.receive_json()["code"] == "unsupported_language"
        ws.send_json({"type": "translate", "id": "e4", "text": "hei", "source": "de",
                      "target": "fi"})
        assert ws.receive_json()["code"] == "unsupported_language"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json(translate("ok"))
        assert drain(ws, {"ok"})["ok"][-1]["type"] == "complete"


def test_duplicate_id_in_flight(make_client: Any) -> None:
    client = make_client(engine=EchoEngine(token_delay_s=0.02))
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(translate("same", "word " * 50))
        ws.send_json(translate("same", "word " * 50))
        seen = []
        while True:
            msg = ws.receive_json()
            seen.append(msg)
            if msg["type"] == "complete":
                break
        errors = [m for m in seen if m["type"] == "error"]
        assert [e["code"] for e in errors] == ["duplicate_id"]


def test_per_connection_inflight_cap(make_client: Any) -> None:
    client = make_client(engine=EchoEngine(token_delay_s=0.05), max_inflight_per_connection=2)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for i in range(3):
            ws.send_json(translate(f"o{i}", "word " * 30))
        frames = drain(ws, {"o0", "o1", "o2"})
        assert frames["o2"][-1]["code"] == "overloaded"
        assert frames["o0"][-1]["type"] == "complete"


def test_auto_detects_the_source_language(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "id": "a", "text": "Hyvää huomenta, mitä kuuluu?",
                      "source": "auto", "target": "en"})
        start = ws.receive_json()
        assert start["type"] == "start" and start["source"] == "fi"
        drain(ws, {"a"})
        ws.send_json({"type": "translate", "id": "b", "text": "Where is the railway station?",
                      "target": "fi"})
        assert ws.receive_json()["source"] == "en"
        drain(ws, {"b"})


@pytest.mark.parametrize("how", ["frame", "header"])
def test_auth_accepts_a_valid_key(make_client: Any, how: str) -> None:
    client = make_client(api_keys=["s3cret", "other"])
    headers = {"Authorization": "Bearer s3cret"} if how == "header" else {}
    with client.websocket_connect("/v1/stream", headers=headers) as ws:
        if how == "frame":
            ws.send_json({"type": "auth", "api_key": "s3cret"})
        hello = ws.receive_json()
        assert hello["type"] == "ready" and hello["auth"] is True
        ws.send_json(translate("x"))
        assert drain(ws, {"x"})["x"][-1]["type"] == "complete"


@pytest.mark.parametrize(
    ("headers", "first"),
    [
        ({}, {"type": "auth", "api_key": "wrong"}),
        ({}, {"type": "translate", "id": "x", "text": "hi", "target": "fi"}),
        ({"Authorization": "Bearer wrong"}, None),
    ],
)
def test_auth_rejects_with_1008(make_client: Any, headers: dict[str, str], first: Any) -> None:
    client = make_client(api_keys=["s3cret"])
    with client.websocket_connect("/v1/stream", headers=headers) as ws:
        if first is not None:
            ws.send_json(first)
        err = ws.receive_json()
        assert err["type"] == "error" and err["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1008


def test_auth_times_out(make_client: Any) -> None:
    client = make_client(api_keys=["s3cret"], auth_timeout_s=0.2)
    with client.websocket_connect("/v1/stream") as ws:
        err = ws.receive_json()
        assert err["code"] == "unauthorized" and "timed out" in err["message"]
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1008


def test_origin_allowlist(make_client: Any) -> None:
    client = make_client(allowed_origins=["https://ok.example"])
    with client.websocket_connect("/v1/stream", headers={"Origin": "https://ok.example"}) as ws:
        assert ws.receive_json()["type"] == "ready"
    with pytest.raises(WebSocketDisconnect) as info:
        with client.websocket_connect("/v1/stream", headers={"Origin": "https://evil.example"}):
            pass
    assert info.value.code == 1008
