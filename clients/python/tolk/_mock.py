"""An in-memory transport for tests: no sockets (the counterpart of `httpx.MockTransport`).

    async def server(conn: tolk.MockServerConnection) -> None:
        await conn.send({"type": "ready", "protocol": 1, "model": "m",
                         "languages": ["en", "fi"], "auth": False})
        while (frame := await conn.receive()) is not None:
            ...

    client = tolk.AsyncClient(transport=tolk.MockTransport(server))

The handler runs as a task per connection, on the client's event loop; returning from it
closes the connection. `MockServer` is a ready-made handler that speaks protocol v1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._transport import Transport, TransportClosed, TransportConnectError, WireConnection
from .protocol import ProtocolError, UpdateFrame, follow_up
from .protocol.agreement import Agreement, common_prefix_len, words

__all__ = ["MockServer", "MockServerConnection", "MockTransport"]

MockHandler = Callable[["MockServerConnection"], Awaitable[None]]


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class MockServerConnection:
    """The server's end of one in-memory connection."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.url = url
        self.headers: dict[str, str] = dict(headers)
        #: Every frame the client sent on this connection, decoded, in order.
        self.received: list[dict[str, Any]] = []
        self.closed = False
        self.close_code: int | None = None
        self._to_client: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._to_server: asyncio.Queue[str | None] = asyncio.Queue()

    async def receive(self) -> dict[str, Any] | None:
        """The next frame from the client (decoded JSON); `None` once the client closed."""
        text = await self.receive_text()
        if text is None:
            return None
        frame: dict[str, Any] = json.loads(text)
        return frame

    async def receive_text(self) -> str | None:
        text = await self._to_server.get()
        if text is None:
            self._to_server.put_nowait(None)  # stay closed for later calls
            return None
        with contextlib.suppress(ValueError):
            obj = json.loads(text)
            if isinstance(obj, dict):
                self.received.append(obj)
        return text

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Send one frame (a dict, encoded as JSON) to the client; dropped once closed."""
        await self.send_text(json.dumps(dict(frame), ensure_ascii=False))

    async def send_text(self, text: str) -> None:
        if not self.closed:
            self._to_client.put_nowait(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection; the client sees it closed with `code`."""
        if not self.closed:
            self.closed = True
            self.close_code = code
            self._to_client.put_nowait(_Close(code, reason))
            self._to_server.put_nowait(None)


class _ClientEnd(WireConnection):
    def __init__(self, conn: MockServerConnection) -> None:
        self._conn = conn
        self._close: _Close | None = None

    async def send(self, text: str) -> None:
        if self._close is not None or self._conn.closed:
            raise TransportClosed(self._conn.close_code, "closed")
        await asyncio.sleep(0)  # a real send yields too
        self._conn._to_server.put_nowait(text)

    async def recv(self) -> str:
        if self._close is not None:
            raise TransportClosed(self._close.code, self._close.reason)
        item = await self._conn._to_client.get()
        if isinstance(item, _Close):
            self._close = item
            raise TransportClosed(item.code, item.reason)
        return item

    async def close(self) -> None:
        if self._close is None:
            self._close = _Close(1000, "closed by client")
        if not self._conn.closed:
            self._conn.closed = True
            self._conn.close_code = 1000
            self._conn._to_server.put_nowait(None)


class MockTransport(Transport):
    """Connects the client to `handler` (default: a `MockServer()`) in memory.

    `fail_connects`: that many connection attempts fail first (as if refused), to exercise
    reconnecting. `connect_attempts` and `connections` record what happened.
    """

    def __init__(self, handler: MockHandler | None = None, *, fail_connects: int = 0) -> None:
        self.handler: MockHandler = handler if handler is not None else MockServer()
        self.fail_connects = fail_connects
        self.connect_attempts = 0
        self.connections: list[MockServerConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float | None
    ) -> WireConnection:
        self.connect_attempts += 1
        if self.fail_connects > 0:
            self.fail_connects -= 1
            raise TransportConnectError("connection refused (mock)", retryable=True)
        conn = MockServerConnection(url, headers)
        self.connections.append(conn)
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _ClientEnd(conn)

    async def _serve(self, conn: MockServerConnection) -> None:
        code = 1000
        try:
            await self.handler(conn)
        except asyncio.CancelledError:
            raise
        except Exception:
            code = 1011
        finally:
            await conn.close(code)


