"""Drives one target through workload points: fixed concurrency or Poisson arrivals, each
bounded by a request count and a time limit, after a warm-up, with a progress bar."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .clients import RequestFn
from .metrics import RequestResult
from .workload import RequestSpec, poisson_delays


@dataclass
class Point:
    """One workload point: `concurrency` (closed loop) or `rate` (open loop, req/s)."""

    workload: str  # "sweep", "poisson", "long"
    specs: list[RequestSpec]
    concurrency: int | None = None
    rate: float | None = None
    max_duration_s: float = 60.0
    seed: int = 0

    @property
    def label(self) -> str:
        if self.rate is not None:
            return f"{self.workload} rate={self.rate:g}/s"
        return f"{self.workload} c={self.concurrency}"

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload, "concurrency": self.concurrency, "rate": self.rate,
                "max_duration_s": self.max_duration_s, "seed": self.seed,
                "specs": [s.to_json() for s in self.specs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Point:
        return cls(d["workload"], [RequestSpec.from_json(s) for s in d["specs"]],
                   d.get("concurrency"), d.get("rate"), d.get("max_duration_s", 60.0),
                   d.get("seed", 0))


@dataclass
class PointResult:
    point: Point
    results: list[RequestResult] = field(default_factory=list)
    duration_s: float = 0.0
    skipped: int = 0  # requests not issued because the time limit came first
    server_cpu_s: float | None = None  # CPU time of the server's own (API) process


class Progress:
    """A thin wrapper over rich's progress bar (or nothing, when disabled)."""

    def __init__(self, enabled: bool = True, stderr: bool = False) -> None:
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._p = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                   MofNCompleteColumn(), TimeElapsedColumn(), transient=False,
                                   console=Console(log_path=False, stderr=stderr))

    def __enter__(self) -> Progress:
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(None, None, None)

    def task(self, description: str, total: int) -> Any:
        return None if self._p is None else self._p.add_task(description, total=total)

    def advance(self, task: Any) -> None:
        if self._p is not None and task is not None:
            self._p.advance(task)

    def log(self, msg: str) -> None:
        if self._p is not None:
            self._p.console.log(msg)
        else:
            import re

            print(re.sub(r"\[/?[a-z ]+\]", "", msg), flush=True)


async def run_point(
    fn: RequestFn,
    point: Point,
    progress: Progress | None = None,
    description: str = "",
    grace_s: float = 30.0,
) -> PointResult:
    """Issue the point's requests; stop issuing at `max_duration_s`; requests still running
    `grace_s` later are cancelled and count as `timeout` errors."""
    prog = progress or Progress(enabled=False)
    task = prog.task(description or point.label, len(point.specs))
    sem = asyncio.Semaphore(point.concurrency) if point.concurrency else None
    out = PointResult(point)
    start = time.perf_counter()
    deadline = start + point.max_duration_s

    async def one(spec: RequestSpec) -> RequestResult | None:
        if sem is None:
            r = await fn(spec)
        else:
            async with sem:
                if time.perf_counter() > deadline:
                    return None
                r = await fn(spec)
        prog.advance(task)
        return r

    tasks: list[asyncio.Task[RequestResult | None]] = []
    delays = (poisson_delays(len(point.specs), point.rate, point.seed)
              if point.rate is not None else [0.0] * len(point.specs))
    for spec, delay in zip(point.specs, delays, strict=True):
        if delay:
            await asyncio.sleep(delay)
        if time.perf_counter() > deadline:
            break
        tasks.append(asyncio.create_task(one(spec)))
    out.skipped = len(point.specs) - len(tasks)
    if tasks:
        remaining = max(0.0, deadline - time.perf_counter()) + grace_s
        _done, pending = await asyncio.wait(tasks, timeout=remaining)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    out.duration_s = time.perf_counter() - start
    for t in tasks:
        if t.cancelled():
            out.results.append(RequestResult(error="timeout"))
        elif t.exception() is not None:
            out.results.append(RequestResult(error="client_exception",
                                             error_message=repr(t.exception())[:300]))
        else:
            r = t.result()
            if r is None:
                out.skipped += 1
            else:
                out.results.append(r)
    return out


async def warm_up(fn: RequestFn, specs: list[RequestSpec], concurrency: int) -> None:
    """Untimed requests before measuring (engine graphs, caches, connections)."""
    if not specs:
        return
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(spec: RequestSpec) -> None:
        async with sem:
            await fn(spec)

    await asyncio.gather(*(one(s) for s in specs))
