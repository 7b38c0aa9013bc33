"""Admission: the one owner of every limit a request must pass, checked once per request.

Global (requests in flight on the server, the engine alive), per connection (WebSocket), and
per API key (concurrent streams, requests per minute, characters per day: `quota.KeyLimiter`,
in the usage store, shared by every process on it). A refusal is an `overloaded`
`ProtocolError` whose `limit` says which one (transports map it, e.g. to 429).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tolk.protocol import ErrorCode, Limit, ProtocolError
from tolk_server.config import Settings
from tolk_server.models.routing import ModelSet
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.quota import KeyLimiter, Lease
from tolk_server.security.auth import ANONYMOUS, Principal
from tolk_server.stores.health import StoreHealth
from tolk_server.stores.interfaces import UsageBackend
from tolk_server.stores.records import KeyLimits


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds until `Admission.release`."""

    key_id: str | None  # None: no API key (keys are not configured)
    slots: int
    released: bool = False
    limits: KeyLimits | None = None  # the key's, for `Admission.charge`
    lease: Lease | None = None  # the key's stream, for `Admission.release`
    audio: bool = False  # an audio stream: counted against `max_audio_streams`
    chars: int = 0  # the characters counted at admission (`Admission.refund`)
    at: float = 0.0  # when
    within: Ticket | None = None  # the stream they were charged to (`Admission.admit`)


class Admission:
    def __init__(self, settings: Settings, models: ModelSet, metrics: Metrics,
                 usage: UsageBackend | None = None, health: StoreHealth | None = None) -> None:
        self.settings = settings
        self.models = models  # refused only when every model's engine is dead
        self.metrics = metrics
        self.keys = KeyLimiter(usage, health)
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
        now = time.time()
        ticket = Ticket(None, slots, chars=chars, at=now, within=within)
        if within is not None:
            self.charge(within, chars, rid, now)
        elif who is not ANONYMOUS:  # without keys, only the server's limits apply
            limits = self._limits(who)
            ticket.lease = self.keys.acquire(who.key_id, limits, chars, rid, now)
            ticket.key_id, ticket.limits = who.key_id, limits
        self.inflight += slots
        self.metrics.inflight.inc(slots)
        return ticket

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
            ticket.lease = self.keys.acquire(who.key_id, limits, 0, rid)
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
        if ticket.lease is not None and ticket.limits is not None and chars > 0:
            self.keys.charge(ticket.lease, ticket.limits, chars, rid, now)

    def refund(self, ticket: Ticket) -> None:
        """Release a request refused after its admission (its text unreadable, its language
        undetectable, …): it did no work, so its characters and its place in the key's rate
        are given back too, as if it had been refused before."""
        if ticket.released:
            return
        self.release(ticket)
        if ticket.within is not None:
            if ticket.within.lease is not None:
                self.keys.refund(ticket.within.lease, ticket.chars, ticket.at, rate=False)
        elif ticket.lease is not None:
            self.keys.refund(ticket.lease, ticket.chars, ticket.at, rate=True)

    def release(self, ticket: Ticket) -> None:
        """Give back what `admit` took (idempotent)."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.audio:
            self.audio_streams -= 1
        self.inflight -= ticket.slots
        self.metrics.inflight.dec(ticket.slots)
        if ticket.lease is not None:
            self.keys.release(ticket.lease)
