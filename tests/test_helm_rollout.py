"""The chart's rolling update, emulated on loopback with real binaries: nothing is dropped.

Debian's haproxy stands in for the Service: it health-checks each replica's `/ready` (as the
endpoints follow readiness) and sends new connections and requests to ready replicas only,
with no retries (a request sent to a replica that is not serving fails the test). Replicas
are `tolk serve --engine echo --fake-token-delay-ms …` processes. The rollout is the
chart's (maxSurge 1, maxUnavailable 0):

1. a new replica starts; haproxy adds it once its `/ready` answers 200 (the startup probe);
2. the old replica leaves the endpoints (pod deletion: haproxy's runtime API sets it to
   `maint`); existing connections stay, as conntrack keeps them;
3. preStop waits while the old replica still serves what reaches it;
4. SIGTERM: the drain refuses new work (`/ready` 503), lets every stream finish, closes
   the WebSockets with 1012 and exits 0 — well within terminationGracePeriodSeconds.

Under 50 long WebSocket streams (the Python SDK, one connection each) and steady REST load,
every stream ends with its `complete` frame and every REST request succeeds; after the old
replica is gone, each SDK client's next request reconnects (1012) and succeeds. Bounded
loops; the whole run takes well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.helm import binary
from support.live_server import free_port
from tolk import AsyncClient, Reconnect

TOKEN_DELAY_MS = 40
STREAMS = 50
PRE_STOP_S = 1.0  # the chart's drain.preStopSeconds, scaled down
DRAIN_S = 30  # --drain-timeout: the streams need far less
LONG = " ".join(["The meeting will begin shortly."] * 36)  # ~390 tokens: ~16 s

HAPROXY_CFG = """\
global
    maxconn 1000
    stats socket {tmp}/admin.sock mode 600 level admin
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout tunnel 120s
frontend tolk
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
{servers}
"""


@dataclass
class Replica:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--engine", "echo",
               "--port", str(self.port), "--fake-token-delay-ms", str(TOKEN_DELAY_MS),
               "--drain-timeout", str(DRAIN_S), "--log-level", "info"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     start_new_session=True)

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))


@dataclass
class Cluster:
    url: str
    tmp: Path
    replicas: dict[str, Replica] = field(default_factory=dict)

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.tmp / "admin.sock"))
            s.sendall(command.encode() + b"\n")
            return s.recv(65536).decode()

    def state(self, name: str) -> str:
        """haproxy's view of a server: UP, DOWN, MAINT…"""
        out = self.admin("show stat")
        for line in out.splitlines():
            cols = line.split(",")
            if len(cols) > 17 and cols[0] == "replicas" and cols[1] == name:
                return cols[17]
        raise AssertionError(out)


def wait_until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s")


def ready(r: Replica) -> bool:
    assert r.proc is not None and r.proc.poll() is None, r.log.read_text()[-2000:]
    try:
        return httpx.get(f"http://127.0.0.1:{r.port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="tolk-rollout-"))
    c = Cluster("", tmp)
    for name in ("old", "peer", "new"):
        c.replicas[name] = Replica(name, free_port(), tmp / f"{name}.log")
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check"
                        for r in c.replicas.values())
    port = free_port()
    (tmp / "haproxy.cfg").write_text(HAPROXY_CFG.format(tmp=tmp, port=port, servers=servers))
    haproxy = binary("haproxy")
    check = subprocess.run([haproxy, "-c", "-f", str(tmp / "haproxy.cfg")],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    lb = subprocess.Popen([haproxy, "-db", "-f", str(tmp / "haproxy.cfg")],
                          stdout=subprocess.DEVNULL, stderr=(tmp / "haproxy.log").open("wb"))
    c.url = f"http://127.0.0.1:{port}"
    try:
        for name in ("old", "peer"):
            c.replicas[name].start()
        for name in ("old", "peer"):
            wait_until(f"{name} ready", lambda n=name: ready(c.replicas[n]), 60)
            wait_until(f"haproxy sees {name}", lambda n=name: c.state(n) == "UP", 10)
        assert c.state("new") == "DOWN"  # nothing listens there yet: no traffic
        yield c
    finally:
        for r in c.replicas.values():
            if r.proc is not None and r.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r.proc.pid, signal.SIGKILL)
                r.proc.wait(10)
        lb.terminate()
        lb.wait(10)


