"""Translation context: the prior turns of each conversation (a request's `session` id),
bounded by turns, a TTL and an LRU cap. (Not an audio session, nor a live request.)

The turns live in a context store (`stores.interfaces.ContextBackend`) under an owner: a
connection's own (an anonymous WebSocket), or an API key's (HTTP, and a WebSocket with a key),
which every replica on a shared store sees, so a session goes on after a reconnect to any of
them. When the store does not answer: `closed` refuses the request (`StoreUnavailable`),
`open` translates it without its context (and keeps none).
"""

from __future__ import annotations

import json
import math
import time

from tolk_server.models.profiles import PriorTurn as Turn
from tolk_server.stores.health import StoreHealth
from tolk_server.stores.interfaces import ContextBackend, StoreError
from tolk_server.stores.memory import MemoryContexts


def _dump(turn: Turn) -> str:
    return json.dumps([turn.source, turn.translation, turn.source_lang, turn.target_lang],
                      ensure_ascii=False)


def _load(raw: str) -> Turn:
    source, translation, source_lang, target_lang = json.loads(raw)
    return Turn(source, translation, source_lang, target_lang)


class ContextStore:
    """The conversations of one owner; without a backend, a private one (nothing shared)."""

    def __init__(self, max_sessions: int = 256, max_turns: int = 4, ttl_s: float = 1800.0,
                 max_turn_chars: int = 2000, *, backend: ContextBackend | None = None,
                 owner: str = "", health: StoreHealth | None = None) -> None:
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.max_turn_chars = max_turn_chars
        self.backend: ContextBackend = backend or MemoryContexts(max_owners=1)
        self.owner = owner
        self.health = health or StoreHealth()

    def __len__(self) -> int:
        """The sessions kept (expired ones too, until an access sweeps them)."""
        return self.health.run("contexts", lambda: self.backend.count(
            self.owner, time.time(), math.inf))

    def context(self, session: str, now: float | None = None) -> list[Turn]:
        now = time.time() if now is None else now
        try:
            raw = self.health.run("contexts", lambda: self.backend.turns(
                self.owner, session, now, self.ttl_s))
        except StoreError:
            self.health.refuse()  # closed: StoreUnavailable; open: no context
            return []
        return [_load(t) for t in raw]

    def add(self, session: str, turn: Turn, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if len(turn.source) > self.max_turn_chars or len(turn.translation) > self.max_turn_chars:
            return  # long documents are not useful context and would bloat prompts
        try:
            self.health.run("contexts", lambda: self.backend.add(
                self.owner, session, _dump(turn), now, max_turns=self.max_turns,
                max_sessions=self.max_sessions, ttl_s=self.ttl_s))
        except StoreError:
            pass  # the turn is lost for context; the translation itself was delivered
