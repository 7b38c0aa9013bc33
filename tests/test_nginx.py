"""deploy/nginx/tolk.conf on loopback: two replicas (engine double) behind nginx.

nginx comes from the distribution (`apt-get install -y nginx`); the test fails, with that
command in the message, when it is missing. Each replica is a process of its own
(tests/support/replica.py) so that one can be SIGKILLed mid-run. Loopback only; every loop is
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from support.live_server import free_port
from support.nginx import nginx_binary, start_nginx

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "nginx" / "tolk.conf"
TOKEN_DELAY = 0.02
# The engine double reverses the words and emits 3-character tokens: ~290 tokens, ~6 s
# (with "split": false; by default sentences are translated concurrently).
LONG_TEXT = " ".join(["The meeting will begin shortly."] * 27)
SSE_TEXT = " ".join(["The meeting will begin shortly."] * 12)  # ~130 tokens, ~2.6 s


def short_text(i: int) -> str:
    return f"Request {i}: the meeting will begin shortly."  # unique: no result-cache hits


@dataclass
class Cluster:
    url: str  # nginx, http://127.0.0.1:PORT
    replicas: dict[int, subprocess.Popen[bytes]]  # port → process
    tmp: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"

    def metrics(self, port: int) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def finished(self, port: int) -> float:
        return sum(v for k, v in self.metrics(port).items()
                   if k.startswith("tolk_requests_total"))

    def inflight(self, port: int) -> float:
        return self.metrics(port).get("tolk_inflight_requests", 0.0)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = str(r.status_code)
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout} s: {last}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    nginx_binary()  # skips or fails early, before any replica starts
    tmp = Path(tempfile.mkdtemp(prefix="tolk-nginx-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port(), free_port()]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])}
        replicas = {}
        for p in ports:
            log = (tmp / f"replica-{p}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "support" / "replica.py"), "--port",
                 str(p), "--token-delay", str(TOKEN_DELAY)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            procs.append(proc)
            replicas[p] = proc
        for p, proc in replicas.items():
            _wait_http(f"http://127.0.0.1:{p}/ready", 60, proc)
        ngx, url = start_nginx(tmp, ports)
        procs.append(ngx)
        yield Cluster(url, replicas, tmp)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


async def _ready(ws: ClientConnection) -> None:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "ready", frame


async def translate_one(url: str, text: str, max_tokens: int = 1000) -> dict[str, object]:
    async with connect(url, compression=None, open_timeout=10) as ws:
        await _ready(ws)
        await ws.send(json.dumps({"type": "translate", "id": "r", "text": text,
                                  "source": "en", "target": "fi", "max_tokens": max_tokens}))
        for _ in range(2000):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if frame["type"] in ("complete", "error"):
                return dict(frame)
    raise AssertionError("no terminal frame")


def test_template_has_the_streaming_settings() -> None:
    conf = TEMPLATE.read_text()
    for needle in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                   "proxy_set_header Connection $tolk_connection;", "proxy_buffering off;",
                   "hash $remote_addr$remote_port consistent;"):
        assert needle in conf, needle
    timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert timeout and int(timeout.group(1)) >= 3600


async def test_both_replicas_serve_websocket_and_sse_through_nginx() -> None:
    with cluster() as c:
        before = {p: c.finished(p) for p in c.replicas}
        # new connections hash by source port: spread until both replicas served (bounded)
        for i in range(40):
            frame = await translate_one(c.ws_url, short_text(i))
            assert frame["type"] == "complete", frame
            served = {p: c.finished(p) - before[p] for p in c.replicas}
            if i >= 5 and all(served.values()):
                break
        assert all(served.values()), f"requests did not reach both replicas: {served}"

        async with httpx.AsyncClient(timeout=20) as http:
            # Server-Sent Events arrive as they are made (proxy_buffering off)
            t0 = time.monotonic()
            first = None
            events = []
            body = {"text": SSE_TEXT, "source": "en", "target": "fi", "stream": True,
                    "max_tokens": 1000, "split": False}
            async with http.stream("POST", f"{c.url}/v1/translate", json=body) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        first = first or time.monotonic() - t0
                        events.append(line[7:])
            total = time.monotonic() - t0
            assert events[0] == "start" and events[-1] == "complete" and "token" in events
            assert first is not None and total > 1.0 and first < total / 3, (first, total)
            r2 = await http.post(f"{c.url}/v1/translate",
                                 json={"text": short_text(-1), "source": "en", "target": "fi",
                                       "stream": False})
            assert r2.status_code == 200 and r2.json()["type"] == "complete"


try:  # the Python SDK: a dropped connection is its typed `tolk.ConnectionError`
    import tolk
    from tolk import AsyncClient, Reconnect

    HAVE_SDK = True
except ImportError:  # pragma: no cover - the SDK ships with tolk; raw websockets otherwise
    HAVE_SDK = False


async def _long_request_sdk(url: str, i: int, streaming: list[int]) -> str:
    """One SDK client (one connection), one long streamed request; how it ended."""
    async with AsyncClient(url, pool_size=1, reconnect=Reconnect(max_attempts=1),
                           heartbeat_interval=None) as client:
        stream = client.translate_stream(f"Request {i}. {LONG_TEXT}", target="fi",
                                         source="en", max_tokens=1000, split=False,
                                         timeout=60)
        try:
            tokens = 0
            async for _token in stream:
                tokens += 1
                if tokens == 1:
                    streaming.append(i)
                if tokens > 5000:
                    return "too many tokens"
            return "complete"
        except tolk.ConnectionError:
            return "connection_error"


async def _long_request_ws(url: str, i: int, streaming: list[int]) -> str:
    """The same over raw websockets: the drop is an abnormal closure (no close frame)."""
    async with connect(url.replace("http://", "ws://") + "/v1/stream", compression=None,
                       open_timeout=10) as ws:
        await _ready(ws)
        await ws.send(json.dumps({"type": "translate", "id": "long", "max_tokens": 1000,
                                  "split": False, "text": f"Request {i}. {LONG_TEXT}",
                                  "source": "en", "target": "fi"}))
        tokens = 0
        try:
            for _ in range(5000):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["type"] == "token":
                    tokens += 1
                    if tokens == 1:
                        streaming.append(i)
                elif frame["type"] in ("complete", "error"):
                    return str(frame["type"])
        except ConnectionClosedError as exc:
            assert exc.rcvd is None or exc.rcvd.code != 1000
            return "connection_error"
        except ConnectionClosedOK:
            return "closed_ok"
    return "no terminal frame"


_long_request = _long_request_sdk if HAVE_SDK else _long_request_ws


async def test_killed_replica_costs_only_its_inflight_requests() -> None:
    with cluster() as c:
        streaming: list[int] = []
        tasks: list[asyncio.Task[str]] = []
        inflight: dict[int, float] = {}
        # one long request per new connection (6, then 2 more at a time) until both replicas
        # hold at least 2 (bounded: 24 connections)
        for batch in range(10):
            for _ in range(2 if batch else 6):
                i = len(tasks)
                tasks.append(asyncio.create_task(_long_request(c.url, i, streaming)))
            for _ in range(1000):
                if len(streaming) == len(tasks):
                    break
                await asyncio.sleep(0.01)
            assert len(streaming) == len(tasks), "requests did not start streaming in 10 s"
            inflight = {p: c.inflight(p) for p in c.replicas}
            if min(inflight.values()) >= 2:
                break
        assert sum(inflight.values()) == len(tasks), inflight
        assert min(inflight.values()) >= 2, f"connections did not spread: {inflight}"
        victim, survivor = sorted(c.replicas, key=lambda p: -inflight[p])
        c.replicas[victim].send_signal(signal.SIGKILL)
        c.replicas[victim].wait(10)
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        # exactly the victim's in-flight requests fail, each with a typed connection error
        assert outcomes.count("connection_error") == inflight[victim], outcomes
        assert outcomes.count("complete") == inflight[survivor], outcomes

        # the next requests go to the surviving replica, whatever their connection hashes to
        done_before = c.finished(survivor)
        for i in range(6):
            frame = await translate_one(c.ws_url, short_text(100 + i))
            assert frame["type"] == "complete", frame
        assert c.finished(survivor) - done_before == 6
