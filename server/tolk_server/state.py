"""What the transports share: settings, the admission gate, the request pipeline, metrics."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tolk_server.config import Settings
from tolk_server.engine.interface import Engine
from tolk_server.models.routing import ModelSet
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.admission import Admission
from tolk_server.pipeline.context import ContextStore
from tolk_server.pipeline.gate import Gate
from tolk_server.pipeline.submit import Pipeline
from tolk_server.security.auth import Authenticator, Principal
from tolk_server.stores.health import StoreHealth
from tolk_server.stores.interfaces import Store


class Connection(Protocol):
    """An open client connection, as the drain sees it (`transports.ws.Connection`)."""

    async def shut_down(self, message: str) -> None: ...


class SpeechInput(Protocol):
    """Speech input as the app and /ready see it (`audio.service.AudioService`)."""

    async def start(self) -> None: ...
    async def shutdown(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    pipeline: Pipeline
    gate: Gate  # key, ready/draining, size cap: every surface asks it first
    admission: Admission  # the pipeline's limits (in flight, per key), for the drain and usage
    models: ModelSet
    metrics: Metrics
    model_name: str
    store: Store  # keys, quotas, glossaries, session context (`stores`)
    startup_error: BaseException | None = None
    fatal_error: str | None = None
    connections: set[Connection] = field(default_factory=set)
    request_exit: Callable[[], None] | None = None
    audio: SpeechInput | None = None  # speech input (None: off)
    store_health: StoreHealth = field(default_factory=StoreHealth)

    def http_sessions(self, authorization: str | None) -> ContextStore:
        """HTTP has no connection: sessions belong to the API key (the store bounds their
        owners: 1024 in memory)."""
        owner = hashlib.sha256((authorization or "").encode()).hexdigest()
        return self.sessions_of(owner)

    def key_sessions(self, who: Principal) -> ContextStore:
        """A keyed WebSocket's sessions: the key's, on every connection and replica."""
        return self.sessions_of(f"key:{who.key_id}")

    def sessions_of(self, owner: str) -> ContextStore:
        s = self.settings
        return ContextStore(s.session_max, s.session_turns, s.session_ttl_s,
                            backend=self.store.contexts, owner=owner, health=self.store_health)

    @property
    def auth(self) -> Authenticator:
        return self.gate.auth

    @property
    def engine_ready(self) -> asyncio.Event:
        return self.gate.engine_ready

    @property
    def draining(self) -> bool:
        return self.gate.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.gate.draining = value

    @property
    def ready(self) -> bool:
        return self.gate.ready
