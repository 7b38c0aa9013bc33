"""Translation streams: iterate tokens (sync or async), or collect the result.

The request is sent when the stream is created (`translate_stream` is called), or on first
iteration when an `AsyncClient` is used outside a running event loop. Leaving early
(`break`, `close()`/`aclose()`, the stream being garbage-collected, the task being
cancelled, a timeout) cancels it on the server, except that a stream dropped unread keeps
running when the client has an `event_handler` that watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ._exceptions import RequestCancelled, TolkError, error_from_frame
from ._flight import Flight
from ._models import TranslationResult

if TYPE_CHECKING:
    from ._connection import Item
    from ._pool import Pool
    from ._portal import LoopThread
    from .events import TranslationEventHandler

__all__ = ["AsyncTranslationStream", "TranslationStream"]


class _StreamBase:
    def __init__(self, pool: Pool, rid: str, frame: str, timeout: float | None,
                 handler: TranslationEventHandler | None) -> None:
        #: The client-side request id.
        self.id = rid
        #: The server's request id, once the server has started the request.
        self.request_id: str | None = None
        #: The result, once the `complete` frame has been read.
        self.result: TranslationResult | None = None
        #: The error that ended the request, if one did.
        self.error: TolkError | None = None
        self._pool = pool
        self._handler = handler
        self._items: deque[Item] = deque()
        self._finished = False
        self._flight = Flight(pool, rid, frame, timeout, pool.event_handler)

    # -- runs on the client's event loop ---------------------------------------------------

    def _start(self) -> None:
        """Send the request now (on the running loop); later calls do nothing."""
        self._flight.start()

    async def _fetch(self) -> list[Item]:
        """Wait for the next frames of this request (starting it first if it is not yet)."""
        self._flight.start()
        inbox = self._flight.inbox
        try:
            first = await inbox.get()
        except BaseException:
            self._abandon()
            raise
        items = [first]
        while not inbox.empty():
            items.append(inbox.get_nowait())
        return items

    # -- runs in the consumer's context ----------------------------------------------------

    def _abandon(self) -> None:
        """Stop here; if the request is still running, cancel it on the server."""
        self._finished = True
        flight, loop = self._flight, self._flight.loop
        if flight.over or self.result is not None or self.error is not None:
            return
        if loop is None:  # never started: nothing was sent
            flight.over = True
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            flight.abandon()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(flight.abandon)

    def _apply(self, item: Item) -> str | None:
        """Handle one frame; a token is returned, an error raised."""
        if isinstance(item, TolkError):
            self._fail(item)
        kind = item.get("type")
        handler = self._handler
        if kind == "token" or kind == "segment":
            token = str(item.get("token" if kind == "token" else "text", ""))
            if handler is not None:
                handler.on_token(token, int(item.get("index", 0)))
            return token
        if kind == "start":
            self.request_id = str(item.get("request_id", ""))
            if handler is not None:
                handler.on_start(self.request_id)
        elif kind == "complete":
            self.result = _result(item, self.id, self.request_id)
            self._finished = True
            if handler is not None:
                handler.on_complete(self.result.translation, self.result.latency_ms)
        elif kind == "error":
            self._fail(error_from_frame(item, self.id))
        return None

    def _fail(self, exc: TolkError) -> NoReturn:
        self._finished = True
        self.error = exc
        if self._handler is not None:
            self._handler.on_error(exc)
        raise exc

    def _take(self) -> str | None:
        """Apply buffered frames until a token comes out (None: buffer empty)."""
        while self._items:
            try:
                token = self._apply(self._items.popleft())
            except BaseException:
                self._abandon()
                raise
            if token is not None:
                return token
        return None

    def _closed_result(self) -> TranslationResult:
        if self.result is not None:
            return self.result
        if self.error is not None:
            raise self.error
        raise RequestCancelled("the stream was closed before the translation completed",
                               request_id=self.id)

    def __del__(self) -> None:
        # A client-level event handler watches the request: let it run to its end.
        if self._pool.event_handler is not None and not self._finished:
            return
        with contextlib.suppress(Exception):
            self._abandon()

    def __repr__(self) -> str:
        state = "done" if self._finished else ("running" if self._flight.loop else "new")
        return f"<{type(self).__name__} id={self.id!r} {state}>"


def _result(frame: dict[str, Any], rid: str, request_id: str | None) -> TranslationResult:
    first = frame.get("first_token_ms")
    return TranslationResult(
        translation=str(frame.get("translation", "")),
        source=str(frame.get("source", "")),
        target=str(frame.get("target", "")),
        tokens=int(frame.get("tokens", 0)),
        first_token_ms=None if first is None else float(first),
        latency_ms=float(frame.get("latency_ms", 0.0)),
        finish_reason=str(frame.get("finish_reason", "")),
        id=rid,
        request_id=request_id,
        cached=bool(frame.get("cached", False)),
        frame=frame,
    )


class AsyncTranslationStream(_StreamBase):
    """`async for token in stream`; then `stream.result`. Or `await stream.collect()`."""

    def __init__(self, pool: Pool, rid: str, frame: str, timeout: float | None,
                 handler: TranslationEventHandler | None) -> None:
        super().__init__(pool, rid, frame, timeout, handler)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the request starts on first iteration
        pool.bind_loop()
        self._start()

    def __aiter__(self) -> AsyncTranslationStream:
        return self

    async def __anext__(self) -> str:
        while True:
            token = self._take()
            if token is not None:
                return token
            if self._finished:
                raise StopAsyncIteration
            try:
                batch = await self._fetch()
            except TolkError as exc:
                self._fail(exc)
            self._items.extend(batch)

    async def collect(self) -> TranslationResult:
        """Read the stream to its end; the `TranslationResult`."""
        async for _ in self:
            pass
        return self._closed_result()

    async def aclose(self) -> None:
        """Stop reading; cancels the request on the server if it is still running."""
        self._abandon()

    async def __aenter__(self) -> AsyncTranslationStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class TranslationStream(_StreamBase):
    """`for token in stream`; then `stream.result`. Or `stream.collect()`."""

    def __init__(self, portal: LoopThread, pool: Pool, rid: str, frame: str,
                 timeout: float | None, handler: TranslationEventHandler | None) -> None:
        super().__init__(pool, rid, frame, timeout, handler)
        self._portal = portal
        loop = portal.loop()
        self._flight.loop = loop  # so that an abandon is queued behind the start
        loop.call_soon_threadsafe(self._flight.start)

    def __iter__(self) -> TranslationStream:
        return self

    def __next__(self) -> str:
        while True:
            token = self._take()
            if token is not None:
                return token
            if self._finished:
                raise StopIteration
            try:
                batch = self._portal.run(self._fetch())
            except TolkError as exc:
                self._fail(exc)
            except BaseException:
                self._abandon()
                raise
            self._items.extend(batch)

    def __aiter__(self) -> TranslationStream:
        """`async for` works too (in a coroutine): waits without blocking the caller's loop."""
        return self

    async def __anext__(self) -> str:
        while True:
            token = self._take()
            if token is not None:
                return token
            if self._finished:
                raise StopAsyncIteration
            future = self._portal.submit(self._fetch())
            try:
                batch = await asyncio.wrap_future(future)
            except TolkError as exc:
                self._fail(exc)
            except BaseException:
                future.cancel()
                self._abandon()
                raise
            self._items.extend(batch)

    def collect(self) -> TranslationResult:
        """Read the stream to its end; the `TranslationResult`."""
        for _ in self:
            pass
        return self._closed_result()

    def close(self) -> None:
        """Stop reading; cancels the request on the server if it is still running."""
        self._abandon()

    def __enter__(self) -> TranslationStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
