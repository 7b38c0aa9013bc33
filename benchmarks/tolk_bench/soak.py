"""Soak: many connections on loopback with random requests, cancels and disconnects,
plus hostile peers that flood RFC 6455 pings and never read (`--ping-floods`).

Bounded in time and count; it stops by itself. The report checks that every accepted
request got exactly one terminal frame, that the engine's running-request count returns
to 0, that the server's RSS grows by less than 5% after warm-up, and that no unexpected
errors occurred.

    TOLK_CACHE_ENTRIES=0 tolk serve --port 8000 &     # every request reaches the engine
    python -m tolk_bench.soak --url ws://127.0.0.1:8000 --connections 1000 --duration 600

Texts come from a TSV (`english<TAB>finnish`): English lines go to Finnish and Finnish
lines to English, so no request is a same-language pass-through.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import resource
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

EXPECTED_ERRORS = {"cancelled", "overloaded"}
SENTENCES = [
    ("The meeting will begin shortly.", "fi"), ("Where is the railway station?", "fi"),
    ("I would like a cup of coffee, please.", "fi"), ("Thank you for your help.", "fi"),
    ("Kokous alkaa pian.", "en"), ("Missä on rautatieasema?", "en"), ("Kiitos avusta.", "en"),
]


@dataclass
class Tally:
    sent: int = 0
    accepted: int = 0
    completed: int = 0
    cancelled_sent: int = 0
    abandoned: int = 0  # in flight on a connection we dropped on purpose
    terminal_twice: int = 0
    missing_terminal: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    connect_failures: int = 0
    ping_floods: int = 0
    ping_floods_held: int = 0  # the server stopped reading or cut the flood: as it should


PING = b"\x89\xfd\0\0\0\0" + b"p" * 125  # a masked 125-byte ping (mask 0)


async def _ping_flood(url: str, stop_at: float, tally: Tally, burst_s: float = 3.0) -> None:
    """Upgrade, flood pings without reading, drop the socket; again until `stop_at`."""
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    upgrade = (f"GET /v1/stream HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dG9say1zb2FrLXBpbmc=\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    while time.monotonic() < stop_at:
        try:
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            await asyncio.sleep(1)
            continue
        tally.ping_floods += 1
        start = time.monotonic()
        try:
            writer.write(upgrade)
            while time.monotonic() - start < burst_s:
                writer.write(PING * 64)
                await asyncio.wait_for(writer.drain(), 1.0)
        except (TimeoutError, OSError):
            tally.ping_floods_held += 1
        writer.transport.abort()
        await asyncio.sleep(0.5)


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def scrape(http_base: str) -> dict[str, float | None]:
    with urllib.request.urlopen(http_base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        "rss_bytes": _metric(text, "process_resident_memory_bytes"),
        "engine_running": _metric(text, "tolk_engine_running_requests"),
        "inflight": _metric(text, "tolk_inflight_requests"),
        "connections": _metric(text, "tolk_active_connections"),
    }


async def _one_connection(url: str, stop_at: float, tally: Tally, rng: random.Random,
                          texts: list[tuple[str, str]], max_tokens: int) -> None:
    n = 0
    while time.monotonic() < stop_at:
        try:
            ws = await connect(url, compression=None, open_timeout=30, max_size=2**20)
        except (OSError, InvalidStatus, TimeoutError):
            tally.connect_failures += 1
            await asyncio.sleep(rng.uniform(0.5, 2))
            continue
        try:
            dropped = await _session(ws, stop_at, tally, rng, texts, max_tokens, n)
            n += 1
            if not dropped:
                return
        finally:
            with contextlib.suppress(Exception):
                await ws.close()


async def _session(ws: ClientConnection, stop_at: float, tally: Tally, rng: random.Random,
                   texts: list[tuple[str, str]], max_tokens: int, gen: int) -> bool:
    """One connection's life; True when we dropped it on purpose (the caller reconnects)."""
    hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert hello["type"] == "ready"
    seq = 0
    while time.monotonic() < stop_at:
        await asyncio.sleep(rng.expovariate(1 / 2.0))  # think time, 2 s on average
        rid = f"g{gen}-{seq}"
        seq += 1
        text, target = rng.choice(texts)
        await ws.send(json.dumps({"type": "translate", "id": rid, "text": text,
                                  "source": "auto", "target": target,
                                  "max_tokens": max_tokens}))
        tally.sent += 1
        cancel = rng.random() < 0.1
        drop = rng.random() < 0.03
        terminals = 0
        seen_start = False
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                f = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                if f.get("id") != rid or "about" in f:
                    continue
                if f["type"] == "start":
                    seen_start = True
                    tally.accepted += 1
                    if cancel:
                        await ws.send(json.dumps({"type": "cancel", "id": rid}))
                        tally.cancelled_sent += 1
                    if drop:
                        tally.abandoned += 1
                        tally.disconnects += 1
                        return True
                elif f["type"] in ("complete", "error"):
                    terminals += 1
                    if f["type"] == "complete":
                        tally.completed += 1
                    else:
                        tally.errors[f["code"]] += 1
                        if not seen_start:
                            tally.accepted += 0  # refused before acceptance (e.g. overloaded)
                    break
        except (ConnectionClosed, TimeoutError):
            tally.missing_terminal += 1
            return True
        if terminals == 0:
            tally.missing_terminal += 1
        with contextlib.suppress(TimeoutError):  # a second terminal frame would be a bug
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                if (f.get("id") == rid and f["type"] in ("complete", "error")
                        and "about" not in f):
                    tally.terminal_twice += 1
    return False


