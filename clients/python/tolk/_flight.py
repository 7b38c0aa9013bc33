"""One request on the wire: sent as soon as it is started, its frames pumped into an inbox.

A `Flight` runs as a task on the client's event loop, independently of whether anyone reads
its stream: it opens the request, sends it, shows each frame to the client-level event
handler, and queues it for the stream. It enforces the request's timeout itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._exceptions import RequestCancelled, RequestTimeout, TolkError, error_from_frame
from .protocol import is_terminal as ends_request

if TYPE_CHECKING:
    from ._connection import Connection, Item
    from ._pool import Pool
    from .events import TranslationEventHandler

log = logging.getLogger("tolk")

__all__ = ["Flight"]


def is_terminal(item: Item) -> bool:
    """A failure, or a frame that ends the request (`tolk.protocol.is_terminal`)."""
    return isinstance(item, TolkError) or ends_request(item)


class Flight:
    """The wire side of a stream; it holds no reference to the stream itself."""

    def __init__(self, pool: Pool, rid: str, frame: str, timeout: float | None,
                 observer: TranslationEventHandler | None) -> None:
        self.pool = pool
        self.rid = rid
        self.frame = frame
        self.timeout = timeout
        self.observer = observer
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self.over = False  # a terminal item was queued (or the caller gave up)

    def start(self) -> None:
        """Begin the request; call on the client's loop (`self.loop` set beforehand or now)."""
        if self.task is not None or self.over:
            return
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run())
        self.pool.track(self.task)

    async def _run(self) -> None:
        rid = self.rid
        try:
            async with asyncio.timeout(self.timeout):
                self.conn, queue = await self.pool.open_request(rid)
                await self.conn.send_request(rid, self.frame)
                while True:
                    item = await queue.get()
                    self._emit(item)
                    if is_terminal(item):
                        return
        except TimeoutError:
            self._forget()
            self._emit(RequestTimeout(f"request {rid} did not finish within {self.timeout}s",
                                      request_id=rid))
        except TolkError as exc:
            self._forget()
            self._emit(exc)
        except Exception as exc:  # a bug or a misuse: end the request visibly
            self._forget()
            self._emit(TolkError(f"{type(exc).__name__}: {exc}", request_id=rid))
        except asyncio.CancelledError:
            self._forget()
            if not self.over:  # the loop is shutting down, not an abandon
                self._emit(RequestCancelled("the client was closed", request_id=rid))
            raise

    def abandon(self) -> None:
        """The caller gave up (on the loop): cancel the request on the server."""
        if self.over:
            return
        self._emit(RequestCancelled("the request was abandoned by the caller",
                                    request_id=self.rid))
        self._forget()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def _forget(self) -> None:
        if self.conn is not None:
            self.conn.abandon(self.rid)  # no-op once the server has ended it

    def _emit(self, item: Item) -> None:
        if self.over:
            return
        self.over = is_terminal(item)
        self.inbox.put_nowait(item)
        if self.observer is not None:
            _notify(self.observer, item, self.rid)


def _notify(handler: TranslationEventHandler, item: Item, rid: str) -> None:
    """Show one frame to a client-level handler; its exceptions are logged."""
    try:
        if isinstance(item, TolkError):
            handler.on_error(item)
            return
        kind = item.get("type")
        if kind == "start":
            handler.on_start(str(item.get("request_id", "")))
        elif kind == "token":
            handler.on_token(str(item.get("token", "")), int(item.get("index", 0)))
        elif kind == "segment":
            handler.on_token(str(item.get("text", "")), int(item.get("index", 0)))
        elif kind == "complete":
            handler.on_complete(str(item.get("translation", "")),
                                float(item.get("latency_ms", 0.0)))
        elif kind == "error":
            handler.on_error(error_from_frame(item, rid))
    except Exception:
        log.exception("the client's event handler failed on %s", _kind(item))


def _kind(item: Item) -> Any:
    return type(item).__name__ if isinstance(item, TolkError) else item.get("type")
