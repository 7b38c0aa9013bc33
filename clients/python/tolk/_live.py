"""Live input: `client.live(target=...)`, a request whose source text keeps changing.

Each `update(text)` sends the whole current text; the server answers with partials whose
`stable` part never changes (unless `reset`) and a `tentative` rest. `finish()` sends the
final text and returns the complete translation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import ConnectionError, TolkError, error_from_frame
from ._options import RequestOptions, update_frame
from .protocol import is_terminal

if TYPE_CHECKING:
    from ._connection import Connection, Item
    from ._pool import Pool
    from ._portal import LoopThread

log = logging.getLogger("tolk")
__all__ = ["AsyncLiveTranslation", "LivePartial", "LiveResult", "LiveTranslation"]


@dataclass(frozen=True, slots=True)
class LivePartial:
    """The current translation: `stable + tentative`; `stable` only grows unless `reset`."""

    version: int
    stable: str
    tentative: str
    reset: bool = False

    @property
    def text(self) -> str:
        return self.stable + self.tentative


@dataclass(frozen=True, slots=True)
class LiveResult:
    translation: str
    source: str
    target: str
    live: dict[str, Any] = field(default_factory=dict)  # updates, resets, erasure, ...
    frame: dict[str, Any] = field(default_factory=dict)


class AsyncLiveTranslation:
    """`async with client.live(target="fi") as live:` — see the module docstring."""

    def __init__(self, pool: Pool, rid: str, options: RequestOptions) -> None:
        self._pool = pool
        self.id = rid
        self._options = options
        self._conn: Connection | None = None
        self._queue: asyncio.Queue[Item] | None = None
        self._sent = 0
        self._text = ""
        self.latest: LivePartial | None = None
        self.result: LiveResult | None = None
        self.errors: list[TolkError] = []  # refused updates (the request went on)

    async def __aenter__(self) -> AsyncLiveTranslation:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the live request on the server if it has not completed."""
        if self._conn is not None and self.result is None:
            self._conn.abandon(self.id)

    async def update(self, text: str, *, final: bool = False) -> None:
        """Send the whole current source text (it replaces the previous one)."""
        frame = update_frame(self.id, text, final, self._options)
        self._text = text
        if self._conn is None:
            self._conn, self._queue = await self._pool.open_request(self.id)
            await self._conn.send_request(self.id, frame)
        else:
            await self._conn.send_more(self.id, frame)
        self._sent += 1

    async def finish(self, text: str | None = None) -> LiveResult:
        """Send the final text (default: the last one) and wait for the translation."""
        await self.update(self._text if text is None else text, final=True)
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    def __aiter__(self) -> AsyncIterator[LivePartial]:
        return self

    async def __anext__(self) -> LivePartial:
        """The next partial; ends after `complete`, raises the error that ended the request."""
        if self.result is not None:
            raise StopAsyncIteration
        if self._queue is None:
            raise ConnectionError("send an update first", request_id=self.id)
        while True:
            item = await self._queue.get()
            if isinstance(item, TolkError):
                raise item
            kind = item.get("type")
            if kind == "partial":
                self.latest = LivePartial(item["version"], item["stable"], item["tentative"],
                                          bool(item.get("reset")))
                return self.latest
            if kind == "complete":
                self.result = LiveResult(item["translation"], item["source"], item["target"],
                                         dict(item.get("live") or {}), item)
                raise StopAsyncIteration
            if kind == "error":
                exc = error_from_frame(item, self.id)
                if is_terminal(item):
                    raise exc
                self.errors.append(exc)
                log.warning("live request %s: update refused: %s", self.id, exc)


class LiveTranslation:
    """The blocking shape: `with client.live(target="fi") as live:` `live.update(text)`,
    `for partial in live.partials(): ...`, `live.finish()`."""

    def __init__(self, portal: LoopThread, inner: AsyncLiveTranslation) -> None:
        self._portal = portal
        self._inner = inner

    @property
    def latest(self) -> LivePartial | None:
        return self._inner.latest

    @property
    def result(self) -> LiveResult | None:
        return self._inner.result

    def update(self, text: str, *, final: bool = False) -> None:
        self._portal.run(self._inner.update(text, final=final))

    def next_partial(self, timeout: float | None = None) -> LivePartial | None:
        """The next partial (None after `complete`, or when `timeout` passes first)."""
        async def get() -> LivePartial | None:
            try:
                return await asyncio.wait_for(self._inner.__anext__(), timeout)
            except (StopAsyncIteration, TimeoutError):
                return None
        return self._portal.run(get())

    def partials(self) -> Iterator[LivePartial]:
        """Partials until `complete`."""
        while (p := self.next_partial()) is not None:
            yield p

    def finish(self, text: str | None = None) -> LiveResult:
        return self._portal.run(self._inner.finish(text))

    def close(self) -> None:
        self._portal.loop().call_soon_threadsafe(self._inner.close)

    def __enter__(self) -> LiveTranslation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
