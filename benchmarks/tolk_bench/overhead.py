"""The server's own cost on first-token latency: tolk over WebSocket next to the same
engine called in-process, in one run, on one engine (so both see the same batch state).

    python -m tolk_bench.overhead --model DIR [--profile TOML] --requests 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from .workload import write_json_report


def pct(values: list[float], q: float) -> float:
    """Percentile by linear interpolation, as numpy's default (and `vllm bench serve`)."""
    return float(np.percentile(values, q * 100)) if values else float("nan")


async def measure(model: str, profile_arg: str | None, requests: int, max_tokens: int,
                  levels: list[int]) -> dict[str, Any]:
    import uvicorn

    from tolk_server.adapters.vllm import VllmEngine
    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings
    from tolk_server.engine.interface import GenerationParams
    from tolk_server.models.profiles import render, resolve_profile

    settings = Settings(enforce_eager=True, kv_cache_gib=2, max_num_seqs=64)
    profile = resolve_profile(model, profile_arg)
    engine = VllmEngine(settings, model)
    await engine.start()
    app = create_app(settings, engine=engine, profile=profile)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           ws_per_message_deflate=False))
    serve = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/v1/stream"
    texts = [f"The meeting will begin shortly, item {i}." for i in range(requests)]
    params = GenerationParams(max_tokens=max_tokens)

    async def raw(text: str) -> float:
        t0 = time.perf_counter()
        prompt = render(profile, text, "en", "fi")
        async for d in engine.generate(prompt, params, uuid.uuid4().hex):
            if d.text:
                ttft = (time.perf_counter() - t0) * 1000
                break
        return ttft

    async def over_ws(ws: Any, text: str, rid: str, waiters: dict[str, Any]) -> float:
        fut = asyncio.get_running_loop().create_future()
        waiters[rid] = fut
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "translate", "id": rid, "text": text, "source": "en",
                                  "target": "fi", "max_tokens": max_tokens, "split": False}))
        t_first: float = await fut
        return (t_first - t0) * 1000

    out: dict[str, Any] = {"model": model, "requests": requests, "max_tokens": max_tokens}
    async with connect(url, compression=None, max_size=2**22) as ws:
        await ws.recv()
        waiters: dict[str, Any] = {}

        async def reader() -> None:
            async for msg in ws:
                f = json.loads(msg)
                fut = waiters.get(f.get("id", ""))
                if fut is not None and not fut.done() and f["type"] in ("token", "error"):
                    fut.set_result(time.perf_counter())

        rd = asyncio.create_task(reader())

        async def run_level(c: int, kind: str) -> list[float]:
            sem = asyncio.Semaphore(c)
            results: list[float] = []

            async def one(i: int, text: str) -> None:
                async with sem:
                    if kind == "engine":
                        results.append(await raw(text))
                    else:
                        rid = f"{kind}{c}-{i}-{time.time()}"
                        results.append(await over_ws(ws, text, rid, waiters))

            await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
            return results

        for text in texts[:4]:  # warm-up
            await raw(text)
        for c in levels:
            for kind in ("engine", "websocket", "engine", "websocket"):  # interleaved, twice
                results = await run_level(c, kind)
                key = f"c{c}_{kind}"
                out.setdefault(key, []).extend(results)
        rd.cancel()
    summary: dict[str, Any] = {}
    for c in levels:
        e, w = out.pop(f"c{c}_engine"), out.pop(f"c{c}_websocket")
        summary[f"concurrency_{c}"] = {
            "engine_ttft_ms_p50": round(pct(e, 0.5), 2),
            "engine_ttft_ms_p95": round(pct(e, 0.95), 2),
            "ws_ttft_ms_p50": round(pct(w, 0.5), 2), "ws_ttft_ms_p95": round(pct(w, 0.95), 2),
            "p50_delta_ms": round(pct(w, 0.5) - pct(e, 0.5), 2),
            "p50_ratio": round(pct(w, 0.5) / pct(e, 0.5), 3),
            "samples": len(e),
        }
    out["results"] = summary
    server.should_exit = True
    await serve
    await engine.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-overhead", description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--profile")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--out")
    ns = ap.parse_args(argv)
    levels = [int(x) for x in ns.levels.split(",")]
    report = asyncio.run(measure(ns.model, ns.profile, ns.requests, ns.max_tokens, levels))
    write_json_report(report, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
