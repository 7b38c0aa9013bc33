"""`AsyncClient`: the asyncio client (its connection pool, `_pool.Pool`, both clients share)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Unpack

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
from ._connection import Connection, ConnectionSettings
from ._exceptions import TolkError
from ._live import AsyncLiveTranslation
from ._models import TranslationResult
from ._options import LiveKwargs, RequestOptions, TranslateKwargs, translate_frame
from ._pool import Pool
from ._stream import AsyncTranslationStream
from ._transport import Transport, WebSocketTransport
from .events import TranslationEventHandler

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
        self._pool = Pool(self._settings, limits, event_handler)

    # -- public API ------------------------------------------------------------------------

    def translate_stream(
        self,
        text: str,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        handler: TranslationEventHandler | None = None,
        **options: Unpack[TranslateKwargs],
    ) -> AsyncTranslationStream:
        """A stream of the translation's tokens: `async for token in client.translate_stream(...)`.

        Called inside a running event loop, the request is sent at once (else on the first
        iteration). `timeout` (seconds, `None`: no limit) bounds the whole request; the
        default is the client's `Timeout.request`. The options (`target`, `source`,
        `max_tokens`, `granularity`, `max_delay_ms`, `split`, `session`, `glossary`,
        `glossary_id`, `quality`: `"fast"`, `"balanced"` or `"quality"`) are
        `tolk._options.TranslateKwargs`.
        """
        rid, frame = self._prepare(text, True, handler, RequestOptions(**options))
        return AsyncTranslationStream(self._pool, rid, frame, self._timeout_for(timeout),
                                      handler)

    async def translate(
        self,
        text: str,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,  # noqa: ASYNC109
        handler: TranslationEventHandler | None = None,
        **options: Unpack[TranslateKwargs],
    ) -> TranslationResult:
        """Translate `text` into `target`; waits for the whole translation.

        Without a handler the server sends no token frames (`"stream": false`).
        """
        rid, frame = self._prepare(text, handler is not None, handler, RequestOptions(**options))
        async with AsyncTranslationStream(self._pool, rid, frame, self._timeout_for(timeout),
                                          handler) as stream:
            return await stream.collect()

    def live(self, **options: Unpack[LiveKwargs]) -> AsyncLiveTranslation:
        """A live request: `async with client.live(target="fi") as live:` then
        `await live.update(text)` as the text changes, `async for partial in live`, and
        `await live.finish()`. Leaving the block before `complete` cancels it. The options:
        `target`, `source`, `session`, `glossary`, `glossary_id`, `max_tokens`."""
        return AsyncLiveTranslation(self._pool, self._pool.new_id(), RequestOptions(**options))

    @property
    def server_info(self) -> dict[str, Any] | None:
        """The server's `ready` frame (model, languages, ...) once a connection is open."""
        return self._pool.server_info

    @property
    def is_closed(self) -> bool:
        return self._pool.closed

    @property
    def connected(self) -> bool:
        """Whether a connection to the server is open now."""
        return self._pool.connected

    async def connect(self) -> None:
        """Open a connection now (requests open them on demand); raises `ConnectionError`
        (after `Reconnect.max_attempts` tries of `Timeout.connect` each)."""
        await self._pool.connect()

    async def aclose(self) -> None:
        """Close every connection; requests still in flight fail with `ConnectionError`."""
        await self._pool.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.url} pool_size={self.limits.pool_size}>"

    # -- internals shared with the sync Client ---------------------------------------------

    @property
    def _connections(self) -> list[Connection]:
        return self._pool.connections

    def _timeout_for(self, timeout: float | UseClientDefault | None) -> float | None:
        if isinstance(timeout, UseClientDefault):
            return self.timeout.request
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        return timeout

    def _prepare(self, text: str, stream: bool, handler: TranslationEventHandler | None,
                 options: RequestOptions) -> tuple[str, str]:
        """A new request id and its validated `translate` frame, or a local error (shown to
        `handler` first)."""
        rid = self._pool.new_id()
        try:
            return rid, translate_frame(rid, text, stream, options, self.limits.max_frame_bytes)
        except TolkError as error:
            if handler is not None:
                handler.on_error(error)
            raise
