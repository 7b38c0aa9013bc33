"""`AsyncClient`: the asyncio client, and the connection pool both clients share."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._config import (
    USE_CLIENT_DEFAULT,
    Limits,
    Reconnect,
    Timeout,
    TimeoutTypes,
    UseClientDefault,
    stream_url,
    to_timeout,
)
from ._connection import Connection, ConnectionSettings, Item
from ._exceptions import BadRequestError, ConnectionError, RequestTooLargeError, TolkError
from ._live import AsyncLiveTranslation
from ._models import TranslationResult
from .events import TranslationEventHandler

if TYPE_CHECKING:
    from .protocol.frames import Quality
    from .protocol.types import Granularity
from ._stream import AsyncTranslationStream
from ._transport import Transport, WebSocketTransport
from .protocol import ProtocolError, parse_client_frame

__all__ = ["AsyncClient"]


class AsyncClient:
    """An asyncio client for a tolk server.

    `url` defaults to `TOLK_URL` (else `ws://127.0.0.1:8000`) and `api_key` to
    `TOLK_API_KEY`. Connections open lazily, on the first request; `pool_size` of them are
    kept, each carrying many concurrent requests. An `AsyncClient` belongs to the event loop
    it is first used on.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutTypes = Timeout(),  # noqa: B008 - frozen, shared safely
        pool_size: int | None = None,
        limits: Limits | None = None,
        reconnect: Reconnect | None = None,
        heartbeat_interval: float | None = 15.0,
        heartbeat_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        event_handler: TranslationEventHandler | None = None,
        connection_pool: bool = True,
    ) -> None:
        self.url = stream_url(url)
        if not connection_pool:
            if pool_size not in (None, 1):
                raise ValueError("connection_pool=False means one connection (pool_size=1)")
            pool_size = 1
        if api_key is None:
            api_key = os.environ.get("TOLK_API_KEY") or None
        self.timeout = to_timeout(timeout)
        limits = limits or Limits()
        if pool_size is not None:
            limits = Limits(pool_size=pool_size,
                            max_requests_per_connection=limits.max_requests_per_connection,
                            max_frame_bytes=limits.max_frame_bytes)
        self.limits = limits
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive or None")
        all_headers = dict(headers or {})
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._settings = ConnectionSettings(
            url=self.url,
            headers=all_headers,
            transport=transport or WebSocketTransport(),
            timeout=self.timeout,
            reconnect=reconnect or Reconnect(),
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
        )
        self._connections = [Connection(i, self._settings, self._release_slot)
                             for i in range(limits.pool_size)]
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._id_prefix = f"py-{secrets.token_hex(3)}-"
        self._closed = False
        #: The client-level handler: it sees the events of every request of this client.
        self._event_handler = event_handler
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public API ------------------------------------------------------------------------

    def translate_stream(
        self,
        text: str,
        *,
        target: str,
        source: str | None = None,
        max_tokens: int | None = None,
        granularity: Granularity | None = None,
        max_delay_ms: int | None = None,
        split: bool | None = None,
        session: str | None = None,
        glossary: Mapping[str, str] | None = None,
        glossary_id: str | None = None,
        quality: Quality | None = None,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        handler: TranslationEventHandler | None = None,
    ) -> AsyncTranslationStream:
        """A stream of the translation's tokens: `async for token in client.translate_stream(...)`.

        Called inside a running event loop, the request is sent at once (else on the first
        iteration). `timeout` (seconds, `None`: no limit) bounds the whole request; the
        default is the client's `Timeout.request`. `quality`: `"fast"`, `"balanced"` (the
        server's default) or `"quality"`.
        """
        rid, frame = self._prepare(
            text, target, source, True, handler, max_tokens=max_tokens,
            granularity=granularity, max_delay_ms=max_delay_ms, split=split, session=session,
            glossary=glossary, glossary_id=glossary_id, quality=quality)
        return AsyncTranslationStream(self, rid, frame, self._timeout_for(timeout), handler)

    async def translate(
        self,
        text: str,
        *,
        target: str,
        source: str | None = None,
        max_tokens: int | None = None,
        granularity: Granularity | None = None,
        max_delay_ms: int | None = None,
        split: bool | None = None,
        session: str | None = None,
        glossary: Mapping[str, str] | None = None,
        glossary_id: str | None = None,
        quality: Quality | None = None,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,  # noqa: ASYNC109
        handler: TranslationEventHandler | None = None,
    ) -> TranslationResult:
        """Translate `text` into `target`; waits for the whole translation.

        Without a handler the server sends no token frames (`"stream": false`).
        """
        rid, frame = self._prepare(
            text, target, source, handler is not None, handler, max_tokens=max_tokens,
            granularity=granularity, max_delay_ms=max_delay_ms, split=split, session=session,
            glossary=glossary, glossary_id=glossary_id, quality=quality)
        async with AsyncTranslationStream(self, rid, frame, self._timeout_for(timeout),
                                          handler) as stream:
            return await stream.collect()

    def live(self, *, target: str, source: str | None = None, session: str | None = None,
             glossary: Mapping[str, str] | None = None, glossary_id: str | None = None,
             max_tokens: int | None = None) -> AsyncLiveTranslation:
        """A live request: `async with client.live(target="fi") as live:` then
        `await live.update(text)` as the text changes, `async for partial in live`, and
        `await live.finish()`. Leaving the block before `complete` cancels it."""
        if self._closed:
            raise ConnectionError("the client is closed")
        options: dict[str, Any] = {"target": target}
        for key, value in (("source", source), ("session", session), ("glossary", glossary),
                           ("glossary_id", glossary_id), ("max_tokens", max_tokens)):
            if value is not None:
                options[key] = dict(value) if isinstance(value, Mapping) else value
        return AsyncLiveTranslation(self, f"{self._id_prefix}{next(self._ids)}", options)

    @property
    def server_info(self) -> dict[str, Any] | None:
        """The server's `ready` frame (model, languages, ...) once a connection is open."""
        for conn in self._connections:
            if conn.ready_frame is not None:
                return dict(conn.ready_frame)
        return None

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """Whether a connection to the server is open now."""
        return any(conn.is_open for conn in self._connections)

    async def connect(self) -> None:
        """Open a connection now (requests open them on demand); raises `ConnectionError`
        (after `Reconnect.max_attempts` tries of `Timeout.connect` each)."""
        if self._closed:
            raise ConnectionError("the client is closed")
        self._bind_loop()
        conn = min(self._connections, key=lambda c: (not c.is_open, c.index))
        await conn.open()

    async def aclose(self) -> None:
        """Close every connection; requests still in flight fail with `ConnectionError`."""
        self._closed = True
        await asyncio.gather(*(conn.aclose() for conn in self._connections))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.url} pool_size={self.limits.pool_size}>"

    # -- internals shared with the streams and the sync Client ------------------------------

    def _timeout_for(self, timeout: float | UseClientDefault | None) -> float | None:
        if isinstance(timeout, UseClientDefault):
            return self.timeout.request
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        return timeout

    def _prepare(self, text: str, target: str, source: str | None, stream: bool,
                 handler: TranslationEventHandler | None,
                 **options: object) -> tuple[str, str]:
        """A new request id and its validated `translate` frame, or a local error."""
        if self._closed:
            raise ConnectionError("the client is closed")
        rid = f"{self._id_prefix}{next(self._ids)}"
        obj: dict[str, Any] = {"type": "translate", "id": rid, "text": text, "target": target,
                               "stream": stream}
        if source is not None:
            obj["source"] = source
        for key, value in options.items():
            if value is not None:
                obj[key] = dict(value) if isinstance(value, Mapping) else value
        error: TolkError | None = None
        try:
            frame = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            parse_client_frame(frame)
        except ProtocolError as exc:
            error = BadRequestError(exc.message, request_id=rid)
        except (TypeError, ValueError) as exc:
            error = BadRequestError(f"invalid request: {exc}", request_id=rid)
        else:
            limit = self.limits.max_frame_bytes
            if limit is not None and len(frame.encode("utf-8", "surrogatepass")) > limit:
                error = RequestTooLargeError(f"the request frame exceeds {limit} bytes",
                                             request_id=rid)
        if error is not None:
            if handler is not None:
                handler.on_error(error)
            raise error
        return rid, frame

    async def _open_request(self, rid: str) -> tuple[Connection, asyncio.Queue[Item]]:
        """Wait for a free slot, then register `rid` on the least-loaded connection."""
        if self._closed:
            raise ConnectionError("the client is closed", request_id=rid)
        self._bind_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(
                self.limits.pool_size * self.limits.max_requests_per_connection)
        await self._slots.acquire()
        if self._closed:
            self._slots.release()
            raise ConnectionError("the client is closed", request_id=rid)
        conn = min(self._connections, key=lambda c: (c.load, not c.is_open, c.index))
        return conn, conn.register(rid)

    def _bind_loop(self) -> None:
        """Bind to the running loop on first use; refuse any other loop afterwards."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("this AsyncClient is bound to the event loop it was first used "
                               "on; create one client per event loop")

    def _track(self, task: asyncio.Task[None]) -> None:
        """Keep a request's task alive until it ends (the loop holds tasks weakly)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()
