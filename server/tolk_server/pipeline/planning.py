"""Planning: a validated request becomes its plans (one per target), ready for the engine.

Validation against what is served, source-language detection, glossary, session context,
sentence split, prompt rendering and the result-cache key. No I/O, no engine calls.

A plan is made once and is frozen: generation reads it and never calls back into planning.
A long input is planned head first: `Plan.parts` holds its first sentence and `Plan.rest`
the rest of the split, a deferred value of the plan (computed once, off the event loop, by
the generator once the first sentence runs; shared by the targets).
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
from tolk_server.models.mode_settings import ModeSettings, mode_settings
from tolk_server.models.modes import DEFAULT_QUALITY, Quality
from tolk_server.models.profiles import PriorTurn, Profile, render
from tolk_server.models.routing import ModelSet, ServedModel
from tolk_server.pipeline.cache import cache_key
from tolk_server.pipeline.context import ContextStore
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


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one model renders a sentence of one target's plan into its prompt (pure)."""

    model: ServedModel
    source: str
    target: str
    context: tuple[PriorTurn, ...]
    glossary: dict[str, str]
    note: str | None

    def part(self, sentence: str) -> Part:
        core = sentence.strip()
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        trail = sentence[len(lead) + len(core):]
        terms = relevant_terms(self.glossary, core) if self.glossary else None
        prompt = render(self.model.profile, core, self.source, self.target,
                        self.model.engine.chat_template, context=self.context, glossary=terms,
                        note=self.note)
        return Part(lead, core, trail, prompt)


@dataclass(frozen=True, slots=True)
class ModelRun:
    """A plan as one model of its route runs it: that model's params and prompts."""

    model: ServedModel
    params: GenerationParams
    parts: tuple[Part, ...]  # the head's (all of them when the plan has no `rest`)
    recipe: Recipe

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(p.prompt for p in self.parts)


@dataclass(frozen=True, slots=True)
class Rest:
    """The sentences after a long input's first, split once when first asked (a pure,
    cached computation: the split holds the GIL for tens of milliseconds)."""

    sentences: Callable[[], list[str]]

    def parts(self, run: ModelRun) -> tuple[Part, ...]:
        return tuple(run.recipe.part(s) for s in self.sentences())


@dataclass(frozen=True, slots=True)
class Plan:
    """One target of a request, as it will run: frozen once planned."""

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
    contexts: ContextStore | None = None
    context: tuple[PriorTurn, ...] = ()
    glossary: dict[str, str] = field(default_factory=dict)
    prompt: str = ""
    quality: Quality = DEFAULT_QUALITY
    # The plan as each model of its route would run it (the first is the routed model).
    runs: tuple[ModelRun, ...] = ()
    # A long input's sentences after the first (head-first planning), or None.
    rest: Rest | None = None
    # The engine priority of every sentence after the first (bulk work, for plain input).
    rest_priority: int = 1

    @property
    def split(self) -> bool:
        """The input runs as several sentences."""
        return len(self.parts) > 1 or self.rest is not None


