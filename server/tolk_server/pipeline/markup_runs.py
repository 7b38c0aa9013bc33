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
from tolk_server.pipeline.planning import Plan, Planner
from tolk_server.text.markup import MarkupMode

UNIT_CONCURRENCY = 16  # text units of one document translated at a time


async def markup_frames(planner: Planner, generator: Generator, opts: TranslateOptions,
                        plans: list[Plan], mode: MarkupMode) -> AsyncGenerator[ServerFrame, None]:
    for plan in plans:
        yield start_frame(plan.id, plan.request_id, plan.source, plan.target)
        try:
            yield await _translate(planner, generator, opts, plan, mode)
        except ProtocolError as exc:
            if not plan.tag_target:
                raise
            frame = error(exc.code, exc.message, plan.id)
            frame["target"] = plan.target
            yield frame


async def _translate(planner: Planner, generator: Generator, opts: TranslateOptions, plan: Plan,
                     mode: MarkupMode) -> CompleteFrame:
    doc = mode.parse(plan.text)
    gate = asyncio.Semaphore(UNIT_CONCURRENCY)
    base = opts.model_copy(update={
        "source": plan.source, "target": plan.target, "targets": None, "format": "text",
        "session": None, "stream": False,
    })

    async def unit(text: str) -> CompleteFrame:
        async with gate:
            [unit_plan] = planner.plan(base.model_copy(update={"text": text}), plan.id,
                                       t0=plan.t0, owner=plan.owner)
            async with aclosing(generator.stream(unit_plan)) as out:
                async for frame in out:
                    if frame["type"] == "complete":
                        return frame
        raise ProtocolError(ErrorCode.INTERNAL, "a text unit ended without an answer", plan.id)

    finals = await asyncio.gather(*(unit(s) for s in doc.segments))
    firsts = [f["first_token_ms"] for f in finals if f["first_token_ms"] is not None]
    finish = "length" if any(f["finish_reason"] == "length" for f in finals) else "stop"
    return complete(plan.id, doc.render([f["translation"] for f in finals]), plan.source,
                    plan.target, sum(f["tokens"] for f in finals), min(firsts, default=None),
                    (time.perf_counter() - plan.t0) * 1000, finish)
