"""The cost of one quota reservation, per store backend (memory, sqlite, redis).

    python -m tolk_bench.stores [--n 5000] [--redis redis://127.0.0.1:6379/0]

Without `--redis`, a `redis-server` from PATH is started on a free loopback port (append-only
file, `appendfsync everysec`, as a production Redis would be). Each backend runs `n`
reservations (`UsageBackend.reserve`: streams, requests per minute and characters per day
checked and counted in one step) over 256 keys, each followed by the release of its stream
lease, from one client, one after another: latency, not throughput under contention. Also
this process's CPU time per reservation and release (what the server itself spends, whatever
the scheduling delays of a busy host).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tolk_server.api import KeyLimits, Store, StoreError, open_store

LIMITS = KeyLimits(requests_per_minute=1_000_000, chars_per_day=10**12, concurrent_streams=256)


def measure(store: Store, n: int) -> dict[str, Any]:
    reserve: list[float] = []
    release: list[float] = []
    cpu0 = time.process_time()
    for i in range(n):
        kid, lease = f"bench-{i % 256}", f"lease-{i}"
        t0 = time.perf_counter()
        refused = store.usage.reserve(kid, LIMITS, 40, lease, time.time())
        t1 = time.perf_counter()
        store.usage.release(kid, lease)
        release.append(time.perf_counter() - t1)
        reserve.append(t1 - t0)
        assert refused is None, refused
    cpu = time.process_time() - cpu0  # this process's CPU: what tolk itself spends
    q = statistics.quantiles(reserve, n=100)
    return {"backend": store.kind, "n": n,
            "reservations_per_s": round(n / sum(reserve)),
            "with_release_per_s": round(n / (sum(reserve) + sum(release))),
            "reserve_p50_us": round(q[49] * 1e6, 1), "reserve_p99_us": round(q[98] * 1e6, 1),
            "client_cpu_us_per_reserve_and_release": round(cpu / n * 1e6, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_redis(folder: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: pass --redis URL")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                             str(folder), "--save", "", "--appendonly", "yes",
                             "--appendfsync", "everysec"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        store = open_store(url, key_file=folder / "k", glossary_file=folder / "g")
        deadline = time.monotonic() + 10
        while True:
            try:
                store.ping()
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        store.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--redis", help="an existing Redis (default: start redis-server here)")
    ns = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tolk-store-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            redis_url = ns.redis or stack.enter_context(local_redis(folder))
            results = []
            for url in ("memory", f"sqlite:///{folder / 'state.db'}", redis_url):
                store = open_store(url, key_file=folder / "keys.json",
                                   glossary_file=folder / "glossaries.json")
                measure(store, min(500, ns.n))  # warm-up (scripts loaded, pages cached)
                results.append(measure(store, ns.n))
                store.close()
        print(json.dumps({"cpu": os.cpu_count(), "results": results}, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
