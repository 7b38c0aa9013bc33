"""The request pipeline every transport calls: plan → admit → generate → count → release.

A transport validates a request with the protocol core, then:

    run = await pipeline.submit(opts, who, sessions)  # raises ProtocolError (counted)
    async with run:                                   # releases the admission on exit
        async for frame in run.events():              # start, token|segment…, complete|error
            ...

`events()` never raises a `ProtocolError`: a failure becomes the request's terminal `error`
frame. Every terminal frame (and every rejection) is counted in the metrics here, and only here.
Markup (`format: "html"`, or a compatible API's `tag_handling`) runs through `markup_runs`;
`submit_many` admits a list of texts (the compatible APIs) as one request.

`submit` checks sizes and admits on the raw text first: a request over a limit, or from a
key with its quota used up, is refused before anything is parsed or detected. Then markup is
parsed (once: the run keeps the document) and the source detected, on the event loop for a
short input, by the pipeline's workers for a long one (`offload`); a refusal there gives the
admission back (`Admission.refund`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from types import TracebackType

from tolk.protocol import (
    SERVER_ID_PREFIX,
    TERMINAL_TYPES,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    UpdateFrame,
    refusal,
)
from tolk_server.config import RequestKind
from tolk_server.models.profiles import Profile
from tolk_server.models.routing import ModelSet
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.admission import Admission, Ticket
from tolk_server.pipeline.context import ContextStore
from tolk_server.pipeline.gate import Gate
from tolk_server.pipeline.generation import Generator
from tolk_server.pipeline.markup_runs import markup_frames
from tolk_server.pipeline.offload import Offload
from tolk_server.pipeline.planning import Plan, Planner
from tolk_server.security.auth import Principal
from tolk_server.text.glossary import GlossaryStore
from tolk_server.text.langdetect import LanguageDetector
from tolk_server.text.markup import Markup, MarkupMode, MarkupTooDeep

log = logging.getLogger("tolk.pipeline")


class Run:
    """One admitted request: its jobs (one per target) and its admission ticket."""

    def __init__(self, pipeline: Pipeline, rid: str, jobs: list[Plan], ticket: Ticket,
                 opts: TranslateOptions, doc: Markup | None = None) -> None:
        self.pipeline = pipeline
        self.id = rid
        self.jobs = jobs
        self.ticket = ticket
        self.opts = opts
        self.doc = doc  # markup input, parsed

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
        source = (p.generator.stream_many(self.jobs) if self.doc is None else
                  markup_frames(p.planner, p.generator, self.opts, self.jobs, self.doc,
                                p.offload))
        async with aclosing(p.counted(source, self.id)) as frames:
            async for frame in frames:
                yield frame

    def release(self) -> None:
        self.pipeline.admission.release(self.ticket)

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()


class Batch:
    """The runs of one multi-text request, holding one admission ticket."""

    def __init__(self, ticket: Ticket, runs: list[Run]) -> None:
        self.ticket = ticket
        self.runs = runs

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.runs:
            self.runs[0].release()


class Pipeline:
    def __init__(self, planner: Planner, admission: Admission, generator: Generator,
                 metrics: Metrics, gate: Gate) -> None:
        self.planner = planner
        self.admission = admission
        self.gate = gate  # the text-size cap, checked before a request is planned
        self.generator = generator
        self.metrics = metrics
        s = planner.settings
        self.offload = Offload(s.markup_inline_chars, s.markup_workers)
        self._ids = itertools.count(1)

    @property
    def profile(self) -> Profile:
        return self.planner.profile

    @property
    def languages(self) -> list[str]:
        return self.planner.languages

    @property
    def models(self) -> ModelSet:
        return self.planner.models

    @property
    def glossaries(self) -> GlossaryStore | None:
        """The stored glossaries requests may name (None: the server has no store)."""
        return self.planner.glossaries

    def prepare(self) -> None:
        """Load what planning needs before the first request (the language detector); slow:
        call it off the event loop."""
        self.planner.detector.load()

    def close(self) -> None:
        """Stop the markup workers (with the server)."""
        self.offload.close()

    def detect_confidences(self, text: str) -> list[tuple[str, float]]:
        """The served languages `text` may be in, most likely first, with their confidence."""
        return self.planner.detector.confidences(text)

    def live_options(self, first: UpdateFrame) -> UpdateFrame:
        """A live request's first `update` as a request to validate and admit (blank or
        short text too: a few typed letters may not be detectable yet)."""
        source = first.source
        if source in (None, "auto"):
            fallback = next((lang for lang in self.languages if lang != first.target), None)
            source = self.planner.detector.detect(first.text) or fallback
        text = first.text if first.text.strip() else "-"
        return first.model_copy(update={"split": False, "source": source, "text": text})

    def charge(self, ticket: Ticket, chars: int, rid: str) -> None:
        """Count `chars` more characters of an admitted request (`Admission.charge`)."""
        self.admission.charge(ticket, chars, rid)

    def check_size(self, text: str, rid: str | None = None) -> None:
        """The text-size cap (`Gate.check_size`), for live input's later updates."""
        self.gate.check_size(text, rid)

    async def counted(self, frames: AsyncGenerator[ServerFrame, None],
                      rid: str) -> AsyncGenerator[ServerFrame, None]:
        """A request's frames, each counted; a failure ends them with an `error` frame
        (counted too, never raised). Used by plain and live requests alike."""
        try:
            async with aclosing(frames) as source:
                async for frame in source:
                    self.count(frame)
                    yield frame
        except ProtocolError as exc:
            yield self.reject(exc, request=True, rid=rid)
        except Exception:
            log.exception("request %s failed", rid)
            yield self.reject(ProtocolError(ErrorCode.INTERNAL, "internal error", rid),
                              request=True)

    def new_id(self) -> str:
        return f"{SERVER_ID_PREFIX}{next(self._ids)}"

    async def submit(self, opts: TranslateOptions, who: Principal,
                     sessions: ContextStore | None, rid: str | None = None,
                     connection_inflight: int | None = None, mode: MarkupMode | None = None,
                     kind: RequestKind = "translate", within: Ticket | None = None) -> Run:
        """Admit and plan a validated request, or raise `ProtocolError` (already counted).
        The caller must release the returned run (`async with run`, or `run.release()`).
        `kind` (a plain request, a live one, an audio segment) sets its engine priority;
        `within`: the ticket of the stream it is part of (`Admission.admit`). A short input
        is planned without a suspension point; a long markup one waits for a worker."""
        rid = rid or opts.id or self.new_id()
        batch = await self._submit([opts], who, sessions, rid, connection_inflight, mode,
                                   kind, within)
        return batch.runs[0]

    async def submit_many(self, texts: list[TranslateOptions], who: Principal,
                          sessions: ContextStore | None, mode: MarkupMode | None = None,
                          ) -> Batch:
        """Several texts as one request: admitted together (all or none, one stream of the
        key, their characters together); release the batch once (`async with batch`)."""
        return await self._submit(texts, who, sessions, texts[0].id or self.new_id(), None,
                                  mode)

    async def _submit(self, texts: list[TranslateOptions], who: Principal,
                      sessions: ContextStore | None, rid: str, connection_inflight: int | None,
                      mode: MarkupMode | None, kind: RequestKind = "translate",
                      within: Ticket | None = None) -> Batch:
        t0 = time.perf_counter()
        try:  # on the raw texts, before anything is parsed or detected
            for o in texts:
                self.gate.check_size(o.text, rid)
                self.planner.check(o, rid)
            ticket = self.admission.admit(
                who, rid, sum(len(o.target_list) for o in texts),
                sum(len(o.text) * len(o.target_list) for o in texts), connection_inflight,
                within)
        except ProtocolError as exc:
            self.note(exc.code, request=exc.request_id is not None)
            raise
        runs = []
        try:
            for o in texts:
                ready, doc = await self._prepare(o, mode or MarkupMode.of(o.format), rid)
                plans = self.planner.plan(ready, rid, t0=t0, contexts=sessions, kind=kind,
                                          owner=who.key_id)
                runs.append(Run(self, rid, plans, ticket, o, doc))
        except BaseException as exc:
            self.admission.refund(ticket)
            if isinstance(exc, ProtocolError):
                self.note(exc.code, request=exc.request_id is not None)
            raise
        return Batch(ticket, runs)

    async def _prepare(self, opts: TranslateOptions, mode: MarkupMode | None,
                       rid: str) -> tuple[TranslateOptions, Markup | None]:
        """A request as the planner takes it: markup parsed (planned whole: its units are
        split later) and the source detected on its text, not its tags; a long input's on a
        worker (a short plain one is detected by the planner, inline)."""
        auto = opts.source in (None, "auto")
        detector = self.planner.detector if auto else None
        size = len(opts.text)
        if mode is None:
            if detector is None or self.offload.inline(size):
                return opts, None
            found = await self.offload.run(size, functools.partial(detector.detect, opts.text))
            return (opts if found is None else opts.model_copy(update={"source": found})), None
        depth = self.planner.settings.max_markup_depth
        try:
            doc, found = await self.offload.run(
                size, functools.partial(_read_markup, mode, opts.text, depth, detector))
        except MarkupTooDeep as exc:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{exc}; the limit is max_markup_depth "
                                f"({depth})", rid) from None
        update: dict[str, object] = {"split": False}
        if found is not None:
            update["source"] = found
        return opts.model_copy(update=update), doc

    def reject(self, exc: ProtocolError, request: bool = False,
               rid: str | None = None) -> ErrorFrame:
        """The `error` frame for `exc`, counted (`request`: it ends a request)."""
        self.note(exc.code, request=request)
        return refusal(exc, rid)

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


def _read_markup(mode: MarkupMode, text: str, max_depth: int,
                 detector: LanguageDetector | None) -> tuple[Markup, str | None]:
    """Parse markup, and detect its language on its text (`detector`: the source is `auto`)."""
    doc = mode.parse(text, max_depth)
    return doc, None if detector is None else detector.detect("\n".join(doc.segments))
