"""The WebSocket transport for protocol v1 at `/v1/stream`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import aclosing
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tolk.protocol import (
    AuthFrame,
    CancelFrame,
    PingFrame,
    ProtocolError,
    ServerFrame,
    TranslateFrame,
    encode,
    error,
    parse_client_frame,
    pong,
    ready,
)

from .auth import Principal, bearer
from .sessions import SessionStore
from .state import ServerState
from .translator import Job

log = logging.getLogger("tolk.ws")
POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013


class _Closed(Exception):
    """The peer went away."""


class Connection:
    """One client connection: authentication, then many concurrent requests keyed by id."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.principal: Principal | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.cancel_requested: set[str] = set()
        self.out: asyncio.Queue[ServerFrame | None] = asyncio.Queue(
            state.settings.send_queue_frames
        )
        self.closing = False
        self._drained = asyncio.Event()
        s = state.settings
        self.sessions = SessionStore(s.session_max, s.session_turns, s.session_ttl_s)

    async def serve(self) -> None:
        metrics = self.state.metrics
        metrics.connections.inc()
        self.state.connections.add(self)
        writer = asyncio.create_task(self._writer())
        try:
            self.principal = await self._authenticate()
            if self.principal is None:
                return
            await self.state.engine_ready.wait()
            tr = self.state.translator
            await self.send(ready(self.state.model_name, tr.languages, self.state.auth.enabled))
            while True:
                text = await self._receive()
                if text is None:
                    continue
                try:
                    frame = parse_client_frame(text)
                except ProtocolError as exc:
                    await self.send_error(exc)
                    continue
                await self._dispatch(frame)
        except _Closed:
            pass
        finally:
            self.closing = True
            for task in list(self.tasks.values()):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            self.state.connections.discard(self)
            metrics.connections.dec()

    async def _authenticate(self) -> Principal | None:
        auth = self.state.auth
        if not auth.enabled:
            return auth.authenticate(None)
        header_key = bearer(self.ws.headers.get("authorization"))
        if header_key is not None:
            who = auth.authenticate(header_key)
            if who is None:
                await self.close_with_error("unauthorized", "invalid API key", POLICY_VIOLATION)
            return who
        try:
            text = await asyncio.wait_for(self._receive(), self.state.settings.auth_timeout_s)
        except TimeoutError:
            await self.close_with_error("unauthorized", "authentication timed out",
                                        POLICY_VIOLATION)
            return None
        try:
            frame = parse_client_frame(text) if text is not None else None
        except ProtocolError:
            frame = None
        who = auth.authenticate(frame.api_key) if isinstance(frame, AuthFrame) else None
        if who is None:
            await self.close_with_error(
                "unauthorized", "authenticate first with an auth frame and a valid api_key",
                POLICY_VIOLATION,
            )
        return who

    async def close_with_error(self, code: Any, message: str, close_code: int) -> None:
        await self.send_error(ProtocolError(code, message))
        await self.close(close_code)

    async def close(self, close_code: int) -> None:
        """Flush queued frames, then close the socket."""
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drained.wait(), 2)
        self.closing = True
        with contextlib.suppress(Exception):
            await self.ws.close(close_code)

    async def _receive(self) -> str | None:
        """The next text frame; None for a rejected frame (already answered)."""
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise _Closed
        if msg.get("bytes") is not None:
            await self.send_error(ProtocolError("bad_request", "binary frames are not supported"))
            return None
        text: str = msg.get("text") or ""
        limit = self.state.settings.max_frame_bytes
        if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
            await self.send_error(ProtocolError("too_large", f"frame exceeds {limit} bytes"))
            return None
        return text

    async def _dispatch(self, frame: Any) -> None:
        if isinstance(frame, TranslateFrame):
            await self._start(frame)
        elif isinstance(frame, CancelFrame):
            task = self.tasks.get(frame.id)
            if task is None:  # not a request's terminal frame: it answers the cancel frame
                frame_ = error("bad_request", "no request in flight with this id", frame.id)
                frame_["about"] = "cancel"
                self.state.metrics.errors.labels("bad_request").inc()
                await self.send(frame_)
            else:
                self.cancel_requested.add(frame.id)
                task.cancel()
        elif isinstance(frame, PingFrame):
            await self.send(pong())
        elif isinstance(frame, AuthFrame):
            await self.send_error(ProtocolError("bad_request", "already authenticated"))

    async def _start(self, frame: TranslateFrame) -> None:
        st = self.state
        tr = st.translator
        rid = frame.id or tr.new_id()
        assert self.principal is not None
        try:
            if st.draining:
                raise ProtocolError("overloaded", "the server is shutting down", rid)
            if rid in self.tasks:
                raise ProtocolError("duplicate_id", "a request with this id is in flight", rid)
            if len(self.tasks) >= st.settings.max_inflight_per_connection:
                raise ProtocolError("overloaded", "too many requests in flight on this "
                                    "connection", rid)
            jobs = st.admit(frame, rid, self.principal, self.sessions)
        except ProtocolError as exc:
            await self.send_error(exc)
            return
        task = asyncio.create_task(self._run(rid, jobs))
        self.tasks[rid] = task
        task.add_done_callback(lambda t: self._never_ran(rid, jobs, t))

    def _never_ran(self, rid: str, jobs: list[Job], task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step skips `_run` entirely: clean up here."""
        if self.tasks.get(rid) is not task:
            return
        self.tasks.pop(rid, None)
        assert self.principal is not None
        self.state.release(self.principal)
        if rid in self.cancel_requested and not self.closing:
            for frame in self._cancelled(rid, jobs, {j.target for j in jobs}):
                with contextlib.suppress(asyncio.QueueFull):
                    self.out.put_nowait(frame)
        self.cancel_requested.discard(rid)

    def _cancelled(self, rid: str, jobs: list[Job], open_targets: set[str]) -> list[ServerFrame]:
        """The terminal frames of a cancelled request: one per target still open."""
        frames: list[ServerFrame] = []
        for target in sorted(open_targets):
            self.state.metrics.requests.labels("cancelled").inc()
            self.state.metrics.errors.labels("cancelled").inc()
            frame = error("cancelled", "cancelled by client", rid)
            if jobs[0].tag_target:
                frame["target"] = target
            frames.append(frame)
        return frames

    async def _run(self, rid: str, jobs: list[Job]) -> None:
        open_targets = {j.target for j in jobs}
        try:
            async with aclosing(self.state.translator.stream_many(jobs)) as frames:
                async for frame in frames:
                    if frame["type"] in ("complete", "error"):
                        open_targets.discard(str(frame.get("target", "")))
                    await self.send(frame)
        except asyncio.CancelledError:
            if rid in self.cancel_requested and not self.closing:
                for frame in self._cancelled(rid, jobs, open_targets):
                    await self.send(frame)
        except ProtocolError as exc:
            await self.send_error(exc)
        except Exception:
            log.exception("request %s failed", rid)
            await self.send_error(ProtocolError("internal", "internal error", rid))
        finally:
            assert self.principal is not None
            self.state.release(self.principal)
            self.cancel_requested.discard(rid)
            if self.tasks.get(rid) is asyncio.current_task():
                self.tasks.pop(rid, None)

    async def send(self, frame: ServerFrame) -> None:
        if not self.closing:
            await self.out.put(frame)

    async def send_error(self, exc: ProtocolError) -> None:
        self.state.metrics.errors.labels(exc.code).inc()
        if exc.request_id is not None and exc.code not in ("cancelled",):
            self.state.metrics.requests.labels("error").inc()
        await self.send(error(exc.code, exc.message, exc.request_id))

    async def _writer(self) -> None:
        try:
            while True:
                frame = await self.out.get()
                if frame is None:
                    break
                await self.ws.send_text(encode(frame))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closing = True
        finally:
            self._drained.set()


async def stream_endpoint(ws: WebSocket) -> None:
    state: ServerState = ws.app.state.tolk
    origins = state.settings.allowed_origins
    origin = ws.headers.get("origin")
    if origins and origin is not None and origin not in origins and "*" not in origins:
        await ws.close(POLICY_VIOLATION)
        return
    if state.draining:
        await ws.close(SERVICE_RESTART)
        return
    if len(state.connections) >= state.settings.max_connections:
        await ws.close(TRY_AGAIN_LATER)
        return
    await ws.accept()
    await Connection(ws, state).serve()
