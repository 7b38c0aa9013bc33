"""An HTML/XML request: its text units planned and generated as plain texts are, then laid
back into the markup (`markup`). The answer is one `start` and one `complete` per target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from tolk.protocol import ErrorCode, ProtocolError, ServerFrame, TranslateOptions, complete, error
from tolk.protocol import start as start_frame
from tolk.protocol.types import CompleteFrame
from tolk_server.pipeline.generation import Generator
from tolk_server.pipeline.planning import Job, Planner
from tolk_server.text.markup import MarkupMode

UNIT_CONCURRENCY = 16  # text units of one document translated at a time


async def markup_frames(planner: Planner, generator: Generator, opts: TranslateOptions,
                        jobs: list[Job], mode: MarkupMode) -> AsyncGenerator[ServerFrame, None]:
    for job in jobs:
        yield start_frame(job.id, job.request_id, job.source, job.target)
        try:
            yield await _translate(planner, generator, opts, job, mode)
        except ProtocolError as exc:
            if not job.tag_target:
                raise
            frame = error(exc.code, exc.message, job.id)
            frame["target"] = job.target
            yield frame


async def _translate(planner: Planner, generator: Generator, opts: TranslateOptions, job: Job,
                     mode: MarkupMode) -> CompleteFrame:
    doc = mode.parse(job.text)
    gate = asyncio.Semaphore(UNIT_CONCURRENCY)
    base = opts.model_copy(update={
        "source": job.source, "target": job.target, "targets": None, "format": "text",
        "session": None, "stream": False,
    })

    async def unit(text: str) -> CompleteFrame:
        async with gate:
            [plan] = planner.plan(base.model_copy(update={"text": text}), job.id, t0=job.t0,
                                  owner=job.owner)
            async with aclosing(generator.stream(plan)) as out:
                async for frame in out:
                    if frame["type"] == "complete":
                        return frame
        raise ProtocolError(ErrorCode.INTERNAL, "a text unit ended without an answer", job.id)

    finals = await asyncio.gather(*(unit(s) for s in doc.segments))
    firsts = [f["first_token_ms"] for f in finals if f["first_token_ms"] is not None]
    finish = "length" if any(f["finish_reason"] == "length" for f in finals) else "stop"
    return complete(job.id, doc.render([f["translation"] for f in finals]), job.source,
                    job.target, sum(f["tokens"] for f in finals), min(firsts, default=None),
                    (time.perf_counter() - job.t0) * 1000, finish)
