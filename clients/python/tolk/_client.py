"""`Client`: the synchronous, thread-safe client.

It drives an `AsyncClient` on a private event loop in a background thread
(`asyncio.run_coroutine_threadsafe`), so any number of threads may translate through one
`Client` at once, sharing its connections. Event-handler callbacks run in the calling thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Unpack

from ._async_client import AsyncClient
from ._config import USE_CLIENT_DEFAULT, Limits, Reconnect, Timeout, TimeoutTypes, UseClientDefault
from ._live import AsyncLiveTranslation, LiveTranslation
from ._models import TranslationResult
from ._options import LiveKwargs, RequestOptions, TranslateKwargs
from ._portal import LoopThread
from ._stream import TranslationStream
from ._transport import Transport
from .events import TranslationEventHandler

__all__ = ["Client"]


class Client:
    """A synchronous client for a tolk server; the same arguments as `AsyncClient`."""

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
        self._async = AsyncClient(
            url,
            api_key=api_key,
            timeout=timeout,
            pool_size=pool_size,
            limits=limits,
            reconnect=reconnect,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            headers=headers,
            transport=transport,
            event_handler=event_handler,
            connection_pool=connection_pool,
        )
        self._portal = LoopThread()

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def timeout(self) -> Timeout:
        return self._async.timeout

    @property
    def limits(self) -> Limits:
        return self._async.limits

    @property
    def server_info(self) -> dict[str, Any] | None:
        """The server's `ready` frame (model, languages, ...) once a connection is open."""
        return self._async.server_info

    @property
    def is_closed(self) -> bool:
        return self._async.is_closed

    def translate_stream(
        self,
        text: str,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        handler: TranslationEventHandler | None = None,
        **options: Unpack[TranslateKwargs],
    ) -> TranslationStream:
        """The translation's tokens as they come: `for token in client.translate_stream(...)`.

        The request is sent at once; leaving the loop early (or `close()`) cancels it on the
        server. `timeout` bounds the whole request. A client-level `event_handler` sees the
        request's events even if the stream is never iterated. The options are those of
        `AsyncClient.translate_stream`.
        """
        rid, frame = self._async._prepare(text, True, handler, RequestOptions(**options))
        return TranslationStream(self._portal, self._async._pool, rid, frame,
                                 self._async._timeout_for(timeout), handler)

    def translate(
        self,
        text: str,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        handler: TranslationEventHandler | None = None,
        **options: Unpack[TranslateKwargs],
    ) -> TranslationResult:
        """Translate `text` into `target`; blocks until the whole translation is in."""
        rid, frame = self._async._prepare(text, handler is not None, handler,
                                          RequestOptions(**options))
        with TranslationStream(self._portal, self._async._pool, rid, frame,
                               self._async._timeout_for(timeout), handler) as stream:
            return stream.collect()

    def live(self, **options: Unpack[LiveKwargs]) -> LiveTranslation:
        """A live request (blocking shape): `with client.live(target="fi") as live:`,
        `live.update(text)`, `live.next_partial()` / `live.partials()`, `live.finish()`."""
        pool = self._async._pool
        inner = AsyncLiveTranslation(pool, pool.new_id(), RequestOptions(**options))
        return LiveTranslation(self._portal, inner)

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent)."""
        if self._portal.started and not self._async.is_closed:
            try:
                self._portal.run(self._async.aclose())
            finally:
                self._portal.stop()
        else:
            self._async._pool.closed = True
            self._portal.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.url} pool_size={self.limits.pool_size}>"
