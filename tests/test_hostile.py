"""Hostile clients (issue 19: items 1, 3, 4, 8). After each attack a bystander request is
served, the engine holds no request, and the in-flight gauge is back to 0. Bounded: ~30 s."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect

from conftest import TINY_PROFILE, wait_ready
from support.live_server import serve_in_thread
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.lifecycle import drain
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings

LONG = " ".join(f"w{i}" for i in range(700))[:3990]  # just under the 4,000-character limit
KEYS = {"a": "key-a-0123456789", "b": "key-b-0123456789"}


def _inflight(metrics: str) -> float:
    m = re.search(r"^tolk_inflight_requests (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else -1.0


# -- a live server: real sockets, so that a peer that does not read fills the buffers ----------


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[str, EchoEngine]]:
    engine = EchoEngine(token_delay_s=0.0005)
    app = create_app(Settings(engine="fake", api_keys=list(KEYS.values()), send_queue_frames=16,
                              send_stall_s=1.0, max_inflight_total=96, public_metrics=True),
                     engine=engine, profile=TINY_PROFILE)
    with serve_in_thread(app, timeout_graceful_shutdown=1) as url:
        yield url, engine


async def _bystander(url: str, key: str) -> None:
    """A fresh client is served over WebSocket and HTTP, and nothing is left in flight."""
    ws_url = url.replace("http", "ws") + "/v1/stream"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"},
                       compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "translate", "id": "by", "text": "good day",
                                  "source": "en", "target": "fi", "stream": False}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
        assert [f["type"] for f in frames] == ["start", "complete"], frames
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{url}/v1/translate", headers={"Authorization": f"Bearer {key}"},
                            json={"text": "good day", "source": "en", "target": "fi",
                                  "stream": False})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while _inflight((await http.get(f"{url}/metrics")).text) != 0:
            assert time.monotonic() < deadline, "in-flight gauge did not return to 0"
            await asyncio.sleep(0.05)


async def test_stuck_readers_are_torn_down_and_release_every_slot(
        hostile: tuple[str, EchoEngine]) -> None:
    """Item 1: peers that stop reading (queue full, writer blocked), send pings and reset."""
    url, engine = hostile
    ws_url = url.replace("http", "ws") + "/v1/stream"
    stuck = []
    for _ in range(2):  # with key a: twice the server's cap if slots leaked
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws = await connect(ws_url, sock=sock, max_queue=1, compression=None,
                           additional_headers={"Authorization": f"Bearer {KEYS['a']}"})
        assert json.loads(await ws.recv())["type"] == "ready"
        for i in range(48):
            await ws.send(json.dumps({"type": "translate", "id": f"s{i}", "text": LONG,
                                      "source": "en", "target": "fi", "split": False,
                                      "max_tokens": 4000, "stream": i % 2 == 0}))
        await asyncio.sleep(2.5)  # read nothing: the server gives up after 1 s without room
        for _ in range(100):  # protocol pings: the reader must not block on their pongs
            await ws.send('{"type":"ping"}')
        stuck.append(ws)
    for ws in stuck:
        ws.transport.abort()  # reset
    async with httpx.AsyncClient(timeout=10) as http:
        deadline = time.monotonic() + 10
        while _inflight((await http.get(f"{url}/metrics")).text) != 0 or engine._running:
            assert time.monotonic() < deadline, "slots or engine requests still held"
            await asyncio.sleep(0.05)
    await _bystander(url, KEYS["b"])  # another key is not starved
    await _bystander(url, KEYS["a"])  # nor is the attacker's own key, afterwards


async def test_cancel_while_the_send_queue_is_full_ends_each_request_once(
        hostile: tuple[str, EchoEngine]) -> None:
    """Item 4: 32 requests (half not streaming), cancelled while the client is not reading."""
    url, _ = hostile
    ws_url = url.replace("http", "ws") + "/v1/stream"
    async with connect(ws_url, max_queue=1, compression=None,
                       additional_headers={"Authorization": f"Bearer {KEYS['a']}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        ids = [f"c{i}" for i in range(32)]
        for i, rid in enumerate(ids):
            await ws.send(json.dumps({"type": "translate", "id": rid, "text": LONG[:600],
                                      "source": "en", "target": "fi", "split": False,
                                      "stream": i % 2 == 0}))
        await asyncio.sleep(0.3)
        for rid in ids:
            await ws.send(json.dumps({"type": "cancel", "id": rid}))
        ends: dict[str, int] = {}
        pending = set(ids)
        while pending:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("complete", "error") and frame.get("about") != "cancel":
                ends[frame["id"]] = ends.get(frame["id"], 0) + 1
                pending.discard(frame["id"])
        await ws.send(json.dumps({"type": "ping"}))  # nothing more comes for these ids
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "pong":
            assert frame.get("about") == "cancel" or frame["id"] not in ends, frame
        assert set(ends) == set(ids) and set(ends.values()) == {1}, ends
    await _bystander(url, KEYS["a"])


async def test_a_peer_that_never_reads_is_aborted_while_its_socket_stays_open() -> None:
    """Item 1, deterministic: the ASGI `send` of this connection never returns after the first
    frames (a peer that reads nothing, buffers full). Within `send_stall_s` every request is
    cancelled in the engine and every slot released, though the reader sees no disconnect."""
    engine = EchoEngine(token_delay_s=0.001)
    app = create_app(Settings(engine="fake", send_queue_frames=16, send_stall_s=0.5),
                     engine=engine, profile=TINY_PROFILE)
    st = app.state.tolk
    await engine.start()
    st.engine_ready.set()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    closes: list[int] = []
    sent = 0

    async def send(msg: dict[str, Any]) -> None:
        nonlocal sent
        if msg["type"] == "websocket.close":
            closes.append(msg.get("code", 1000))
        if msg["type"] in ("websocket.send", "websocket.close"):
            sent += 1
            if sent > 20:
                await asyncio.Event().wait()  # the peer's buffers are full: never returns

    scope = {"type": "websocket", "path": "/v1/stream", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8000")],
             "scheme": "ws", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
             "subprotocols": [], "asgi": {"version": "3.0"}, "app": app}
    inbox.put_nowait({"type": "websocket.connect"})
    for i in range(64):
        inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(
            {"type": "translate", "id": f"n{i}", "text": LONG, "source": "en", "target": "fi",
             "split": False, "max_tokens": 4000})})
    for _ in range(100):
        inbox.put_nowait({"type": "websocket.receive", "text": '{"type":"ping"}'})
    task = asyncio.create_task(app(scope, inbox.get, send))
    try:
        deadline = time.monotonic() + 10
        while st.admission.inflight or engine._running or sent < 20:
            assert time.monotonic() < deadline, (st.admission.inflight, len(engine._running))
            await asyncio.sleep(0.05)
        assert closes == [4001]  # the close that says why (it cannot be delivered either)
    finally:
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
        await asyncio.wait_for(task, 10)
    assert st.connections == set()


# -- the rest needs no real sockets ---------------------------------------------------------


def _client(**settings: Any) -> TestClient:
    app = create_app(Settings(engine="fake", **settings), engine=EchoEngine(token_delay_s=0.02),
                     profile=TINY_PROFILE)
    client = TestClient(app)
    client.__enter__()
    wait_ready(client)
    return client


def _served(c: TestClient, headers: dict[str, str] | None = None) -> None:
    r = c.post("/v1/translate", headers=headers, json={"text": "good day", "source": "en",
                                                       "target": "fi", "stream": False})
    assert r.status_code == 200, r.text
    assert c.app.state.tolk.admission.inflight == 0  # type: ignore[attr-defined]


def test_lone_surrogates_are_bad_request_and_the_connection_lives() -> None:
    """Item 3, through the transports (the property test is in test_protocol_unicode.py)."""
    c = _client()
    with c.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["type"] == "ready"
        for frame in ('{"type":"translate","id":"\\ud800","text":"x","target":"fi"}',
                      '{"type":"translate","id":"ok","text":"a\\udfffb","target":"fi"}',
                      '{"type":"cancel","id":"\\udbff"}'):
            ws.send_text(frame)
            err = ws.receive_json()
            assert err["type"] == "error" and err["code"] == "bad_request", err
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"  # the writer is alive
    r = c.post("/v1/translate", content=b'{"text":"\\ud800","target":"fi"}',
               headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    _served(c)


def test_drain_deadline_sends_shutting_down_before_1012() -> None:
    """Item 4: requests still running at the drain deadline get an `error` frame first."""
    c = _client()
    st = c.app.state.tolk  # type: ignore[attr-defined]
    with c.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "translate", "id": "d1", "text": LONG[:400], "source": "en",
                      "target": "fi"})
        assert ws.receive_json()["type"] == "start"
        c.portal.call(drain, st, 0.05)  # type: ignore[union-attr]
        frames = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                frames.append(ws.receive_json())
        assert closed.value.code == 1012
        ends = [f for f in frames if f["type"] in ("complete", "error")]
        assert [(f["id"], f.get("code")) for f in ends] == [("d1", "shutting_down")], ends
    assert st.admission.inflight == 0


def test_without_keys_only_the_server_caps_apply() -> None:
    """Item 8: no per-key cap (nor an error naming a key) when no keys are configured."""
    c = _client(max_inflight_per_key=2)
    with c.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["type"] == "ready"
        for i in range(4):
            ws.send_json({"type": "translate", "id": f"k{i}", "text": "a b c", "source": "en",
                          "target": "fi", "stream": False})
        frames = [ws.receive_json() for _ in range(8)]
        assert sorted(f["type"] for f in frames) == ["complete"] * 4 + ["start"] * 4, frames
    _served(c)


def test_deep_json_srv_ids_close_codes_and_operator_endpoints() -> None:
    """Item 8: deep JSON is 400; `srv-` ids are refused; refusals close with 1013 / 1012 after
    the handshake; /metrics and /docs need a key unless opened."""
    c = _client(max_connections=1, api_keys=["k1"])
    auth = {"Authorization": "Bearer k1"}
    r = c.post("/v1/translate", content=b"[" * 100_000,
               headers={**auth, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    with c.websocket_connect("/v1/stream", headers=auth) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "translate", "id": "srv-1", "text": "x", "target": "fi"})
        err = ws.receive_json()
        assert err["code"] == "bad_request" and "reserved" in err["message"]
        with c.websocket_connect("/v1/stream", headers=auth) as refused:  # accepted, then
            with pytest.raises(WebSocketDisconnect) as info:
                refused.receive_json()
            assert info.value.code == 1013
    c.app.state.tolk.draining = True  # type: ignore[attr-defined]
    with c.websocket_connect("/v1/stream", headers=auth) as refused:
        with pytest.raises(WebSocketDisconnect) as info:
            refused.receive_json()
        assert info.value.code == 1012
    c.app.state.tolk.draining = False  # type: ignore[attr-defined]
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=auth).status_code == 200, path
    opened = _client(api_keys=["k1"], public_metrics=True, public_docs=True)
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert opened.get(path).status_code == 200, path
    _served(c, auth)


async def test_sdk_maps_undeliverable_and_shutting_down_to_typed_errors() -> None:
    """Item 4: close 4001 and the `shutting_down` code reach Python callers as typed errors."""
    import tolk
    from tolk import AsyncClient, MockServerConnection, MockTransport

    ready = {"type": "ready", "protocol": 1, "model": "m", "languages": ["en", "fi"],
             "auth": False}

    async def handler(conn: MockServerConnection) -> None:
        await conn.send(ready)
        f = await conn.receive()
        assert f is not None
        if f["text"] == "drain":
            await conn.send({"type": "error", "id": f["id"], "code": "shutting_down",
                             "message": "bye"})
            await conn.receive()
        else:
            await conn.close(4001)

    async with AsyncClient("ws://mock", transport=MockTransport(handler)) as c:
        with pytest.raises(tolk.UndeliverableError):
            await asyncio.wait_for(c.translate("x", target="fi"), 10)
        with pytest.raises(tolk.ShuttingDownError):
            await asyncio.wait_for(c.translate("drain", target="fi"), 10)
    assert issubclass(tolk.UndeliverableError, tolk.ConnectionError)
