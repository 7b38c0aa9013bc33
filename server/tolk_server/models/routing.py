"""Several models in one server: each its own engine and profile; routing as data.

A route maps (mode, source, target) to an ordered chain of model names; the first route
that matches wins, else the default chain (every model, in the order declared). A mode's
`model` setting puts that model first for the mode. Only models that serve both languages
stay in a chain; the next one in a chain is the fallback.

    [[models]]
    name = "demo"
    path = "models/demo"
    [[models]]
    name = "small"
    path = "models/demo-small"
    kv_cache_gib = 1
    [[routes]]
    quality = "fast"
    models = ["small", "demo"]

A model may be another tolk server (`url`, reached through the SDK: `adapters.remote`), or
an existing vLLM deployment (`url = "openai+http://host:port/v1"`, its OpenAI-compatible
API: `adapters.openai`), which renders prompts with the model's profile like a local one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tolk_server.engine.interface import Engine
from tolk_server.models.modes import QUALITIES, Mode, Quality, resolve_modes
from tolk_server.models.profiles import Profile

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
OPENAI_SCHEMES = ("openai+http://", "openai+https://")
REMOTE_SCHEMES = ("ws://", "wss://", "http://", "https://", *OPENAI_SCHEMES)
#: `EngineInfo.name` of a remote tolk server's adapter, and of an OpenAI-compatible server's.
REMOTE = "remote"
OPENAI = "openai"
#: Engines over the network: never dead, only connected or not.
NETWORKED = (REMOTE, OPENAI)


class ModelSpec(BaseModel):
    """One `[[models]]` entry (or `--model NAME=PATH`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN)
    path: str | None = None
    profile: str | None = None
    # A remote model: another tolk server (`url`), its API key in the environment variable
    # `api_key_env`, the languages it serves (default: those of the local models).
    # Or an OpenAI-compatible vLLM server (`url = "openai+http://…/v1"`): the model it serves
    # (default: the first it lists), and whether it schedules by priority (then tolk sends
    # each request's priority; `vllm serve --scheduling-policy priority`); `path`, if given,
    # is a local copy (or HF id) of its tokenizer: chat templates, the profile's match.
    url: str | None = None
    api_key_env: str | None = None
    languages: list[str] | None = None
    served_model: str | None = None
    priority: bool = False
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    # This model's share of the KV cache (CPU, GiB) or of GPU memory (fraction);
    # default: an equal share of the server's setting.
    kv_cache_gib: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    # Requests this model takes at once before it counts as overloaded (then: fallback).
    max_inflight: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _path_or_url(self) -> ModelSpec:
        # an openai+ model may have both: `path` is then its tokenizer (chat template, profile)
        if (self.path is None) == (self.url is None) and not self.openai:
            raise ValueError(f"model {self.name!r}: give either `path` or `url`")
        if self.url is not None and not self.url.startswith(REMOTE_SCHEMES):
            raise ValueError(f"model {self.name!r}: `url` must be ws://, wss://, http(s)://, "
                             "or openai+http(s)://")
        return self

    @property
    def openai(self) -> bool:
        """An OpenAI-compatible server (`openai+http://`), not another tolk server."""
        return self.url is not None and self.url.startswith(OPENAI_SCHEMES)


