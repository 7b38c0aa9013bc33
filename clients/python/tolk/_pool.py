"""The connection pool of a client: what every request of one client shares.

Its connections (a request goes to the least loaded one), the slots that bound the requests
in flight, the event loop the client belongs to, the tasks of its requests, request ids, and
the client-level event handler. Streams, flights and live requests hold the pool, never the
client, so the client may import them and not the other way round.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import TYPE_CHECKING, Any

from ._config import Limits
from ._connection import Connection, ConnectionSettings, Item
from ._exceptions import ConnectionError

if TYPE_CHECKING:
    from .events import TranslationEventHandler

__all__ = ["Pool"]


class Pool:
    """`limits.pool_size` lazy connections; at most `pool_size * max_requests_per_connection`
    requests in flight, the rest wait for a slot."""

    def __init__(self, settings: ConnectionSettings, limits: Limits,
                 event_handler: TranslationEventHandler | None) -> None:
        self.settings = settings
        self.limits = limits
        #: The client-level handler: it sees the events of every request of this client.
        self.event_handler = event_handler
        self.connections = [Connection(i, settings, self._release_slot)
                            for i in range(limits.pool_size)]
        self.closed = False
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._id_prefix = f"py-{secrets.token_hex(3)}-"
        self._tasks: set[asyncio.Task[None]] = set()

    def new_id(self) -> str:
        """A request id no other request of this client has."""
        if self.closed:
            raise ConnectionError("the client is closed")
        return f"{self._id_prefix}{next(self._ids)}"

    @property
    def server_info(self) -> dict[str, Any] | None:
        for conn in self.connections:
            if conn.ready_frame is not None:
                return dict(conn.ready_frame)
        return None

    @property
    def connected(self) -> bool:
        return any(conn.is_open for conn in self.connections)

    async def connect(self) -> None:
        """Open a connection now, the first not open yet."""
        if self.closed:
            raise ConnectionError("the client is closed")
        self.bind_loop()
        conn = min(self.connections, key=lambda c: (not c.is_open, c.index))
        await conn.open()

    async def aclose(self) -> None:
        self.closed = True
        await asyncio.gather(*(conn.aclose() for conn in self.connections))

    async def open_request(self, rid: str) -> tuple[Connection, asyncio.Queue[Item]]:
        """Wait for a free slot, then register `rid` on the least-loaded connection."""
        if self.closed:
            raise ConnectionError("the client is closed", request_id=rid)
        self.bind_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(
                self.limits.pool_size * self.limits.max_requests_per_connection)
        await self._slots.acquire()
        if self.closed:
            self._slots.release()
            raise ConnectionError("the client is closed", request_id=rid)
        conn = min(self.connections, key=lambda c: (c.load, not c.is_open, c.index))
        return conn, conn.register(rid)

    def bind_loop(self) -> None:
        """Bind to the running loop on first use; refuse any other loop afterwards."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("this AsyncClient is bound to the event loop it was first used "
                               "on; create one client per event loop")

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a request's task alive until it ends (the loop holds tasks weakly)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()
