"""Planning: a validated request becomes jobs (one per target), ready for the engine.

Validation against what is served, source-language detection, glossary, session context,
sentence split, prompt rendering and the result-cache key. No I/O, no engine calls.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tolk.protocol import ErrorCode, Granularity, ProtocolError, TranslateOptions
from tolk_server.config import RequestKind, Settings
from tolk_server.engine.interface import Engine, GenerationParams
from tolk_server.models.modes import DEFAULT_QUALITY, Plan, Quality, plan
from tolk_server.models.profiles import PriorTurn, Profile, render
from tolk_server.models.routing import ModelSet, ServedModel, Variant
from tolk_server.pipeline.cache import cache_key
from tolk_server.pipeline.context import SessionStore
from tolk_server.text.glossary import GlossaryStore, relevant_terms
from tolk_server.text.langdetect import LanguageDetector
from tolk_server.text.segmenter import split_head, split_rest, split_sentences


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
    owner: str  # the key id of the caller: whose stored glossaries the request may use
    tag_target: bool = False
    session: str | None = None
    sessions: SessionStore | None = None
    context: tuple[PriorTurn, ...] = ()
    glossary: dict[str, str] = field(default_factory=dict)
    prompt: str = ""
    quality: Quality = DEFAULT_QUALITY
    # The job as each model of its route would run it (the first is the routed model).
    variants: tuple[Variant, ...] = ()
    served_by: str | None = None
    fallback: dict[str, str] | None = None
    # A long input is planned head first: `parts` holds its first sentence, and `tail`
    # (run off the event loop, after that sentence is submitted) gives all the parts and
    # variants once the rest is split.
    tail: Tail | None = None
    # The engine priority of every sentence after the first (bulk work, for plain input).
    rest_priority: int = 1

    @property
    def split(self) -> bool:
        """The input runs as several sentences."""
        return len(self.parts) > 1 or self.tail is not None

    def expand(self, parts: tuple[Part, ...], variants: tuple[Variant, ...]) -> None:
        """Take the tail's result (on the event loop)."""
        self.parts, self.variants, self.tail = parts, variants, None


Tail = Callable[[], tuple[tuple[Part, ...], tuple[Variant, ...]]]


