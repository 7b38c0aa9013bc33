"""A shared store's health and the outage policy (`store_failure`).

Every call to a shared store goes through `StoreHealth.run`. A failure marks the store down;
while it is down, calls fail fast (no waiting on timeouts). A server tries it again once a
second off its event loop (`check`, run by `app.lifecycle.watch_store`); without that watcher
(the CLI, tests) one call a second tries it inline. What a failure means is the policy's:
`closed` (the default) refuses the request (`StoreUnavailable`: an `engine_error`, HTTP 503),
`open` lets the caller fall back to this process's own limits. Either way it is counted
(`tolk_store_errors_total`) and shown in `/ready`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from tolk.protocol import ErrorCode, ProtocolError
from tolk_server.stores.interfaces import Store, StoreError

T = TypeVar("T")
Policy = Literal["closed", "open"]
RETRY_S = 1.0
log = logging.getLogger("tolk.store")


class StoreUnavailable(ProtocolError):
    """The store did not answer and the policy is `closed`."""

    def __init__(self, rid: str | None = None) -> None:
        super().__init__(ErrorCode.ENGINE_ERROR, "the state store is unavailable; retry "
                         "shortly", rid, retry_after=1)


class StoreHealth:
    def __init__(self, store: Store | None = None, policy: Policy = "closed",
                 on_error: Callable[[str], None] | None = None,
                 on_state: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store  # None: this process's own state (never fails)
        self.policy = policy
        self.up = True
        self.errors = 0
        self.last_error = ""
        self._on_error = on_error
        self._on_state = on_state
        self._clock = clock
        self._next_try = 0.0
        self.watched = False  # a watcher tries the store while it is down (`check`)

    @property
    def open(self) -> bool:
        """Whether an outage falls back on local state (`store_failure = "open"`)."""
        return self.policy == "open"

    def run(self, op: str, fn: Callable[[], T]) -> T:
        """`fn()`, or `StoreError` (counted) when the store fails or is known to be down."""
        now = self._clock()
        if not self.up and (self.watched or now < self._next_try):
            self._count(op)
            raise StoreError(f"the store is down ({self.last_error})")
        try:
            out = fn()
        except StoreError as exc:
            self._count(op)
            self._down(now, str(exc))
            raise
        if not self.up:
            self._back()
        return out

    @property
    def shared(self) -> bool:
        return self.store is not None and self.store.shared

    def check(self) -> bool:
        """Try the store now (the watcher's call, in a thread); whether it answered."""
        if self.store is None:
            return True
        try:
            self.store.ping()
        except StoreError as exc:
            self.last_error = str(exc)
            return False
        if not self.up:
            self._back()
        return True

    def refuse(self, rid: str | None = None) -> None:
        """After a `StoreError`: raise `StoreUnavailable` under `closed`; return under `open`."""
        if not self.open:
            raise StoreUnavailable(rid)

    def probe(self) -> bool:
        """Whether the store is up: a ping while it is, none while it is known to be down and
        watched (else at most one a second)."""
        if self.store is None or (self.watched and not self.up):
            return self.store is None
        try:
            self.run("ping", self.store.ping)
        except StoreError:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """For /ready (public): no address, no error text (those are in the log)."""
        up = self.probe() if self.shared else True
        return {"backend": self.store.kind if self.store else "memory",
                "state": "up" if up else "down",
                "policy": self.policy, "errors": self.errors}

    @property
    def url(self) -> str:
        return self.store.url if self.store is not None else "memory"

    def _count(self, op: str) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(op)

    def _down(self, now: float, why: str) -> None:
        self._next_try = now + RETRY_S
        self.last_error = why
        if self.up:
            self._set(False)
            log.error("the state store %s is down (%s); policy: %s", self.url, why,
                      self.policy)

    def _back(self) -> None:
        self._set(True)
        log.warning("the state store %s is back", self.url)

    def _set(self, up: bool) -> None:
        self.up = up
        if self._on_state is not None:
            self._on_state(up)
