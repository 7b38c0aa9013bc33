"""One live request: the newest pending text, at most one generation, and its partials.

Each `update` replaces the pending text (a burst coalesces into one). A hypothesis is the
translation of the current text, generated as a continuation of the stable prefix (the
prefix is appended to the prompt, so the engine neither regenerates nor changes it). An
`update` that arrives while a hypothesis generates aborts it in the engine; the words it
already produced still count as a (truncated) hypothesis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from tolk.protocol import (
    ErrorCode,
    ProtocolError,
    ServerFrame,
    UpdateFrame,
    complete,
    partial,
    start,
)
from tolk.protocol.agreement import Agreement, common_prefix_len, words
from tolk.protocol.measures import laal
from tolk.protocol.types import LiveStats
from tolk_server.live.policy import LivePolicy
from tolk_server.live.policy import masked as masked  # re-exported: the bench and tests use it
from tolk_server.pipeline.admission import Ticket
from tolk_server.pipeline.live_path import LivePath
from tolk_server.pipeline.planning import Plan
from tolk_server.pipeline.submit import Pipeline

log = logging.getLogger("tolk.live")
HISTORY_MAX = 4096  # partials kept for LAAL; erasure is counted as they come


class LiveRequest:
    """One live request (`update` frames in, `partial`s and a `complete` out)."""

    def __init__(self, pipeline: Pipeline, first: UpdateFrame, plan: Plan, ticket: Ticket,
                 idle_s: float, policy: LivePolicy | None = None) -> None:
        self.pipeline = pipeline
        self.first = first  # its options hold for the whole request (`follow_up`)
        self.ticket = ticket  # the text's growth is charged to it
        self._text = first.text  # what the key has been charged for (admitted with it)
        self.path = LivePath(pipeline)
        self.auto = first.source in (None, "auto")
        self.opts = first.model_copy(update={"split": False, "source": plan.source})
        self.plan = plan  # the first update's: its id, request id, target, quality and owner
        self.source = plan.source  # detected again while the text is short
        self.idle_s = idle_s
        self.policy = policy or LivePolicy()
        self.ag = Agreement(self.policy.hold_words, self.policy.agree)
        self._pending: tuple[str, int, bool, float] | None = None
        self._arrived = asyncio.Event()  # any update
        self._wake = asyncio.Event()  # an update that supersedes the hypothesis in the making
        self._stale = False
        self._failure: ProtocolError | None = None
        self.version = 0
        self.final = False
        self.t_open = time.perf_counter()
        self.partials = 0
        self.engine_tokens = 0
        self.first_partial_ms: float | None = None
        self._shown = ""
        self._erased = 0
        self._history: list[tuple[int, str]] = []
        self._last_src: str | None = None
        self.update(first)

    @staticmethod
    def first_options(pipeline: Pipeline, first: UpdateFrame) -> UpdateFrame:
        """The first update as a request to validate and admit (blank or short text too)."""
        return LivePath(pipeline).first_options(first)

    # -- the transport's side -----------------------------------------------------------

    def update(self, frame: UpdateFrame) -> None:
        """Take an `update`: it replaces the pending text. Raises for one that is refused."""
        rid = self.plan.id
        if self.final:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "this live request is already final", rid)
        cap = self.path.max_text_chars
        if len(frame.text) > cap:  # the request ends: its terminal frame says why
            self._failure = ProtocolError(
                ErrorCode.TOO_LARGE, f"text has {len(frame.text)} characters; the limit is "
                f"{cap}", rid)
        self._charge(frame.text)
        self.version += 1
        self.final = frame.final
        self._pending = (frame.text, self.version, frame.final, time.perf_counter())
        self._arrived.set()
        if frame.final or self._failure or settled(frame.text) != self._last_src:
            self._stale = True
            self._wake.set()

    def _charge(self, text: str) -> None:
        """Charge the key for the characters after what `text` shares with the previous text
        (typing: its growth; an edit: the retyped rest). Out of quota: the request ends."""
        grown = len(text) - common_prefix_len(self._text, text)
        self._text = text
        if grown > 0 and self._failure is None:
            try:
                self.path.charge(self.ticket, grown, self.plan.id)
            except ProtocolError as exc:
                self._failure = exc

    # -- the request's frames -----------------------------------------------------------

    async def events(self) -> AsyncGenerator[ServerFrame, None]:
        """The request's frames, counted; a failure ends it with an `error` frame."""
        p = self.pipeline
        try:
            async with aclosing(self.frames()) as frames:
                async for frame in frames:
                    p.count(frame)
                    yield frame
        except ProtocolError as exc:
            yield p.reject(exc, request=True, rid=self.plan.id)
        except Exception:
            log.exception("live request %s failed", self.plan.id)
            yield p.reject(ProtocolError(ErrorCode.INTERNAL, "internal error", self.plan.id),
                           request=True)

    async def frames(self) -> AsyncGenerator[ServerFrame, None]:
        plan = self.plan
        yield start(plan.id, plan.request_id, plan.source, plan.target)
        while True:
            text, version, final, t_update = await self._next()
            src = text if final else settled(text)
            if src == self._last_src and not final:
                continue  # only the word being typed changed: nothing new to translate
            self._last_src = src
            edited = self.ag.set_source(src)
            hyp, whole = await self._hypothesis(src, version)
            if not whole:  # superseded: keep only its whole words
                hyp = "".join(words(hyp)[:-1])
                grows = hyp.startswith(self.ag.stable) and len(hyp) > len(self.ag.stable)
                if not (grows or edited):
                    continue
            step = self.ag.push(hyp, final=final)
            tentative = step.tentative if final else self.policy.shown_tentative(
                "" if step.reset else self._shown, step.stable, step.tentative)
            yield self._partial(version, step.stable, tentative, step.reset, len(text))
            if final:
                yield self._complete(text, hyp, t_update)
                return

    async def _next(self) -> tuple[str, int, bool, float]:
        while self._pending is None and self._failure is None:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), self.idle_s)
            except TimeoutError:
                raise ProtocolError(
                    ErrorCode.EXPIRED, f"no update for {self.idle_s:g} s; the live request ended",
                    self.plan.id) from None
        if self._failure is not None:
            raise self._failure
        assert self._pending is not None
        pending, self._pending = self._pending, None
        self._stale = False
        return pending

    async def _hypothesis(self, text: str, version: int) -> tuple[str, bool]:
        """The translation of `text` (forced on the stable prefix); False if superseded."""
        if not text.strip():
            return "", True
        if self.auto and len(text) < 64:  # settle the detected language early on
            detected = self.path.detect(text)
            if detected is not None and detected != self.plan.target:
                self.opts = self.opts.model_copy(update={"source": detected})
        opts = self.opts.model_copy(update={"text": text})
        plan = self.path.plan(opts, self.plan.id, self.plan.owner)
        self.source = plan.source
        forced = self.ag.stable if self.policy.force_prefix else ""
        out: list[str] = []

        async def pump() -> None:
            gen = self.path.hypothesis(plan, forced, f"{self.plan.request_id}-{version}")
            async with aclosing(gen) as deltas:
                async for delta in deltas:
                    out.append(delta.text)
                    self.engine_tokens += delta.tokens

        if self._stale:  # already superseded
            return forced, False
        task = asyncio.create_task(pump())
        self._wake.clear()
        waker = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({task, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            task.cancel()  # closing the generator aborts the request in the engine
            await asyncio.wait({task})
        if task.cancelled():
            return forced + "".join(out), False
        exc = task.exception()
        if exc is not None:
            raise exc
        return forced + "".join(out), True

    # -- frames and figures -------------------------------------------------------------

    def _partial(self, version: int, stable: str, tentative: str, reset: bool,
                 source_len: int) -> ServerFrame:
        shown = stable + tentative
        self._erased += len(self._shown) - common_prefix_len(self._shown, shown)
        self._shown = shown
        if len(self._history) < HISTORY_MAX:
            self._history.append((source_len, shown))
        self.partials += 1
        if self.first_partial_ms is None and shown:  # the first partial that shows text
            self.first_partial_ms = (time.perf_counter() - self.t_open) * 1000
        return partial(self.plan.id, version, stable, tentative, reset)

    def stats(self, translation: str, source_len: int, final_ms: float) -> LiveStats:
        ne = (self._erased + len(self._shown) - common_prefix_len(self._shown, translation)) / max(
            1, len(translation))
        return {
            "updates": self.version,
            "partials": self.partials,
            "resets": self.ag.resets,
            "normalized_erasure": round(ne, 4),
            "laal": round(laal(self._history, translation, source_len), 3),
            "first_partial_ms": None if self.first_partial_ms is None
            else round(self.first_partial_ms, 3),
            "final_ms": round(final_ms, 3),
        }

    def _complete(self, text: str, translation: str, t_update: float) -> ServerFrame:
        plan = self.plan
        now = time.perf_counter()
        done = complete(plan.id, translation, self.source, plan.target, self.engine_tokens,
                        self.first_partial_ms, (now - self.t_open) * 1000, "stop")
        done["live"] = self.stats(translation, len(text), (now - t_update) * 1000)
        done["live"]["engine_tokens"] = self.engine_tokens
        done["quality"] = plan.quality
        return done


def settled(text: str) -> str:
    """The text up to its last white space: a word still being typed waits (until `final`)."""
    if not text or text[-1].isspace():
        return text
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    return text[: cut + 1] if cut >= 0 else ""
