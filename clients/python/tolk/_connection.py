"""One multiplexed connection: lazy (re)connect with backoff, a reader that routes frames by
request id, protocol heartbeats, cancel. Lives on one event loop; not thread-safe by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ._config import Reconnect, Timeout
from ._exceptions import (
    AuthenticationError,
    ConnectionError,
    TolkError,
    TranslationError,
    UndeliverableError,
    error_from_frame,
)
from ._transport import Transport, TransportClosed, TransportConnectError, WireConnection
from .protocol.requests import Entry, RequestTable, Route
from .protocol.types import CloseCode

log = logging.getLogger("tolk")

#: What a request's queue carries: a server frame (dict) or the error that ends the request.
Item = dict[str, Any] | TolkError

_PING = '{"type":"ping"}'


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    url: str
    headers: Mapping[str, str]
    transport: Transport
    timeout: Timeout
    reconnect: Reconnect
    heartbeat_interval: float | None
    heartbeat_timeout: float


_Pending = Entry[asyncio.Queue[Item]]  # a request's queue, and whether it started (and size)


class _ConnectFailed(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def cancel_frame(rid: str) -> str:
    return json.dumps({"type": "cancel", "id": rid}, separators=(",", ":"))


class Connection:
    """A slot of the pool. Requests register, then are sent once the connection is open."""

    def __init__(self, index: int, settings: ConnectionSettings,
                 on_release: Callable[[], None]) -> None:
        self.index = index
        self.settings = settings
        self._on_release = on_release
        self.pending: RequestTable[asyncio.Queue[Item]] = RequestTable()
        self.ready_frame: dict[str, Any] | None = None
        #: How many times a connection was opened (1 after the first connect).
        self.opened = 0
        self._wire: WireConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_rx = 0.0
        self._closed = False

    # -- state -----------------------------------------------------------------------------

    @property
    def load(self) -> int:
        return len(self.pending)

    @property
    def is_open(self) -> bool:
        return self._wire is not None

    def register(self, rid: str) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self.pending.close(rid)  # a reused id replaces the old request
        self.pending.open(rid, queue)
        return queue

    def _release(self, rid: str) -> _Pending | None:
        entry = self.pending.close(rid)
        if entry is not None:
            self._on_release()
        return entry

    # -- requests --------------------------------------------------------------------------

    async def send_request(self, rid: str, text: str) -> None:
        """Open the connection if needed and send a registered request's frame."""
        try:
            await self._ensure_open()
            entry = self.pending.get(rid)
            wire = self._wire
            if entry is None:  # abandoned, or failed by a dropped connection meanwhile
                return
            if wire is None:
                raise ConnectionError("connection closed before the request was sent",
                                      request_id=rid)
            entry.size = len(text.encode("utf-8", "surrogatepass"))
            await self._send_on(wire, rid, text)
        except BaseException:
            self._release(rid)
            raise

    async def send_more(self, rid: str, text: str) -> None:
        """Send a further frame of a request in flight (a live request's `update`)."""
        wire = self._wire
        if rid not in self.pending or wire is None:
            raise ConnectionError("the request is no longer in flight", request_id=rid)
        await self._send_on(wire, rid, text)

    async def _send_on(self, wire: WireConnection, rid: str, text: str) -> None:
        """Send one frame; a closed transport drops the wire and fails this request."""
        try:
            await wire.send(text)
        except TransportClosed as exc:
            self._drop(wire, ConnectionError(f"connection lost: {exc}"))
            raise ConnectionError(f"connection lost while sending: {exc}",
                                  request_id=rid) from None

    def abandon(self, rid: str) -> None:
        """The caller gave up on `rid`: forget it and cancel it on the server."""
        if self._release(rid) is None:
            return
        wire = self._wire
        if wire is not None:
            self._spawn(self._send_quietly(wire, cancel_frame(rid)))

    async def _send_quietly(self, wire: WireConnection, text: str) -> None:
        with contextlib.suppress(TransportClosed):
            await wire.send(text)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connecting ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the connection unless it is open (shared with a connect in progress)."""
        await self._ensure_open()

    async def _ensure_open(self) -> None:
        if self._closed:
            raise ConnectionError("the client is closed")
        if self._wire is not None:
            return
        task = self._connecting
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(_consume_exception)
            self._connecting = task
        await asyncio.shield(task)

    async def _connect(self) -> None:
        policy = self.settings.reconnect
        url = self.settings.url
        last: _ConnectFailed | None = None
        attempts = 0
        for attempt in range(policy.max_attempts):
            if attempt:
                delay = policy.delay(attempt)
                log.debug("reconnecting to %s in %.3fs (attempt %d)", url, delay, attempt + 1)
                await asyncio.sleep(delay)
            attempts += 1
            try:
                wire, ready = await self._open_once()
            except _ConnectFailed as exc:
                last = exc
                if not exc.retryable:
                    break
                continue
            if self._closed:
                await _close_quietly(wire)
                raise ConnectionError("the client is closed")
            self._attach(wire, ready)
            return
        raise ConnectionError(f"could not connect to {url} ({attempts} attempt"
                              f"{'s' if attempts != 1 else ''}): {last}")

    async def _open_once(self) -> tuple[WireConnection, dict[str, Any]]:
        s = self.settings
        wire: WireConnection | None = None
        try:
            async with asyncio.timeout(s.timeout.connect):
                wire = await s.transport.connect(s.url, s.headers, s.timeout.connect)
                text = await wire.recv()
        except TimeoutError:
            if wire is not None:
                await _close_quietly(wire)
            raise _ConnectFailed("timed out waiting for the server", retryable=True) from None
        except TransportConnectError as exc:
            raise _ConnectFailed(str(exc), retryable=exc.retryable) from None
        except TransportClosed as exc:
            if exc.code == 1008:
                raise AuthenticationError("the server closed the connection: policy violation "
                                          "(missing or invalid API key?)") from None
            raise _ConnectFailed(str(exc), retryable=True) from None
        except OSError as exc:
            if wire is not None:
                await _close_quietly(wire)
            raise _ConnectFailed(f"{type(exc).__name__}: {exc}", retryable=True) from None
        except BaseException:
            if wire is not None:
                self._spawn(_close_quietly(wire))
            raise
        frame = _decode(text)
        kind = frame.get("type") if frame is not None else None
        if frame is not None and kind == "ready":
            return wire, frame
        await _close_quietly(wire)
        if frame is not None and kind == "error":
            raise error_from_frame(frame)
        raise _ConnectFailed(f"unexpected first frame from the server: {text[:200]!r}",
                             retryable=False)

    def _attach(self, wire: WireConnection, ready: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self._wire = wire
        self.ready_frame = ready
        self.opened += 1
        self._last_rx = loop.time()
        self._reader = loop.create_task(self._read(wire))
        if self.settings.heartbeat_interval is not None:
            self._heartbeat = loop.create_task(self._beat(wire))

    # -- receiving -------------------------------------------------------------------------

    async def _read(self, wire: WireConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                text = await wire.recv()
                self._last_rx = loop.time()
                frame = _decode(text)
                if frame is None:
                    log.warning("ignoring a frame that is not a JSON object: %r", text[:200])
                    continue
                self._route(wire, frame)
        except TransportClosed as exc:
            self._drop(wire, _closed_error(exc))
        except Exception as exc:  # a broken transport: treat like a drop
            self._drop(wire, ConnectionError(f"connection lost: {type(exc).__name__}: {exc}"))

    def _route(self, wire: WireConnection, frame: dict[str, Any]) -> None:
        rid = frame.get("id")
        kind = frame.get("type")
        entry = self.pending.get(rid)
        route = self.pending.observe(frame)
        if entry is not None and route is not Route.DROP:
            assert isinstance(rid, str)
            if route is Route.LAST:
                self._release(rid)
            entry.value.put_nowait(frame)
        elif kind == "error" and rid is None:
            self._unrouted_error(wire, frame)
        # Anything else (pong, frames for abandoned requests) only refreshed `_last_rx`.

    def _unrouted_error(self, wire: WireConnection, frame: dict[str, Any]) -> None:
        exc = error_from_frame(frame)
        if exc.code == "unauthorized":
            self._drop(wire, exc)
        elif exc.code == "too_large":
            # The server could not read the frame's id: fail the largest request not yet
            # started (frames are answered in order, and only an oversized one gets this).
            waiting = [(e.size, rid) for rid, e in self.pending.items() if not e.started]
            if waiting:
                _, rid = max(waiting, key=lambda pair: pair[0])
                entry = self._release(rid)
                if entry is not None:
                    exc.request_id = rid
                    entry.value.put_nowait(exc)
        else:
            log.warning("server error without a request id: %s", exc)

    async def _beat(self, wire: WireConnection) -> None:
        interval = self.settings.heartbeat_interval
        assert interval is not None
        loop = asyncio.get_running_loop()
        while self._wire is wire:
            await asyncio.sleep(interval)
            if loop.time() - self._last_rx < interval:
                continue
            sent = loop.time()
            try:
                await wire.send(_PING)
            except TransportClosed:
                return  # the reader reports the drop
            await asyncio.sleep(self.settings.heartbeat_timeout)
            if self._last_rx < sent and self._wire is wire:
                self._drop(wire, ConnectionError(
                    f"no reply to a heartbeat within {self.settings.heartbeat_timeout}s"))
                return

    def _drop(self, wire: WireConnection, exc: TolkError) -> None:
        """The connection `wire` is gone: fail its requests; the next request reconnects."""
        if self._wire is not wire:
            return
        self._wire = None
        current = asyncio.current_task()
        for task in (self._reader, self._heartbeat):
            if task is not None and task is not current:
                task.cancel()
        self._reader = self._heartbeat = None
        self._spawn(_close_quietly(wire))
        self._fail_all(exc)

    def _fail_all(self, exc: TolkError) -> None:
        for rid in list(self.pending):
            entry = self._release(rid)
            if entry is not None:
                if isinstance(exc, TranslationError):
                    err: TolkError = type(exc)(exc.message, code=exc.code, request_id=rid)
                else:
                    err = type(exc)(exc.message, request_id=rid)
                entry.value.put_nowait(err)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        wire = self._wire
        if wire is not None:
            self._drop(wire, ConnectionError("the client was closed"))
        self._fail_all(ConnectionError("the client was closed"))
        tasks = [t for t in (self._connecting, *self._background) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.timeout.connect or 5.0)


def _closed_error(exc: TransportClosed) -> ConnectionError:
    """The typed error for a closed connection (by the server's close code)."""
    if exc.code == CloseCode.UNDELIVERABLE:
        return UndeliverableError(f"the server could not deliver frames and closed the "
                                  f"connection; requests in flight were cancelled ({exc})")
    return ConnectionError(f"connection lost: {exc}")


def _consume_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _decode(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


async def _close_quietly(wire: WireConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(wire.close(), 5.0)
