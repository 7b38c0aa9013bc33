"""Live translation of an audio stream's phrases (`audio_start.live`).

Each phrase with text gets one live request per target (the live-input mechanism of
`tolk_server.live`): its partial transcripts are the request's `update`s (coalesced, a
superseded hypothesis aborted, the stable prefix forced) and its final transcript is the
`final` update. The request's frames (`start`, `partial`…, `complete` or `error`) go out
tagged with the phrase's `segment`, `speaker` and `target`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

from tolk.protocol import AudioStartFrame, ProtocolError, ServerFrame, UpdateFrame, error
from tolk_server.audio.session import Translate
from tolk_server.live.policy import policy_from
from tolk_server.live.session import LiveRequest
from tolk_server.pipeline.submit import Run

if TYPE_CHECKING:
    from tolk_server.pipeline.admission import Ticket
    from tolk_server.pipeline.context import ContextStore
    from tolk_server.security.auth import Principal
    from tolk_server.state import ServerState

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class PhrasePort(Protocol):
    """What the live phrases need of their audio stream's port (`audio.stream.AudioPort`)."""

    state: ServerState
    send: Callable[[ServerFrame], Awaitable[None]]
    who: Callable[[], Principal | None]
    sessions: ContextStore


def tag(frame: ServerFrame, todo: Translate, target: str) -> None:
    """Mark a translation frame with the phrase it belongs to."""
    f: dict[str, Any] = frame  # type: ignore[assignment]
    f["segment"], f["speaker"], f["target"] = todo.segment, todo.speaker, target


class LivePhrases:
    """The open live requests of one audio stream, by (segment, target)."""

    def __init__(self, port: PhrasePort, start: AudioStartFrame, spawn: Spawn,
                 ticket: Ticket) -> None:
        self.port = port
        self.start = start
        self.spawn = spawn  # runs a request's frames as one of the stream's translation tasks
        self.ticket = ticket  # the stream's: each phrase's characters are charged to its key
        self.open: dict[tuple[int, str], LiveRequest | None] = {}  # None: refused at its start

    async def feed(self, todo: Translate) -> None:
        """A phrase's newest transcript: an update of its live requests (opened on its first)."""
        for target in self.start.targets:
            key = (todo.segment, target)
            if key in self.open:
                live = self.open[key]
                if live is not None and not live.final:
                    live.update(self._frame(todo, target))
            elif todo.text:
                self.open[key] = await self._open(todo, target)
            if todo.final:
                self.open.pop(key, None)

    def clear(self) -> None:
        self.open.clear()

    def _frame(self, todo: Translate, target: str) -> UpdateFrame:
        return UpdateFrame(type="update", id=self.start.id, text=todo.text,
                           source=todo.language or "auto", target=target,
                           quality=self.start.quality, final=todo.final)

    async def _open(self, todo: Translate, target: str) -> LiveRequest | None:
        st = self.port.state
        who = self.port.who()
        assert who is not None
        first = self._frame(todo, target)
        try:
            opts = LiveRequest.first_options(st.pipeline, first)
            run = await st.pipeline.submit(opts, who, self.port.sessions, self.start.id,
                                           within=self.ticket)
        except ProtocolError as exc:  # counted by the pipeline; the phrase's terminal frame
            frame = error(exc.code, exc.message, self.start.id)
            tag(frame, todo, target)
            await self.port.send(frame)
            return None
        s = st.settings
        # The phrase's growth is charged to the stream's key, like its first text (`within`).
        live = LiveRequest(st.pipeline, first, run.jobs[0], self.ticket, s.live_idle_s,
                           policy_from(s))
        self.spawn(self._run(run, live, todo, target))
        return live

    async def _run(self, run: Run, live: LiveRequest, todo: Translate, target: str) -> None:
        async with run, aclosing(live.events()) as frames:
            async for frame in frames:
                tag(frame, todo, target)
                await self.port.send(frame)
