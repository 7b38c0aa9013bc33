"""The server's own cost on first-token latency: tolk over WebSocket next to the same
engine called in-process, in one run, on one engine (so both see the same batch state). The
engine, its prompts and the app come from the server's public interface, `tolk_server.api`.

    python -m tolk_bench.overhead --model DIR [--profile TOML] --requests 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from .workload import write_json_report


def pct(values: list[float], q: float) -> float:
    """Percentile by linear interpolation, as numpy's default (and `vllm bench serve`)."""
    return float(np.percentile(values, q * 100)) if values else float("nan")


class InProcess:
    """tolk's engine, started in this process, and the app over it on a free loopback port."""

    def __init__(self, model: str, profile_arg: str | None, engine: str = "vllm") -> None:
        from tolk_server.api import Settings, open_engine, prompt_renderer, resolve_profile

        self.settings = Settings(model=model, profile=profile_arg, engine=engine,
                                 enforce_eager=True, kv_cache_gib=2, max_num_seqs=64)
        self.profile = resolve_profile(model, profile_arg)
        self.engine = open_engine(self.settings)
        self.render = prompt_renderer(self.settings, self.engine)
        self.url = ""

    async def __aenter__(self) -> InProcess:
        import uvicorn

        from tolk_server.api import create_app

        await self.engine.start()
        app = create_app(self.settings, engine=self.engine, profile=self.profile)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning",
                                                    ws_per_message_deflate=False))
        self.serving = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await asyncio.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/stream"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.serving
        await self.engine.shutdown()

    async def engine_ttft(self, text: str, max_tokens: int) -> float:
        """The engine called directly: ms to its first text."""
        from tolk_server.api import GenerationParams

        t0 = time.perf_counter()
        prompt = self.render(text, "en", "fi")
        ttft = float("nan")
        async for d in self.engine.generate(prompt, GenerationParams(max_tokens=max_tokens),
                                            uuid.uuid4().hex):
            if d.text:
                ttft = (time.perf_counter() - t0) * 1000
                break
        return ttft


class WsFirstToken:
    """One WebSocket to tolk; `ttft(text)`: ms from sending a request to its first frame."""

    def __init__(self, ws: Any, max_tokens: int) -> None:
        self.ws = ws
        self.max_tokens = max_tokens
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            f = json.loads(msg)
            fut = self.waiters.get(f.get("id", ""))
            if fut is not None and not fut.done() and f["type"] in ("token", "error"):
                fut.set_result(time.perf_counter())

    async def ttft(self, text: str, rid: str) -> float:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        t0 = time.perf_counter()
        await self.ws.send(json.dumps({"type": "translate", "id": rid, "text": text,
                                       "source": "en", "target": "fi",
                                       "max_tokens": self.max_tokens, "split": False}))
        return (await fut - t0) * 1000


async def _level(c: int, texts: list[str], one: Callable[[int, str], Awaitable[float]]
                 ) -> list[float]:
    """Every text through `one`, `c` at a time."""
    sem = asyncio.Semaphore(c)
    results: list[float] = []

    async def bounded(i: int, text: str) -> None:
        async with sem:
            results.append(await one(i, text))

    await asyncio.gather(*(bounded(i, t) for i, t in enumerate(texts)))
    return results


def _summary(e: list[float], w: list[float]) -> dict[str, Any]:
    return {
        "engine_ttft_ms_p50": round(pct(e, 0.5), 2),
        "engine_ttft_ms_p95": round(pct(e, 0.95), 2),
        "ws_ttft_ms_p50": round(pct(w, 0.5), 2), "ws_ttft_ms_p95": round(pct(w, 0.95), 2),
        "p50_delta_ms": round(pct(w, 0.5) - pct(e, 0.5), 2),
        "p50_ratio": round(pct(w, 0.5) / pct(e, 0.5), 3),
        "samples": len(e),
    }


async def measure(model: str, profile_arg: str | None, requests: int, max_tokens: int,
                  levels: list[int], engine: str = "vllm") -> dict[str, Any]:
    texts = [f"The meeting will begin shortly, item {i}." for i in range(requests)]
    out: dict[str, Any] = {"model": model, "requests": requests, "max_tokens": max_tokens}
    samples: dict[str, list[float]] = {}
    async with InProcess(model, profile_arg, engine) as tolk, \
            connect(tolk.url, compression=None, max_size=2**22) as ws:
        await ws.recv()
        over_ws = WsFirstToken(ws, max_tokens)

        async def direct(i: int, text: str) -> float:
            return await tolk.engine_ttft(text, max_tokens)

        for text in texts[:4]:  # warm-up
            await tolk.engine_ttft(text, max_tokens)
        for c in levels:
            async def websocket(i: int, text: str, c: int = c) -> float:
                return await over_ws.ttft(text, f"websocket{c}-{i}-{time.time()}")

            for kind in ("engine", "websocket", "engine", "websocket"):  # interleaved, twice
                one = direct if kind == "engine" else websocket
                samples.setdefault(f"c{c}_{kind}", []).extend(await _level(c, texts, one))
        over_ws.reader.cancel()
    out["results"] = {f"concurrency_{c}": _summary(samples[f"c{c}_engine"],
                                                   samples[f"c{c}_websocket"]) for c in levels}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-overhead", description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--profile")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--engine", default="vllm", help="vllm, or echo (the engine double: a "
                    "check of the harness, not a measurement)")
    ap.add_argument("--out")
    ns = ap.parse_args(argv)
    levels = [int(x) for x in ns.levels.split(",")]
    report = asyncio.run(measure(ns.model, ns.profile, ns.requests, ns.max_tokens, levels,
                                 ns.engine))
    write_json_report(report, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
