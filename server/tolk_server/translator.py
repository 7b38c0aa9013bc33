"""Turns validated requests into engine calls and protocol frames. No transport here.

One request may become several engine requests: a long input is split into sentences
that are translated concurrently (continuous batching does the rest) and reassembled
strictly in source order; `targets` runs one job per target language.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from tolk.protocol import (
    Chunker,
    Granularity,
    OrderedJoiner,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    complete,
    error,
    segment,
    start,
    token,
)

from .config import Settings
from .engine import Delta, Engine, EngineError, GenerationParams, RequestRejected
from .glossary import GlossaryStore, relevant_terms, report
from .langdetect import LanguageDetector
from .metrics import Metrics
from .profiles import PriorTurn, Profile, render
from .result_cache import CachedResult, ResultCache, cache_key
from .segmenter import split_sentences
from .sessions import SessionStore

_PIECES = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Part:
    """One sentence of the input: its surrounding white space is kept verbatim."""

    lead: str
    text: str
    trail: str
    prompt: str


@dataclass(slots=True)
class Job:
    id: str
    request_id: str
    text: str
    source: str
    target: str
    stream: bool
    granularity: Granularity
    max_delay_ms: float
    params: GenerationParams
    parts: tuple[Part, ...]
    t0: float
    key: str
    tag_target: bool = False
    session: str | None = None
    sessions: SessionStore | None = None
    context: tuple[PriorTurn, ...] = ()
    glossary: dict[str, str] = field(default_factory=dict)
    prompt: str = ""


class Translator:
    def __init__(
        self,
        engine: Engine,
        profile: Profile,
        settings: Settings,
        metrics: Metrics,
        detector: LanguageDetector | None = None,
        glossaries: GlossaryStore | None = None,
    ) -> None:
        self.engine = engine
        self.profile = profile
        self.settings = settings
        self.metrics = metrics
        self.detector = detector or LanguageDetector(list(profile.languages))
        self.glossaries = glossaries
        self.cache = ResultCache(settings.cache_entries)
        self.inflight = 0
        self._ids = itertools.count(1)

    @property
    def languages(self) -> list[str]:
        return sorted(self.profile.languages)

    def new_id(self) -> str:
        return f"srv-{next(self._ids)}"

    # -- validation -------------------------------------------------------------------

    def prepare(
        self,
        opts: TranslateOptions,
        rid: str,
        t0: float | None = None,
        sessions: SessionStore | None = None,
    ) -> list[Job]:
        """Validate a request and render its prompts (one job per target), or raise."""
        t0 = time.perf_counter() if t0 is None else t0
        if not opts.text.strip():
            raise ProtocolError("bad_request", "text must not be empty", rid)
        if len(opts.text) > self.settings.max_text_chars:
            raise ProtocolError(
                "too_large",
                f"text has {len(opts.text)} characters; the limit is "
                f"{self.settings.max_text_chars}",
                rid,
            )
        langs = self.profile.languages
        for tgt in opts.target_list:
            if tgt not in langs:
                raise ProtocolError(
                    "unsupported_language",
                    f"target {tgt!r} is not served; languages: {self.languages}", rid,
                )
        source = opts.source
        if source in (None, "auto"):
            source = self.detector.detect(opts.text)
            if source is None:
                raise ProtocolError(
                    "unsupported_language",
                    "could not detect the source language; pass `source`", rid,
                )
        if source not in langs:
            raise ProtocolError(
                "unsupported_language",
                f"source {source!r} is not served; languages: {self.languages}", rid,
            )
        glossary = self._glossary(opts, rid)
        context: tuple[PriorTurn, ...] = ()
        if opts.session and sessions is not None:
            context = tuple(sessions.context(opts.session))
        s = self.profile.sampling
        params = GenerationParams(
            max_tokens=min(opts.max_tokens or s.max_tokens, self.settings.max_model_len or 8192),
            temperature=s.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
            stop=tuple(self.profile.stop),
            ignore_eos=s.ignore_eos,
        )
        sentences = split_sentences(opts.text, source) if opts.split else [opts.text]
        multi = opts.targets is not None
        jobs = []
        for tgt in opts.target_list:
            ctx = tuple(t for t in context if t.target_lang == tgt)
            parts = tuple(self._part(s_, source, tgt, ctx, glossary) for s_ in sentences)
            key = cache_key(text=opts.text, source=source, target=tgt, model=self.engine.info.model,
                            profile=self.profile.name, glossary=sorted(glossary.items()),
                            context=[(t.source, t.translation) for t in ctx],
                            split=opts.split, max_tokens=params.max_tokens)
            jobs.append(Job(
                id=rid, request_id=uuid.uuid4().hex, text=opts.text, source=source, target=tgt,
                stream=opts.stream, granularity=opts.granularity,
                max_delay_ms=float(opts.max_delay_ms), params=params, parts=parts, t0=t0,
                key=key, tag_target=multi, session=opts.session, sessions=sessions,
                context=ctx, glossary=glossary, prompt=parts[0].prompt,
            ))
        return jobs

    def _glossary(self, opts: TranslateOptions, rid: str) -> dict[str, str]:
        terms: dict[str, str] = {}
        if opts.glossary_id is not None:
            named = self.glossaries.get(opts.glossary_id) if self.glossaries else None
            if named is None:
                raise ProtocolError("bad_request", f"no glossary named {opts.glossary_id!r}", rid)
            terms.update(named)
        terms.update(opts.glossary or {})
        return terms

    def _part(self, sentence: str, source: str, target: str, ctx: tuple[PriorTurn, ...],
              glossary: dict[str, str]) -> Part:
        core = sentence.strip()
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        trail = sentence[len(lead) + len(core):]
        terms = relevant_terms(glossary, core) if glossary else None
        prompt = render(self.profile, core, source, target, self.engine.chat_template,
                        context=ctx, glossary=terms)
        return Part(lead, core, trail, prompt)

    def admit(self, rid: str, n: int = 1) -> None:
        if self.engine.dead:
            raise ProtocolError("engine_error", "the engine is not running", rid)
        if self.inflight + n > self.settings.max_inflight_total:
            raise ProtocolError("overloaded", "server is at capacity; retry shortly", rid)

    # -- streaming --------------------------------------------------------------------

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
        self.admit(job.id)
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
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
            self.metrics.requests.labels("complete").inc()
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
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()

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
                        raise ProtocolError("engine_error", str(item), job.id) from item
                    if isinstance(item, RequestRejected):
                        if item.code == "too_large":
                            raise ProtocolError("too_large", str(item), job.id) from item
                        raise ProtocolError("bad_request", str(item), job.id) from item
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
