"""The front end alone: tolk over the null engine (`tolk serve --engine fake`, tokens emitted
instantly), to find the transport's own ceiling: requests/s, frames/s per CPU core of the
server's processes (with `--workers N`: the supervisor and its workers, summed), and idle
connections and the memory each costs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from .clients import WsConnection, WsPool, ws_url
from .metrics import compute_metrics
from .runner import Point, Progress, run_point
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    child_env,
    family_cpu_s,
    family_rss,
    free_port,
    raise_fd_limit,
    self_cpu_s,
    tolk_command,
)
from .workload import RequestSpec

SHORT_TEXT = "The meeting will begin shortly."


def fake_server(log_dir: Path, workers: int | None = None) -> ServerProcess:
    """`tolk serve --engine fake`; with `workers`, `--workers N` on a SQLite store (the same
    store for every N, so that only the split into processes differs)."""
    port = free_port()
    flags, env, log = ["--engine", "fake"], dict(TOLK_BENCH_ENV), log_dir / "tolk-fake.log"
    if workers is not None:
        flags += ["--workers", str(workers)]
        log = log_dir / f"tolk-fake-w{workers}.log"
        env["TOLK_STORE"] = f"sqlite:///{log_dir.resolve()}/store-w{workers}.db"
    return ServerProcess(f"tolk (null engine, {workers or 1} worker(s))",
                         tolk_command(port, flags), f"http://127.0.0.1:{port}/ready",
                         child_env(env), log)


async def _measured(base_url: str, pid: int | None, point: Point, connections: int,
                    progress: Progress, label: str) -> dict[str, Any]:
    pool = await WsPool.open(base_url, connections)
    try:
        cpu0 = family_cpu_s(pid) if pid else 0.0
        me0 = self_cpu_s()
        pr = await run_point(pool.request, point, progress, label)
        cpu1 = family_cpu_s(pid) if pid else 0.0
        me1 = self_cpu_s()
    finally:
        await pool.close()
    m = compute_metrics(pr.results, pr.duration_s)
    frames = sum(r.chunks + 2 for r in pr.results if r.success)  # start, tokens, complete
    server_cpu = cpu1 - cpu0
    return {
        "concurrency": point.concurrency,
        "connections": connections,
        "requests": len(pr.results),
        "failed": m["failed"],
        "errors": m["errors"],
        "duration_s": pr.duration_s,
        "requests_per_s": m["request_throughput"],
        "frames": frames,
        "frames_per_s": frames / pr.duration_s if pr.duration_s else 0.0,
        "server_cpu_s": server_cpu if pid else None,
        "server_cpu_util": server_cpu / pr.duration_s if pid and pr.duration_s else None,
        "frames_per_cpu_s": frames / server_cpu if pid and server_cpu > 0 else None,
        "requests_per_cpu_s": m["completed"] / server_cpu if pid and server_cpu > 0 else None,
        "client_cpu_s": me1 - me0,
        "ttft_ms": m["ttft_ms"],
        "e2el_ms": m["e2el_ms"],
    }


async def idle_connections(base_url: str, pid: int | None, counts: list[int],
                           progress: Progress) -> list[dict[str, Any]]:
    """Open N idle WebSockets (each gets its `ready` frame), measure the server's RSS delta."""
    url = ws_url(base_url)
    out: list[dict[str, Any]] = []
    for n in counts:
        conns: list[WsConnection] = []
        await asyncio.sleep(0.5)
        rss0 = family_rss(pid) if pid else 0
        task = progress.task(f"idle conns  n={n}", n)
        t0 = time.perf_counter()
        failed = 0
        try:
            for i in range(0, n, 100):
                batch = await asyncio.gather(
                    *(WsConnection.open(url) for _ in range(min(100, n - i))),
                    return_exceptions=True)
                for c in batch:
                    if isinstance(c, WsConnection):
                        conns.append(c)
                    else:
                        failed += 1
                    progress.advance(task)
            open_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            rss1 = family_rss(pid) if pid else 0
            alive = sum(1 for c in conns if not c.closed)
            # still serving with all of them open? one translation on the newest connection
            ok = False
            if conns:
                with contextlib.suppress(Exception):
                    r = await asyncio.wait_for(conns[-1].request(
                        "idle-check", RequestSpec(SHORT_TEXT, "en", "fi", "", 16)), 30)
                    ok = r.success
        finally:
            for i in range(0, len(conns), 200):
                await asyncio.gather(*(c.close() for c in conns[i:i + 200]))
        delta = rss1 - rss0
        out.append({"connections": n, "opened": len(conns), "failed": failed, "alive": alive,
                    "open_s": open_s, "rss_before_mib": rss0 / 2**20,
                    "rss_after_mib": rss1 / 2**20,
                    "rss_per_connection_kib": delta / max(1, len(conns)) / 1024 if pid else None,
                    "responsive": ok})
    return out


async def frontend_ceiling(
    base_url: str,
    pid: int | None,
    progress: Progress,
    concurrency: list[int],
    requests: int,
    long_chars: int,
    idle_counts: list[int],
    max_duration_s: float,
    streams_per_conn: int,
) -> dict[str, Any]:
    short = RequestSpec(SHORT_TEXT, "en", "fi", "", 64)
    rps: list[dict[str, Any]] = []
    for c in concurrency:
        conns = max(1, -(-c // streams_per_conn))
        pt = Point("frontend", [short] * requests, concurrency=c,
                   max_duration_s=max_duration_s)
        rps.append(await _measured(base_url, pid, pt, conns, progress,
                                   f"null engine short c={c}"))
    words = (SHORT_TEXT + " ") * (long_chars // (len(SHORT_TEXT) + 1) + 1)
    long_spec = RequestSpec(words[:long_chars].strip(), "en", "fi", "", 8192)  # protocol max
    c = max(concurrency)
    pt = Point("frontend", [long_spec] * max(8, requests // 10), concurrency=min(c, 16),
               max_duration_s=max_duration_s)
    frames = await _measured(base_url, pid, pt, max(1, -(-min(c, 16) // streams_per_conn)),
                             progress, "null engine long")
    idle = await idle_connections(base_url, pid, idle_counts, progress)
    best = max(rps, key=lambda d: d["requests_per_s"])
    return {
        "requests_per_s_max": best["requests_per_s"],
        "requests_per_s_at_concurrency": best["concurrency"],
        "frames_per_s": frames["frames_per_s"],
        "frames_per_server_cpu_s": frames["frames_per_cpu_s"],
        "short": rps,
        "long": frames,
        "idle": idle,
        "fd_limit": raise_fd_limit(),
    }
