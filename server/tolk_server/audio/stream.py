"""Runs one connection's audio stream: the transport side of `AudioSession`.

`AudioPort` is what the WebSocket connection routes audio frames to. It feeds the sans-I/O
session, recognises phrases off the event loop (one shared recogniser, `asr_workers` at a
time), sends `transcript` frames, translates each final phrase through the translate pipeline
(frames tagged with `segment`, `speaker` and `target`) or, with `live`, each phrase's partials
through live requests (`live_phrases.py`), and ends with `audio_complete` or an `error`.
Closing the port (disconnect) cancels and frees everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from tolk.protocol import (
    AudioEndFrame,
    AudioStartFrame,
    ErrorCode,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    error,
)
from tolk_server.audio.live_phrases import LivePhrases
from tolk_server.audio.service import AudioService
from tolk_server.audio.session import AudioSession, Recognise, Translate
from tolk_server.audio.transcriber import recognise

if TYPE_CHECKING:
    from tolk_server.pipeline.admission import Ticket
    from tolk_server.pipeline.context import ContextStore
    from tolk_server.security.auth import Principal
    from tolk_server.state import ServerState

log = logging.getLogger("tolk.audio")
Send = Callable[[ServerFrame], Awaitable[None]]


class AudioPort:
    """At most one audio stream per connection at a time."""

    def __init__(self, state: ServerState, send: Send,
                 who: Callable[[], Principal | None], sessions: ContextStore) -> None:
        self.state = state
        self.send = send
        self.who = who
        self.sessions = sessions
        self.run: AudioRun | None = None
        self._dropping = False  # the last stream failed: drop its remaining binary frames

    @property
    def service(self) -> AudioService | None:
        svc = getattr(self.state, "audio", None)
        return svc if isinstance(svc, AudioService) else None

    async def start(self, frame: AudioStartFrame) -> None:
        svc = self.service
        try:
            why = "speech input is off on this server" if svc is None else svc.unavailable
            if svc is None or why is not None:
                raise ProtocolError(ErrorCode.BAD_REQUEST, why or "", frame.id)
            if self.run is not None:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "an audio stream is already open on "
                                    f"this connection ({self.run.session.id})", frame.id)
            self.state.gate.check_open(frame.id)
            langs = self.state.pipeline.languages
            for t in frame.targets:
                if t not in langs:
                    raise ProtocolError(ErrorCode.UNSUPPORTED_LANGUAGE,
                                        f"target {t!r} is not served", frame.id)
            who = self.who()
            assert who is not None
            ticket = self.state.admission.admit_audio(who, frame.id)
        except ProtocolError as exc:
            await self._error(exc)
            return
        try:  # its voice-activity models are made (or reused) off the event loop
            session = await asyncio.to_thread(
                AudioSession, frame, asyncio.get_running_loop().time(), svc.take_vad,
                svc.vad_config, svc.limits)
        except BaseException as exc:
            self.state.admission.release(ticket)
            if not isinstance(exc, ProtocolError):
                raise
            await self._error(exc)
            return
        self._dropping = False
        self.run = AudioRun(self, svc, session, ticket)

    async def binary(self, data: bytes) -> None:
        if self.run is None:
            if not self._dropping:
                await self._error(ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    "binary frame before audio_start: open an audio stream first"))
            return
        limit = self.state.settings.max_frame_bytes
        try:
            if len(data) > limit:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"binary frame exceeds {limit} bytes",
                                    self.run.session.id)
            self.run.feed(data)
        except ProtocolError as exc:
            await self.fail(exc)

    async def end(self, frame: AudioEndFrame) -> None:
        if self.run is None or self.run.session.id != frame.id:
            await self._error(ProtocolError(ErrorCode.BAD_REQUEST,
                                            "no audio stream open with this id", frame.id))
            return
        try:
            self.run.end()
        except ProtocolError as exc:
            await self.fail(exc)

    async def fail(self, exc: ProtocolError) -> None:
        """The stream's terminal error: send it, free everything."""
        run, self.run = self.run, None
        self._dropping = True
        if run is not None:
            await run.close()
        await self._error(exc)

    def abort(self) -> None:
        """The connection is gone: cancel and free everything now (no awaiting)."""
        run, self.run = self.run, None
        if run is not None:
            run.abort()

    def finished(self, run: AudioRun) -> None:
        if self.run is run:
            self.run = None

    async def _error(self, exc: ProtocolError) -> None:
        await self.send(self.state.pipeline.reject(exc, request=exc.request_id is not None))


