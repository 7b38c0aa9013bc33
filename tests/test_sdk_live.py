"""The Python SDK against live servers over real sockets (uvicorn on loopback).

Most tests use the engine double (`fake_server`, or an app of their own when they need to
look inside it); two end-to-end checks use the real vLLM engine (`tiny_server`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

import tolk
from conftest import TINY_PROFILE
from support.live_server import free_port, serve_in_thread
from tolk import AsyncClient, Client, Reconnect, TranslationEventHandler
from tolk_server.adapters.echo import EchoEngine, echo_translation
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings

FAST = Reconnect(max_attempts=3, backoff=0.01, max_backoff=0.05, jitter=0.0)


def rev(text: str) -> str:
    """What the engine double makes of `text` (into fi) under the tiny profile."""
    return echo_translation(f"<2fi>{text}<sep>")


def ws(url: str) -> str:
    return "ws://" + url.removeprefix("http://")


def wait_for(cond: Any, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@contextmanager
def serve_on(app: Any, port: int) -> Iterator[str]:
    """Like `serve_in_thread`, on a port of the caller's choosing (to restart a server)."""
    cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                         ws_per_message_deflate=False)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 30)
    assert server.started
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[tuple[str, EchoEngine]]:
    """A live server whose engine double we can inspect (aborted requests)."""
    engine = EchoEngine(token_delay_s=0.02)
    app = create_app(Settings(engine="fake", cache_entries=0), engine=engine,
                     profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        yield ws(url), engine


# -- the engine double, shared server ------------------------------------------------------------


def test_stream_equals_complete_translation(fake_server: str) -> None:
    rec: list[tuple[str, int]] = []

    class Handler(TranslationEventHandler):
        def on_token(self, token: str, index: int) -> None:
            rec.append((token, index))

    with Client(ws(fake_server), timeout=10) as client:
        stream = client.translate_stream(text="Welcome to the European Parliament.",
                                         target="fi", source="en", handler=Handler())
        tokens = list(stream)
        result = client.translate(text="Welcome to the European Parliament.", target="fi",
                                  source="en")
        assert client.server_info is not None and client.server_info["languages"] == ["en", "fi"]
    assert len(tokens) > 3
    assert stream.result is not None and "".join(tokens) == stream.result.translation
    assert result.translation == stream.result.translation
    assert "Parliament." in result.translation  # the engine double reverses the words
    assert [i for _, i in rec] == list(range(len(tokens)))
    assert result.latency_ms >= 0 and result.tokens > 0


def test_http_url_is_accepted(fake_server: str) -> None:
    with Client(fake_server, timeout=10) as client:
        assert client.translate(text="hello there", target="fi").translation


async def test_async_many_concurrent_requests_on_one_socket(fake_server: str) -> None:
    async with asyncio.timeout(20):
        async with AsyncClient(ws(fake_server), timeout=15) as client:
            results = await asyncio.gather(*(
                client.translate(text=f"marker{i} is number {i}.", target="fi", source="en")
                for i in range(40)))
            streamed = [t async for t in client.translate_stream(text="marker7 is number 7.",
                                                                 target="fi", source="en")]
            conns = [c for c in client._connections if c.opened]
    for i, r in enumerate(results):
        assert f"marker{i}" in r.translation
    assert "".join(streamed) == results[7].translation
    assert len(conns) == 1 and conns[0].opened == 1


def test_server_errors_are_typed(fake_server: str) -> None:
    with Client(ws(fake_server), timeout=10) as client:
        with pytest.raises(tolk.UnsupportedLanguageError) as info:
            client.translate(text="hello", target="sv")
        assert info.value.code == "unsupported_language" and info.value.request_id
        with pytest.raises(tolk.RequestTooLargeError):
            client.translate(text="word " * 2000, target="fi")
        # The connection is still usable after errors.
        assert client.translate(text="still here", target="fi").translation


def test_threads_share_one_client(fake_server: str) -> None:
    out: dict[int, str] = {}
    errors: list[BaseException] = []
    with Client(ws(fake_server), timeout=10, pool_size=2) as client:
        def work(n: int) -> None:
            try:
                out[n] = client.translate(text=f"thread{n} says hello", target="fi").translation
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(15)
    assert not errors
    assert all(f"thread{n}" in out[n] for n in range(6))


# -- cancel and timeouts reach the engine ------------------------------------------------------------


def test_early_exit_cancels_on_server(slow_server: tuple[str, EchoEngine]) -> None:
    url, engine = slow_server
    before = len(engine.aborted)
    with Client(url, timeout=10) as client:
        for _token in client.translate_stream(text="a long text " * 30, target="fi"):
            break
        wait_for(lambda: len(engine.aborted) > before)
        wait_for(lambda: engine.running() == 0)
        # A timed-out request is cancelled on the server too.
        with pytest.raises(tolk.RequestTimeout):
            client.translate(text="another long text " * 30, target="fi", timeout=0.2)
        wait_for(lambda: len(engine.aborted) > before + 1)
        wait_for(lambda: engine.running() == 0)


async def test_async_task_cancel_cancels_on_server(slow_server: tuple[str, EchoEngine]) -> None:
    url, engine = slow_server
    before = len(engine.aborted)
    async with asyncio.timeout(10):
        async with AsyncClient(url) as client:
            task = asyncio.create_task(client.translate(text="cancel me " * 30, target="fi"))
            while engine.running() == 0:  # noqa: ASYNC110 - the engine runs in another thread
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while len(engine.aborted) == before or engine.running():  # noqa: ASYNC110
                await asyncio.sleep(0.01)


# -- authentication ---------------------------------------------------------------------------------


def test_api_key_auth() -> None:
    app = create_app(Settings(engine="fake", api_keys=["k"], auth_timeout_s=0.5),
                     engine=EchoEngine(), profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        with Client(url, api_key="k", timeout=10) as client:
            assert client.translate(text="good day", target="fi").translation == rev("good day")
            assert client.server_info is not None and client.server_info["auth"] is True
        t0 = time.monotonic()
        with Client(url, api_key="wrong", timeout=10, reconnect=FAST) as client:
            with pytest.raises(tolk.AuthenticationError) as info:
                client.translate(text="good day", target="fi")
        assert info.value.code == "unauthorized"
        with Client(url, api_key=None, timeout=10, reconnect=FAST) as client:
            with pytest.raises(tolk.AuthenticationError):  # the server's auth timeout
                client.translate(text="good day", target="fi")
        assert time.monotonic() - t0 < 5


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(engine="fake", api_keys=["env-key"]), engine=EchoEngine(),
                     profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        monkeypatch.setenv("TOLK_URL", url)
        monkeypatch.setenv("TOLK_API_KEY", "env-key")
        with Client(timeout=10) as client:
            assert client.translate(text="a b", target="fi").translation == rev("a b")


# -- connection loss -----------------------------------------------------------------------------------


def test_server_going_away_fails_in_flight_and_reconnects_after_restart() -> None:
    port = free_port()
    errors: list[BaseException] = []
    client = Client(f"ws://127.0.0.1:{port}", timeout=15, reconnect=FAST)
    try:
        engine = EchoEngine(token_delay_s=0.05)
        app = create_app(Settings(engine="fake"), engine=engine, profile=TINY_PROFILE)
        with serve_on(app, port):
            assert client.translate(text="first one", target="fi").translation == rev("first one")

            def work() -> None:
                try:
                    client.translate(text="a slow request " * 20, target="fi")
                except BaseException as exc:
                    errors.append(exc)

            th = threading.Thread(target=work)
            th.start()
            wait_for(lambda: engine.running() == 1)
        th.join(10)
        assert len(errors) == 1 and isinstance(errors[0], tolk.ConnectionError), errors
        # Nobody listens now: bounded attempts, then a typed error.
        t0 = time.monotonic()
        with pytest.raises(tolk.ConnectionError, match="3 attempts"):
            client.translate(text="nobody home", target="fi")
        assert time.monotonic() - t0 < 5
        # The server is back on the same port: the next request reconnects.
        app2 = create_app(Settings(engine="fake"), engine=EchoEngine(), profile=TINY_PROFILE)
        with serve_on(app2, port):
            assert client.translate(text="back again", target="fi").translation == rev("back again")
            assert client._async._connections[0].opened == 2
    finally:
        client.close()


# -- the real engine -------------------------------------------------------------------------------------


def _cancelled_count(ws_url: str) -> float:
    url = "http://" + ws_url.removeprefix("ws://") + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(r'^tolk_requests_total\{outcome="cancelled"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.engine
async def test_real_engine_stream_equals_complete(tiny_server: str) -> None:
    async with asyncio.timeout(120):
        async with AsyncClient(tiny_server, timeout=60) as client:
            stream = client.translate_stream(text="Hello world, this is a test.", target="fi",
                                             source="en", max_tokens=24)
            tokens = [t async for t in stream]
        assert stream.result is not None
        assert "".join(tokens) == stream.result.translation
        assert stream.result.tokens >= 1 and stream.result.finish_reason in ("stop", "length")

        def sync_translate() -> tolk.TranslationResult:
            with Client(tiny_server, timeout=60) as c:
                return c.translate(text="Good morning.", target="fi", source="en",
                                   max_tokens=16)

        result = await asyncio.to_thread(sync_translate)
        assert result.tokens >= 1 and result.latency_ms > 0


@pytest.mark.engine
async def test_real_engine_early_exit_cancels(tiny_server: str) -> None:
    async with asyncio.timeout(120):
        before = await asyncio.to_thread(_cancelled_count, tiny_server)
        async with AsyncClient(tiny_server, timeout=60) as client:
            async for _token in client.translate_stream(text="Tell me a long story about "
                                                        "the sea and the ships.", target="fi",
                                                        source="en", max_tokens=400):
                break
            # The server counts the cancel; the connection keeps working.
            for _ in range(200):
                if await asyncio.to_thread(_cancelled_count, tiny_server) > before:
                    break
                await asyncio.sleep(0.05)
            assert await asyncio.to_thread(_cancelled_count, tiny_server) == before + 1
            result = await client.translate(text="Yes.", target="fi", source="en",
                                            max_tokens=8)
            assert result.tokens >= 1
