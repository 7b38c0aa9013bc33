"""Translation context: the prior turns of each conversation (a request's `session` id),
bounded by turns, a TTL and an LRU cap. (Not an audio session, nor a live request.)"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from tolk_server.models.profiles import PriorTurn as Turn


class ContextStore:
    """The conversations of one owner (a connection, or an API key over HTTP); nothing is
    shared."""

    def __init__(self, max_sessions: int = 256, max_turns: int = 4, ttl_s: float = 1800.0,
                 max_turn_chars: int = 2000) -> None:
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.max_turn_chars = max_turn_chars
        self._data: OrderedDict[str, tuple[float, deque[Turn]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def context(self, session: str, now: float | None = None) -> list[Turn]:
        now = time.monotonic() if now is None else now
        self._expire(now)
        entry = self._data.get(session)
        if entry is None:
            return []
        self._data.move_to_end(session)
        return list(entry[1])

    def add(self, session: str, turn: Turn, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(turn.source) > self.max_turn_chars or len(turn.translation) > self.max_turn_chars:
            return  # long documents are not useful context and would bloat prompts
        _, turns = self._data.pop(session, (now, deque(maxlen=self.max_turns)))
        turns.append(turn)
        self._data[session] = (now, turns)
        while len(self._data) > self.max_sessions:
            self._data.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._data:
            key, (stamp, _) = next(iter(self._data.items()))
            if now - stamp <= self.ttl_s:
                break
            del self._data[key]