class AudioRun:
    """One open stream: a recognition worker, an idle watchdog and translation tasks."""

    def __init__(self, port: AudioPort, service: AudioService, session: AudioSession,
                 ticket: Ticket) -> None:
        self.port = port
        self.service = service
        self.session = session
        self.ticket = ticket  # the stream's admission; its phrases are admitted within it
        self.jobs: deque[Recognise] = deque()
        self.wake = asyncio.Event()
        self.translations: set[asyncio.Task[None]] = set()
        # `live`: partial transcripts drive live requests; otherwise finals are translated
        self.live = (LivePhrases(port, session.start, self._spawn, ticket)
                     if session.start.live else None)
        service.streams += 1
        self._closed = False
        self.worker = asyncio.create_task(self._work())
        self.watchdog = asyncio.create_task(self._watch())

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def feed(self, data: bytes) -> None:
        self._queue(self.session.feed(data, self._now()))

    def end(self) -> None:
        self._queue(self.session.end())
        self.wake.set()

    def _queue(self, jobs: list[Recognise]) -> None:
        if jobs:
            self.jobs.extend(jobs)
            self.wake.set()

    def _next(self) -> Recognise | None:
        """The next phrase to recognise; a partial is skipped when newer audio of it waits."""
        while self.jobs:
            job = self.jobs.popleft()
            if job.final or not any(j.segment == job.segment or j.final for j in self.jobs):
                return job
        return None

    async def _work(self) -> None:
        try:
            tr = await self.service.transcriber()
            language = self.session.start.source
            while True:
                job = self._next()
                if job is None:
                    if self.session.ended:
                        break
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                async with self.service.slots:
                    result = await recognise(tr, job.samples, language)
                frame, todo = self.session.recognised(job, result)
                await self.port.send(frame)
                if todo is not None and self.live is not None:
                    await self.live.feed(todo)
                elif todo is not None:
                    self._spawn(self._translate(todo))
            if self.translations:
                await asyncio.gather(*self.translations, return_exceptions=True)
            await self.port.send(self.session.complete())
            self.port.finished(self)
            self._release()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("audio stream %s failed", self.session.id)
            self.port.finished(self)
            for t in self.translations:
                t.cancel()
            self._release()
            await self.port._error(ProtocolError(
                ErrorCode.INTERNAL, f"speech recognition failed: {exc}", self.session.id))

    async def _watch(self) -> None:
        idle = self.session.limits.idle_timeout_s
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            if self.session.idle(self._now()):
                asyncio.create_task(self.port.fail(ProtocolError(  # noqa: RUF006
                    ErrorCode.BAD_REQUEST,
                    f"no audio for {idle:.0f} s; end the stream with audio_end", self.session.id)))
                return

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.translations.add(task)
        task.add_done_callback(self.translations.discard)

    async def _translate(self, todo: Translate) -> None:
        """The phrase through the translate pipeline; its frames tagged with the phrase."""
        st, sid = self.port.state, self.session.id
        who = self.port.who()
        assert who is not None
        opts = TranslateOptions(id=sid, text=todo.text, source=todo.language or "auto",
                                targets=list(self.session.start.targets),
                                quality=self.session.start.quality)
        try:
            run = await st.pipeline.submit(opts, who, self.port.sessions, sid, kind="audio",
                                           within=self.ticket)
        except ProtocolError as exc:  # counted by the pipeline
            frame = error(exc.code, exc.message, sid)
            frame["segment"], frame["speaker"] = todo.segment, todo.speaker
            await self.port.send(frame)
            return
        async with run, aclosing(run.events()) as frames:
            async for f in frames:
                f["segment"] = todo.segment  # type: ignore[typeddict-unknown-key]
                f["speaker"] = todo.speaker  # type: ignore[typeddict-unknown-key]
                await self.port.send(f)

    def _release(self) -> None:
        """Synchronous, so that it completes even inside a cancelled task."""
        if self._closed:
            return
        self._closed = True
        self.service.streams -= 1
        self.port.state.admission.release(self.ticket)
        self.jobs.clear()
        self.service.give_back_vads([seg.vad for seg in self.session.lanes])
        self.session.lanes.clear()  # the buffered audio
        if self.live is not None:
            self.live.clear()
        if self.watchdog is not asyncio.current_task():
            self.watchdog.cancel()

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel recognition and translations, drop the buffered audio; the tasks to await."""
        current = asyncio.current_task()
        tasks = [t for t in (self.worker, self.watchdog, *self.translations) if t is not current]
        for t in tasks:
            t.cancel()
        self._release()
        return tasks

    async def close(self) -> None:
        tasks = self.abort()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
