"""Generation: plans run on the engine, and their output becomes protocol frames.

One request may become several engine requests: a long input is split into sentences that
are translated concurrently (continuous batching does the rest) and reassembled strictly in
source order; `targets` runs one plan per target language. No transport and no admission.

A plan runs on the first model of its route; a model that fails before the first output
(dead, not ready, overloaded, an engine error) hands it to the next one (fallback). The
first sentence of a split input goes to the engine alone, the rest once it has produced
its first output (staged submission) and at the plan's `rest_priority` (bulk, for plain
input); a long input's rest (`Plan.rest`) is resolved off the event loop once the first
output is out. A live hypothesis (`hypothesis`) takes the same route, with fallback.
Plans are frozen: what a run learns (the model that served it, a fallback) is its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from tolk.protocol import (
    ErrorCode,
    ProtocolError,
    ServerFrame,
    complete,
    error,
    start,
)
from tolk_server.engine.interface import Delta, Engine, EngineError, RequestRejected
from tolk_server.models.profiles import PriorTurn
from tolk_server.models.routing import ServedModel
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.cache import CachedResult, ResultCache
from tolk_server.pipeline.emitter import Emitter
from tolk_server.pipeline.planning import ModelRun, Part, Plan
from tolk_server.pipeline.reassembly import PartsMerge
from tolk_server.text.glossary import report

_PIECES = re.compile(r"\s*\S+\s*|\s+")
#: The queue key of the rest's message (head-first planning).
_REST = -1
_Item = tuple[int, Delta | BaseException | tuple[Part, ...] | None]


class Generator:
    def __init__(self, engine: Engine, metrics: Metrics, cache: ResultCache,
                 staged: bool = True) -> None:
        self.engine = engine
        self.metrics = metrics
        self.cache = cache
        self.staged = staged

    async def stream_many(self, plans: list[Plan]) -> AsyncGenerator[ServerFrame, None]:
        """The frames of all plans (one per target), interleaved as they come."""
        if len(plans) == 1:
            async with aclosing(self.stream(plans[0])) as frames:
                async for frame in frames:
                    yield frame
            return
        queue: asyncio.Queue[ServerFrame | None] = asyncio.Queue()

        async def run(plan: Plan) -> None:
            try:
                async with aclosing(self.stream(plan)) as frames:
                    async for frame in frames:
                        await queue.put(frame)
            except ProtocolError as exc:
                frame = error(exc.code, exc.message, plan.id)
                frame["target"] = plan.target
                await queue.put(frame)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(run(p)) for p in plans]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stream(self, plan: Plan) -> AsyncGenerator[ServerFrame, None]:
        """start, token|segment…, complete. Raises ProtocolError on engine failure."""
        yield start(plan.id, plan.request_id, plan.source, plan.target)
        out = Emitter(plan, self.metrics)
        cached = self._lookup(plan)
        if cached is not None:
            for piece in _PIECES.findall(cached.translation):
                for frame in out.push(piece, 0):
                    yield frame
            out.tokens, out.sentences = cached.tokens, cached.sentences
        else:
            async with aclosing(self._routed(plan, out)) as frames:
                async for frame in frames:
                    yield frame
        for frame in out.finish():
            yield frame
        yield self._complete(plan, out, cached)

    def _lookup(self, plan: Plan) -> CachedResult | None:
        """The cached translation (counted as a hit or a miss); the text itself when there
        is nothing to translate."""
        if plan.source == plan.target:  # nothing to translate: echo the text unchanged
            rest = 0 if plan.rest is None else len(plan.rest.sentences())
            return CachedResult(plan.text, 0, len(plan.parts) + rest)
        cached = self.cache.get(plan.key)
        self.metrics.cache.labels("miss" if cached is None else "hit").inc()
        return cached

    def _complete(self, plan: Plan, out: Emitter, cached: CachedResult | None
                  ) -> ServerFrame:
        """The terminal frame; the translation is cached and kept as session context."""
        translation = "".join(out.parts)
        latency = (time.perf_counter() - plan.t0) * 1000
        self.metrics.duration.observe(latency / 1000)
        self.metrics.output_tokens.inc(out.tokens)
        if cached is None and out.finish_reason == "stop" and out.fallback is None:
            self.cache.put(plan.key, CachedResult(translation, out.tokens, out.sentences))
        if plan.session and plan.contexts is not None:
            plan.contexts.add(plan.session, PriorTurn(plan.text, translation, plan.source,
                                                      plan.target))
        done = complete(plan.id, translation, plan.source, plan.target, out.tokens,
                        out.first_ms, latency, out.finish_reason)
        done["quality"] = plan.quality
        done["model"] = out.served_by or plan.runs[0].model.name
        if out.fallback is not None:
            done["fallback"] = out.fallback
        if plan.split:
            done["sentences"] = out.sentences
        if cached is not None and plan.source != plan.target:
            done["cached"] = True
        if plan.session:
            done["session"] = plan.session
        if plan.glossary:
            done["glossary"] = report(plan.glossary, plan.text, translation)
        return done

    async def _routed(self, plan: Plan, out: Emitter) -> AsyncGenerator[ServerFrame, None]:
        """Run the plan on the first available model of its route; fall back before output."""
        last: ProtocolError | None = None
        for n, run in enumerate(plan.runs):
            model = run.model
            final = n == len(plan.runs) - 1
            reason = None if final else unavailable(model)
            if reason is None:
                model.inflight += 1
                try:
                    attempt = _Attempt(plan, run, out, self.staged)
                    async with aclosing(attempt.frames(final)) as frames:
                        async for frame in frames:
                            yield frame
                    out.served_by = model.name
                    return
                except _Unstarted as exc:
                    reason, last = exc.reason, exc.error
                finally:
                    model.inflight -= 1
            self._fell_back(model, plan.runs[n + 1].model, reason)
            if out.fallback is None:
                out.fallback = {"from": model.name, "reason": reason}
        raise last or ProtocolError(ErrorCode.ENGINE_ERROR, "no model could serve it", plan.id)

    def _fell_back(self, model: ServedModel, to: ServedModel, reason: str) -> None:
        self.metrics.fallbacks.labels(model.name, to.name, reason).inc()

    async def hypothesis(self, plan: Plan, forced: str, rid: str
                         ) -> AsyncGenerator[Delta, None]:
        """A live hypothesis: the continuation of `plan`'s prompt after `forced` (the stable
        prefix), on the first available model of the plan's route; a model that fails before
        its first delta hands it to the next one (fallback, counted). Its output tokens are
        counted. Closing the generator aborts the request in the engine (a superseded
        hypothesis). Never cached: the forced prefix changes from one hypothesis to the next
        and a superseded one is cut short, so none is a reusable translation of its text."""
        last: ProtocolError | None = None
        for n, run in enumerate(plan.runs):
            final = n == len(plan.runs) - 1
            reason = None if final else unavailable(run.model)
            if reason is None:
                run.model.inflight += 1
                started = False
                try:
                    gen = run.model.engine.generate(run.parts[0].prompt + forced, run.params, rid)
                    async with aclosing(gen) as deltas:
                        async for delta in deltas:
                            started = True
                            self.metrics.output_tokens.inc(delta.tokens)
                            yield delta
                    return
                except Exception as exc:
                    err = _error(exc, plan.id)
                    if err is None:
                        raise
                    if started or final or err.code != ErrorCode.ENGINE_ERROR:
                        raise err from exc
                    reason, last = "engine_error", err
                finally:
                    run.model.inflight -= 1
            self._fell_back(run.model, plan.runs[n + 1].model, reason)
        raise last or ProtocolError(ErrorCode.ENGINE_ERROR, "no model could serve it", plan.id)


class _Attempt:
    """One model's run of a plan: its parts submitted to the engine concurrently (the rest
    of a long input once the first output is out), their text merged in source order."""

    def __init__(self, plan: Plan, run: ModelRun, out: Emitter, staged: bool) -> None:
        self.plan, self.run, self.out = plan, run, out
        self.split = plan.split
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        # Staged submission: the later sentences wait for the first one's first output.
        self.gate = asyncio.Event()
        if not self.split or not staged or run.params.decoding != "greedy":
            self.gate.set()
        self.shown = asyncio.Event()  # the first output is out: the rest may be split
        self.tasks: list[asyncio.Task[None]] = []
        self.merge = PartsMerge([(p.lead, p.trail) for p in run.parts])
        self.parts = len(run.parts)

    def _submit(self, k: int, prompt: str) -> None:
        self.tasks.append(asyncio.create_task(self._pump(k, prompt)))

    async def _pump(self, k: int, prompt: str) -> None:
        rid = f"{self.plan.request_id}-{k}" if self.split else self.plan.request_id
        params = self.run.params
        try:
            if k:
                params = dataclasses.replace(params, priority=self.plan.rest_priority)
                await self.gate.wait()
            engine = self.run.model.engine
            async with aclosing(engine.generate(prompt, params, rid)) as deltas:
                async for delta in deltas:
                    self.gate.set()
                    self.queue.put_nowait((k, delta))
            self.queue.put_nowait((k, None))
        except Exception as exc:
            self.queue.put_nowait((k, exc))
        finally:
            self.gate.set()  # the first sentence ended or failed: release the others

    async def _resolve_rest(self) -> None:
        """Head first: the rest is split once the first output is out (off the event loop),
        while the first sentence runs on."""
        rest = self.plan.rest
        assert rest is not None
        await self.shown.wait()
        try:
            parts = await asyncio.to_thread(rest.parts, self.run)
        except Exception as exc:
            self.queue.put_nowait((_REST, exc))
            return
        self.queue.put_nowait((_REST, parts))

    async def frames(self, final: bool) -> AsyncGenerator[ServerFrame, None]:
        """Every part's text, strictly in source order, as frames."""
        for k, prompt in enumerate(self.run.prompts):
            self._submit(k, prompt)
        pending_rest = self.plan.rest is not None
        if pending_rest:
            self.tasks.append(asyncio.create_task(self._resolve_rest()))
        out = self.out
        released = self.merge.begin()
        received = False
        try:
            while True:
                for seq, text in released:
                    for frame in out.push(text, seq):
                        yield frame
                if out.first_ms is not None:
                    self.shown.set()
                if self.merge.done and not pending_rest:
                    break
                deadline = out.deadline()
                timeout = None if deadline is None else max(0.0, deadline - out.now_ms()) / 1000
                try:
                    k, item = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    released = []
                    for frame in out.poll():
                        yield frame
                    continue
                if isinstance(item, BaseException):
                    failure = self._failure(item, received, final)
                    if failure is item:
                        raise item
                    raise failure from item
                if k == _REST:  # the rest of the sentences are known: submit them
                    assert isinstance(item, tuple)
                    released, pending_rest = self._take_rest(item), False
                    continue
                received = True
                released = self._take(k, item)
        finally:
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def _take_rest(self, parts: tuple[Part, ...]) -> list[tuple[int, str]]:
        first = self.parts
        self.parts += len(parts)
        self.out.sentences = self.parts
        for k, part in enumerate(parts, first):
            self._submit(k, part.prompt)
        return self.merge.add([(p.lead, p.trail) for p in parts])

    def _take(self, k: int, item: Delta | tuple[Part, ...] | None) -> list[tuple[int, str]]:
        if item is None:
            self.shown.set()
            return self.merge.end(k)
        assert isinstance(item, Delta)
        self.out.tokens += item.tokens
        if item.finish_reason == "length":
            self.out.finish_reason = "length"
        return self.merge.text(k, item.text)

    def _failure(self, exc: BaseException, received: bool, final: bool) -> BaseException:
        err = _error(exc, self.plan.id)
        if err is None:
            return exc
        if not received and not final and err.code == ErrorCode.ENGINE_ERROR:
            return _Unstarted("engine_error", err)
        return err


class _Unstarted(Exception):
    """The model failed before any output: the job may go to the next model of its route."""

    def __init__(self, reason: str, error: ProtocolError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def unavailable(model: ServedModel) -> str | None:
    """Why a model cannot take a request now (None: it can)."""
    if model.engine.dead:
        return "dead"
    if not model.engine.ready:
        return "not_ready"
    if model.overloaded:
        return "overloaded"
    return None


def _error(exc: BaseException, rid: str) -> ProtocolError | None:
    if isinstance(exc, EngineError):
        return ProtocolError(ErrorCode.ENGINE_ERROR, str(exc), rid)
    if isinstance(exc, RequestRejected):
        if exc.code == "too_large":
            return ProtocolError(ErrorCode.TOO_LARGE, str(exc), rid)
        return ProtocolError(ErrorCode.BAD_REQUEST, str(exc), rid)
    return None
