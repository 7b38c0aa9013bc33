"""What the transports share: settings, engine, the request pipeline, metrics and keys."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tolk_server.config import Settings
from tolk_server.engine.interface import Engine
from tolk_server.models.routing import ModelSet
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.admission import Admission
from tolk_server.pipeline.context import ContextStore
from tolk_server.pipeline.submit import Pipeline
from tolk_server.security.auth import Authenticator


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    pipeline: Pipeline
    metrics: Metrics
    auth: Authenticator
    model_name: str
    engine_ready: asyncio.Event = field(default_factory=asyncio.Event)
    startup_error: BaseException | None = None
    fatal_error: str | None = None
    draining: bool = False
    connections: set[Any] = field(default_factory=set)
    request_exit: Callable[[], None] | None = None
    audio: Any = None  # audio.service.AudioService: speech input (None: off)
    _http_sessions: dict[str, ContextStore] = field(default_factory=dict)

    def http_sessions(self, authorization: str | None) -> ContextStore:
        """HTTP has no connection: sessions belong to the API key (bounded in number)."""
        owner = hashlib.sha256((authorization or "").encode()).hexdigest()
        store = self._http_sessions.get(owner)
        if store is None:
            if len(self._http_sessions) >= 1024:
                self._http_sessions.pop(next(iter(self._http_sessions)))
            s = self.settings
            store = ContextStore(s.session_max, s.session_turns, s.session_ttl_s)
            self._http_sessions[owner] = store
        return store

    @property
    def models(self) -> ModelSet:
        return self.pipeline.planner.models

    @property
    def admission(self) -> Admission:
        return self.pipeline.admission

    @property
    def ready(self) -> bool:
        return (self.engine_ready.is_set() and any(m.engine.ready for m in self.models.default)
                and not self.draining)