class Planner:
    def __init__(
        self,
        engine: Engine,
        profile: Profile,
        settings: Settings,
        detector: LanguageDetector | None = None,
        glossaries: GlossaryStore | None = None,
        models: ModelSet | None = None,
    ) -> None:
        self.models = models or ModelSet.single(engine, profile)
        self.profile = self.models.primary.profile
        self.settings = settings
        self.engine = self.models.primary.engine  # its model name and chat template
        self.detector = detector or LanguageDetector(self.models.languages)
        self.glossaries = glossaries

    @property
    def languages(self) -> list[str]:
        return self.models.languages

    def plan(
        self,
        opts: TranslateOptions,
        rid: str,
        t0: float | None = None,
        sessions: SessionStore | None = None,
        kind: RequestKind = "translate",
        *,
        owner: str,
    ) -> list[Job]:
        """Validate a request and render its prompts (one job per target), or raise
        `ProtocolError`: language detection, glossary, session context, sentence split,
        prompt rendering and cache key. `kind` sets the engine priority; `owner` is the
        caller's key id (a stored glossary must be the operator's or its own)."""
        t0 = time.perf_counter() if t0 is None else t0
        if not opts.text.strip():
            raise ProtocolError(ErrorCode.BAD_REQUEST, "text must not be empty", rid)
        if len(opts.text) > self.settings.max_text_chars:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"text has {len(opts.text)} characters; the limit is "
                f"{self.settings.max_text_chars}",
                rid,
            )
        langs = self.languages
        for tgt in opts.target_list:
            if tgt not in langs:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE,
                    f"target {tgt!r} is not served; languages: {self.languages}", rid,
                )
        source = opts.source
        if source in (None, "auto"):
            source = self.detector.detect(opts.text)
            if source is None:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE,
                    "could not detect the source language; pass `source`", rid,
                )
        if source not in langs:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                f"source {source!r} is not served; languages: {self.languages}", rid,
            )
        glossary = self._glossary(opts, rid, owner)
        context: tuple[PriorTurn, ...] = ()
        if opts.session and sessions is not None:
            context = tuple(sessions.context(opts.session))
        quality: Quality = opts.quality or DEFAULT_QUALITY
        sentences: list[str] | None = None
        rest: Callable[[], list[str]] | None = None
        jobs = []
        for tgt in opts.target_list:
            chain = self.models.chain(quality, source, tgt)
            if not chain:
                raise ProtocolError(ErrorCode.UNSUPPORTED_LANGUAGE,
                                    f"no model serves {source} → {tgt} ({quality})", rid)
            runs = [plan(opts, m.modes, m.profile.sampling, tuple(m.profile.stop),
                         self.settings.max_model_len or 8192) for m in chain]
            run = runs[0]
            if sentences is None:
                head = split_head(opts.text, source) if run.split else None
                if head is not None:  # the rest is split later, by the job's tail
                    sentences = [head[0]]
                    rest = functools.cache(functools.partial(split_rest, opts.text, len(head[0]),
                                                              source))
                else:
                    sentences = split_sentences(opts.text, source) if run.split else [opts.text]
            first, later = self.settings.priorities.of(
                kind, len(opts.text), rest is not None or len(sentences) > 1)
            runs = [dataclasses.replace(r, params=dataclasses.replace(r.params, priority=first))
                    for r in runs]
            run = runs[0]
            ctx = tuple(t for t in context if t.target_lang == tgt)

            def parts_of(texts: list[str], m: ServedModel, tgt: str = tgt,
                         ctx: tuple[PriorTurn, ...] = ctx) -> tuple[Part, ...]:
                return tuple(self._part(m, s_, source, tgt, ctx, glossary, opts.context)
                             for s_ in texts)

            per_model = [parts_of(sentences, m) for m in chain]
            parts = per_model[0]
            key = cache_key(text=opts.text, source=source, target=tgt, model=chain[0].name,
                            path=chain[0].engine.info.model, profile=chain[0].profile.name,
                            glossary=sorted(glossary.items()),
                            context=[(t.source, t.translation) for t in ctx],
                            split=run.split, max_tokens=run.params.max_tokens, quality=quality,
                            note=opts.context)
            jobs.append(Job(
                id=rid, request_id=uuid.uuid4().hex, text=opts.text, source=source, target=tgt,
                stream=opts.stream, granularity=run.granularity, quality=quality,
                max_delay_ms=float(opts.max_delay_ms), params=run.params, parts=parts, t0=t0,
                key=key, owner=owner, tag_target=opts.targets is not None, session=opts.session,
                sessions=sessions, context=ctx, glossary=glossary, prompt=parts[0].prompt,
                variants=_variants(chain, runs, per_model),
                tail=None if rest is None else _tail(rest, parts_of, chain, runs, per_model),
                rest_priority=later,
            ))
        return jobs

    def _glossary(self, opts: TranslateOptions, rid: str, owner: str) -> dict[str, str]:
        terms: dict[str, str] = {}
        if opts.glossary_id is not None:  # another key's glossary is answered as unknown
            named = self.glossaries.usable(opts.glossary_id, owner) if self.glossaries else None
            if named is None:
                raise ProtocolError(ErrorCode.BAD_REQUEST,
                                    f"no glossary named {opts.glossary_id!r}", rid)
            terms.update(named)
        terms.update(opts.glossary or {})
        return terms

    def _part(self, model: ServedModel, sentence: str, source: str, target: str,
              ctx: tuple[PriorTurn, ...], glossary: dict[str, str],
              note: str | None = None) -> Part:
        core = sentence.strip()
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        trail = sentence[len(lead) + len(core):]
        terms = relevant_terms(glossary, core) if glossary else None
        prompt = render(model.profile, core, source, target, model.engine.chat_template,
                        context=ctx, glossary=terms, note=note)
        return Part(lead, core, trail, prompt)


def _variants(chain: list[ServedModel], runs: list[Plan],
              per_model: list[tuple[Part, ...]]) -> tuple[Variant, ...]:
    return tuple(Variant(m, r.params, tuple(p.prompt for p in ps))
                 for m, r, ps in zip(chain, runs, per_model, strict=True))


def _tail(rest: Callable[[], list[str]],
          parts_of: Callable[[list[str], ServedModel], tuple[Part, ...]],
          chain: list[ServedModel], runs: list[Plan], head: list[tuple[Part, ...]]) -> Tail:
    def tail() -> tuple[tuple[Part, ...], tuple[Variant, ...]]:
        sentences = rest()
        per_model = [h + parts_of(sentences, m) for h, m in zip(head, chain, strict=True)]
        return per_model[0], _variants(chain, runs, per_model)

    return tail
