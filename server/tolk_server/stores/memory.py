"""The `memory` store's usage and session context: this process's own (as before stores).

Also what the `open` failure policy falls back on while a shared store is away.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tolk_server.stores.records import (
    LEASE_TTL_S,
    KeyLimits,
    Refusal,
    day_of,
    day_retry,
    rate_retry,
)


@dataclass
class _Usage:
    recent: deque[float] = field(default_factory=deque)
    day: int = -1
    chars: int = 0
    leases: dict[str, float] = field(default_factory=dict)  # lease → expiry


class MemoryUsage:
    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}
        self._lock = threading.Lock()

    def _of(self, kid: str, now: float) -> _Usage:
        u = self._usage.setdefault(kid, _Usage())
        if u.day != day_of(now):
            u.day, u.chars = day_of(now), 0
        while u.recent and now - u.recent[0] >= 60:
            u.recent.popleft()
        for lease in [k for k, exp in u.leases.items() if exp <= now]:
            del u.leases[lease]
        return u

    def reserve(self, kid: str, limits: KeyLimits, chars: int, lease: str | None,
                now: float) -> Refusal | None:
        with self._lock:
            u = self._of(kid, now)
            cap = limits.concurrent_streams
            if lease is not None and cap is not None and len(u.leases) >= cap:
                return Refusal("streams", 1.0)
            rpm = limits.requests_per_minute
            if rpm is not None and len(u.recent) >= rpm:
                return Refusal("rate", rate_retry(now, u.recent[0]))
            if limits.chars_per_day is not None and u.chars + chars > limits.chars_per_day:
                return Refusal("chars", day_retry(now))
            if rpm is not None:
                u.recent.append(now)
            u.chars += chars
            if lease is not None:
                u.leases[lease] = now + LEASE_TTL_S
            return None

    def charge(self, kid: str, limits: KeyLimits, chars: int, now: float) -> Refusal | None:
        with self._lock:
            u = self._of(kid, now)
            if limits.chars_per_day is not None and u.chars + chars > limits.chars_per_day:
                return Refusal("chars", day_retry(now))
            u.chars += chars
            return None

    def refund(self, kid: str, lease: str, chars: int, at: float, rate: bool) -> None:
        with self._lock:
            u = self._usage.get(kid)
            if u is None:
                return
            if u.day == day_of(at):
                u.chars = max(0, u.chars - chars)
            if rate:
                with contextlib.suppress(ValueError):
                    u.recent.remove(at)

    def add_chars(self, kid: str, day: int, chars: int) -> None:
        with self._lock:
            u = self._usage.setdefault(kid, _Usage())
            if u.day == day:
                u.chars += chars
            elif u.day < day:
                u.day, u.chars = day, chars

    def release(self, kid: str, lease: str) -> None:
        with self._lock:
            u = self._usage.get(kid)
            if u is not None:
                u.leases.pop(lease, None)

    def renew(self, leases: Iterable[tuple[str, str]], now: float) -> None:
        with self._lock:
            for kid, lease in leases:
                self._usage.setdefault(kid, _Usage()).leases[lease] = now + LEASE_TTL_S

    def chars_today(self, kid: str, now: float) -> int:
        u = self._usage.get(kid)
        return u.chars if u is not None and u.day == day_of(now) else 0

    def streams(self, kid: str, now: float) -> int:
        with self._lock:
            return len(self._of(kid, now).leases)


class MemoryContexts:
    """Per owner, an LRU of sessions: (last use, turns). At most `max_owners` owners (the
    least recently used goes)."""

    def __init__(self, max_owners: int = 1024) -> None:
        self.max_owners = max_owners
        self._owners: OrderedDict[str, OrderedDict[str, tuple[float, list[str]]]] = (
            OrderedDict())

    def _sessions(self, owner: str, now: float,
                  ttl_s: float) -> OrderedDict[str, tuple[float, list[str]]]:
        sessions = self._owners.get(owner)
        if sessions is None:
            sessions = self._owners[owner] = OrderedDict()
            while len(self._owners) > self.max_owners:
                self._owners.popitem(last=False)
        self._owners.move_to_end(owner)
        for key in [k for k, (used, _) in sessions.items() if now - used > ttl_s]:
            del sessions[key]
        return sessions

    def turns(self, owner: str, session: str, now: float, ttl_s: float) -> list[str]:
        entry = self._sessions(owner, now, ttl_s).get(session)
        return list(entry[1]) if entry is not None else []

    def add(self, owner: str, session: str, turn: str, now: float, *, max_turns: int,
            max_sessions: int, ttl_s: float) -> None:
        sessions = self._sessions(owner, now, ttl_s)
        _, turns = sessions.pop(session, (now, []))
        turns = [*turns, turn][-max_turns:] if max_turns > 0 else []
        sessions[session] = (now, turns)
        while len(sessions) > max_sessions:
            sessions.popitem(last=False)

    def count(self, owner: str, now: float, ttl_s: float) -> int:
        return len(self._sessions(owner, now, ttl_s))