class RouteSpec(BaseModel):
    """One `[[routes]]` entry; a field left out matches anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    quality: Quality | None = None
    source: str | None = None
    target: str | None = None
    models: list[str] = Field(min_length=1)

    def matches(self, quality: str, source: str, target: str) -> bool:
        return all(want is None or want == got for want, got in
                   ((self.quality, quality), (self.source, source), (self.target, target)))


def parse_model_arg(value: str) -> ModelSpec | None:
    """`NAME=PATH` → a spec; a plain path → None (the single-model form)."""
    name, sep, path = value.partition("=")
    if not sep or not name or "/" in name:
        return None
    if path.startswith(REMOTE_SCHEMES):  # NAME=ws://host:port, NAME=openai+http://host:port/v1
        return ModelSpec(name=name, url=path)
    return ModelSpec(name=name, path=path)


@dataclass(eq=False)
class ServedModel:
    name: str
    engine: Engine
    profile: Profile
    max_inflight: int | None = None
    modes: dict[Quality, Mode] = field(default_factory=dict)
    inflight: int = 0

    def __post_init__(self) -> None:
        self.modes = resolve_modes(self.profile.modes)

    def serves(self, source: str, target: str) -> bool:
        return source in self.profile.languages and target in self.profile.languages

    @property
    def overloaded(self) -> bool:
        return self.max_inflight is not None and self.inflight >= self.max_inflight

    @property
    def remote(self) -> bool:
        """Another tolk server: it renders its own prompts."""
        return self.engine.info.name == REMOTE

    def state(self) -> str:
        if self.engine.info.name in NETWORKED:
            return "connected" if self.engine.ready else "disconnected"
        if self.engine.dead:
            return "dead"
        return "ready" if self.engine.ready else "loading"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state(), "engine": self.engine.info.name,
                "languages": sorted(self.profile.languages), "profile": self.profile.name,
                "modes": {q: m.model_dump(exclude_none=True, exclude={"model"})
                          for q, m in self.modes.items()}}


class ModelSet:
    """The served models and the routing table."""

    @classmethod
    def single(cls, engine: Engine, profile: Profile) -> ModelSet:
        """One model, named after its directory (`demo`), or its engine's model name."""
        return cls([ServedModel(Path(engine.info.model).name or engine.info.model, engine,
                                profile)])

    def __init__(self, models: Iterable[ServedModel], routes: Iterable[RouteSpec] = ()) -> None:
        self.models = {m.name: m for m in models}
        if not self.models:
            raise ValueError("no models to serve")
        if next(iter(self.models.values())).remote:
            raise ValueError("the first model must be a local one (live input runs on it); "
                             "put a remote model later, or first in a route")
        self.routes = list(routes)
        for route in self.routes:
            unknown = [n for n in route.models if n not in self.models]
            if unknown:
                raise ValueError(f"route {route.model_dump(exclude_none=True)} names unknown "
                                 f"model(s) {unknown}; known: {list(self.models)}")
        self.default = list(self.models.values())

    @property
    def primary(self) -> ServedModel:
        return self.default[0]

    @property
    def languages(self) -> list[str]:
        return sorted({c for m in self.models.values() for c in m.profile.languages})

    def chain(self, quality: Quality, source: str, target: str) -> list[ServedModel]:
        """The models to try, in order, for this request (empty: the pair is not served)."""
        names: list[str] = []
        for route in self.routes:
            if route.matches(quality, source, target):
                names = list(route.models)
                break
        else:
            preferred = self.primary.modes[quality].model
            names = [m.name for m in self.default]
            if preferred in self.models:
                names = [preferred] + [n for n in names if n != preferred]
        return [self.models[n] for n in names if self.models[n].serves(source, target)]

    def for_mode(self, quality: Quality) -> list[ServedModel]:
        return [self.models[n] for n in dict.fromkeys(
            m.name for src in self.languages for tgt in self.languages if src != tgt
            for m in self.chain(quality, src, tgt)[:1])]

    @property
    def all_dead(self) -> bool:
        """Every local engine is dead (a remote model is never dead: it may reconnect)."""
        local = [m for m in self.models.values() if not m.remote]
        return bool(local) and all(m.engine.dead for m in local)

    @property
    def dead(self) -> bool:
        """Every engine is dead: nothing can be served (one dead of several: degraded)."""
        return self.all_dead

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for m in self.models.values():
            d = m.describe()
            d["routed_for"] = [q for q in QUALITIES if m in self.for_mode(q)]
            out.append(d)
        return out

    def describe_routes(self) -> list[dict[str, Any]]:
        table = [r.model_dump(exclude_none=True) for r in self.routes]
        return [*table, {"default": True, "models": [m.name for m in self.default]}]
