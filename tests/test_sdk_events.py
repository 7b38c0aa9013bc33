"""Client-level event handlers, eager requests, `quality=`, and the product page's snippets."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest

import tolk
from tolk import AsyncClient, Client, MockServer, MockTransport, Reconnect
from tolk.events import TranslationEventHandler
from tolk_server.adapters.echo import echo_translation

FAST = Reconnect(max_attempts=3, backoff=0.01, max_backoff=0.05, jitter=0.0)


class Recorder(TranslationEventHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        self.done = threading.Event()

    def _add(self, kind: str, value: Any) -> None:
        self.threads.add(threading.get_ident())
        self.events.append((kind, value))

    def on_start(self, request_id: str) -> None:
        self._add("start", request_id)

    def on_token(self, token: str, index: int) -> None:
        self._add("token", token)

    def on_complete(self, translation: str, latency_ms: float) -> None:
        self._add("complete", translation)
        self.done.set()

    def on_error(self, error: tolk.TolkError) -> None:
        self._add("error", error)
        self.done.set()


def rev(text: str) -> str:
    return echo_translation(f"<2fi>{text}<sep>")


def sent(t: MockTransport, kind: str) -> list[dict[str, Any]]:
    return [f for conn in t.connections for f in conn.received if f.get("type") == kind]


def test_events_home_and_reexport() -> None:
    assert tolk.TranslationEventHandler is TranslationEventHandler
    assert TranslationEventHandler.__module__ == "tolk.events"


def test_client_handler_sees_a_stream_that_is_never_iterated() -> None:
    rec = Recorder()
    with Client("ws://mock", transport=MockTransport(MockServer(token_delay=0.005)),
                event_handler=rec, reconnect=FAST) as c:
        c.translate_stream(text="a b c", target="fi")  # dropped at once, never iterated
        gc.collect()
        assert rec.done.wait(5)
        assert [k for k, _ in rec.events] == ["start", "token", "token", "token", "complete"]
        assert rec.events[-1][1] == "c b a"
        assert threading.get_ident() not in rec.threads  # on the client's loop thread


def test_request_starts_at_call_and_per_call_handler_still_works() -> None:
    server = MockServer(token_delay=0.005)
    t = MockTransport(server)
    watcher, mine = Recorder(), Recorder()
    with Client("ws://mock", transport=t, event_handler=watcher, reconnect=FAST) as c:
        stream = c.translate_stream(text="x y", target="fi", handler=mine, quality="fast")
        assert watcher.done.wait(5)  # finished before anyone iterated
        assert mine.events == []
        assert list(stream) == ["y", " x"]
        assert [k for k, _ in mine.events] == [k for k, _ in watcher.events]
        assert mine.threads == {threading.get_ident()}
        assert sent(t, "translate")[0]["quality"] == "fast"
        with pytest.raises(tolk.BadRequestError):
            c.translate_stream(text="x", target="fi", quality="best")  # type: ignore[arg-type]


def test_client_handler_sees_errors_and_a_broken_handler_is_contained() -> None:
    class Broken(Recorder):
        def on_token(self, token: str, index: int) -> None:
            raise RuntimeError("boom")

    rec = Broken()
    with Client("ws://mock", transport=MockTransport(MockServer(token_delay=0.5)),
                event_handler=rec, reconnect=FAST) as c:
        with pytest.raises(tolk.RequestTimeout):
            c.translate(text="a b", target="fi", timeout=0.1)
        assert rec.done.wait(5) and isinstance(rec.events[-1][1], tolk.RequestTimeout)
        rec.done.clear()
        assert c.translate(text="k", target="fi", timeout=5, handler=None).translation == "k"
        assert rec.done.wait(5) and rec.events[-1] == ("complete", "k")


def test_close_cancels_and_the_watcher_sees_it() -> None:
    server = MockServer(token_delay=0.05)
    rec = Recorder()
    with Client("ws://mock", transport=MockTransport(server), event_handler=rec) as c:
        stream = c.translate_stream(text="a b c d e f g", target="fi")
        next(stream)
        stream.close()
        assert rec.done.wait(5) and isinstance(rec.events[-1][1], tolk.RequestCancelled)
        deadline = time.monotonic() + 3
        while not server.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.cancelled == [stream.id]


async def test_async_client_starts_at_call() -> None:
    rec = Recorder()
    t = MockTransport(MockServer(token_delay=0.001))
    async with AsyncClient("ws://mock", transport=t, event_handler=rec, reconnect=FAST) as c:
        stream = c.translate_stream(text="p q", target="fi", quality="quality")
        for _ in range(300):
            if rec.done.is_set():
                break
            await asyncio.sleep(0.01)
        assert rec.events[-1] == ("complete", "q p")
        assert await stream.collect() is not None
        assert sent(t, "translate")[0]["quality"] == "quality"


def test_connection_pool_flag() -> None:
    assert Client("ws://mock", connection_pool=True, pool_size=10).limits.pool_size == 10
    assert Client("ws://mock", connection_pool=False).limits.pool_size == 1
    with pytest.raises(ValueError):
        Client("ws://mock", connection_pool=False, pool_size=3)


PRODUCT_PAGE = '''
client = Client(connection_pool=True, pool_size=10)
result1 = client.translate_stream(text="Hello", target="fi")
result2 = client.translate_stream(text="World", target="fi")

from tolk.events import TranslationEventHandler
from tolk_server.adapters.echo import echo_translation
client = Client(event_handler=MyHandler())
client.translate_stream(text="Test", target="fi")   # the handler sees start, tokens, complete

fast = client.translate_stream(text="Quick translation needed", target="fi", quality="fast")
'''


def test_product_page_snippets_run_as_written(fake_server: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLK_URL", fake_server)
    seen = Recorder()

    class MyHandler(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.events = seen.events
            self.done = seen.done

    scope: dict[str, Any] = {"Client": Client, "MyHandler": MyHandler}
    exec(compile(PRODUCT_PAGE, "product-page", "exec"), scope)
    fast = scope["fast"]
    assert "".join(fast) == fast.result.translation
    assert fast.result.frame.get("quality") == "fast"
    assert list(scope["result1"]) and list(scope["result2"])
    deadline = time.monotonic() + 10
    while sum(k == "complete" for k, _ in seen.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The handler saw both of its client's requests ("Test" never iterated) from start to end.
    kinds = [k for k, _ in seen.events]
    assert kinds.count("start") == 2 and kinds.count("complete") == 2 and "token" in kinds
    completes = sorted(v for k, v in seen.events if k == "complete")
    assert completes == sorted([fast.result.translation, rev("Test")])
    assert len("".join(v for k, v in seen.events if k == "token")) == len("".join(completes))
    scope["client"].close()
