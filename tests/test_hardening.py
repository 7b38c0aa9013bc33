"""Hardening: keys at rest, per-key limits, connection cap, drain on SIGTERM,
hostile input against a live server, slow peers."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect
from test_ws_routes import drain
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as sync_connect

from conftest import TINY_PROFILE, wait_ready
from support.subprocess_server import tolk_serve
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.security.keystore import KeyLimits, KeyStore


def app_with_keys(tmp_path: Path, **settings: Any) -> tuple[TestClient, KeyStore]:
    store = KeyStore(tmp_path / "keys.json")
    app = create_app(Settings(engine="fake", key_file=store.path, **settings),
                     engine=EchoEngine(token_delay_s=0.01), profile=TINY_PROFILE)
    return TestClient(app), store


def test_key_store_holds_only_salted_hashes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    rec1, key1 = store.add("alice")
    rec2, key2 = store.add("bob")
    raw = store.path.read_text()
    for key in (key1, key2):
        assert key.split("_", 2)[2] not in raw
    assert rec1.salt != rec2.salt
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert store.verify(key1) == rec1
    assert store.verify(key1 + "x") is None
    assert store.verify("tolk_nope_secret") is None and store.verify("garbage") is None
    assert store.revoke("alice") and store.verify(key1) is None and store.verify(key2)


def test_revoking_a_key_takes_effect_on_a_running_server(tmp_path: Path) -> None:
    client, store = app_with_keys(tmp_path)
    _, key = store.add("svc")
    with client:
        wait_ready(client)
        body = {"text": "hello", "source": "en", "target": "fi", "stream": False}
        auth = {"Authorization": f"Bearer {key}"}
        assert client.post("/v1/translate", json=body, headers=auth).status_code == 200
        store.revoke("svc")
        time.sleep(0.01)
        assert client.post("/v1/translate", json=body, headers=auth).status_code == 401
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_json({"type": "auth", "api_key": key})
            assert ws.receive_json()["code"] == "unauthorized"
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
            assert info.value.code == 1008


def test_per_key_limits(tmp_path: Path) -> None:
    client, store = app_with_keys(tmp_path)
    _, rpm_key = store.add("rpm", KeyLimits(requests_per_minute=2))
    _, chars_key = store.add("chars", KeyLimits(chars_per_day=12))
    _, conc_key = store.add("conc", KeyLimits(concurrent_streams=1))
    body = {"text": "hello world", "source": "en", "target": "fi", "stream": False}
    with client:
        wait_ready(client)
        h = {"Authorization": f"Bearer {rpm_key}"}
        codes = [client.post("/v1/translate", json=body, headers=h).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.post("/v1/translate", json=body, headers=h)
        assert r.headers["retry-after"] and "rate limit" in r.json()["message"]
        h = {"Authorization": f"Bearer {chars_key}"}
        codes = [client.post("/v1/translate", json=body, headers=h).status_code for _ in range(2)]
        assert codes == [200, 429]
        with client.websocket_connect("/v1/stream",
                                      headers={"Authorization": f"Bearer {conc_key}"}) as ws:
            ws.receive_json()
            ws.send_json({"type": "translate", "id": "a", "text": "word " * 40, "source": "en",
                          "target": "fi"})
            ws.send_json({"type": "translate", "id": "b", "text": "hi", "source": "en",
                          "target": "fi"})
            frames = drain(ws, {"a", "b"})
            assert frames["b"][-1]["code"] == "overloaded"
            assert frames["a"][-1]["type"] == "complete"
            ws.send_json({"type": "translate", "id": "c", "text": "hi", "source": "en",
                          "target": "fi"})  # the slot was released
            assert drain(ws, {"c"})["c"][-1]["type"] == "complete"


def test_global_connection_cap(make_client: Any) -> None:
    client = make_client(max_connections=2)
    with client.websocket_connect("/v1/stream") as a, client.websocket_connect("/v1/stream") as b:
        a.receive_json()
        b.receive_json()
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/v1/stream") as c:
                c.receive_json()
        assert info.value.code == 1013
    with client.websocket_connect("/v1/stream") as d:  # capacity is back
        assert d.receive_json()["type"] == "ready"


def test_sigterm_drains_without_losing_requests() -> None:
    async def scenario(base: str, proc: Any) -> None:
        url = base.replace("http", "ws") + "/v1/stream"
        async with connect(url, compression=None) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            ids = {f"r{i}" for i in range(8)}
            for rid in ids:
                await ws.send(json.dumps({"type": "translate", "id": rid, "text": "word " * 60,
                                          "source": "en", "target": "fi"}))
            while json.loads(await ws.recv())["type"] != "token":
                pass
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            # New connections are refused while draining.
            with pytest.raises((ConnectionClosed, OSError, InvalidStatus)):
                async with connect(url, compression=None) as late:
                    await asyncio.wait_for(late.recv(), 5)
            await ws.send(json.dumps({"type": "translate", "id": "late", "text": "x",
                                      "source": "en", "target": "fi"}))
            terminal: dict[str, dict[str, Any]] = {}
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    f = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if f["type"] in ("complete", "error"):
                        assert f["id"] not in terminal
                        terminal[f["id"]] = f
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert {k for k, f in terminal.items() if f["type"] == "complete"} == ids  # none lost
        assert terminal["late"]["code"] == "overloaded"

    with tolk_serve("--engine", "fake", "--fake-token-delay-ms", "15", "--drain-timeout", "20",
                    timeout=60) as (base, proc):
        asyncio.run(scenario(base, proc))
        assert proc.wait(20) == 0


FRAME_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=20,
)
FRAMES = st.one_of(
    st.dictionaries(st.sampled_from(["type", "id", "text", "target", "source", "stream",
                                     "api_key", "granularity", "targets", "glossary", "x"]),
                    FRAME_VALUES, max_size=6),
    st.fixed_dictionaries({"type": st.sampled_from(["translate", "cancel", "ping", "auth",
                                                    "bogus"])},
                          optional={"id": FRAME_VALUES, "text": FRAME_VALUES,
                                    "target": FRAME_VALUES}),
    FRAME_VALUES,
)


@given(st.lists(FRAMES, min_size=1, max_size=10))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_frames_get_typed_errors(fake_server: str, frames: list[Any]) -> None:
    url = fake_server.replace("http", "ws") + "/v1/stream"
    with sync_connect(url, compression=None, open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["type"] == "ready"
        for frame in frames:
            try:
                text = json.dumps(frame, allow_nan=True)
            except ValueError:
                continue
            ws.send(text)
        ws.send(json.dumps({"type": "ping"}))
        while True:  # every frame is answered; the connection still works
            msg = json.loads(ws.recv(10))
            if msg["type"] == "pong":
                break
            assert msg["type"] in ("error", "start", "token", "complete", "segment")
            if msg["type"] == "error":
                assert msg["code"] in ("bad_request", "unsupported_language", "too_large",
                                       "duplicate_id", "overloaded", "cancelled")


def test_binary_deep_nesting_huge_and_flood(fake_server: str) -> None:
    url = fake_server.replace("http", "ws") + "/v1/stream"
    with sync_connect(url, compression=None, max_size=2**24) as ws:
        ws.recv(5)
        ws.send(b"\xff\xfe binary")
        assert json.loads(ws.recv(5))["code"] == "bad_request"
        ws.send("[" * 5000 + "]" * 5000)
        assert json.loads(ws.recv(5))["code"] == "bad_request"
        ws.send('{"type":"cancel","id":"' + "x" * 200 + '"}')
        assert json.loads(ws.recv(5))["code"] == "bad_request"
        for i in range(500):  # a flood of cancels for ids that do not exist
            ws.send(json.dumps({"type": "cancel", "id": f"ghost{i}"}))
        for _ in range(500):
            assert json.loads(ws.recv(5))["code"] == "bad_request"
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(5)) == {"type": "pong"}
    # A 10 MB frame is refused by the frame-size limit with close code 1009.
    with sync_connect(url, compression=None, max_size=2**24) as ws:
        ws.recv(5)
        with pytest.raises(ConnectionClosed) as info:
            ws.send("x" * 10_000_000)
            ws.recv(10)
        # 1009 (message too big); the client may see only the reset if still sending.
        assert info.value.rcvd is None or info.value.rcvd.code == 1009
    # Other connections are still served.
    with sync_connect(url, compression=None) as ws:
        assert json.loads(ws.recv(5))["type"] == "ready"


def test_slow_peers_do_not_starve_others(fake_server: str) -> None:
    host, port = fake_server.removeprefix("http://").split(":")
    loris = []
    for _ in range(30):  # connections that never finish the handshake
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        loris.append(s)
    url = fake_server.replace("http", "ws") + "/v1/stream"
    # A client that floods requests and never reads.
    silent = sync_connect(url, compression=None)
    for i in range(60):
        silent.send(json.dumps({"type": "translate", "id": f"s{i}", "text": "word " * 200,
                                "source": "en", "target": "fi"}))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with sync_connect(url, compression=None) as ws:
            assert json.loads(ws.recv(5))["type"] == "ready"
            ws.send(json.dumps({"type": "translate", "id": "ok", "text": "hello there",
                                "source": "en", "target": "fi"}))
            while True:
                f = json.loads(ws.recv(10))
                if f["type"] == "complete":
                    break
    finally:
        silent.close()
        for s in loris:
            s.close()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 100_000