def _forget(tasks: dict[str, asyncio.Task[None]], rid: str, _task: object) -> None:
    tasks.pop(rid, None)


def _reverse_words(text: str, source: str, target: str) -> str:
    return " ".join(text.split()[::-1])


def _split(text: str) -> list[str]:
    return words(text) or [""]


class _Live:
    """One mock live request: its stable part by the server's rule (`tolk.protocol.agreement`:
    the words two consecutive translations agree on, a reset when one contradicts it)."""

    def __init__(self, frame: dict[str, Any], source: str) -> None:
        self.frame = frame
        self.first = frame  # its options hold for the whole request (`follow_up`)
        self.source = source
        self.agreement = Agreement(hold_words=0)
        self.updates = 0
        self.partials = 0
        self.shown = ""
        self.erased = 0

    def step(self, translation: str, final: bool) -> dict[str, Any]:
        step = self.agreement.push(translation, final)
        self.partials += 1
        self.erased += len(self.shown) - common_prefix_len(self.shown, translation)
        self.shown = translation
        out = {"type": "partial", "id": self.frame["id"], "version": self.updates,
               "stable": step.stable, "tentative": step.tentative}
        if step.reset:
            out["reset"] = True
        return out


class MockServer:
    """A handler speaking protocol v1: `ready`, then for each `translate` a `start`, one
    `token` per word and a `complete`; `cancel` ends a request with `cancelled`; `ping` gets
    `pong`. `translate(text, source, target)` makes the translation (default: the words in
    reverse order). `api_key`: require `Authorization: Bearer <key>`.

    Live input: the first `update` for an id gets a `start`, every `update` a `partial`
    (`stable`: the words the translations of two consecutive texts agree on; `reset` when a
    translation contradicts it), and the `final` one a `complete` with `live` figures.
    Later updates inherit the first one's options (one that changes them gets an `error`
    with `about: update`, as does an `update` for a `translate` id); `cancel` ends a
    live request with `cancelled`.
    `live` holds the `update` frames per id."""

    def __init__(
        self,
        *,
        translate: Callable[[str, str, str], str] | None = None,
        token_delay: float = 0.0,
        languages: tuple[str, ...] = ("en", "fi"),
        api_key: str | None = None,
        answer_pings: bool = True,
    ) -> None:
        self.translate: Callable[[str, str, str], str] = translate or _reverse_words
        self.token_delay = token_delay
        self.languages = languages
        self.api_key = api_key
        self.answer_pings = answer_pings
        #: Every translate frame received, and the ids of the requests cancelled.
        self.requests: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.completed: list[str] = []
        self.live: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, conn: MockServerConnection) -> None:
        if self.api_key is not None:
            if conn.headers.get("Authorization") != f"Bearer {self.api_key}":
                await conn.send({"type": "error", "code": "unauthorized",
                                 "message": "invalid API key"})
                await conn.close(1008)
                return
        await conn.send({"type": "ready", "protocol": 1, "model": "mock",
                         "languages": list(self.languages), "auth": self.api_key is not None})
        tasks: dict[str, asyncio.Task[None]] = {}
        lives: dict[str, _Live] = {}
        try:
            while (frame := await conn.receive()) is not None:
                kind = frame.get("type")
                rid = frame.get("id")
                if kind == "translate" and isinstance(rid, str):
                    self.requests.append(frame)
                    if rid in tasks:
                        await conn.send({"type": "error", "id": rid, "code": "duplicate_id",
                                         "message": "a request with this id is in flight"})
                        continue
                    task = asyncio.get_running_loop().create_task(self._run(conn, frame))
                    tasks[rid] = task
                    task.add_done_callback(functools.partial(_forget, tasks, rid))
                elif kind == "update" and isinstance(rid, str):
                    await self._update(conn, frame, rid, rid in tasks, lives)
                elif kind == "cancel" and isinstance(rid, str):
                    if lives.pop(rid, None) is not None:
                        self.cancelled.append(rid)
                        await conn.send({"type": "error", "id": rid, "code": "cancelled",
                                         "message": "cancelled by client"})
                    elif rid in tasks:
                        self.cancelled.append(rid)
                        tasks[rid].cancel()
                    else:
                        await conn.send({"type": "error", "id": rid, "code": "bad_request",
                                         "message": "no request in flight with this id"})
                elif kind == "ping":
                    if self.answer_pings:
                        await conn.send({"type": "pong"})
        finally:
            for task in tasks.values():
                task.cancel()

    async def _update(self, conn: MockServerConnection, frame: dict[str, Any], rid: str,
                      is_translate: bool, lives: dict[str, _Live]) -> None:
        live = lives.get(rid)
        if is_translate:
            await conn.send({"type": "error", "id": rid, "code": "bad_request", "about": "update",
                             "message": "this id is a translate request in flight; an update "
                             "needs a live request"})
            return
        if live is not None:  # a later update inherits the first's options, or is refused
            try:
                frame = follow_up(UpdateFrame.model_validate(live.first),
                                  UpdateFrame.model_validate(frame)).model_dump(exclude_none=True)
            except (ProtocolError, ValueError) as exc:
                await conn.send({"type": "error", "id": rid, "code": "bad_request",
                                 "about": "update", "message": str(exc)})
                return
        target = frame.get("target", "")
        self.live.setdefault(rid, []).append(frame)
        if live is None:
            if (source := await self._languages(conn, frame)) is None:
                return
            live = lives[rid] = _Live(frame, source)
            await conn.send({"type": "start", "id": rid, "request_id": f"mock-{rid}",
                             "source": source, "target": target})
        live.frame = frame
        live.updates += 1
        final = bool(frame.get("final"))
        translation = self.translate(frame.get("text", ""), live.source, target)
        await conn.send(live.step(translation, final))
        if final:
            await conn.send({
                "type": "complete", "id": rid, "translation": translation,
                "source": live.source, "target": target, "tokens": len(_split(translation)),
                "first_token_ms": 0.0, "latency_ms": 0.0, "finish_reason": "stop",
                "live": {"updates": live.updates, "partials": live.partials,
                         "resets": live.agreement.resets, "laal": 0.0,
                         "normalized_erasure": live.erased / max(1, len(translation)),
                         "first_partial_ms": 0.0, "final_ms": 0.0}})
            self.completed.append(rid)
            del lives[rid]  # the id is free again

    async def _languages(self, conn: MockServerConnection, frame: dict[str, Any]) -> str | None:
        """The request's source language (auto: the other one), or None after an error for
        an unsupported target."""
        target = frame.get("target", "")
        if target not in self.languages:
            await conn.send({"type": "error", "id": frame["id"], "code": "unsupported_language",
                             "message": f"unsupported target language {target!r}"})
            return None
        source = str(frame.get("source") or "auto")
        if source == "auto":
            source = next((lang for lang in self.languages if lang != target), "en")
        return source

    async def _run(self, conn: MockServerConnection, frame: dict[str, Any]) -> None:
        rid = frame["id"]
        target = frame["target"]
        if (source := await self._languages(conn, frame)) is None:
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            await conn.send({"type": "start", "id": rid, "request_id": f"mock-{rid}",
                             "source": source, "target": target})
            translation = self.translate(frame["text"], source, target)
            pieces = _split(translation)[: frame.get("max_tokens") or None]
            first_ms: float | None = None
            for i, piece in enumerate(pieces):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                if first_ms is None:
                    first_ms = (loop.time() - t0) * 1000
                if frame.get("stream", True):
                    await conn.send({"type": "token", "id": rid, "token": piece, "index": i})
            await conn.send({"type": "complete", "id": rid, "translation": "".join(pieces),
                             "source": source, "target": target, "tokens": len(pieces),
                             "first_token_ms": first_ms,
                             "latency_ms": (loop.time() - t0) * 1000, "finish_reason": "stop"})
            self.completed.append(rid)
        except asyncio.CancelledError:
            await conn.send({"type": "error", "id": rid, "code": "cancelled",
                             "message": "cancelled by client"})
