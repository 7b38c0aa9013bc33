"""The WebSocket transport for protocol v1 at `/v1/stream`: frames in, pipeline calls, frames out.

The open requests of a connection are a `tolk.protocol.RequestTable` (exactly one terminal
frame per request and target); the work is the pipeline's (`pipeline.submit.Pipeline`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import aclosing
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tolk.protocol import (
    OPENING_TYPES,
    AudioEndFrame,
    AudioStartFrame,
    AuthFrame,
    CancelFrame,
    CloseCode,
    ErrorCode,
    ErrorFrame,
    PingFrame,
    ProtocolError,
    RequestTable,
    Route,
    ServerFrame,
    TranslateFrame,
    UpdateFrame,
    duplicate_id,
    encode,
    follow_up,
    is_terminal,
    parse_client_frame,
    pong,
    ready,
    refusal,
)
from tolk_server.audio.stream import AudioPort
from tolk_server.live.policy import policy_from
from tolk_server.live.session import LiveRequest
from tolk_server.pipeline.context import ContextStore
from tolk_server.pipeline.submit import Run
from tolk_server.security.auth import ANONYMOUS, Principal, bearer
from tolk_server.state import ServerState
from tolk_server.stores.health import StoreUnavailable
from tolk_server.transports.outbox import Outbox, Stalled
from tolk_server.transports.uvicorn_bounds import abort_connection

log = logging.getLogger("tolk.ws")
POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
SERVICE_RESTART = CloseCode.SERVICE_RESTART
TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER
FLUSH_TIMEOUT_S = 2.0  # queued frames get this long to reach the peer before a close
CLOSE_TIMEOUT_S = 2.0  # then the close frame; a peer that does not read is aborted


class _Closed(Exception):
    """The peer went away."""


class Connection:
    """One client connection: authentication, then many concurrent requests keyed by id."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.principal: Principal | None = None
        self.requests: RequestTable[asyncio.Task[None]] = RequestTable()
        self.live: dict[str, LiveRequest] = {}  # the live requests among them
        self.out = Outbox(state.settings.send_queue_frames, state.settings.send_stall_s)
        self.closing = False
        self._drained = asyncio.Event()
        self._aborted = False  # frames cannot be delivered: see `_abort_now`
        self._closer: asyncio.Task[None] | None = None
        s = state.settings
        self.sessions = ContextStore(s.session_max, s.session_turns, s.session_ttl_s)
        self.audio = AudioPort(state, self._send_or_drop, lambda: self.principal, self.sessions)

    async def serve(self) -> None:
        """Read until the peer leaves. A connection that cannot deliver (a stalled send queue,
        a failed write) is aborted at once: every request is cancelled and its slots released,
        whatever the reader is doing, and the socket is closed with 4001 (or dropped)."""
        metrics = self.state.metrics
        metrics.connections.inc()
        self.state.connections.add(self)
        writer = asyncio.create_task(self._writer())
        try:
            await self._read()
        except (_Closed, Stalled):
            pass
        finally:
            self.closing = True
            self.audio.abort()
            await self._cancel_all()
            if self._closer is not None:
                with contextlib.suppress(BaseException):
                    await self._closer
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            self.state.connections.discard(self)
            metrics.connections.dec()

    async def _read(self) -> None:
        self.principal = await self._authenticate()
        if self.principal is None:
            return
        if self.principal is not ANONYMOUS:  # a key's sessions go on after a reconnect
            self.sessions = self.audio.sessions = self.state.key_sessions(self.principal)
        await self.state.engine_ready.wait()
        hello = ready(self.state.model_name, self.state.pipeline.languages,
                      self.state.gate.keys_required)
        if len(self.state.models.models) > 1:  # name the models and what each serves
            hello["models"] = [{k: d[k] for k in ("name", "languages", "routed_for")}
                               for d in self.state.models.describe()]
        await self.send(hello)
        while not self._aborted:
            text = await self._receive()
            if text is None or self._aborted:
                continue
            try:
                frame = parse_client_frame(text)
            except ProtocolError as exc:
                await self.refuse(exc)
                continue
            await self._dispatch(frame)

    def _abort_now(self, why: str) -> None:
        """Frames cannot be delivered: cancel every request now, and close with 4001."""
        if self._aborted:
            return
        self._aborted = True
        self.closing = True
        log.warning("aborting a connection (%s; %d frames queued)", why, self.out.qsize())
        self.audio.abort()
        for _, entry in self.requests.items():
            entry.value.cancel()
        self._closer = asyncio.create_task(self._close_undeliverable())

    async def _close_undeliverable(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(CloseCode.UNDELIVERABLE), CLOSE_TIMEOUT_S)
        except TimeoutError:  # the peer is not reading: drop it (and its buffer) at once
            abort_connection(self.ws.scope)
        except Exception:
            pass

    async def _cancel_all(self) -> None:
        tasks = [entry.value for _, entry in self.requests.items()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shut_down(self, message: str) -> None:
        """The drain deadline: end every request with `shutting_down`, then close 1012."""
        for rid in self.requests:
            for frame in self.state.pipeline.end(
                    self.requests.end_open(rid, ErrorCode.SHUTTING_DOWN, message)):
                self.out.put_now(frame)
        await self._cancel_all()
        await self.close(SERVICE_RESTART)

    async def _authenticate(self) -> Principal | None:
        """The connection's key, from its `Authorization` header or its first frame (`auth`)."""
        header_key = bearer(self.ws.headers.get("authorization"))
        if not self.state.gate.keys_required or header_key is not None:
            return await self._admit_key(header_key, "invalid API key")
        try:
            text = await asyncio.wait_for(self._receive(), self.state.settings.auth_timeout_s)
        except TimeoutError:
            await self.close_with_error(ErrorCode.UNAUTHORIZED, "authentication timed out",
                                        POLICY_VIOLATION)
            return None
        try:
            frame = parse_client_frame(text) if text is not None else None
        except ProtocolError:
            frame = None
        return await self._admit_key(frame.api_key if isinstance(frame, AuthFrame) else None,
                                     "authenticate first with an auth frame and a valid api_key")

    async def _admit_key(self, key: str | None, message: str) -> Principal | None:
        """The gate's principal for `key`; refused: the error frame, then a 1008 close."""
        try:
            return self.state.gate.principal(key, message)
        except ProtocolError as exc:  # the store away: 1013, try again later
            await self.close_with_error(exc.code, exc.message, TRY_AGAIN_LATER if isinstance(
                exc, StoreUnavailable) else POLICY_VIOLATION)
            return None

    async def close_with_error(self, code: ErrorCode, message: str, close_code: int) -> None:
        await self.send_error(ProtocolError(code, message))
        await self.close(close_code)

    async def close(self, close_code: int) -> None:
        """Flush queued frames, then close the socket."""
        self.out.put_now(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drained.wait(), FLUSH_TIMEOUT_S)
        self.closing = True
        try:
            await asyncio.wait_for(self.ws.close(close_code), CLOSE_TIMEOUT_S)
        except TimeoutError:  # the peer is not reading: drop it (and its buffer) at once
            abort_connection(self.ws.scope)
        except Exception:
            pass

    async def _receive(self) -> str | None:
        """The next text frame; None for a rejected frame (already answered) or audio."""
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise _Closed
        if msg.get("bytes") is not None:
            if self.principal is not None:
                await self.audio.binary(msg["bytes"])  # PCM of the open audio stream
            else:
                await self.send_error(ProtocolError(ErrorCode.BAD_REQUEST,
                                                    "binary frame before auth"))
            return None
        text: str = msg.get("text") or ""
        limit = self.state.settings.max_frame_bytes
        if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
            await self.send_error(ProtocolError(ErrorCode.TOO_LARGE,
                                                f"frame exceeds {limit} bytes"))
            return None
        return text

    async def _dispatch(self, frame: Any) -> None:
        if isinstance(frame, TranslateFrame):
            await self._start(frame)
        elif isinstance(frame, UpdateFrame):
            await self._update(frame)
        elif isinstance(frame, CancelFrame):
            entry = self.requests.request_cancel(frame.id)
            if entry is None:  # not a request's terminal frame: it answers the cancel frame
                await self.refuse(ProtocolError(
                    ErrorCode.BAD_REQUEST, "no request in flight with this id", frame.id), "cancel")
            else:
                entry.value.cancel()
        elif isinstance(frame, AudioStartFrame):
            await (self.refuse(duplicate_id(frame.id), "audio_start") if self.in_use(frame.id)
                   else self.audio.start(frame))
        elif isinstance(frame, AudioEndFrame):
            await self.audio.end(frame)
        elif isinstance(frame, PingFrame):
            await self.send(pong())
        elif isinstance(frame, AuthFrame):
            await self.send_error(ProtocolError(ErrorCode.BAD_REQUEST, "already authenticated"))

    async def _update(self, frame: UpdateFrame) -> None:
        """Live input: open a live request, or hand the text to the open one."""
        rid = frame.id
        session = self.live.get(rid)
        try:
            if session is not None:
                session.update(follow_up(session.first, frame))
                return
            if self.in_use(frame.id):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "this id is a request in flight "
                                    "that is not live; an update needs a live one", frame.id)
            if frame.targets is not None or frame.target is None:  # it opens the request
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a live request has one `target`", rid)
        except ProtocolError as exc:  # `about` while the id's request goes on (`refuse`)
            await self.refuse(exc, "update")
            return
        await self._start(frame)

    async def _start(self, frame: TranslateFrame | UpdateFrame) -> None:
        st = self.state
        rid = frame.id or st.pipeline.new_id()
        assert self.principal is not None
        if self.in_use(rid):
            await self.refuse(duplicate_id(rid), frame.type)
            return
        try:
            st.gate.check_open(rid)
        except ProtocolError as exc:
            await self.send_error(exc)
            return
        try:  # a live request is validated and admitted as a translate of its first text
            opts: TranslateFrame | UpdateFrame = frame
            if isinstance(frame, UpdateFrame):
                opts = st.pipeline.live_options(frame)
            run = await st.pipeline.submit(opts, self.principal, self.sessions, rid,
                                           connection_inflight=len(self.requests))
        except ProtocolError as exc:  # counted by the pipeline
            await self.send_error(exc, counted=True)
            return
        session = None
        if isinstance(frame, UpdateFrame):
            s = st.settings
            session = LiveRequest(st.pipeline, frame, run.jobs[0], run.ticket, s.live_idle_s,
                                  policy_from(s))
            self.live[rid] = session
        task = asyncio.create_task(self._run(run, session))
        self.requests.open(rid, task, run.targets, run.tagged)
        task.add_done_callback(lambda t: self._never_ran(run, t))

    def _never_ran(self, run: Run, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step skips `_run` entirely: clean up here."""
        entry = self.requests.get(run.id)
        if entry is None or entry.value is not task:
            return
        run.release()
        self.live.pop(run.id, None)
        if entry.cancel_requested and not self.closing:
            for frame in self._cancelled(run.id):
                self.out.put_now(frame)
        self.requests.close(run.id)

    def _cancelled(self, rid: str) -> list[ErrorFrame]:
        """The terminal frames of a cancelled request: one per target still open."""
        frames = self.requests.end_open(rid, ErrorCode.CANCELLED, "cancelled by client")
        return self.state.pipeline.end(frames)

    async def _run(self, run: Run, live: LiveRequest | None = None) -> None:
        rid = run.id
        try:
            events = run.events() if live is None else live.events()
            async with run, aclosing(events) as frames:
                async for frame in frames:
                    if self.requests.observe(frame) is not Route.DROP:
                        await self.send(frame)
        except Stalled:
            pass  # the connection is being torn down
        except asyncio.CancelledError:
            entry = self.requests.get(rid)
            if entry is not None and entry.cancel_requested and not self.closing:
                for frame in self._cancelled(rid):
                    await self.send(frame)
        finally:
            entry = self.requests.get(rid)
            if entry is not None and entry.value is asyncio.current_task():
                self.requests.close(rid)
                self.live.pop(rid, None)

    async def send(self, frame: ServerFrame) -> None:
        """Queue a frame for the writer (see `Outbox`); a stalled queue aborts the connection."""
        if self.closing:
            return
        try:
            await self.out.put(frame)
        except Stalled as exc:
            self._abort_now(str(exc))
            raise

    async def _send_or_drop(self, frame: ServerFrame) -> None:
        """`send` for senders that need not stop when the connection is aborted."""
        with contextlib.suppress(Stalled):
            await self.send(frame)

    async def send_error(self, exc: ProtocolError, counted: bool = False) -> None:
        """Send the `error` frame for `exc` (counting it unless the pipeline did)."""
        await self.send(refusal(exc) if counted else
                        self.state.pipeline.reject(exc, request=exc.request_id is not None))

    def in_use(self, rid: str) -> bool:
        """The id rule of the frames that open a request: one open request per id, any kind."""
        run = self.audio.run
        return rid in self.requests or (run is not None and run.session.id == rid)

    async def refuse(self, exc: ProtocolError, about: str | None = None) -> None:
        """Answer a refused frame of type `about` (default: the one parsing found). It ends
        only the request it would open; else it carries `about` (an open request goes on)."""
        rid, kind = exc.request_id, about or exc.frame
        ends = rid is None or (kind in OPENING_TYPES and not self.in_use(rid))
        frame = refusal(exc, about=None if ends else kind or "frame")
        self.state.pipeline.note(exc.code, request=rid is not None and is_terminal(frame))
        await self.send(frame)

    async def _writer(self) -> None:
        """Send queued frames. A write that does not finish holds up the queue: senders then
        find no progress for `send_stall_s` and abort the connection (see `Outbox`)."""
        try:
            while True:
                frame = await self.out.get()
                if frame is None:
                    break
                await self.ws.send_text(encode(frame))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._abort_now(f"write failed: {type(exc).__name__}")
        finally:
            self._drained.set()


async def stream_endpoint(ws: WebSocket) -> None:
    state: ServerState = ws.app.state.tolk  # Origin and Host: checked by security/origin.py
    await ws.accept()  # refusals below are close codes, which need an accepted socket
    try:
        state.gate.check_open()
    except ProtocolError as exc:
        await ws.close(SERVICE_RESTART, exc.message)
        return
    if len(state.connections) >= state.settings.max_connections:
        await ws.close(TRY_AGAIN_LATER, "too many connections")
        return
    await Connection(ws, state).serve()
