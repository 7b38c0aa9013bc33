"""Generation: jobs run on the engine, and their output becomes protocol frames.

One request may become several engine requests: a long input is split into sentences that
are translated concurrently (continuous batching does the rest) and reassembled strictly in
source order; `targets` runs one job per target language. No transport and no admission here.
"""

from __future__ import annotations

import asyncio
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

from .chunking import Chunker
from .engine import Delta, Engine, EngineError, RequestRejected
from .glossary import report
from .metrics import Metrics
from .planning import Job, Part
from .profiles import PriorTurn
from .reassembly import OrderedJoiner
from .result_cache import CachedResult, ResultCache

_PIECES = re.compile(r"\s*\S+\s*|\s+")


class Generator:
    def __init__(self, engine: Engine, metrics: Metrics, cache: ResultCache) -> None:
        self.engine = engine
        self.metrics = metrics
        self.cache = cache

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
            for piece in _PIECES.findall(cached.translation):
                for frame in out.push(piece, 0):
                    yield frame
            out.tokens, finish = cached.tokens, "stop"
        else:
            async with aclosing(self._generate(job, out)) as frames:
                async for frame in frames:
                    yield frame
            finish = out.finish_reason
        for frame in out.finish():
            yield frame
        translation = "".join(out.parts)
        latency = (time.perf_counter() - job.t0) * 1000
        self.metrics.duration.observe(latency / 1000)
        self.metrics.output_tokens.inc(out.tokens)
        if cached is None and finish == "stop":
            self.cache.put(job.key, CachedResult(translation, out.tokens))
        if job.session and job.sessions is not None:
            job.sessions.add(job.session, PriorTurn(job.text, translation, job.source,
                                                    job.target))
        done = complete(job.id, translation, job.source, job.target, out.tokens,
                        out.first_ms, latency, finish)
        if len(job.parts) > 1:
            done["sentences"] = len(job.parts)
        if cached is not None and job.source != job.target:
            done["cached"] = True
        if job.session:
            done["session"] = job.session
        if job.glossary:
            done["glossary"] = report(job.glossary, job.text, translation)
        yield done

    async def _generate(self, job: Job, out: _Emitter) -> AsyncGenerator[ServerFrame, None]:
        """Run every part concurrently; emit their text strictly in source order."""
        n = len(job.parts)
        queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()

        async def pump(k: int, part: Part) -> None:
            rid = job.request_id if n == 1 else f"{job.request_id}-{k}"
            try:
                gen = self.engine.generate(part.prompt, job.params, rid)
                async with aclosing(gen) as deltas:
                    async for delta in deltas:
                        queue.put_nowait((k, delta))
                queue.put_nowait((k, None))
            except Exception as exc:
                queue.put_nowait((k, exc))

        tasks = [asyncio.create_task(pump(k, p)) for k, p in enumerate(job.parts)]
        joiner = OrderedJoiner(n)
        released: list[tuple[int, str]] = []
        for k, part in enumerate(job.parts):  # white space before a sentence is kept as is
            released += joiner.push(k, part.lead)
        try:
            while True:
                for seq, text in released:
                    for frame in out.push(text, seq):
                        yield frame
                if joiner.done:
                    break
                deadline = out.deadline()
                timeout = None if deadline is None else max(0.0, deadline - out.now_ms()) / 1000
                try:
                    k, item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    released = []
                    for frame in out.poll():
                        yield frame
                    continue
                if isinstance(item, BaseException):
                    if isinstance(item, EngineError):
                        raise ProtocolError(ErrorCode.ENGINE_ERROR, str(item), job.id) from item
                    if isinstance(item, RequestRejected):
                        if item.code == "too_large":
                            raise ProtocolError(ErrorCode.TOO_LARGE, str(item), job.id) from item
                        raise ProtocolError(ErrorCode.BAD_REQUEST, str(item), job.id) from item
                    raise item
                if item is None:
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
                if len(job.parts) > 1:
                    frame["seq"] = self._seq
                if job.tag_target:
                    frame["target"] = job.target
                frames.append(frame)
            self.index += 1
            self._seq = next_seq
        return frames