async def run_soak(url: str, connections: int, duration_s: float, warmup_s: float,
                   texts: list[tuple[str, str]], max_tokens: int,
                   seed: int = 0, ping_floods: int = 0) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, connections * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    http_base = url.replace("ws://", "http://").replace("wss://", "https://")
    http_base = http_base.removesuffix("/v1/stream")
    rng = random.Random(seed)
    tally = Tally()
    t0 = time.monotonic()
    stop_at = t0 + duration_s
    before = scrape(http_base)
    tasks = [asyncio.create_task(_ping_flood(url, stop_at, tally)) for _ in range(ping_floods)]
    for i in range(connections):
        tasks.append(asyncio.create_task(_one_connection(
            url, stop_at, tally, random.Random(rng.random()), texts, max_tokens)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # ramp up
    await asyncio.sleep(max(0.0, t0 + warmup_s - time.monotonic()))
    after_warmup = scrape(http_base)
    samples = [after_warmup]
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(10.0, max(0.1, stop_at - time.monotonic())))
        samples.append(scrape(http_base))
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 180)
    settle = time.monotonic() + 30
    final = scrape(http_base)
    while (final["engine_running"] or final["inflight"]) and time.monotonic() < settle:
        await asyncio.sleep(0.5)
        final = scrape(http_base)
    rss_warm = after_warmup["rss_bytes"] or 0.0
    rss_end = final["rss_bytes"] or 0.0
    growth = (rss_end - rss_warm) / rss_warm if rss_warm else 0.0
    unexpected = {k: v for k, v in tally.errors.items() if k not in EXPECTED_ERRORS}
    checks = {
        "one_terminal_per_accepted_request": tally.missing_terminal == 0
        and tally.terminal_twice == 0,
        "engine_running_returns_to_zero": final["engine_running"] == 0,
        "inflight_returns_to_zero": final["inflight"] == 0,
        "rss_growth_below_5pct": growth < 0.05,
        "no_unexpected_errors": not unexpected,
    }
    return {
        "url": url, "connections": connections, "duration_s": duration_s,
        "warmup_s": warmup_s, "max_tokens": max_tokens,
        "sent": tally.sent, "accepted": tally.accepted, "completed": tally.completed,
        "cancels_sent": tally.cancelled_sent, "dropped_connections": tally.disconnects,
        "abandoned_in_flight": tally.abandoned, "missing_terminal": tally.missing_terminal,
        "terminal_twice": tally.terminal_twice, "connect_failures": tally.connect_failures,
        "ping_floods": tally.ping_floods, "ping_floods_held": tally.ping_floods_held,
        "errors": dict(tally.errors), "unexpected_errors": unexpected,
        "rss_before_mb": (before["rss_bytes"] or 0) / 2**20,
        "rss_after_warmup_mb": rss_warm / 2**20, "rss_end_mb": rss_end / 2**20,
        "rss_growth_pct": round(growth * 100, 2),
        "rss_samples_mb": [round((s["rss_bytes"] or 0) / 2**20, 1) for s in samples],
        "final": final, "checks": checks, "ok": all(checks.values()),
    }


def load_texts(path: str | None) -> list[tuple[str, str]]:
    if not path:
        return SENTENCES
    out: list[tuple[str, str]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
            out += [(cols[0], "fi"), (cols[1], "en")]
    return out or SENTENCES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-soak", description=__doc__)
    ap.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--data", help="TSV of sentences (both columns are used)")
    ap.add_argument("--ping-floods", type=int, default=4,
                    help="hostile peers flooding pings without reading")
    ap.add_argument("--out", help="write the JSON report here")
    ns = ap.parse_args(argv)
    url = ns.url if ns.url.endswith("/v1/stream") else ns.url.rstrip("/") + "/v1/stream"
    report = asyncio.run(run_soak(url, ns.connections, ns.duration, ns.warmup,
                                  load_texts(ns.data), ns.max_tokens,
                                  ping_floods=ns.ping_floods))
    text = json.dumps(report, indent=2)
    print(text)
    if ns.out:
        Path(ns.out).write_text(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
