"""The store interfaces: keys, usage (quota reservations and stream leases), glossaries and
session context. Every backend implements all four; `tests/test_store_contract.py` holds each
to the same contract.

Times are wall-clock seconds (`time.time()`), passed in by the caller, so that several hosts
share one clock of record and the contract tests can move time. A backend that cannot reach
its server raises `StoreError`; a refusal by a limit is a `Refusal`, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tolk_server.stores.records import Glossary, GlossaryMeta, KeyLimits, KeyRecord, Refusal

StoreKind = Literal["memory", "sqlite", "redis"]


class StoreError(Exception):
    """The store did not answer (down, unreachable, timed out, locked past its timeout)."""


class KeyBackend(Protocol):
    def get(self, kid: str) -> KeyRecord | None: ...
    def all(self) -> dict[str, KeyRecord]: ...
    def any(self) -> bool:
        """Whether any key (revoked ones included) was ever stored."""
        ...
    def put(self, record: KeyRecord) -> None: ...
    def revoke(self, kid_or_name: str) -> list[str]:
        """Revoke the active keys with this id or name; their ids."""
        ...


class UsageBackend(Protocol):
    def reserve(self, kid: str, limits: KeyLimits, chars: int, lease: str | None,
                now: float) -> Refusal | None:
        """Atomically: check the key's concurrent streams (live leases), its requests in the
        last 60 s and its characters today; if all pass, count one request, `chars`
        characters and (`lease` given) one stream lease until `now + LEASE_TTL_S`. A refusal
        takes nothing."""
        ...
    def charge(self, kid: str, limits: KeyLimits, chars: int, now: float) -> Refusal | None:
        """Atomically count `chars` more characters today, unless that passes the limit."""
        ...
    def add_chars(self, kid: str, day: int, chars: int) -> None:
        """Count characters used while the store was away (no limit applies)."""
        ...
    def refund(self, kid: str, lease: str, chars: int, at: float, rate: bool) -> None:
        """Take back what the reservation `lease` made at `at` counted: `chars` of that day's
        characters and, with `rate`, its place in the minute's window (its lease stays)."""
        ...
    def release(self, kid: str, lease: str) -> None: ...
    def renew(self, leases: Iterable[tuple[str, str]], now: float) -> None:
        """Extend these (key id, lease) pairs to `now + LEASE_TTL_S`."""
        ...
    def chars_today(self, kid: str, now: float) -> int: ...
    def streams(self, kid: str, now: float) -> int:
        """The key's live (unexpired) stream leases."""
        ...


class GlossaryBackend(Protocol):
    def get(self, name: str) -> Glossary | None: ...
    def all(self) -> dict[str, Glossary]: ...
    def put(self, name: str, terms: dict[str, str], now: float) -> None:
        """Add or replace an operator's glossary (a DeepL glossary keeps its metadata)."""
        ...
    def create(self, name: str, terms: dict[str, str], meta: GlossaryMeta,
               max_per_owner: int) -> bool:
        """Atomically add a key's glossary, unless its owner has `max_per_owner` already."""
        ...
    def remove(self, name: str) -> bool: ...


class ContextBackend(Protocol):
    """Session context: per owner (a connection or an API key), per session id, a list of
    turns (opaque strings), newest last. A session unused for `ttl_s` is gone; an owner keeps
    its `max_sessions` most recently used."""

    def turns(self, owner: str, session: str, now: float, ttl_s: float) -> list[str]: ...
    def add(self, owner: str, session: str, turn: str, now: float, *, max_turns: int,
            max_sessions: int, ttl_s: float) -> None: ...
    def count(self, owner: str, now: float, ttl_s: float) -> int: ...


def _nothing() -> None:
    return None


@dataclass
class Store:
    """One backend's four stores, what `open_store` returns."""

    kind: StoreKind
    url: str  # without its password
    keys: KeyBackend
    usage: UsageBackend
    glossaries: GlossaryBackend
    contexts: ContextBackend
    ping: Callable[[], None] = field(default=_nothing)  # raises StoreError when it is down
    close: Callable[[], None] = field(default=_nothing)

    @property
    def shared(self) -> bool:
        """Whether other processes see the same state (sqlite, redis)."""
        return self.kind != "memory"
