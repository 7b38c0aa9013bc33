"""The Python SDK (`tolk`) against the in-memory mock transport: no sockets.

Multiplexing, cancel on early exit, timeouts, error mapping, reconnect with backoff,
heartbeats, handler callbacks, pool selection, the sync client's thread safety.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import tolk
from tolk import (
    AsyncClient,
    Client,
    Limits,
    MockServer,
    MockServerConnection,
    MockTransport,
    Reconnect,
    Timeout,
    TranslationEventHandler,
)
from tolk._config import stream_url
from tolk.protocol import ERROR_CODES

FAST = Reconnect(max_attempts=3, backoff=0.001, max_backoff=0.005, jitter=0.0)
READY = {"type": "ready", "protocol": 1, "model": "m", "languages": ["en", "fi"], "auth": False}
LIMIT_S = 10.0


def client(transport: MockTransport, **kw: Any) -> AsyncClient:
    kw.setdefault("reconnect", FAST)
    return AsyncClient("ws://mock", transport=transport, **kw)


async def bounded(aw: Awaitable[Any], limit: float = LIMIT_S) -> Any:
    async with asyncio.timeout(limit):
        return await aw


async def eventually(cond: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def sent(transport: MockTransport, kind: str) -> list[dict[str, Any]]:
    return [f for c in transport.connections for f in c.received if f.get("type") == kind]


class Recorder(TranslationEventHandler):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()

    def on_start(self, request_id: str) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("start", request_id))

    def on_token(self, token: str, index: int) -> None:
        self.events.append(("token", token, index))

    def on_complete(self, translation: str, latency_ms: float) -> None:
        self.events.append(("complete", translation, latency_ms))

    def on_error(self, error: tolk.TolkError) -> None:
        self.events.append(("error", error))


# -- the package -------------------------------------------------------------------------


def test_import_is_lazy_and_light() -> None:
    code = ("import sys, tolk; a = {'websockets', 'pydantic'} & set(sys.modules); "
            "tolk.Client; tolk.AsyncClient; tolk.TolkError; "
            "b = {'websockets', 'torch', 'vllm', 'fastapi', 'transformers'} & set(sys.modules); "
            "print(sorted(a), sorted(b))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"


def test_public_api() -> None:
    for name in tolk.__all__:
        assert getattr(tolk, name) is not None
    assert tolk.TolkConnectionError is tolk.ConnectionError
    assert tolk.ConnectionError is not ConnectionError  # shadows the builtin on purpose
    assert issubclass(tolk.RequestTimeout, TimeoutError)
    assert issubclass(tolk.RequestTimeout, tolk.TolkError)
    with pytest.raises(AttributeError):
        tolk.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("code", ERROR_CODES)
def test_every_error_code_has_its_exception(code: str) -> None:
    exc = tolk._exceptions.error_from_frame({"type": "error", "id": "r1", "code": code,
                                             "message": "m"})
    assert isinstance(exc, tolk.TranslationError) and type(exc) is not tolk.TranslationError
    assert exc.code == code and exc.request_id == "r1" and exc.message == "m"
    assert type(exc).default_code == code
    expected = {"unauthorized": tolk.AuthenticationError, "overloaded": tolk.OverloadedError,
                "cancelled": tolk.RequestCancelled, "too_large": tolk.RequestTooLargeError,
                "unsupported_language": tolk.UnsupportedLanguageError,
                "engine_error": tolk.EngineError}
    if code in expected:
        assert type(exc) is expected[code]


def test_unknown_error_code_is_a_translation_error() -> None:
    exc = tolk._exceptions.error_from_frame({"code": "new_code", "message": "m"})
    assert type(exc) is tolk.TranslationError and exc.code == "new_code"


@pytest.mark.parametrize(("given", "expected"), [
    ("ws://h:1", "ws://h:1/v1/stream"),
    ("http://h:1/", "ws://h:1/v1/stream"),
    ("https://h", "wss://h/v1/stream"),
    ("wss://h/v1/stream", "wss://h/v1/stream"),
    ("http://h/proxy/tolk", "ws://h/proxy/tolk/v1/stream"),
])
def test_stream_url(given: str, expected: str) -> None:
    assert stream_url(given) == expected


def test_url_and_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOLK_URL", raising=False)
    monkeypatch.delenv("TOLK_API_KEY", raising=False)
    assert AsyncClient().url == "ws://127.0.0.1:8000/v1/stream"
    monkeypatch.setenv("TOLK_URL", "http://example:9/")
    monkeypatch.setenv("TOLK_API_KEY", "sekret")
    c = AsyncClient()
    assert c.url == "ws://example:9/v1/stream"
    assert c._settings.headers["Authorization"] == "Bearer sekret"
    with pytest.raises(ValueError):
        AsyncClient("ftp://example")


def test_backoff_grows_exponentially_and_is_capped() -> None:
    r = Reconnect(backoff=0.1, multiplier=2, max_backoff=0.5, jitter=0)
    assert [r.delay(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    jittered = Reconnect(backoff=0.1, jitter=0.5)
    assert all(0.1 <= jittered.delay(1) <= 0.15 for _ in range(50))
    with pytest.raises(ValueError):
        Reconnect(max_attempts=0)


# -- requests ------------------------------------------------------------------------------


async def test_stream_and_translate() -> None:
    t = MockTransport()
    async with client(t) as c:
        stream = c.translate_stream("one two three", target="fi", source="en")
        tokens = await bounded(_collect(stream))
        assert tokens == ["three", " two", " one"]
        assert stream.result is not None and stream.result.translation == "".join(tokens)
        assert stream.request_id == f"mock-{stream.id}"
        result = await bounded(c.translate("good morning", target="fi"))
    assert result.translation == "morning good" and str(result) == result.translation
    assert result.tokens == 2 and result.source == "en" and result.target == "fi"
    assert result.latency_ms >= 0 and result.first_token_ms is not None
    frames = sent(t, "translate")
    assert frames[0]["stream"] is True and frames[0]["source"] == "en"
    assert frames[1]["stream"] is False and "source" not in frames[1]  # no handler: no tokens
    assert len(t.connections) == 1


async def _collect(stream: tolk.AsyncTranslationStream) -> list[str]:
    return [tok async for tok in stream]


async def test_connects_lazily_and_sends_when_translate_stream_is_called() -> None:
    t = MockTransport()
    async with client(t) as c:
        await asyncio.sleep(0.01)
        assert t.connect_attempts == 0  # no request, no connection
        stream = c.translate_stream("a b", target="fi")
        await asyncio.sleep(0.05)
        assert t.connect_attempts == 1
        assert [f["text"] for f in sent(t, "translate")] == ["a b"]  # sent before iteration
        assert await bounded(stream.collect()) is not None
        assert t.connect_attempts == 1


async def test_many_requests_multiplexed_on_one_connection() -> None:
    server = MockServer(token_delay=0.002)
    t = MockTransport(server)
    async with client(t) as c:
        texts = [f"sentence {i} " + "word " * (i % 5) for i in range(30)]
        results = await bounded(asyncio.gather(
            *(c.translate(text, target="fi", handler=TranslationEventHandler())
              for text in texts)))
    assert [r.translation for r in results] == [" ".join(x.split()[::-1]) for x in texts]
    assert len(t.connections) == 1
    ids = [f["id"] for f in sent(t, "translate")]
    assert len(set(ids)) == 30
    # They were in flight together: all 30 had arrived before the first completed.
    assert len(server.requests) == 30 and len(server.completed) == 30


async def test_frames_interleave_and_route_by_id() -> None:
    """The server answers two requests in reverse order, tokens interleaved."""

    async def handler(conn: MockServerConnection) -> None:
        await conn.send(READY)
        a, b = await conn.receive(), await conn.receive()
        assert a is not None and b is not None
        for f in (b, a):
            await conn.send({"type": "start", "id": f["id"], "request_id": "x", "source": "en",
                             "target": "fi"})
        for i in range(3):
            for f in (b, a):
                await conn.send({"type": "token", "id": f["id"], "token": f["text"][i],
                                 "index": i})
        await conn.send({"type": "token", "id": "stranger", "token": "?", "index": 0})
        await conn.send({"type": "pong"})
        for f in (b, a):
            await conn.send({"type": "complete", "id": f["id"], "translation": f["text"][:3],
                             "source": "en", "target": "fi", "tokens": 3,
                             "first_token_ms": 1.0, "latency_ms": 2.0, "finish_reason": "stop"})
        await conn.receive()

    async with client(MockTransport(handler)) as c:
        s1 = c.translate_stream("abc", target="fi")
        s2 = c.translate_stream("xyz", target="fi")

        async def first_token(s: tolk.AsyncTranslationStream) -> str:
            return await s.__anext__()

        await bounded(asyncio.gather(first_token(s1), first_token(s2)))
        rest1, rest2 = await bounded(asyncio.gather(_collect(s1), _collect(s2)))
    assert rest1 == ["b", "c"] and rest2 == ["y", "z"]


# -- cancel ---------------------------------------------------------------------------------


async def test_break_sends_cancel() -> None:
    server = MockServer(token_delay=0.02)
    t = MockTransport(server)
    async with client(t) as c:
        async for _token in c.translate_stream("a b c d e f g h i j", target="fi"):
            break
        await bounded(eventually(lambda: len(server.cancelled) == 1))
        assert sent(t, "cancel") == [{"type": "cancel", "id": server.cancelled[0]}]
        # The connection still works; the server's `cancelled` answer was swallowed.
        assert (await bounded(c.translate("x y", target="fi"))).translation == "y x"
    assert len(server.completed) == 1


async def test_aclose_and_context_manager_send_cancel() -> None:
    server = MockServer(token_delay=0.02)
    async with client(MockTransport(server)) as c:
        stream = c.translate_stream("a b c d e f g", target="fi")
        await bounded(stream.__anext__())
        await stream.aclose()
        async with c.translate_stream("h i j k l m", target="fi") as s2:
            await bounded(s2.__anext__())
        await bounded(eventually(lambda: server.cancelled == [stream.id, s2.id]))
        assert [t async for t in stream] == []  # a closed stream yields nothing more
        with pytest.raises(tolk.RequestCancelled):
            await stream.collect()


async def test_task_cancellation_sends_cancel() -> None:
    server = MockServer(token_delay=0.05)
    async with client(MockTransport(server)) as c:
        task = asyncio.create_task(c.translate("a b c d e f g", target="fi"))
        await bounded(eventually(lambda: len(server.requests) == 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bounded(task)
        await bounded(eventually(lambda: server.cancelled == [server.requests[0]["id"]]))


async def test_completed_request_sends_no_cancel() -> None:
    t = MockTransport()
    async with client(t) as c:
        async with c.translate_stream("a b", target="fi") as s:
            assert await bounded(_collect(s)) == ["b", " a"]
        await asyncio.sleep(0.02)
    assert sent(t, "cancel") == []


# -- timeouts ---------------------------------------------------------------------------------


async def test_request_timeout_cancels_on_server() -> None:
    server = MockServer(token_delay=1.0)
    async with client(MockTransport(server)) as c:
        t0 = time.monotonic()
        with pytest.raises(tolk.RequestTimeout) as info:
            await bounded(c.translate("a b c", target="fi", timeout=0.1))
        assert 0.09 <= time.monotonic() - t0 < 1.0
        assert isinstance(info.value, TimeoutError)
        assert info.value.request_id == server.requests[0]["id"]
        await bounded(eventually(lambda: server.cancelled == [info.value.request_id]))


async def test_client_default_timeout_and_override() -> None:
    server = MockServer(token_delay=0.15)
    async with client(MockTransport(server), timeout=Timeout(request=0.05)) as c:
        with pytest.raises(tolk.RequestTimeout):
            await bounded(c.translate("a b", target="fi"))
        result = await bounded(c.translate("a b", target="fi", timeout=None))
        assert result.translation == "b a"
    async with client(MockTransport(server), timeout=0.05) as c2:
        stream = c2.translate_stream("a b", target="fi")
        with pytest.raises(tolk.RequestTimeout):
            await bounded(_collect(stream))


async def test_connect_timeout_when_server_never_ready() -> None:
    async def mute(conn: MockServerConnection) -> None:
        await conn.receive()

    t = MockTransport(mute)
    async with client(t, timeout=Timeout(request=5, connect=0.05)) as c:
        with pytest.raises(tolk.ConnectionError, match="timed out"):
            await bounded(c.translate("a", target="fi"))
    assert t.connect_attempts == FAST.max_attempts


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ERROR_CODES)
async def test_server_error_frames_raise_typed_errors(code: str) -> None:
    async def handler(conn: MockServerConnection) -> None:
        await conn.send(READY)
        while (f := await conn.receive()) is not None:
            await conn.send({"type": "error", "id": f["id"], "code": f["text"],
                             "message": "nope"})

    rec = Recorder()
    async with client(MockTransport(handler)) as c:
        with pytest.raises(tolk.TranslationError) as info:
            await bounded(c.translate(code, target="fi", handler=rec))
        # The connection survives a request's error.
        with pytest.raises(tolk.TranslationError):
            await bounded(c.translate(code, target="fi"))
    assert info.value.code == code and type(info.value).default_code == code
    assert rec.events == [("error", info.value)]


async def test_local_validation_needs_no_connection() -> None:
    t = MockTransport()
    rec = Recorder()
    c = client(t, limits=Limits(max_frame_bytes=2048))
    with pytest.raises(tolk.BadRequestError):
        c.translate_stream("a", target="not a language!", handler=rec)
    with pytest.raises(tolk.BadRequestError):
        await c.translate("a", target="fi", max_tokens=0)
    with pytest.raises(tolk.RequestTooLargeError):
        await c.translate("x" * 3000, target="fi")
    await c.aclose()
    assert t.connect_attempts == 0 and len(rec.events) == 1


async def test_oversized_frame_rejected_without_id_fails_that_request() -> None:
    """A server that cannot read an oversized frame answers `too_large` with no id."""

    async def handler(conn: MockServerConnection) -> None:
        await conn.send(READY)
        while (text := await conn.receive_text()) is not None:
            if len(text) > 1024:
                await conn.send({"type": "error", "code": "too_large", "message": "too big"})
            else:
                await MockServer()._run(conn, json.loads(text))

    async with client(MockTransport(handler), limits=Limits(max_frame_bytes=None)) as c:
        small = asyncio.create_task(c.translate("x y", target="fi"))
        with pytest.raises(tolk.RequestTooLargeError) as info:
            await bounded(c.translate("z" * 5000, target="fi"))
        assert info.value.request_id is not None
        assert (await bounded(small)).translation == "y x"


async def test_options_are_sent() -> None:
    t = MockTransport()
    async with client(t) as c:
        await bounded(c.translate("a b", target="fi", max_tokens=5, granularity="word",
                                  session="s1", glossary={"EU": "EU"}, split=False))
    [frame] = sent(t, "translate")
    assert frame["max_tokens"] == 5 and frame["granularity"] == "word"
    assert frame["session"] == "s1" and frame["glossary"] == {"EU": "EU"}
    assert frame["split"] is False and "glossary_id" not in frame


OPTIONS: dict[str, Any] = {"target": "fi", "source": "en", "max_tokens": 7, "session": "s1",
                           "glossary": {"EU": "EU"}, "glossary_id": None}
WIRE = {k: v for k, v in OPTIONS.items() if v is not None}


def test_one_options_type_for_every_entry_point() -> None:
    from dataclasses import fields

    from tolk._options import LiveKwargs, RequestOptions, TranslateKwargs

    # the keyword arguments are typed once, and they are exactly the options' fields
    assert set(TranslateKwargs.__annotations__) == {f.name for f in fields(RequestOptions)}
    assert set(LiveKwargs.__annotations__) < set(TranslateKwargs.__annotations__)
    with pytest.raises(TypeError):
        RequestOptions(target="fi", colour="blue")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):  # frozen: built once, passed down as is
        RequestOptions(target="fi").target = "sv"  # type: ignore[misc]

    t = MockTransport()

    async def run_async() -> None:
        async with client(t) as c:
            await bounded(c.translate("a b", **OPTIONS))
            await bounded(c.translate_stream("a b", **OPTIONS).collect())
            async with c.live(**OPTIONS) as live:
                await bounded(live.finish("a b"))

    asyncio.run(run_async())
    with Client("ws://mock", transport=t, reconnect=FAST) as c:
        c.translate("a b", timeout=5, **OPTIONS)
        c.translate_stream("a b", timeout=5, **OPTIONS).collect()
        with c.live(**OPTIONS) as live:
            live.finish("a b")
    frames = sent(t, "translate") + sent(t, "update")
    assert [f["type"] for f in frames] == ["translate"] * 4 + ["update"] * 2
    for frame in frames:
        assert {k: frame.get(k) for k in OPTIONS if k in frame} == WIRE, frame


async def test_segment_frames_are_yielded_like_tokens() -> None:
    async def handler(conn: MockServerConnection) -> None:
        await conn.send(READY)
        f = await conn.receive()
        assert f is not None
        rid = f["id"]
        await conn.send({"type": "segment", "id": rid, "text": "Hei.", "index": 0, "seq": 0})
        await conn.send({"type": "segment", "id": rid, "text": " Moi.", "index": 1, "seq": 1})
        await conn.send({"type": "complete", "id": rid, "translation": "Hei. Moi.",
                         "source": "en", "target": "fi", "tokens": 4, "first_token_ms": 1.0,
                         "latency_ms": 2.0, "finish_reason": "stop", "cached": True})
        await conn.receive()

    async with client(MockTransport(handler)) as c:
        stream = c.translate_stream("Hi. Hello.", target="fi", granularity="segment")
        assert await bounded(_collect(stream)) == ["Hei.", " Moi."]
    assert stream.result is not None and stream.result.cached
    assert stream.result.frame["finish_reason"] == "stop"


# -- connections: drop, reconnect, auth, heartbeat ----------------------------------------------


async def test_drop_mid_request_fails_in_flight_then_reconnects() -> None:
    server = MockServer(token_delay=0.01)
    calls = 0

    async def flaky(conn: MockServerConnection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await conn.send(READY)
            await conn.receive()
            await conn.receive()
            await conn.close(1011)  # two requests in flight, then the connection dies
            return
        await server(conn)

    t = MockTransport(flaky)
    rec = Recorder()
    async with client(t) as c:
        results = await bounded(asyncio.gather(
            c.translate("a b", target="fi", handler=rec), c.translate("c d", target="fi"),
            return_exceptions=True))
        assert all(isinstance(r, tolk.ConnectionError) for r in results), results
        assert {r.request_id for r in results} == {f["id"] for f in t.connections[0].received}
        assert rec.events and rec.events[-1][0] == "error"
        assert (await bounded(c.translate("e f", target="fi"))).translation == "f e"
    assert len(t.connections) == 2


async def test_reconnect_with_backoff_then_success() -> None:
    t = MockTransport(fail_connects=2)
    policy = Reconnect(max_attempts=3, backoff=0.02, multiplier=2, jitter=0)
    async with client(t, reconnect=policy) as c:
        t0 = time.monotonic()
        result = await bounded(c.translate("a b", target="fi"))
        waited = time.monotonic() - t0
    assert result.translation == "b a"
    assert t.connect_attempts == 3
    assert waited >= 0.02 + 0.04 - 0.005  # two backoff sleeps, the second one doubled


async def test_reconnect_gives_up_after_max_attempts() -> None:
    t = MockTransport(fail_connects=10)
    async with client(t, reconnect=Reconnect(max_attempts=4, backoff=0.001, jitter=0)) as c:
        with pytest.raises(tolk.ConnectionError, match="4 attempts"):
            await bounded(c.translate("a", target="fi"))
        assert t.connect_attempts == 4
        t.fail_connects = 0  # the next request tries afresh
        assert (await bounded(c.translate("a", target="fi"))).translation == "a"


async def test_concurrent_requests_share_one_connect() -> None:
    t = MockTransport(fail_connects=1)
    async with client(t) as c:
        await bounded(asyncio.gather(*(c.translate(f"w{i}", target="fi") for i in range(5))))
    assert t.connect_attempts == 2 and len(t.connections) == 1


async def test_authentication() -> None:
    server = MockServer(api_key="k1")
    bad = MockTransport(server)
    async with client(bad, api_key="wrong") as c:
        with pytest.raises(tolk.AuthenticationError) as info:
            await bounded(c.translate("a", target="fi"))
    assert info.value.code == "unauthorized"
    assert bad.connect_attempts == 1  # never retried
    good = MockTransport(server)
    async with client(good, api_key="k1") as c:
        assert (await bounded(c.translate("a b", target="fi"))).translation == "b a"
    assert good.connections[0].headers["Authorization"] == "Bearer k1"


async def test_heartbeat_pings_keep_an_idle_connection() -> None:
    t = MockTransport(MockServer())
    # A generous reply timeout: a loaded machine may delay the mock's pong by tens of ms.
    async with client(t, heartbeat_interval=0.02, heartbeat_timeout=0.3) as c:
        await bounded(c.translate("a", target="fi"))
        await asyncio.sleep(1.5)
        assert len(sent(t, "ping")) >= 3
        assert (await bounded(c.translate("b", target="fi"))).translation == "b"
    assert len(t.connections) == 1


async def test_missing_heartbeat_replies_fail_the_connection() -> None:
    server = MockServer(token_delay=2.0, answer_pings=False)
    t = MockTransport(server)
    async with client(t, heartbeat_interval=0.03, heartbeat_timeout=0.03) as c:
        t0 = time.monotonic()
        with pytest.raises(tolk.ConnectionError, match="heartbeat"):
            await bounded(c.translate("a b", target="fi"))
        assert time.monotonic() - t0 < 1.9  # well before the first token (2 s)


async def test_close_fails_in_flight_and_later_requests() -> None:
    server = MockServer(token_delay=1.0)
    c = client(MockTransport(server))
    task = asyncio.create_task(c.translate("a b", target="fi"))
    await bounded(eventually(lambda: len(server.requests) == 1))
    await bounded(c.aclose())
    with pytest.raises(tolk.ConnectionError, match="closed"):
        await bounded(task)
    with pytest.raises(tolk.ConnectionError, match="closed"):
        await c.translate("a", target="fi")


# -- handlers ---------------------------------------------------------------------------------


async def test_handler_callbacks_in_order() -> None:
    rec = Recorder()
    async with client(MockTransport()) as c:
        result = await bounded(c.translate("one two three", target="fi", handler=rec))
    assert rec.events[0] == ("start", result.request_id)
    assert rec.events[1:4] == [("token", "three", 0), ("token", " two", 1),
                               ("token", " one", 2)]
    assert rec.events[4] == ("complete", "three two one", result.latency_ms)
    assert len(rec.events) == 5


async def test_handler_on_stream_and_handler_exception_cancels() -> None:
    class Boom(TranslationEventHandler):
        def on_token(self, token: str, index: int) -> None:
            if index == 1:
                raise RuntimeError("boom")

    server = MockServer(token_delay=0.02)
    rec = Recorder()
    async with client(MockTransport(server)) as c:
        tokens = await bounded(_collect(c.translate_stream("a b", target="fi", handler=rec)))
        assert [e[1] for e in rec.events if e[0] == "token"] == tokens
        with pytest.raises(RuntimeError, match="boom"):
            await bounded(c.translate("a b c d e f", target="fi", handler=Boom()))
        await bounded(eventually(lambda: len(server.cancelled) == 1))


# -- pool -------------------------------------------------------------------------------------


async def test_pool_spreads_concurrent_requests_least_loaded() -> None:
    server = MockServer(token_delay=0.02)
    t = MockTransport(server)
    async with client(t, pool_size=3) as c:
        await bounded(c.translate("warm", target="fi"))
        assert len(t.connections) == 1  # sequential use opens one connection only
        await bounded(asyncio.gather(*(c.translate(f"a b {i}", target="fi")
                                       for i in range(6))))
        loads = sorted(sum(f.get("type") == "translate" for f in conn.received)
                       for conn in t.connections)
    assert len(t.connections) == 3
    assert loads == [2, 2, 3]  # 6 concurrent requests 2 apiece, plus the warm-up


async def test_requests_per_connection_limit_queues_requests() -> None:
    server = MockServer(token_delay=0.01)
    t = MockTransport(server)
    limits = Limits(pool_size=1, max_requests_per_connection=2)
    async with client(t, limits=limits) as c:
        busy = 0
        peak = 0
        orig = server._run

        async def counting(conn: MockServerConnection, frame: dict[str, Any]) -> None:
            nonlocal busy, peak
            busy += 1
            peak = max(peak, busy)
            try:
                await orig(conn, frame)
            finally:
                busy -= 1

        server._run = counting  # type: ignore[method-assign]
        results = await bounded(asyncio.gather(*(c.translate(f"x {i}", target="fi")
                                                 for i in range(6))))
    assert [r.translation for r in results] == [f"{i} x" for i in range(6)]
    assert peak == 2


# -- the synchronous client -----------------------------------------------------------------------


def test_sync_client_stream_translate_and_close() -> None:
    server = MockServer(token_delay=0.001)
    t = MockTransport(server)
    with Client("ws://mock", transport=t, reconnect=FAST) as c:
        assert list(c.translate_stream("a b c", target="fi", timeout=5)) == ["c", " b", " a"]
        assert c.translate("x y", target="fi", timeout=5).translation == "y x"
        thread = c._portal._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
    with pytest.raises(tolk.ConnectionError):
        c.translate("a", target="fi")


def test_sync_break_cancels() -> None:
    server = MockServer(token_delay=0.02)
    with Client("ws://mock", transport=MockTransport(server), timeout=5) as c:
        for _ in c.translate_stream("a b c d e f g h", target="fi"):
            break
        gc.collect()
        deadline = time.monotonic() + 3
        while not server.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.cancelled) == 1
        stream = c.translate_stream("i j k l m n o", target="fi")
        next(stream)
        stream.close()
        while len(server.cancelled) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.cancelled[1] == stream.id


def test_sync_timeout_and_handler_thread() -> None:
    server = MockServer(token_delay=0.5)
    rec = Recorder()
    with Client("ws://mock", transport=MockTransport(server)) as c:
        c._portal.run(c._async._connections[0]._ensure_open())  # connected: only the request times
        with pytest.raises(tolk.RequestTimeout):
            c.translate("a b c", target="fi", timeout=0.05, handler=rec)
        assert rec.threads == {threading.get_ident()}  # callbacks run in the calling thread
        assert isinstance(rec.events[-1][1], tolk.RequestTimeout)
        deadline = time.monotonic() + 3
        while not server.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.cancelled) == 1


def test_sync_client_is_thread_safe() -> None:
    server = MockServer(token_delay=0.001)
    t = MockTransport(server)
    errors: list[BaseException] = []
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        try:
            results[n] = [c.translate(f"t{n} r{i} x", target="fi", timeout=5).translation
                          for i in range(5)]
        except BaseException as exc:
            errors.append(exc)

    with Client("ws://mock", transport=t) as c:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
    assert not errors
    assert results == {n: [f"x r{i} t{n}" for i in range(5)] for n in range(8)}
    assert len(t.connections) == 1
    assert len({f["id"] for f in sent(t, "translate")}) == 40


def test_sync_close_from_another_thread_fails_in_flight() -> None:
    server = MockServer(token_delay=1.0)
    c = Client("ws://mock", transport=MockTransport(server))
    box: list[BaseException] = []

    def work() -> None:
        try:
            c.translate("a b", target="fi", timeout=5)
        except BaseException as exc:
            box.append(exc)

    th = threading.Thread(target=work)
    th.start()
    deadline = time.monotonic() + 3
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    c.close()
    th.join(5)
    assert not th.is_alive()
    assert len(box) == 1 and isinstance(box[0], tolk.ConnectionError)


def test_async_client_is_bound_to_one_loop() -> None:
    c = client(MockTransport())
    assert asyncio.run(c.translate("a b", target="fi")).translation == "b a"
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(c.translate("a b", target="fi"))


def test_mock_records_json_frames() -> None:
    t = MockTransport()
    with Client("ws://mock", transport=t) as c:
        c.translate("Hyvää päivää", target="en", timeout=5)
    [frame] = t.connections[0].received
    assert frame["text"] == "Hyvää päivää"
    assert json.loads(json.dumps(frame)) == frame
