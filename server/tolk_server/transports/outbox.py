"""The frames waiting for one WebSocket connection's writer, with bounds that cannot deadlock.

- A non-terminal frame (start, token, segment, pong, an error reply) waits for room, at most
  `limit` frames queued. If the writer takes no frame for `stall_s` while a sender waits (the
  peer reads nothing), the sender gets `Stalled` and the connection is torn down. A slow
  reader that keeps taking frames is never torn down, however full its queue.
- A terminal frame (`complete` / `error`) never waits: there is at most one per request and
  target (the request table drops any other), so the queue stays bounded, and a cancel or an
  end is never lost behind a full queue.
"""

from __future__ import annotations

import asyncio
import contextlib

from tolk.protocol import TERMINAL_TYPES, ServerFrame


class Stalled(Exception):
    """The peer has not made room in the queue for `stall_s` seconds."""


class Outbox:
    def __init__(self, limit: int, stall_s: float) -> None:
        self.limit = limit
        self.stall_s = stall_s
        self._queue: asyncio.Queue[ServerFrame | None] = asyncio.Queue()  # bounded by `put`
        self._room = asyncio.Event()  # set when the queue has room (no lock: cancel-safe)
        self._room.set()
        self._progress = 0.0  # loop time the writer last took a frame

    def qsize(self) -> int:
        return self._queue.qsize()

    def put_now(self, frame: ServerFrame | None) -> None:
        """Queue without waiting (terminal frames, and the writer's end marker `None`)."""
        self._queue.put_nowait(frame)

    async def put(self, frame: ServerFrame) -> None:
        """Queue a frame: terminal frames at once, others when there is room (or `Stalled`)."""
        if frame["type"] in TERMINAL_TYPES or self._queue.qsize() < self.limit:
            self._queue.put_nowait(frame)
            return
        loop = asyncio.get_running_loop()
        since = loop.time()
        while self._queue.qsize() >= self.limit:
            idle = loop.time() - max(since, self._progress)
            if idle >= self.stall_s:
                raise Stalled(f"the peer took no frame for {self.stall_s} s")
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), self.stall_s - idle)
        self._queue.put_nowait(frame)

    async def get(self) -> ServerFrame | None:
        frame = await self._queue.get()
        self._progress = asyncio.get_running_loop().time()
        if self._queue.qsize() < self.limit:
            self._room.set()
        return frame
