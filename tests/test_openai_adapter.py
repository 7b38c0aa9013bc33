"""The OpenAI-compatible adapter against a fake vLLM server on loopback (fast; the real
`vllm serve` is in test_engine_openai.py): the request it sends, the streamed frames it
parses, errors, abort by closing the stream, health, the API key kept out of every log."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.fake_openai import FakeOpenAI, fake_openai
from support.live_server import free_port, serve_in_thread
from tolk_models import DEMO_DIR
from tolk_server.adapters.openai import OpenAIEngine, base_url, openai_profile
from tolk_server.app.wiring import create_app
from tolk_server.cli.commands import _settings, build_parser
from tolk_server.config import Settings, load_settings
from tolk_server.engine.interface import (
    Delta,
    EngineError,
    GenerationParams,
    RequestRejected,
)
from tolk_server.models.profiles import render
from tolk_server.models.routing import ModelSpec

KEY = "sk-very-secret-4f1c"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as f:
        yield f


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def started(url: str, **kw: Any) -> OpenAIEngine:
    engine = OpenAIEngine(url, health_period_s=0.05, **kw)
    await engine.start()
    return engine


async def deltas(engine: OpenAIEngine, prompt: str, **params: Any) -> list[Delta]:
    async with aclosing(engine.generate(prompt, GenerationParams(**params), "r1")) as gen:
        return [d async for d in gen]


async def test_streams_the_raw_prompt_and_counts_token_ids(fake: FakeOpenAI) -> None:
    engine = await started(fake.openai_url)
    try:
        await until(lambda: engine.ready)
        prompt = "<2fi>Good morning.<sep>Hyvää"  # a rendered prompt, forced prefix and all
        out = await deltas(engine, prompt, max_tokens=40, stop=("\n",), priority=1)
        assert [(d.text, d.tokens, d.finish_reason) for d in out] == [
            ("Hel", 1, None), ("lo", 2, None), (" world", 1, "stop")]
        body = fake.bodies[-1]
        assert body["prompt"] == prompt and body["model"] == "fake" and body["stream"] is True
        assert (body["max_tokens"], body["temperature"], body["stop"]) == (40, 0.0, ["\n"])
        assert body["return_token_ids"] is True
        assert "priority" not in body  # only where the server schedules by priority
        assert "authorization" not in fake.headers[-1]
        assert engine.running() == 0
    finally:
        await engine.shutdown()

    engine = await started(fake.openai_url, priority=True)
    try:
        await until(lambda: engine.ready)
        await deltas(engine, "bulk", priority=1)
        assert fake.bodies[-1]["priority"] == 1
    finally:
        await engine.shutdown()


async def test_errors_refuse_the_request_or_fail_the_engine(fake: FakeOpenAI) -> None:
    engine = await started(fake.openai_url)
    try:
        await until(lambda: engine.ready)
        with pytest.raises(RequestRejected) as rej:
            await deltas(engine, "too-long")
        assert rej.value.code == "too_large" and "maximum context length" in str(rej.value)
        with pytest.raises(RequestRejected) as rej:
            await deltas(engine, "bad")
        assert rej.value.code == "bad_request" and "non-negative" in str(rej.value)
        with pytest.raises(EngineError, match="500: kaput"):
            await deltas(engine, "boom")
        got: list[Delta] = []
        with pytest.raises(EngineError, match="engine died"):
            async for d in engine.generate("midway", GenerationParams(), "r2"):
                got.append(d)
        assert [d.text for d in got] == ["Hel"]  # the error came after the first token
        with pytest.raises(EngineError, match="ended before"):
            await deltas(engine, "cut")
        assert engine.running() == 0
    finally:
        await engine.shutdown()


async def test_closing_the_stream_aborts_the_request_on_the_server(fake: FakeOpenAI) -> None:
    engine = await started(fake.openai_url)
    try:
        await until(lambda: engine.ready)
        gen = engine.generate("slow 1", GenerationParams(max_tokens=1000), "r3")
        first = await gen.__anext__()
        assert first.text == "x" and engine.running() == 1 and fake.streaming == 1
        t0 = time.monotonic()
        await gen.aclose()  # what a cancel, a disconnect or a superseded hypothesis does
        await until(lambda: "slow 1" in fake.aborted and fake.streaming == 0)
        assert time.monotonic() - t0 < 2 and engine.running() == 0
        # the task of a cancelled request: its generator is closed by the cancellation
        task = asyncio.create_task(deltas(engine, "slow 2"))
        await until(lambda: fake.streaming == 1)
        task.cancel()
        await until(lambda: "slow 2" in fake.aborted and fake.streaming == 0)
    finally:
        await engine.shutdown()


async def test_quality_decodings(fake: FakeOpenAI) -> None:
    engine = await started(fake.openai_url, priority=True)
    try:
        await until(lambda: engine.ready)
        (beam,) = await deltas(engine, "beam me", decoding="beam", beam_width=3,
                               length_penalty=0.8, priority=1)
        body = fake.bodies[-1]
        assert body["use_beam_search"] is True and body["n"] == 3 and body["stream"] is False
        assert body["length_penalty"] == 0.8 and "priority" not in body
        assert (beam.text, beam.tokens) == ("cand0", 1)  # the best beam: index 0
        with pytest.raises(RequestRejected, match="repetition penalty"):
            await deltas(engine, "beam me", decoding="beam", repetition_penalty=1.05)

        n = len(fake.bodies)
        (pick,) = await deltas(engine, "mbr-majority", decoding="mbr", candidates=5,
                               sample_temperature=0.9, seed=3)
        greedy, sampled = sorted(fake.bodies[n:], key=lambda b: b.get("n", 1))
        assert greedy.get("n", 1) == 1 and greedy["temperature"] == 0.0
        assert (sampled["n"], sampled["temperature"], sampled["seed"]) == (5, 0.9, 3)
        assert pick.text == "same"  # the candidate closest to all others
    finally:
        await engine.shutdown()


async def test_health_follows_the_server() -> None:
    with fake_openai() as fake:
        engine = await started(fake.openai_url)
        other = await started(fake.openai_url, served_model="not-there")
        try:
            await until(lambda: engine.ready)
            assert engine.info.name == "openai" and not engine.dead
            fake.down = True
            await until(lambda: not engine.ready)
            fake.down = False
            await until(lambda: engine.ready)
            await asyncio.sleep(0.2)
            assert not other.ready  # the server does not list the model it names
        finally:
            await engine.shutdown()
            await other.shutdown()

    nobody = f"openai+http://127.0.0.1:{free_port()}/v1"
    engine = await started(nobody, served_model="m")
    try:
        await asyncio.sleep(0.1)
        assert not engine.ready
        t0 = time.monotonic()
        with pytest.raises(EngineError, match="ClientConnectorError"):
            await deltas(engine, "hello")
        assert time.monotonic() - t0 < 2
    finally:
        await engine.shutdown()


async def test_the_api_key_goes_in_the_header_and_never_in_a_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included
    with fake_openai(key=KEY) as fake:
        wrong = await started(fake.openai_url, api_key="sk-wrong", served_model="fake")
        engine = await started(fake.openai_url, api_key=KEY)
        try:
            await until(lambda: engine.ready)
            await asyncio.sleep(0.1)
            assert not wrong.ready  # 401 on /v1/models
            with pytest.raises(EngineError, match="401") as exc:
                await deltas(wrong, "hello")
            await deltas(engine, "hello")
            with pytest.raises(RequestRejected) as rej:
                await deltas(engine, "bad")
            assert fake.headers[-1]["authorization"] == f"Bearer {KEY}"
            shown = [repr(engine.info), str(exc.value), str(rej.value), repr(engine.__dict__)]
            fake.down = True
            await until(lambda: not engine.ready)
        finally:
            await engine.shutdown()
            await wrong.shutdown()
    assert caplog.records and any("openai" in r.name for r in caplog.records)
    text = caplog.text + "\n".join(shown).replace(f"'_api_key': '{KEY}'", "")
    assert KEY not in text and "sk-wrong" not in caplog.text
    with pytest.raises(ValueError, match="api_key_env"):
        base_url(f"openai+http://user:{KEY}@127.0.0.1:1/v1")


async def test_sse_frames_split_anywhere(fake: FakeOpenAI) -> None:
    """Events written one byte at a time, CRLF line ends, a comment, a multi-line event,
    a usage chunk (no choices), nothing after [DONE]."""
    engine = await started(fake.openai_url)
    try:
        await until(lambda: engine.ready)
        out = await deltas(engine, "bytewise")
        assert [(d.text, d.tokens, d.finish_reason) for d in out] == [
            ("a", 1, None), ("b", 2, None), ("", 1, "stop")]
    finally:
        await engine.shutdown()


def test_model_specs_and_profiles() -> None:
    ns = build_parser().parse_args(["serve", "--model", "big=openai+http://10.0.0.5:8000/v1",
                                    "--profile", "demo"])
    (spec,) = _settings(ns).models
    assert spec.openai and spec.url == "openai+http://10.0.0.5:8000/v1" and not spec.priority
    assert openai_profile(spec, "demo").name == "demo"
    with pytest.raises(ValueError, match="needs its prompt profile"):
        openai_profile(spec, None)
    # a served model that is a path with its own profile
    served = ModelSpec(name="d", url="openai+https://h/v1", served_model=str(DEMO_DIR))
    assert openai_profile(served, None).name == "tolk-demo"
    assert not ModelSpec(name="peer", url="ws://10.0.0.2:8000").openai


def test_the_config_example_loads() -> None:
    example = Path(__file__).parents[1] / "deploy" / "tolk-vllm-serve.toml"
    tower, backup = load_settings(str(example)).models
    assert tower.openai and tower.priority and tower.served_model == "tower"
    assert tower.api_key_env == "VLLM_API_KEY" and tower.path and backup.url is None
    assert openai_profile(tower, None).name == "tower-plus"
    engine = OpenAIEngine.from_spec(tower)
    assert engine.tokenizer == tower.path and engine.base_url == "http://10.0.0.5:8000/v1"


def test_a_chat_profile_renders_with_the_local_tokenizer(tmp_path: Path) -> None:
    """The chat template comes from the tokenizer at `path` (here: the demo model's, with a
    template added), as the in-process engine's does."""
    for f in DEMO_DIR.glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["chat_template"] = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                            "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    spec = ModelSpec(name="chat", url="openai+http://127.0.0.1:1/v1", path=str(tmp_path),
                     profile="tower-plus")
    engine = OpenAIEngine.from_spec(spec)
    prompt = render(openai_profile(spec, None), "Hello.", "en", "fi", engine.chat_template)
    assert prompt == ("[user] Translate the following English source text to Finnish:\n"
                      "English: Hello.\nFinnish: \n[assistant] ")
    with pytest.raises(ValueError, match="needs its tokenizer"):
        OpenAIEngine(spec.url or "").chat_template([], {})


