"""An HTML/XML request: its text units planned and generated as plain texts are, then laid
back into the markup (`markup`). The answer is one `start` and one `complete` per target.
The document was parsed once, when the request was submitted; a long one is laid back
together by the pipeline's workers (`offload`), off the event loop."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from tolk.protocol import ErrorCode, ProtocolError, ServerFrame, TranslateOptions, complete, error
from tolk.protocol import start as start_frame
from tolk.protocol.types import CompleteFrame
from tolk_server.pipeline.generation import Generator
from tolk_server.pipeline.offload import Offload
from tolk_server.pipeline.planning import Plan, Planner
from tolk_server.text.markup import Markup

UNIT_CONCURRENCY = 16  # text units of one document translated at a time


async def markup_frames(planner: Planner, generator: Generator, opts: TranslateOptions,
                        plans: list[Plan], doc: Markup, offload: Offload,
                        ) -> AsyncGenerator[ServerFrame, None]:
    for plan in plans:
        yield start_frame(plan.id, plan.request_id, plan.source, plan.target)
        try:
            yield await _translate(planner, generator, opts, plan, doc, offload)
        except ProtocolError as exc:
            if not plan.tag_target:
                raise
            frame = error(exc.code, exc.message, plan.id)
            frame["target"] = plan.target
            yield frame


async def _translate(planner: Planner, generator: Generator, opts: TranslateOptions, plan: Plan,
                     doc: Markup, offload: Offload) -> CompleteFrame:
    base = opts.model_copy(update={
        "source": plan.source, "target": plan.target, "targets": None, "format": "text",
        "session": None, "stream": False,
    })

    def unit_plan(text: str) -> Plan:
        [one] = planner.plan(base.model_copy(update={"text": text}), plan.id, t0=plan.t0,
                             owner=plan.owner)
        return one

    async def unit(one: Plan) -> CompleteFrame:
        async with aclosing(generator.stream(one)) as out:
            async for frame in out:
                if frame["type"] == "complete":
                    return frame
        raise ProtocolError(ErrorCode.INTERNAL, "a text unit ended without an answer", plan.id)

    finals = await _each(unit_plan, unit, doc.segments)
    firsts = [f["first_token_ms"] for f in finals if f["first_token_ms"] is not None]
    finish = "length" if any(f["finish_reason"] == "length" for f in finals) else "stop"
    out = await offload.run(len(plan.text), functools.partial(
        doc.render, [f["translation"] for f in finals]))
    return complete(plan.id, out, plan.source,
                    plan.target, sum(f["tokens"] for f in finals), min(firsts, default=None),
                    (time.perf_counter() - plan.t0) * 1000, finish)


async def _each(plan: Callable[[str], Plan], run: Callable[[Plan], Awaitable[CompleteFrame]],
                texts: list[str]) -> list[CompleteFrame]:
    """Each text planned, then run, UNIT_CONCURRENCY at a time; the answers in order, or the
    first failure (which stops the rest). One unit is planned per turn of the event loop:
    planning splits sentences (CPU work), and a unit answered from the cache never
    suspends, so thousands of them started at once would hold the loop for seconds."""
    slots = asyncio.Semaphore(UNIT_CONCURRENCY)
    failed: list[BaseException] = []

    async def one(p: Plan) -> CompleteFrame:
        try:
            return await run(p)
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            slots.release()

    tasks: list[asyncio.Task[CompleteFrame]] = []
    try:
        for text in texts:
            await slots.acquire()
            if failed:
                break
            tasks.append(asyncio.create_task(one(plan(text))))
            await asyncio.sleep(0)
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()  # a no-op for the finished ones