@dataclass(frozen=True, slots=True)
class _Request:
    """What a request's plans share: its validated options and their derived parts."""

    opts: TranslateOptions
    rid: str
    t0: float
    source: str
    glossary: dict[str, str]
    context: tuple[PriorTurn, ...]
    contexts: ContextStore | None
    kind: RequestKind
    owner: str


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
        contexts: ContextStore | None = None,
        kind: RequestKind = "translate",
        *,
        owner: str,
    ) -> list[Plan]:
        """Validate a request and render its prompts (one plan per target), or raise
        `ProtocolError`: language detection, glossary, session context, sentence split,
        prompt rendering and cache key. `kind` sets the engine priority; `owner` is the
        caller's key id (a stored glossary must be the operator's or its own)."""
        source = self._validate(opts, rid)
        context: tuple[PriorTurn, ...] = ()
        if opts.session and contexts is not None:
            context = tuple(contexts.context(opts.session))
        req = _Request(opts, rid, time.perf_counter() if t0 is None else t0, source,
                       self._glossary(opts, rid, owner), context, contexts, kind, owner)
        quality: Quality = opts.quality or DEFAULT_QUALITY
        chains = [self._chain(req, quality, tgt) for tgt in opts.target_list]
        settings = [[self._settings(opts, m) for m in chain] for chain in chains]
        split = settings[0][0].split  # the sentences are those of the first target's model
        sentences, rest = self._split(opts.text, source, split)
        return [self._plan_target(req, tgt, chain, runs, sentences, rest)
                for tgt, chain, runs in zip(opts.target_list, chains, settings, strict=True)]

    def check(self, opts: TranslateOptions, rid: str) -> None:
        """What a request must pass before it is admitted, on its options as given (cheap:
        nothing parsed, nothing detected): some text, within the size cap, served languages."""
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
        if opts.source not in (None, "auto") and opts.source not in langs:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_LANGUAGE,
                f"source {opts.source!r} is not served; languages: {self.languages}", rid,
            )

    def _validate(self, opts: TranslateOptions, rid: str) -> str:
        """Check the text and the languages; the source language (detected if `auto`)."""
        self.check(opts, rid)
        source = opts.source
        if source in (None, "auto"):
            source = self.detector.detect(opts.text)
            if source is None:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE,
                    "could not detect the source language; pass `source`", rid,
                )
            if source not in self.languages:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE,
                    f"source {source!r} is not served; languages: {self.languages}", rid,
                )
        return source

    def _chain(self, req: _Request, quality: Quality, target: str) -> list[ServedModel]:
        chain = self.models.chain(quality, req.source, target)
        if not chain:
            raise ProtocolError(ErrorCode.UNSUPPORTED_LANGUAGE,
                                f"no model serves {req.source} → {target} ({quality})", req.rid)
        return chain

    def _settings(self, opts: TranslateOptions, model: ServedModel) -> ModeSettings:
        return mode_settings(opts, model.modes, model.profile.sampling, tuple(model.profile.stop),
                             self.settings.max_model_len or 8192)

    @staticmethod
    def _split(text: str, source: str, split: bool
               ) -> tuple[list[str], Callable[[], list[str]] | None]:
        """The sentences planned now, and the split of the rest (a long input: head first)."""
        if not split:
            return [text], None
        head = split_head(text, source)
        if head is None:
            return split_sentences(text, source), None
        return [head[0]], functools.cache(functools.partial(split_rest, text, len(head[0]),
                                                            source))

    def _plan_target(self, req: _Request, tgt: str, chain: list[ServedModel],
                     settings: list[ModeSettings], sentences: list[str],
                     rest: Callable[[], list[str]] | None) -> Plan:
        opts = req.opts
        first, later = self.settings.priorities.of(
            req.kind, len(opts.text), rest is not None or len(sentences) > 1)
        ctx = tuple(t for t in req.context if t.target_lang == tgt)
        runs = []
        for m, ms in zip(chain, settings, strict=True):
            recipe = Recipe(m, req.source, tgt, ctx, req.glossary, opts.context)
            runs.append(ModelRun(m, dataclasses.replace(ms.params, priority=first),
                                 tuple(recipe.part(s) for s in sentences), recipe))
        ms, parts = settings[0], runs[0].parts
        key = cache_key(text=opts.text, source=req.source, target=tgt, model=chain[0].name,
                        path=chain[0].engine.info.model, profile=chain[0].profile.name,
                        glossary=sorted(req.glossary.items()),
                        context=[(t.source, t.translation) for t in ctx],
                        split=ms.split, max_tokens=ms.params.max_tokens, quality=ms.quality,
                        note=opts.context)
        return Plan(
            id=req.rid, request_id=uuid.uuid4().hex, text=opts.text, source=req.source,
            target=tgt, stream=opts.stream, granularity=ms.granularity, quality=ms.quality,
            max_delay_ms=float(opts.max_delay_ms), params=runs[0].params, parts=parts,
            t0=req.t0, key=key, owner=req.owner, tag_target=opts.targets is not None,
            session=opts.session, contexts=req.contexts, context=ctx, glossary=req.glossary,
            prompt=parts[0].prompt, runs=tuple(runs),
            rest=None if rest is None else Rest(rest), rest_priority=later,
        )

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
