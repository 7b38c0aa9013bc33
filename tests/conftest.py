"""Shared fixtures. The real vLLM engine is started once per session and shared."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support.live_server import free_port
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.models.profiles import load_profile

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

# The tiny test model's profile (tests/support/tiny_model.py), shared with the bench runner.
TINY_PROFILE_TOML = Path(__file__).parent.parent / "benchmarks" / "profiles" / "tiny.toml"
TINY_PROFILE = load_profile(TINY_PROFILE_TOML)


@pytest.fixture(scope="session")
def phrases() -> Any:
    """Two espeak-ng phrases with a pause between them (16 kHz mono s16 samples)."""
    from tolk_bench import speech

    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    pcm, _ = speech.phrases(["The meeting will begin shortly.", "Thank you, Madam President."],
                            pause_s=0.7)
    return pcm


def wait_ready(client: TestClient, timeout_s: float = 20) -> None:
    """The engine (and language detector) load in the background; wait for /ready."""
    deadline = time.monotonic() + timeout_s
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "app not ready"
        time.sleep(0.01)


@pytest.fixture
def fake_engine() -> EchoEngine:
    return EchoEngine()


@pytest.fixture
def make_client(fake_engine: EchoEngine) -> Iterator[object]:
    """Factory: a TestClient over an app with the fake engine and the given settings."""
    clients: list[TestClient] = []

    def make(engine: EchoEngine | None = None, **settings: object) -> TestClient:
        app = create_app(Settings(engine="fake", **settings), engine=engine or fake_engine,
                         profile=TINY_PROFILE)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[str]:
    """A live server (real uvicorn, real sockets) over the engine double, in its own thread.

    Yields the base URL, e.g. `http://127.0.0.1:PORT` (WebSocket: `ws://…/v1/stream`).
    Usable from sync and async tests alike.
    """
    from support.live_server import serve_in_thread

    app = create_app(Settings(engine="fake"), engine=EchoEngine(token_delay_s=0.002),
                     profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def engine_settings() -> Settings:
    return Settings(
        enforce_eager=True,
        kv_cache_gib=1,
        max_num_seqs=32,
        max_model_len=1024,
        dtype="float32",
        live_mask_words=0,  # live partials show the whole tentative text (no mask, no cap)
        live_tentative_words=0,
    )


@pytest.fixture(scope="session")
async def tiny_engine(tiny_model_dir: Path, engine_settings: Settings) -> AsyncIterator[object]:
    """One real vLLM engine (vllm-cpu) over the tiny model, for the whole session."""
    from tolk_server.adapters.vllm import VllmEngine

    engine = VllmEngine(engine_settings, str(tiny_model_dir))
    await engine.start()
    yield engine
    await engine.shutdown()


@pytest.fixture(scope="session")
async def tiny_server(tiny_engine: object, engine_settings: Settings) -> AsyncIterator[str]:
    """A live uvicorn server on loopback over the shared tiny engine; yields its ws:// URL."""
    import uvicorn

    app = create_app(engine_settings, engine=tiny_engine, profile=TINY_PROFILE)  # type: ignore[arg-type]
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    yield f"ws://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real redis-server for the session (tests/support/redis_server.py); tests that use
    it flush it first."""
    from support.redis_server import running_redis

    with running_redis() as server:
        yield server