def test_ready_and_fallback_through_the_server(fake: FakeOpenAI) -> None:
    """tolk in front of the fake server, an echo peer as the fallback: /ready follows the
    server, a request goes to the peer while it is down."""
    settings = Settings(engine="echo", cache_entries=0, models=[
        ModelSpec(name="main", url=fake.openai_url, profile="demo", served_model="fake"),
        ModelSpec(name="backup", path=str(DEMO_DIR))])
    app = create_app(settings)
    main = app.state.tolk.models.models["main"].engine
    main.health_period_s = 0.05
    body = {"text": "Good morning.", "source": "en", "target": "fi", "stream": False}

    def ready() -> dict[str, str]:
        doc = httpx.get(base + "/ready").json()
        return {m["name"]: m["state"] for m in doc["models"]}

    def wait(states: dict[str, str]) -> None:
        deadline = time.monotonic() + 10
        while ready() != states:
            assert time.monotonic() < deadline, ready()
            time.sleep(0.02)

    with serve_in_thread(app) as base:
        wait({"main": "connected", "backup": "ready"})
        done = httpx.post(base + "/v1/translate", json=body, timeout=10).json()
        assert done["model"] == "main" and done["translation"] == "Hello world", done
        assert fake.bodies[-1]["prompt"] == "<2fi>Good morning.<sep>"  # the demo profile's
        fake.down = True
        try:
            wait({"main": "disconnected", "backup": "ready"})
            assert httpx.get(base + "/ready").json()["status"] == "degraded"
            done = httpx.post(base + "/v1/translate", json=body, timeout=10).json()
            assert done["model"] == "backup", done
            assert done["fallback"] == {"from": "main", "reason": "not_ready"}
        finally:
            fake.down = False
        wait({"main": "connected", "backup": "ready"})
