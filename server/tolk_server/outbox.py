"""The frames waiting for one WebSocket connection's writer, with bounds that cannot deadlock.

- A non-terminal frame (start, token, segment, pong, an error reply) waits for room, at most
  `limit` frames queued, and for at most `stall_s`: a peer that reads nothing for that long
  raises `Stalled`, and the connection is torn down.
- A terminal frame (`complete` / `error`) never waits: there is at most one per request and
  target (the request table drops any other), so the queue stays bounded, and a cancel or an
  end is never lost behind a full queue.
"""

from __future__ import annotations

import asyncio

from tolk.protocol import TERMINAL_TYPES, ServerFrame


class Stalled(Exception):
    """The peer has not made room in the queue for `stall_s` seconds."""


class Outbox:
    def __init__(self, limit: int, stall_s: float) -> None:
        self.limit = limit
        self.stall_s = stall_s
        self._queue: asyncio.Queue[ServerFrame | None] = asyncio.Queue()  # bounded by `put`
        self._room = asyncio.Condition()
        self._waiting = 0

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
        self._waiting += 1
        try:
            async with self._room:
                await asyncio.wait_for(
                    self._room.wait_for(lambda: self._queue.qsize() < self.limit), self.stall_s)
        except TimeoutError:
            raise Stalled(f"no room in the send queue for {self.stall_s} s") from None
        finally:
            self._waiting -= 1
        self._queue.put_nowait(frame)

    async def get(self) -> ServerFrame | None:
        frame = await self._queue.get()
        if self._waiting:
            async with self._room:
                self._room.notify_all()
        return frame
