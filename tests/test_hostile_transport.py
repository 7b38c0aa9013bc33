"""Hostile transports (issue 19, items 2, 6, 7), against a live server on loopback built
exactly as `tolk serve` builds it (`transport.uvicorn_config`). After each attack a
bystander request is served, the in-flight gauge is back at 0, and RSS grew < 50 MB."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest
import uvicorn
from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import TINY_PROFILE
from support.live_server import free_port
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.security.http_guard import allow_form_bodies
from tolk_server.transports.uvicorn_bounds import GuardedWebSocketProtocol, uvicorn_config

KEY = "hostile-test-key"
MB = 1024 * 1024
SLOW_SOCKETS = int(os.environ.get("TOLK_SLOWLORIS_SOCKETS", "30"))  # 300 for the figure
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
AUTH = f"Authorization: Bearer {KEY}\r\n".encode()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    settings = Settings(engine="fake", api_keys=[KEY], auth_timeout_s=1.5, header_timeout_s=1.5,
                        body_timeout_s=2.0, max_body_bytes=256 * 1024)
    app = create_app(settings, engine=EchoEngine(token_delay_s=0.002), profile=TINY_PROFILE)
    port = free_port()
    srv = uvicorn.Server(uvicorn_config(app, settings, port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (srv.started and app.state.tolk.engine_ready.is_set()):
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


@pytest.fixture
def bystander(server: str) -> Iterator[Callable[[], None]]:
    """Run the attack, then: a request is served, nothing in flight, RSS grew < 50 MB."""
    rss0 = psutil.Process().memory_info().rss

    def check() -> None:
        with httpx.Client(base_url=server, timeout=10) as c:
            r = c.post("/v1/translate", headers=JSON,
                       json={"text": "hello", "source": "en", "target": "fi", "stream": False})
            assert r.status_code == 200, (r.status_code, r.headers, r.text[:200])
            assert r.json()["type"] == "complete"
            deadline = time.monotonic() + 5
            while "tolk_inflight_requests 0.0" not in c.get("/metrics", headers=JSON).text:
                assert time.monotonic() < deadline, "in-flight gauge not back at 0"
                time.sleep(0.05)
        grown = (psutil.Process().memory_info().rss - rss0) / MB
        print(f"RSS growth {grown:.1f} MB")  # shown with `pytest -s`
        assert grown < 50, f"RSS grew by {grown:.0f} MB"

    yield check


def _raw(server: str) -> socket.socket:
    port = int(server.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _upgrade(path: str = "/v1/stream", host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_ping_flood_before_auth_is_bounded_and_cut_at_the_deadline(
        server: str, bystander: Callable[[], None]) -> None:
    sock = _raw(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
    sock.sendall(_upgrade())
    time.sleep(0.2)
    payload = os.urandom(125)
    ping = b"\x89\xfd" + b"\0\0\0\0" + payload  # masked ping, mask 0: payload as is
    burst = ping * 512
    dropped0 = GuardedWebSocketProtocol.pongs_dropped
    start = time.monotonic()
    cut = None
    sock.settimeout(0.5)
    while time.monotonic() - start < 25:
        try:
            sock.sendall(burst)  # blocks once the server stops reading
        except TimeoutError:
            continue
        except OSError:
            cut = time.monotonic() - start
            break
    sock.close()
    # Deadline 1.5 s + flush 2 s + close 2 s; slack for a loaded 2-core machine. Without the
    # deadline the connection is never cut.
    assert cut is not None and cut < 20, "the auth deadline did not end the connection"
    assert GuardedWebSocketProtocol.pongs_dropped > dropped0  # pongs were not queued
    bystander()


def test_slow_headers_get_408_and_a_close(server: str, bystander: Callable[[], None]) -> None:
    request = _upgrade()
    socks = [_raw(server) for _ in range(SLOW_SOCKETS)]
    start = time.monotonic()
    open_ = list(socks)
    for i in range(len(request)):  # 1 byte per socket per second
        for s in list(open_):
            try:
                s.send(request[i:i + 1])
            except OSError:
                open_.remove(s)
        open_ = [s for s in open_ if not _closed_by_peer(s)]
        if not open_ or time.monotonic() - start > 10:
            break
        if i == 0:
            bystander()  # served while the slow sockets are all open
        time.sleep(1.0)
    took = time.monotonic() - start
    for s in socks:
        s.close()
    assert not open_, f"{len(open_)} of {SLOW_SOCKETS} slow sockets still open"
    assert took < 5
    bystander()


def test_endless_headers_are_refused(server: str, bystander: Callable[[], None]) -> None:
    sock = _raw(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    sent = 0
    try:
        while sent < 64 * MB:
            sock.sendall(b"X-Pad: " + b"a" * 8000 + b"\r\n")
            sent += 8009
    except OSError:
        pass
    sock.close()
    assert sent < 8 * MB, "the server kept reading headers"
    bystander()


def test_slow_body_gets_408(server: str, bystander: Callable[[], None]) -> None:
    sock = _raw(server)
    sock.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 100\r\n" + AUTH + b"\r\n{")
    start = time.monotonic()
    reply = b""
    while time.monotonic() - start < 8 and not reply:
        try:
            sock.send(b" ")
        except OSError:
            break
        sock.settimeout(1.0)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            pass
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert time.monotonic() - start < 5
    bystander()


def _send_big(server: str, chunked: bool, total: int, out: list[tuple[int, bytes]]) -> None:
    sock = _raw(server)
    head = ("POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\n{AUTH.decode()}")
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    chunk = b" " * (64 * 1024)
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    sent = 0
    try:
        sock.sendall(head.encode())
        while sent < total:
            sock.sendall(piece)
            sent += len(chunk)
    except OSError:
        pass
    sock.settimeout(5)
    try:
        reply = sock.recv(4096)
    except OSError:
        reply = b""
    sock.close()
    out.append((sent, reply))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_bodies_are_refused_while_reading(server: str, bystander: Callable[[], None],
                                               chunked: bool) -> None:
    out: list[tuple[int, bytes]] = []
    threads = [threading.Thread(target=_send_big, args=(server, chunked, 100 * MB, out))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 6
    for sent, reply in out:
        assert sent < 100 * MB, "the server read a whole 100 MB body"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 413"), reply[:80]
    assert any(reply.startswith(b"HTTP/1.1 413") for _, reply in out)
    bystander()


def test_cross_site_requests_are_refused(server: str, bystander: Callable[[], None]) -> None:
    url = server.replace("http", "ws") + "/v1/stream"
    host = server.split("//")[1]
    hdr = {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(InvalidStatus) as info:  # a page on another origin
        connect(url, origin="http://evil.example", additional_headers=hdr)  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    for origin in (None, f"http://{host}"):  # non-browser clients; the page at `/`
        with connect(url, origin=origin, additional_headers=hdr) as ws:  # type: ignore[arg-type]
            assert json.loads(ws.recv(5))["type"] == "ready"
    with httpx.Client(base_url=server, timeout=10) as c:
        body = json.dumps({"text": "hello", "target": "fi"})
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            h = {**hdr, **({"Content-Type": ctype} if ctype else {})}
            assert c.post("/v1/translate", content=body, headers=h).status_code == 415
        # a form posted by a foreign page to a route that takes forms
        r = c.post("/translate", data={"q": "hello", "source": "en", "target": "fi"},
                   headers={**hdr, "Origin": "http://evil.example"})
        assert r.status_code == 403
        # DNS rebinding: a foreign name resolving to 127.0.0.1
        r = c.post("/v1/translate", content=body, headers={**JSON, "Host": "evil.example"})
        assert r.status_code == 403
        assert c.get("/health", headers={"Host": f"localhost:{host.split(':')[1]}"}).is_success
    with pytest.raises(InvalidStatus):
        connect(url, additional_headers={**hdr, "Host": "evil.example"})
    bystander()


def test_form_bodies_only_on_allowed_paths() -> None:
    app = create_app(Settings(engine="fake"), engine=EchoEngine(), profile=TINY_PROFILE)

    async def compat(request: Request) -> dict[str, str]:
        return {"ok": (await request.form())["text"]}  # type: ignore[dict-item]

    app.router.routes.insert(0, APIRoute("/x/echo", compat, methods=["POST"]))

    allow_form_bodies(app, "/x/")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with TestClient(app) as c:
        assert c.post("/x/echo", content=b"text=hi", headers=form).json() == {"ok": "hi"}
        assert c.post("/v1/translate", content=b"text=hi", headers=form).status_code == 415
