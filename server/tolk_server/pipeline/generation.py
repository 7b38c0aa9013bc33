"""Generation: jobs run on the engine, and their output becomes protocol frames.

One request may become several engine requests: a long input is split into sentences that
are translated concurrently (continuous batching does the rest) and reassembled strictly in
source order; `targets` runs one job per target language. No transport and no admission here.

A job runs on the first model of its route; a model that fails before the first output
(dead, not ready, overloaded, an engine error) hands it to the next one (fallback). The
first sentence of a split input goes to the engine alone, the rest once it has produced
its first output (staged submission) and at the job's `rest_priority` (bulk, for plain
input); a long input's rest is split only then (head-first planning, `Job.tail`).
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
    segment,
    start,
    token,
)
from tolk_server.engine.interface import Delta, Engine, EngineError, RequestRejected
from tolk_server.models.profiles import PriorTurn
from tolk_server.models.routing import ServedModel
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.cache import CachedResult, ResultCache
from tolk_server.pipeline.chunking import Chunker
from tolk_server.pipeline.planning import Job
from tolk_server.pipeline.reassembly import OrderedJoiner
from tolk_server.text.glossary import report

_PIECES = re.compile(r"\s*\S+\s*|\s+")
#: The queue key of the tail's message (head-first planning).
_TAIL = -1


class Generator:
    def __init__(self, engine: Engine, metrics: Metrics, cache: ResultCache,
                 staged: bool = True) -> None:
        self.engine = engine
        self.metrics = metrics
        self.cache = cache
        self.staged = staged

    async def stream_many(self, jobs: list[Job]) -> AsyncGenerator[ServerFrame, None]:
        """The frames of all jobs (one per target), interleaved as they come."""
        if len(jobs) == 1:
            async with aclosing(self.stream(jobs[0])) as frames:
                async for frame in frames:
                    yield frame
            return
        queue: asyncio.Queue[ServerFrame | None] = asyncio.Queue()

        async def run(job: Job) -> None:
            try:
                async with aclosing(self.stream(job)) as frames:
                    async for frame in frames:
                        await queue.put(frame)
            except ProtocolError as exc:
                frame = error(exc.code, exc.message, job.id)
                frame["target"] = job.target
                await queue.put(frame)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(run(j)) for j in jobs]
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

    async def stream(self, job: Job) -> AsyncGenerator[ServerFrame, None]:
        """start, token|segment…, complete. Raises ProtocolError on engine failure."""
        first = start(job.id, job.request_id, job.source, job.target)
        yield first
        out = _Emitter(job, self.metrics)
        cached = self.cache.get(job.key)
        if job.source == job.target:  # nothing to translate: echo the text unchanged
            cached = CachedResult(job.text, 0)
        elif cached is None:
            self.metrics.cache.labels("miss").inc()
        else:
            self.metrics.cache.labels("hit").inc()
        if cached is not None:
            if job.tail is not None:  # for the sentence count only
                job.expand(*job.tail())
            for piece in _PIECES.findall(cached.translation):
                for frame in out.push(piece, 0):
                    yield frame
            out.tokens, finish = cached.tokens, "stop"
        else:
            async with aclosing(self._routed(job, out)) as frames:
                async for frame in frames:
                    yield frame
            finish = out.finish_reason
        for frame in out.finish():
            yield frame
        translation = "".join(out.parts)
        latency = (time.perf_counter() - job.t0) * 1000
        self.metrics.duration.observe(latency / 1000)
        self.metrics.output_tokens.inc(out.tokens)
        if cached is None and finish == "stop" and job.fallback is None:
            self.cache.put(job.key, CachedResult(translation, out.tokens))
        if job.session and job.sessions is not None:
            job.sessions.add(job.session, PriorTurn(job.text, translation, job.source,
                                                    job.target))
        done = complete(job.id, translation, job.source, job.target, out.tokens,
                        out.first_ms, latency, finish)
        done["quality"] = job.quality
        done["model"] = job.served_by or job.variants[0].model.name
        if job.fallback is not None:
            done["fallback"] = job.fallback
        if job.split:
            done["sentences"] = len(job.parts)
        if cached is not None and job.source != job.target:
            done["cached"] = True
        if job.session:
            done["session"] = job.session
        if job.glossary:
            done["glossary"] = report(job.glossary, job.text, translation)
        yield done

    async def _routed(self, job: Job, out: _Emitter) -> AsyncGenerator[ServerFrame, None]:
        """Run the job on the first available model of its route; fall back before output."""
        last: ProtocolError | None = None
        for n, variant in enumerate(job.variants):
            model = variant.model
            final = n == len(job.variants) - 1
            reason = None if final else unavailable(model)
            if reason is None:
                model.inflight += 1
                try:
                    async with aclosing(self._generate(job, out, n, final)) as frames:
                        async for frame in frames:
                            yield frame
                    job.served_by = model.name
                    return
                except _Unstarted as exc:
                    reason, last = exc.reason, exc.error
                finally:
                    model.inflight -= 1
            self.metrics.fallbacks.labels(model.name, job.variants[n + 1].model.name,
                                          reason).inc()
            if job.fallback is None:
                job.fallback = {"from": model.name, "reason": reason}
        raise last or ProtocolError(ErrorCode.ENGINE_ERROR, "no model could serve it", job.id)

    async def _generate(self, job: Job, out: _Emitter, index: int, final: bool = True
                        ) -> AsyncGenerator[ServerFrame, None]:
        """Run every part concurrently; emit their text strictly in source order."""
        variant = job.variants[index]
        split = job.split
        engine = variant.model.engine
        queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()
        # Staged submission: the later sentences wait for the first one's first output.
        gate = asyncio.Event()
        if not split or not self.staged or variant.params.decoding != "greedy":
            gate.set()

        async def pump(k: int, prompt: str) -> None:
            rid = f"{job.request_id}-{k}" if split else job.request_id
            params = variant.params
            try:
                if k:
                    params = dataclasses.replace(params, priority=job.rest_priority)
                    await gate.wait()
                async with aclosing(engine.generate(prompt, params, rid)) as deltas:
                    async for delta in deltas:
                        gate.set()
                        queue.put_nowait((k, delta))
                queue.put_nowait((k, None))
            except Exception as exc:
                queue.put_nowait((k, exc))
            finally:
                gate.set()  # the first sentence ended or failed: release the others

        tasks = [asyncio.create_task(pump(k, p)) for k, p in enumerate(variant.prompts)]
        tail = job.tail
        # Head first: the rest is split once the first output is out (the split holds the
        # GIL for tens of milliseconds), while the first sentence runs on.
        shown = asyncio.Event()

        async def expand() -> None:
            assert tail is not None
            await shown.wait()
            try:
                job.expand(*await asyncio.to_thread(tail))
            except Exception as exc:
                queue.put_nowait((_TAIL, exc))
                return
            prompts = job.variants[index].prompts
            tasks.extend(asyncio.create_task(pump(k, prompts[k]))
                         for k in range(len(variant.prompts), len(prompts)))
            queue.put_nowait((_TAIL, None))

        if tail is not None:
            tasks.append(asyncio.create_task(expand()))
        joiner = OrderedJoiner(len(job.parts))
        released: list[tuple[int, str]] = []
        for k, part in enumerate(job.parts):  # white space before a sentence is kept as is
            released += joiner.push(k, part.lead)
        received = False
        try:
            while True:
                for seq, text in released:
                    for frame in out.push(text, seq):
                        yield frame
                if out.first_ms is not None:
                    shown.set()
                if joiner.done and tail is None:
                    break
                deadline = out.deadline()
                timeout = None if deadline is None else max(0.0, deadline - out.now_ms()) / 1000
                try:
                    k, item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    released = []
                    for frame in out.poll():
                        yield frame
                    if out.first_ms is not None:
                        shown.set()
                    continue
                if isinstance(item, BaseException):
                    err = _error(item, job.id)
                    if err is None:
                        raise item
                    if not received and not final and err.code == ErrorCode.ENGINE_ERROR:
                        raise _Unstarted("engine_error", err) from item
                    raise err from item
                if k == _TAIL:  # the rest of the sentences are known and submitted
                    first = joiner.n
                    joiner.extend(len(job.parts) - first)
                    released = [r for m in range(first, len(job.parts))
                                for r in joiner.push(m, job.parts[m].lead)]
                    tail = None
                    continue
                received = True
                if item is None:
                    shown.set()
                    released = joiner.push(k, job.parts[k].trail) + joiner.finish(k)
                else:
                    out.tokens += item.tokens
                    if item.finish_reason == "length":
                        out.finish_reason = "length"
                    released = joiner.push(k, item.text)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


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


class _Emitter:
    """Chunks the ordered text of one job into token or segment frames."""

    def __init__(self, job: Job, metrics: Metrics) -> None:
        self.job = job
        self.metrics = metrics
        self.chunker = Chunker(job.granularity, max_delay_ms=job.max_delay_ms)
        self.parts: list[str] = []
        self.index = 0
        self.tokens = 0
        self.first_ms: float | None = None
        self.finish_reason = "stop"
        self._seq = 0

    def now_ms(self) -> float:
        return (time.perf_counter() - self.job.t0) * 1000

    def deadline(self) -> float | None:
        return self.chunker.deadline()

    def push(self, text: str, seq: int) -> list[ServerFrame]:
        if not self.chunker.pending:
            self._seq = seq
        return self._frames(self.chunker.push(text, self.now_ms()), seq)

    def poll(self) -> list[ServerFrame]:
        return self._frames(self.chunker.poll(self.now_ms()), self._seq)

    def finish(self) -> list[ServerFrame]:
        return self._frames(self.chunker.finish(), self._seq)

    def _frames(self, chunks: list[str], next_seq: int) -> list[ServerFrame]:
        frames: list[ServerFrame] = []
        job = self.job
        for chunk in chunks:
            if self.first_ms is None:
                self.first_ms = self.now_ms()
                self.metrics.first_token.observe(self.first_ms / 1000)
                self.metrics.first_chunk.labels(job.granularity).observe(self.first_ms / 1000)
            self.metrics.chunk_chars.labels(job.granularity).observe(len(chunk))
            self.parts.append(chunk)
            if job.stream:
                frame: ServerFrame
                if job.granularity == "segment":
                    frame = segment(job.id, chunk, self.index)
                else:
                    frame = token(job.id, chunk, self.index)
                if job.split:
                    frame["seq"] = self._seq
                if job.tag_target:
                    frame["target"] = job.target
                frames.append(frame)
            self.index += 1
            self._seq = next_seq
        return frames
