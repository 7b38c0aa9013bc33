"""Live requests against the REAL vLLM engine (the session's shared tiny engine)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from test_engine_vllm import collect, offline_greedy, open_ws

from conftest import TINY_PROFILE
from tolk_server.models.profiles import render

pytestmark = [pytest.mark.engine]


def update(rid: str, text: str, **kw: Any) -> str:
    return json.dumps({"type": "update", "id": rid, "text": text, "source": "en",
                       "target": "fi", **kw})


async def idle(engine: Any) -> None:
    for _ in range(200):
        if engine.running() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"engine still holds {engine.running()} requests")


async def test_superseded_hypothesis_is_aborted_in_the_engine(tiny_engine: Any,
                                                              tiny_server: str) -> None:
    await idle(tiny_engine)
    peak = 0
    async with await open_ws(tiny_server) as ws:
        await ws.send(update("S", "The meeting", max_tokens=900))
        assert json.loads(await ws.recv())["type"] == "start"
        for _ in range(500):  # the first hypothesis is generating
            if tiny_engine.running() == 1:
                break
            await asyncio.sleep(0.005)
        assert tiny_engine.running() == 1
        for text in ("The meeting will", "The meeting will begin"):
            await ws.send(update("S", text, max_tokens=900))
            for _ in range(20):
                peak = max(peak, tiny_engine.running())
                await asyncio.sleep(0.005)
        assert peak == 1, "a superseded generation was still running"
        await ws.send(json.dumps({"type": "cancel", "id": "S"}))
        frames = (await collect(ws, {"S"}))["S"]
        assert frames[-1]["code"] == "cancelled"
    await idle(tiny_engine)


async def test_stable_prefix_is_forced_on_the_engine(tiny_engine: Any, tiny_server: str) -> None:
    text = "The meeting will begin shortly."
    async with await open_ws(tiny_server) as ws:
        # two identical hypotheses agree on all of their words: all but the last become stable
        stable = ""
        for pad in (" ", "  "):  # two texts whose prompts are the same (stripped)
            await ws.send(update("P", text + pad, max_tokens=8))
            while (msg := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] != "partial":
                pass
            stable = msg["stable"]
        assert stable and msg["tentative"]
        await ws.send(update("P", text + " Yes.", final=True, max_tokens=8))
        frames = (await collect(ws, {"P"}))["P"]
    done = frames[-1]
    assert done["type"] == "complete", done
    assert done["translation"].startswith(stable)
    # the continuation is what the engine makes of the prompt followed by the stable text
    prompt = render(TINY_PROFILE, text + " Yes.", "en", "fi") + stable
    assert done["translation"] == stable + await offline_greedy(tiny_engine, prompt, 8, "off-p")
    assert done["live"]["resets"] == 0
