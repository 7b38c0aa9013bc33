"""Turns validated requests into engine calls and protocol frames. No transport here."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from tolk.protocol import ProtocolError, ServerFrame, TranslateOptions, complete, start, token

from .config import Settings
from .engine import Engine, EngineError, GenerationParams
from .langdetect import LanguageDetector
from .metrics import Metrics
from .profiles import Profile, render


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    request_id: str
    text: str
    source: str
    target: str
    stream: bool
    prompt: str
    params: GenerationParams
    t0: float


class Translator:
    def __init__(
        self,
        engine: Engine,
        profile: Profile,
        settings: Settings,
        metrics: Metrics,
        detector: LanguageDetector | None = None,
    ) -> None:
        self.engine = engine
        self.profile = profile
        self.settings = settings
        self.metrics = metrics
        self.detector = detector or LanguageDetector(list(profile.languages))
        self.inflight = 0
        self._ids = itertools.count(1)

    @property
    def languages(self) -> list[str]:
        return sorted(self.profile.languages)

    def new_id(self) -> str:
        return f"srv-{next(self._ids)}"

    def prepare(self, opts: TranslateOptions, rid: str, t0: float | None = None) -> Job:
        """Validate a request and render its prompt, or raise `ProtocolError`."""
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
        if opts.target not in langs:
            raise ProtocolError(
                "unsupported_language",
                f"target {opts.target!r} is not served; languages: {self.languages}",
                rid,
            )
        source = opts.source
        if source in (None, "auto"):
            source = self.detector.detect(opts.text)
            if source is None:
                raise ProtocolError(
                    "unsupported_language",
                    "could not detect the source language; pass `source`",
                    rid,
                )
        if source not in langs:
            raise ProtocolError(
                "unsupported_language",
                f"source {source!r} is not served; languages: {self.languages}",
                rid,
            )
        s = self.profile.sampling
        params = GenerationParams(
            max_tokens=min(opts.max_tokens or s.max_tokens, self.settings.max_model_len),
            temperature=s.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
            stop=tuple(self.profile.stop),
        )
        prompt = render(self.profile, opts.text, source, opts.target, self.engine.chat_template)
        return Job(
            id=rid,
            request_id=uuid.uuid4().hex,
            text=opts.text,
            source=source,
            target=opts.target,
            stream=opts.stream,
            prompt=prompt,
            params=params,
            t0=t0,
        )

    def admit(self, rid: str) -> None:
        if self.engine.dead:
            raise ProtocolError("engine_error", "the engine is not running", rid)
        if self.inflight >= self.settings.max_inflight_total:
            raise ProtocolError("overloaded", "server is at capacity; retry shortly", rid)

    async def stream(self, job: Job) -> AsyncGenerator[ServerFrame, None]:
        """start, token…, complete. Raises ProtocolError on engine failure."""
        self.admit(job.id)
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            yield start(job.id, job.request_id, job.source, job.target)
            if job.source == job.target:
                async for frame in self._passthrough(job):
                    yield frame
                return
            parts: list[str] = []
            n_tokens = 0
            index = 0
            first_ms: float | None = None
            finish = "stop"
            gen = self.engine.generate(job.prompt, job.params, job.request_id)
            try:
                async with aclosing(gen) as deltas:
                    async for delta in deltas:
                        n_tokens += delta.tokens
                        if delta.finish_reason:
                            finish = delta.finish_reason
                        if not delta.text:
                            continue
                        if first_ms is None:
                            first_ms = (time.perf_counter() - job.t0) * 1000
                            self.metrics.first_token.observe(first_ms / 1000)
                        parts.append(delta.text)
                        if job.stream:
                            yield token(job.id, delta.text, index)
                        index += 1
            except EngineError as exc:
                raise ProtocolError("engine_error", str(exc), job.id) from exc
            latency = (time.perf_counter() - job.t0) * 1000
            self.metrics.duration.observe(latency / 1000)
            self.metrics.output_tokens.inc(n_tokens)
            self.metrics.requests.labels("complete").inc()
            yield complete(
                job.id, "".join(parts), job.source, job.target, n_tokens, first_ms, latency,
                finish,
            )
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()

    async def _passthrough(self, job: Job) -> AsyncGenerator[ServerFrame, None]:
        # Source equals target: nothing to translate; echo the text unchanged.
        ms = (time.perf_counter() - job.t0) * 1000
        if job.stream:
            yield token(job.id, job.text, 0)
        self.metrics.requests.labels("complete").inc()
        yield complete(job.id, job.text, job.source, job.target, 0, ms, ms, "stop")
