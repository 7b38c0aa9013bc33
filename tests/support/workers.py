"""`tolk serve --workers N` as a real child process (its log in a file), and the WebSocket
helpers its tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.live_server import free_port
from support.subprocess_server import wait_ready

TERMINAL = ("complete", "error")


@contextmanager
def supervisor(*args: str, log: Path, timeout: float = 180,
               env: dict[str, str] | None = None
               ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The supervisor on a free loopback port, in a session of its own; killed (with its
    workers and engine) on the way out."""
    port = free_port()
    cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout)
        yield base, proc
    finally:
        if proc.poll() is None:  # a clean stop first: the supervisor removes its metrics folder
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def worker_pids(log: Path) -> dict[int, int]:
    """Each worker's newest pid, from the supervisor's log."""
    found = re.findall(r"worker (\d+): pid (\d+)", log.read_text(errors="replace"))
    return {int(i): int(p) for i, p in found}


def get(base: str, path: str) -> tuple[str, str]:
    """(body, x-tolk-worker) of a GET."""
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return r.read().decode(), r.headers.get("x-tolk-worker", "")


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples (`name` with its labels, or all of them)."""
    pat = re.escape(name) + (r" " if "{" in name else r"(?:\{[^}]*\})? ")
    return sum(float(m) for m in re.findall(r"^" + pat + r"(\S+)$", text, re.M))


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def open_ws(url: str) -> tuple[ClientConnection, str]:
    ws = await connect(url, compression=None, open_timeout=30, max_size=2**22)
    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
    return ws, ws.response.headers.get("x-tolk-worker", "") if ws.response else ""


async def open_spread(url: str, n: int, workers: int) -> list[tuple[ClientConnection, str]]:
    """n connections that together reach every worker (the kernel picks; more are opened,
    and the surplus closed, until each worker has one: bounded)."""
    conns = [await open_ws(url) for _ in range(n)]
    for _ in range(64):
        if len({w for _, w in conns}) >= workers:
            return conns
        extra = await open_ws(url)
        if extra[1] not in {w for _, w in conns}:
            old = conns.pop(0)
            await old[0].close()
            conns.append(extra)
        else:
            await extra[0].close()
    raise AssertionError("the connections never reached every worker")


async def run_streams(ws: ClientConnection, ids: list[str], text: str, max_tokens: int,
                      started: asyncio.Event | None = None, limit_s: float = 120,
                      ) -> dict[str, list[dict[str, Any]]]:
    """Send one streamed request per id; collect every terminal frame of each until each has
    one or the connection closes (then the rest stay empty)."""
    for rid in ids:
        await ws.send(json.dumps({"type": "translate", "id": rid, "text": text, "stream": True,
                                  "source": "en", "target": "fi", "max_tokens": max_tokens}))
    terminal: dict[str, list[dict[str, Any]]] = {rid: [] for rid in ids}
    deadline = time.monotonic() + limit_s
    try:
        while any(not t for t in terminal.values()) and time.monotonic() < deadline:
            f = json.loads(await asyncio.wait_for(ws.recv(), limit_s))
            if f["type"] == "token" and started is not None:
                started.set()
            if f["type"] in TERMINAL and f.get("id") in terminal:
                terminal[f["id"]].append(f)
        with contextlib.suppress(asyncio.TimeoutError):  # a second terminal frame, if any
            f = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
            if f["type"] in TERMINAL and f.get("id") in terminal:
                terminal[f["id"]].append(f)
    except ConnectionClosed:
        pass
    return terminal


Streams = dict[str, list[dict[str, Any]]]  # request id → its terminal frames


async def kill_a_worker_mid_streams(url: str, connections: int, ids_per_connection: int,
                                    text: str, victim_pid: int, *, start_timeout: float,
                                    settle_s: float = 0.0) -> dict[str, list[Streams]]:
    """Open `connections` spread over 2 workers, start `ids_per_connection` streamed requests
    on each, SIGKILL `victim_pid` once tokens flow (after `settle_s`), and collect every
    stream's terminal frames, by the worker (`"0"`, `"1"`) its connection was on."""
    conns = await open_spread(url, connections, workers=2)
    started = asyncio.Event()
    tasks = [(w, asyncio.create_task(run_streams(
                ws, [f"k{i}{chr(97 + j)}" for j in range(ids_per_connection)], text, 200,
                started)))
             for i, (ws, w) in enumerate(conns)]
    await asyncio.wait_for(started.wait(), start_timeout)
    await asyncio.sleep(settle_s)
    os.kill(victim_pid, signal.SIGKILL)
    by: dict[str, list[Streams]] = {"0": [], "1": []}
    for w, t in tasks:
        by[w].append(await t)
    for ws, _ in conns:
        await ws.close()
    return by
