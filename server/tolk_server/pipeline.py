"""The request pipeline every transport calls: plan → admit → generate → count → release.

A transport validates a request with the protocol core, then:

    run = pipeline.submit(opts, who, sessions)        # raises ProtocolError (counted)
    async with run:                                   # releases the admission on exit
        async for frame in run.events():              # start, token|segment…, complete|error
            ...

`events()` never raises a `ProtocolError`: a failure becomes the request's terminal `error`
frame. Every terminal frame (and every rejection) is counted in the metrics here, and only here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from types import TracebackType

from tolk.protocol import (
    TERMINAL_TYPES,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    error,
)

from .admission import Admission, Ticket
from .auth import Principal
from .generation import Generator
from .metrics import Metrics
from .planning import Job, Planner
from .profiles import Profile
from .sessions import SessionStore

log = logging.getLogger("tolk.pipeline")


class Run:
    """One admitted request: its jobs (one per target) and its admission ticket."""

    def __init__(self, pipeline: Pipeline, rid: str, jobs: list[Job], ticket: Ticket) -> None:
        self.pipeline = pipeline
        self.id = rid
        self.jobs = jobs
        self.ticket = ticket

    @property
    def targets(self) -> list[str]:
        return [j.target for j in self.jobs]

    @property
    def tagged(self) -> bool:
        """Whether frames carry `target` (the request gave `targets`)."""
        return self.jobs[0].tag_target

    async def events(self) -> AsyncGenerator[ServerFrame, None]:
        """The request's frames; a failure ends it with an `error` frame (never raised)."""
        p = self.pipeline
        try:
            async with aclosing(p.generator.stream_many(self.jobs)) as frames:
                async for frame in frames:
                    p.count(frame)
                    yield frame
        except ProtocolError as exc:
            yield p.reject(exc, request=True, rid=self.id)
        except Exception:
            log.exception("request %s failed", self.id)
            yield p.reject(ProtocolError(ErrorCode.INTERNAL, "internal error", self.id),
                           request=True)

    def release(self) -> None:
        self.pipeline.admission.release(self.ticket)

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()


class Pipeline:
    def __init__(self, planner: Planner, admission: Admission, generator: Generator,
                 metrics: Metrics) -> None:
        self.planner = planner
        self.admission = admission
        self.generator = generator
        self.metrics = metrics
        self._ids = itertools.count(1)

    @property
    def profile(self) -> Profile:
        return self.planner.profile

    @property
    def languages(self) -> list[str]:
        return self.planner.languages

    def new_id(self) -> str:
        return f"srv-{next(self._ids)}"

    def submit(self, opts: TranslateOptions, who: Principal, sessions: SessionStore | None,
               rid: str | None = None, connection_inflight: int | None = None) -> Run:
        """Plan and admit a validated request, or raise `ProtocolError` (already counted).
        The caller must release the returned run (`async with run`, or `run.release()`)."""
        rid = rid or opts.id or self.new_id()
        t0 = time.perf_counter()
        try:
            jobs = self.planner.plan(opts, rid, t0=t0, sessions=sessions)
            ticket = self.admission.admit(who, rid, len(jobs), len(opts.text) * len(jobs),
                                          connection_inflight)
        except ProtocolError as exc:
            self.note(exc.code, request=exc.request_id is not None)
            raise
        return Run(self, rid, jobs, ticket)

    def reject(self, exc: ProtocolError, request: bool = False,
               rid: str | None = None) -> ErrorFrame:
        """The `error` frame for `exc`, counted (`request`: it ends a request)."""
        self.note(exc.code, request=request)
        return error(exc.code, exc.message, rid or exc.request_id)

    def end(self, frames: Iterable[ErrorFrame]) -> list[ErrorFrame]:
        """Count terminal frames a transport made itself (e.g. `cancelled`), and pass them on."""
        out = list(frames)
        for frame in out:
            self.note(frame["code"], request=True)
        return out

    def count(self, frame: ServerFrame) -> None:
        if frame["type"] in TERMINAL_TYPES:
            if frame["type"] == "complete":
                self.metrics.requests.labels("complete").inc()
            else:
                self.note(frame["code"], request=True)  # type: ignore[typeddict-item]

    def note(self, code: ErrorCode, request: bool) -> None:
        """Count an error frame; `request`: it is a request's terminal frame."""
        self.metrics.errors.labels(code).inc()
        if request:
            outcome = "cancelled" if code == ErrorCode.CANCELLED else "error"
            self.metrics.requests.labels(outcome).inc()
