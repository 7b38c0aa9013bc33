"""Admission: the one owner of every limit a request must pass, checked once per request.

Global (requests in flight on the server, the engine alive), per connection (WebSocket), and
per API key (concurrent streams, requests per minute, characters per day). A refusal is an
`overloaded` `ProtocolError` whose `limit` says which one (transports map it, e.g. to 429).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from tolk.protocol import ErrorCode, Limit, ProtocolError
from tolk_server.config import Settings
from tolk_server.models.routing import ModelSet
from tolk_server.ops.metrics import Metrics
from tolk_server.security.auth import ANONYMOUS, Principal
from tolk_server.security.keystore import KeyLimits


@dataclass
class _Usage:
    recent: deque[float] = field(default_factory=deque)
    day: int = -1
    chars: int = 0
    streams: int = 0


class KeyLimiter:
    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}

    def acquire(self, key_id: str, limits: KeyLimits, chars: int, rid: str,
                now: float | None = None) -> None:
        """Count one request against the key, or raise `overloaded`."""
        now = time.time() if now is None else now
        u = self._usage.setdefault(key_id, _Usage())
        if limits.concurrent_streams is not None and u.streams >= limits.concurrent_streams:
            raise ProtocolError(ErrorCode.OVERLOADED, "concurrent stream limit of this API key",
                                rid, limit=Limit.KEY_CONCURRENT, retry_after=1)
        if limits.requests_per_minute is not None:
            while u.recent and now - u.recent[0] >= 60:
                u.recent.popleft()
            if len(u.recent) >= limits.requests_per_minute:
                raise ProtocolError(ErrorCode.OVERLOADED, "request rate limit of this API key", rid,
                                    limit=Limit.KEY_RATE,
                                    retry_after=max(1, int(60 - (now - u.recent[0])) + 1))
        _check_chars(u, limits, chars, rid, now)
        if limits.requests_per_minute is not None:
            u.recent.append(now)
        u.chars += chars
        u.streams += 1

    def charge(self, key_id: str, limits: KeyLimits, chars: int, rid: str,
               now: float | None = None) -> None:
        """Count `chars` more characters of a running request, or raise `overloaded`."""
        now = time.time() if now is None else now
        u = self._usage.setdefault(key_id, _Usage())
        _check_chars(u, limits, chars, rid, now)
        u.chars += chars

    def refund(self, key_id: str, chars: int, at: float, rate: bool) -> None:
        """Give back `chars` counted at `at` (and, with `rate`, that request's place in the
        minute's window)."""
        u = self._usage.get(key_id)
        if u is None:
            return
        if u.day == int(at // 86400):
            u.chars = max(0, u.chars - chars)
        if rate:
            with contextlib.suppress(ValueError):
                u.recent.remove(at)

    def chars_today(self, key_id: str, now: float | None = None) -> int:
        """Characters this key has used today (UTC day), for usage reports."""
        u = self._usage.get(key_id)
        now = time.time() if now is None else now
        return u.chars if u is not None and u.day == int(now // 86400) else 0

    def release(self, key_id: str) -> None:
        u = self._usage.get(key_id)
        if u is not None and u.streams > 0:
            u.streams -= 1


def _check_chars(u: _Usage, limits: KeyLimits, chars: int, rid: str, now: float) -> None:
    """Raise `overloaded` if `chars` more characters would pass the key's daily limit."""
    day = int(now // 86400)
    if day != u.day:
        u.day, u.chars = day, 0
    if limits.chars_per_day is not None and u.chars + chars > limits.chars_per_day:
        raise ProtocolError(ErrorCode.OVERLOADED, "daily character limit of this API key", rid,
                            limit=Limit.KEY_CHARS, retry_after=(day + 1) * 86400 - int(now))


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds until `Admission.release`."""

    key_id: str | None  # None: no API key (keys are not configured)
    slots: int
    released: bool = False
    limits: KeyLimits | None = None  # the key's, for `Admission.charge`
    audio: bool = False  # an audio stream: counted against `max_audio_streams`
    chars: int = 0  # the characters counted at admission (`Admission.refund`)
    at: float = 0.0  # when
    within: Ticket | None = None  # the stream they were charged to (`Admission.admit`)


class Admission:
    def __init__(self, settings: Settings, models: ModelSet, metrics: Metrics) -> None:
        self.settings = settings
        self.models = models  # refused only when every model's engine is dead
        self.metrics = metrics
        self.keys = KeyLimiter()
        self.inflight = 0  # jobs (one per target) admitted and not yet released
        self.audio_streams = 0  # audio streams admitted and not yet released

    def admit(self, who: Principal, rid: str, slots: int, chars: int,
              connection_inflight: int | None = None, within: Ticket | None = None) -> Ticket:
        """Admit a request of `slots` jobs and `chars` characters, or raise `ProtocolError`.
        `connection_inflight`: requests already in flight on the caller's connection.
        `within`: part of an admitted stream (an audio phrase): it takes none of the key's
        streams or requests, only its characters."""
        s = self.settings
        if self.models.dead:
            raise ProtocolError(ErrorCode.ENGINE_ERROR, "the engine is not running", rid)
        if (connection_inflight is not None
                and connection_inflight >= s.max_inflight_per_connection):
            raise ProtocolError(ErrorCode.OVERLOADED,
                                "too many requests in flight on this connection", rid,
                                limit=Limit.CONNECTION, retry_after=1)
        if self.inflight + slots > s.max_inflight_total:
            raise ProtocolError(ErrorCode.OVERLOADED, "server is at capacity; retry shortly", rid,
                                limit=Limit.SERVER_CAPACITY, retry_after=1)
        key_id: str | None = None
        key_limits: KeyLimits | None = None
        now = time.time()
        if within is not None:
            self.charge(within, chars, rid, now)
        elif who is not ANONYMOUS:  # without keys, only the server's limits apply
            limits = self._limits(who)
            self.keys.acquire(who.key_id, limits, chars, rid, now)
            key_id, key_limits = who.key_id, limits
        self.inflight += slots
        self.metrics.inflight.inc(slots)
        return Ticket(key_id, slots, limits=key_limits, chars=chars, at=now, within=within)

    def admit_audio(self, who: Principal, rid: str) -> Ticket:
        """Admit an audio stream (one of the key's streams, one of `max_audio_streams`), or
        raise `ProtocolError`; its phrases' translations are admitted `within` its ticket."""
        if self.audio_streams >= self.settings.max_audio_streams:
            raise ProtocolError(ErrorCode.OVERLOADED, "too many audio streams on this server; "
                                "retry shortly", rid, limit=Limit.SERVER_CAPACITY,
                                retry_after=1)
        ticket = Ticket(None, 0, audio=True)
        if who is not ANONYMOUS:
            limits = self._limits(who)
            self.keys.acquire(who.key_id, limits, 0, rid)
            ticket.key_id, ticket.limits = who.key_id, limits
        self.audio_streams += 1
        return ticket

    def _limits(self, who: Principal) -> KeyLimits:
        limits = who.limits
        if limits.concurrent_streams is None:
            limits = limits.model_copy(
                update={"concurrent_streams": self.settings.max_inflight_per_key})
        return limits

    def charge(self, ticket: Ticket, chars: int, rid: str, now: float | None = None) -> None:
        """Count `chars` more of an admitted request (live input, an audio stream's phrases)
        against its key's daily characters, or raise `overloaded` (`key_chars_per_day`)."""
        if ticket.key_id is not None and ticket.limits is not None and chars > 0:
            self.keys.charge(ticket.key_id, ticket.limits, chars, rid, now)

    def refund(self, ticket: Ticket) -> None:
        """Release a request refused after its admission (its text unreadable, its language
        undetectable, …): it did no work, so its characters and its place in the key's rate
        are given back too, as if it had been refused before."""
        if ticket.released:
            return
        self.release(ticket)
        if ticket.within is not None:
            if ticket.within.key_id is not None:
                self.keys.refund(ticket.within.key_id, ticket.chars, ticket.at, rate=False)
        elif ticket.key_id is not None:
            self.keys.refund(ticket.key_id, ticket.chars, ticket.at, rate=True)

    def release(self, ticket: Ticket) -> None:
        """Give back what `admit` took (idempotent)."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.audio:
            self.audio_streams -= 1
        self.inflight -= ticket.slots
        self.metrics.inflight.dec(ticket.slots)
        if ticket.key_id is not None:
            self.keys.release(ticket.key_id)
