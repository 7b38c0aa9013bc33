"""The raw-engine baseline: vLLM's `AsyncLLM.generate` in this process (no server, no network).

Run as its own process by the runner (`python -m tolk_bench.raw JOB.json OUT.json`) so that
each engine starts and exits cleanly, one at a time:

- mode `load`: the load generator of the other targets, calling the engine directly with the
  same rendered prompts, streaming DELTA outputs (each output is one timestamped chunk);
- mode `offline`: greedy generation with FINAL_ONLY outputs, the reference for the quality
  mode's exact-match check.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .metrics import RequestResult
from .runner import Point, Progress, run_point, warm_up
from .workload import RequestSpec


def sampling_params(spec: RequestSpec, sampling: dict[str, Any], final_only: bool) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.FINAL_ONLY if final_only else RequestOutputKind.DELTA
    return SamplingParams(max_tokens=spec.max_tokens, output_kind=kind, **sampling)


class RawEngine:
    def __init__(self, llm: Any, sampling: dict[str, Any]) -> None:
        self.llm = llm
        self.sampling = sampling

    async def _input(self, prompt: str) -> Any:
        # The same call path as the vLLM adapter of tolk_server.
        (engine_input,) = await self.llm.renderer.render_cmpl_async([{"prompt": prompt}])
        return engine_input

    async def request(self, spec: RequestSpec) -> RequestResult:
        r = RequestResult(prompt_chars=len(spec.text))
        params = sampling_params(spec, self.sampling, final_only=False)
        r.start_time = st = time.perf_counter()
        recent = st
        parts: list[str] = []
        try:
            engine_input = await self._input(spec.prompt)
            async for out in self.llm.generate(engine_input, params, uuid.uuid4().hex):
                ts = time.perf_counter()
                comp = out.outputs[0]
                if r.chunks == 0:
                    r.ttft = ts - st
                else:
                    r.itl.append(ts - recent)
                recent = ts
                r.chunks += 1
                r.output_tokens += len(comp.token_ids)
                parts.append(comp.text)
            r.latency = recent - st
            r.text = "".join(parts)
            r.success = r.chunks > 0
            if not r.success:
                r.error = "no_chunk"
        except Exception as exc:
            r.error, r.error_message = "engine_error", repr(exc)[:300]
        return r

    async def offline(self, spec: RequestSpec) -> str:
        params = sampling_params(spec, self.sampling, final_only=True)
        engine_input = await self._input(spec.prompt)
        text = ""
        async for out in self.llm.generate(engine_input, params, uuid.uuid4().hex):
            text = out.outputs[0].text
        return text


async def _main(job: dict[str, Any]) -> dict[str, Any]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    t0 = time.perf_counter()
    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**job["engine_args"]))
    startup_s = time.perf_counter() - t0
    eng = RawEngine(llm, job["sampling"])
    out: dict[str, Any] = {"startup_s": startup_s}
    try:
        if job["mode"] == "offline":
            specs = [RequestSpec.from_json(s) for s in job["specs"]]
            sem = asyncio.Semaphore(int(job.get("concurrency", 8)))

            async def one(spec: RequestSpec) -> str:
                async with sem:
                    return await eng.offline(spec)

            out["texts"] = list(await asyncio.gather(*(one(s) for s in specs)))
            return out
        warm = [RequestSpec.from_json(s) for s in job.get("warmup", [])]
        points = [Point.from_json(p) for p in job["points"]]
        with Progress(enabled=job.get("progress", True), stderr=True) as prog:
            await warm_up(eng.request, warm, int(job.get("warmup_concurrency", 4)))
            results = []
            for p in points:
                pr = await run_point(eng.request, p, prog, f"raw        {p.label}")
                results.append({"duration_s": pr.duration_s, "skipped": pr.skipped,
                                "results": [r.to_json(keep_text=job.get("keep_text", False))
                                            for r in pr.results]})
        out["points"] = results
        return out
    finally:
        eng.llm = None
        llm.shutdown()
        del llm  # no second shutdown from __del__ at interpreter exit
        import gc

        gc.collect()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    for k, v in job.get("env", {}).items():
        os.environ.setdefault(k, str(v))
    out = asyncio.run(_main(job))
    Path(args[1]).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