async def _rest_load(url: str, stop: asyncio.Event, outcomes: list[str]) -> None:
    """Steady REST load: one short request after another until `stop` (≤ 2000 each)."""
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(2000):
            if stop.is_set():
                return
            r = await http.post(f"{url}/v1/translate", json={
                "text": f"Request {len(outcomes)}-{i}: the meeting begins.", "source": "en",
                "target": "fi", "stream": False})
            ok = r.status_code == 200 and r.json().get("type") == "complete"
            outcomes.append("ok" if ok else f"{r.status_code} {r.text[:200]}")


async def _long_stream(client: AsyncClient, i: int, streaming: set[int]) -> tuple[str, int, str]:
    """One long stream: (terminal outcome, tokens, finish reason)."""
    stream = client.translate_stream(f"Client {i:02d}. {LONG}", target="fi", source="en",
                                     max_tokens=2000, split=False, timeout=90)
    tokens: list[str] = []
    try:
        async for token in stream:
            tokens.append(token)
            streaming.add(i)
        result = stream.result
    except Exception as exc:  # any failure is a lost terminal frame
        return f"{type(exc).__name__}: {exc}", len(tokens), ""
    assert "".join(tokens) == result.translation
    return "complete", len(tokens), result.finish_reason


async def test_rolling_update_drops_no_stream_and_no_request() -> None:
    with cluster() as c:
        old, new = c.replicas["old"], c.replicas["new"]
        clients = [AsyncClient(c.url, pool_size=1, heartbeat_interval=None,
                               reconnect=Reconnect(max_attempts=5, backoff=0.1))
                   for _ in range(STREAMS)]
        stop, rest = asyncio.Event(), list[str]()
        loads = [asyncio.create_task(_rest_load(c.url, stop, rest)) for _ in range(3)]
        streaming: set[int] = set()
        streams = [asyncio.create_task(_long_stream(cl, i, streaming))
                   for i, cl in enumerate(clients)]
        t0 = time.monotonic()
        new.start()  # 1. the rollout's surge pod; haproxy's check admits it once /ready is 200
        for _ in range(400):  # ≤ 20 s for all 50 to stream
            if len(streaming) == STREAMS:
                break
            await asyncio.sleep(0.05)
        assert len(streaming) == STREAMS
        on_old = old.metric("tolk_active_connections")
        assert on_old >= 10, on_old  # round robin: about half of them (a third once new is up)
        await asyncio.to_thread(wait_until, "new ready in haproxy",
                                lambda: c.state("new") == "UP", 60)
        assert "shutting down" not in old.log.read_text()
        assert c.admin("set server replicas/old state maint").strip() == ""  # 2. endpoints
        await asyncio.sleep(PRE_STOP_S)  # 3. preStop: the old pod still serves
        assert old.proc is not None
        in_flight = old.metric("tolk_inflight_requests")
        assert in_flight == on_old, "the old replica's streams must span its drain"
        old.proc.send_signal(signal.SIGTERM)  # 4. the drain
        code = await asyncio.to_thread(old.proc.wait, DRAIN_S + 20)
        stopped_s = time.monotonic() - t0

        outcomes = await asyncio.wait_for(asyncio.gather(*streams), 90)
        # each SDK client's next request: those of the old replica reconnect after the 1012
        follow = await asyncio.wait_for(asyncio.gather(*(
            cl.translate(f"After {i}: the meeting is over.", target="fi", source="en")
            for i, cl in enumerate(clients))), 60)
        moved = sum(c.replicas[n].metric("tolk_active_connections") for n in ("peer", "new"))
        served_new = new.metric("tolk_requests_total")
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loads), 30)
        for cl in clients:
            await cl.aclose()

    assert code == 0, old.log.read_text()[-3000:]
    log = old.log.read_text()
    assert "draining:" in log and "drain timeout" not in log
    failed = [o for o in outcomes if o[0] != "complete"]
    assert not failed, failed  # 0 lost terminal frames
    assert {o[1] for o in outcomes} == {outcomes[0][1]} and outcomes[0][1] > 300  # none cut
    assert {o[2] for o in outcomes} == {"stop"}
    assert all(r.translation for r in follow) and moved == STREAMS  # the old one's clients reconnected
    assert served_new > on_old  # the new replica took its share
    bad = [o for o in rest if o != "ok"]
    assert not bad and len(rest) >= 30, (len(rest), bad[:5])  # 0 failed REST requests
    assert stopped_s < 60, stopped_s
    print(f"rollout: {int(on_old)} streams drained on the old replica, stop {stopped_s:.1f} s "
          f"after the new replica started; {len(rest)} REST requests, 0 failed")
