"""What the transport shares: settings, engine, translator, metrics and keys."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tolk.protocol import TranslateOptions

from .auth import Authenticator, Principal
from .config import Settings
from .engine import Engine
from .limits import KeyLimiter
from .metrics import Metrics
from .sessions import SessionStore
from .translator import Job, Translator


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    translator: Translator
    metrics: Metrics
    auth: Authenticator
    model_name: str
    engine_ready: asyncio.Event = field(default_factory=asyncio.Event)
    startup_error: BaseException | None = None
    fatal_error: str | None = None
    draining: bool = False
    connections: set[Any] = field(default_factory=set)
    limiter: KeyLimiter = field(default_factory=KeyLimiter)
    request_exit: Callable[[], None] | None = None
    _http_sessions: dict[str, SessionStore] = field(default_factory=dict)

    def admit(self, opts: TranslateOptions, rid: str, who: Principal,
              sessions: SessionStore) -> list[Job]:
        """Validate, render and admit a request (both transports): the jobs to run.

        Raises `ProtocolError`. Once this returns, the caller must `release(who)`.
        """
        jobs = self.translator.prepare(opts, rid, sessions=sessions)
        self.translator.admit(rid, len(jobs))
        self._admit_key(who, len(opts.text) * len(jobs), rid)
        return jobs

    def release(self, who: Principal) -> None:
        self.limiter.release(who.key_id)

    def _admit_key(self, who: Principal, chars: int, rid: str) -> None:
        """Count a request against its API key's limits (raises `overloaded`)."""
        limits = who.limits
        if limits.concurrent_streams is None:
            limits = limits.model_copy(
                update={"concurrent_streams": self.settings.max_inflight_per_key}
            )
        self.limiter.acquire(who.key_id, limits, chars, rid)

    def http_sessions(self, authorization: str | None) -> SessionStore:
        """HTTP has no connection: sessions belong to the API key (bounded in number)."""
        owner = hashlib.sha256((authorization or "").encode()).hexdigest()
        store = self._http_sessions.get(owner)
        if store is None:
            if len(self._http_sessions) >= 1024:
                self._http_sessions.pop(next(iter(self._http_sessions)))
            s = self.settings
            store = SessionStore(s.session_max, s.session_turns, s.session_ttl_s)
            self._http_sessions[owner] = store
        return store

    @property
    def ready(self) -> bool:
        return self.engine_ready.is_set() and self.engine.ready and not self.draining
