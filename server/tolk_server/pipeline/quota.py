"""Per-key quotas (requests per minute, characters per day, concurrent streams) kept in the
usage store, so that every worker and replica on one store counts against one quota.

Each admission is one atomic reservation (`UsageBackend.reserve`); each admitted stream holds
a lease that this process renews (`renew`, every `LEASE_TTL_S / 3`) until it is released, so
the streams of a worker that crashed free themselves within `LEASE_TTL_S`.

When the store does not answer: under `closed` the request is refused (`StoreUnavailable`);
under `open` it is counted on this process's own limits, and the characters it used are added
to the store once it answers again (nothing is lost from the daily count).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from tolk.protocol import ErrorCode, Limit, ProtocolError
from tolk_server.stores.health import StoreHealth
from tolk_server.stores.interfaces import StoreError, UsageBackend
from tolk_server.stores.memory import MemoryUsage
from tolk_server.stores.records import KeyLimits, Refusal, day_of

_REFUSALS = {
    "streams": ("concurrent stream limit of this API key", Limit.KEY_CONCURRENT),
    "rate": ("request rate limit of this API key", Limit.KEY_RATE),
    "chars": ("daily character limit of this API key", Limit.KEY_CHARS),
}


@dataclass(frozen=True, slots=True)
class Lease:
    """One admitted stream of a key."""

    key_id: str
    lease: str
    local: bool  # counted on this process's own limits (the store was away, policy `open`)


def refused(refusal: Refusal, rid: str | None) -> ProtocolError:
    message, limit = _REFUSALS[refusal.limit]
    return ProtocolError(ErrorCode.OVERLOADED, message, rid, limit=limit,
                         retry_after=max(1, int(refusal.retry_after)))


class KeyLimiter:
    def __init__(self, usage: UsageBackend | None = None,
                 health: StoreHealth | None = None) -> None:
        self.usage: UsageBackend = usage or MemoryUsage()
        self.health = health or StoreHealth()
        self.local = MemoryUsage()  # the `open` policy's limits while the store is away
        self._held: dict[str, str] = {}  # lease → key id: this process's leases in the store
        self._pending: defaultdict[tuple[str, int], int] = defaultdict(int)  # local chars

    def acquire(self, key_id: str, limits: KeyLimits, chars: int, rid: str,
                now: float | None = None) -> Lease:
        """Count one request (and stream) against the key, or raise `overloaded`."""
        now = time.time() if now is None else now
        lease = uuid.uuid4().hex
        try:
            refusal = self.health.run(
                "reserve", lambda: self.usage.reserve(key_id, limits, chars, lease, now))
            local = False
        except StoreError:
            self.health.refuse(rid)  # closed: StoreUnavailable
            refusal = self.local.reserve(key_id, limits, chars, lease, now)
            local = True
        if refusal is not None:
            raise refused(refusal, rid)
        if local:
            self._pending[(key_id, day_of(now))] += chars
        else:
            self._held[lease] = key_id
            if self._pending:
                self._flush()
        return Lease(key_id, lease, local)

    def charge(self, lease: Lease, limits: KeyLimits, chars: int, rid: str,
               now: float | None = None) -> None:
        """Count `chars` more characters of a running request, or raise `overloaded`."""
        now = time.time() if now is None else now
        refusal: Refusal | None
        if not lease.local:
            try:
                refusal = self.health.run(
                    "charge", lambda: self.usage.charge(lease.key_id, limits, chars, now))
            except StoreError:
                self.health.refuse(rid)
            else:
                if refusal is not None:
                    raise refused(refusal, rid)
                return
        refusal = self.local.charge(lease.key_id, limits, chars, now)
        if refusal is not None:
            raise refused(refusal, rid)
        self._pending[(lease.key_id, day_of(now))] += chars

    def release(self, lease: Lease) -> None:
        if lease.local:
            self.local.release(lease.key_id, lease.lease)
            return
        self._held.pop(lease.lease, None)
        try:
            self.health.run("release", lambda: self.usage.release(lease.key_id, lease.lease))
        except StoreError:
            pass  # the lease expires in LEASE_TTL_S

    def refund(self, lease: Lease, chars: int, at: float, rate: bool) -> None:
        """Give back `chars` counted at `at` (and, with `rate`, that request's place in the
        minute's window): a request refused after its admission did no work."""
        if lease.local:
            self.local.refund(lease.key_id, lease.lease, chars, at, rate)
            key = (lease.key_id, day_of(at))
            if key in self._pending:
                self._pending[key] = max(0, self._pending[key] - chars)
            return
        try:
            self.health.run("refund", lambda: self.usage.refund(
                lease.key_id, lease.lease, chars, at, rate))
        except StoreError:
            pass  # under `open`, kept counted: a refund is never worth a refusal

    def chars_today(self, key_id: str, now: float | None = None) -> int:
        """Characters this key has used today (UTC day), for usage reports."""
        now = time.time() if now is None else now
        pending = self._pending.get((key_id, day_of(now)), 0)
        try:
            return self.health.run("usage", lambda: self.usage.chars_today(key_id, now)) + pending
        except StoreError:
            self.health.refuse()
            return self.local.chars_today(key_id, now)

    def renew(self, now: float | None = None) -> None:
        """Renew this process's leases; add the characters counted while the store was away."""
        now = time.time() if now is None else now
        held = [(kid, lease) for lease, kid in self._held.items()]
        try:
            if held:
                self.health.run("renew", lambda: self.usage.renew(held, now))
        except StoreError:
            return
        self._flush()

    def _flush(self) -> None:
        for (kid, day), chars in list(self._pending.items()):
            try:
                self.health.run("reconcile", partial(self.usage.add_chars, kid, day, chars))
            except StoreError:
                return
            del self._pending[(kid, day)]
