"""The `sqlite:///path` store: one file, for several processes on one host.

Standard library `sqlite3` in WAL mode (readers never wait for the writer); every change is
one `BEGIN IMMEDIATE` transaction, so a quota reservation's checks and counts are atomic
across processes. `busy_timeout` bounds how long a writer waits for another's transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tolk_server.stores.interfaces import Store, StoreError
from tolk_server.stores.records import (
    LEASE_TTL_S,
    Glossary,
    GlossaryMeta,
    KeyLimits,
    KeyRecord,
    Refusal,
    day_of,
    day_retry,
    dump_terms,
    load_terms,
    rate_retry,
)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 2000
SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS glossaries (name TEXT PRIMARY KEY, terms TEXT NOT NULL,
    created REAL NOT NULL, meta TEXT, owner TEXT);
CREATE INDEX IF NOT EXISTS glossaries_owner ON glossaries (owner);
CREATE TABLE IF NOT EXISTS rpm (kid TEXT NOT NULL, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rpm_kid_t ON rpm (kid, t);
CREATE TABLE IF NOT EXISTS chars (kid TEXT NOT NULL, day INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (kid, day));
CREATE TABLE IF NOT EXISTS leases (lease TEXT PRIMARY KEY, kid TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_kid ON leases (kid, expires);
CREATE TABLE IF NOT EXISTS contexts (owner TEXT NOT NULL, session TEXT NOT NULL,
    used REAL NOT NULL, turns TEXT NOT NULL, PRIMARY KEY (owner, session));
"""


class Db:
    """One connection per process (used from one thread at a time, under a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                        isolation_level=None, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes
            self.conn.executescript(SCHEMA)  # idempotent
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite store {path}: {exc}") from exc
        with contextlib.suppress(OSError):
            path.chmod(0o600)

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`: the write lock up front)."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self.conn)
            except sqlite3.OperationalError as exc:
                raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def ping(self) -> None:
        self.read(lambda c: c.execute("SELECT 1").fetchone())

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class SqliteKeys:
    def __init__(self, db: Db) -> None:
        self.db = db

    def get(self, kid: str) -> KeyRecord | None:
        row = self.db.read(lambda c: c.execute("SELECT record FROM keys WHERE id = ?",
                                               (kid,)).fetchone())
        return None if row is None else KeyRecord.model_validate_json(row[0])

    def all(self) -> dict[str, KeyRecord]:
        rows = self.db.read(lambda c: c.execute("SELECT id, record FROM keys").fetchall())
        return {k: KeyRecord.model_validate_json(r) for k, r in rows}

    def any(self) -> bool:
        return self.db.read(lambda c: c.execute("SELECT 1 FROM keys LIMIT 1").fetchone()
                            is not None)

    def put(self, record: KeyRecord) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO keys (id, name, record) VALUES (?, ?, ?)",
                      (record.id, record.name, record.model_dump_json()))

    def revoke(self, kid_or_name: str) -> list[str]:
        with self.db.tx() as c:
            rows = c.execute("SELECT id, record FROM keys WHERE id = ? OR name = ?",
                             (kid_or_name, kid_or_name)).fetchall()
            hit = [KeyRecord.model_validate_json(r) for _, r in rows]
            hit = [r.model_copy(update={"revoked": True}) for r in hit if not r.revoked]
            c.executemany("UPDATE keys SET record = ? WHERE id = ?",
                          [(r.model_dump_json(), r.id) for r in hit])
        return [r.id for r in hit]


def _chars(c: sqlite3.Connection, kid: str, day: int) -> int:
    row = c.execute("SELECT n FROM chars WHERE kid = ? AND day = ?", (kid, day)).fetchone()
    return int(row[0]) if row else 0


def _add_chars(c: sqlite3.Connection, kid: str, day: int, n: int) -> None:
    c.execute("INSERT INTO chars (kid, day, n) VALUES (?, ?, ?) "
              "ON CONFLICT (kid, day) DO UPDATE SET n = n + excluded.n", (kid, day, n))


class SqliteUsage:
    def __init__(self, db: Db) -> None:
        self.db = db

    def reserve(self, kid: str, limits: KeyLimits, chars: int, lease: str | None,
                now: float) -> Refusal | None:
        day = day_of(now)
        with self.db.tx() as c:
            cap = limits.concurrent_streams
            if lease is not None and cap is not None:
                c.execute("DELETE FROM leases WHERE kid = ? AND expires <= ?", (kid, now))
                (n,) = c.execute("SELECT count(*) FROM leases WHERE kid = ?", (kid,)).fetchone()
                if n >= cap:
                    return Refusal("streams", 1.0)
            rpm = limits.requests_per_minute
            if rpm is not None:
                c.execute("DELETE FROM rpm WHERE kid = ? AND t <= ?", (kid, now - 60))
                n, oldest = c.execute("SELECT count(*), min(t) FROM rpm WHERE kid = ?",
                                      (kid,)).fetchone()
                if n >= rpm:
                    return Refusal("rate", rate_retry(now, oldest))
            used = _chars(c, kid, day)
            if limits.chars_per_day is not None and used + chars > limits.chars_per_day:
                return Refusal("chars", day_retry(now))
            if rpm is not None:
                c.execute("INSERT INTO rpm (kid, t) VALUES (?, ?)", (kid, now))
            if chars:
                c.execute("DELETE FROM chars WHERE kid = ? AND day < ?", (kid, day - 1))
                _add_chars(c, kid, day, chars)
            if lease is not None:
                c.execute("INSERT OR REPLACE INTO leases (lease, kid, expires) VALUES (?, ?, ?)",
                          (lease, kid, now + LEASE_TTL_S))
        return None

    def charge(self, kid: str, limits: KeyLimits, chars: int, now: float) -> Refusal | None:
        day = day_of(now)
        with self.db.tx() as c:
            if (limits.chars_per_day is not None
                    and _chars(c, kid, day) + chars > limits.chars_per_day):
                return Refusal("chars", day_retry(now))
            _add_chars(c, kid, day, chars)
        return None

    def add_chars(self, kid: str, day: int, chars: int) -> None:
        with self.db.tx() as c:
            _add_chars(c, kid, day, chars)

    def refund(self, kid: str, lease: str, chars: int, at: float, rate: bool) -> None:
        with self.db.tx() as c:
            if chars:
                c.execute("UPDATE chars SET n = max(0, n - ?) WHERE kid = ? AND day = ?",
                          (chars, kid, day_of(at)))
            if rate:
                c.execute("DELETE FROM rpm WHERE rowid IN "
                          "(SELECT rowid FROM rpm WHERE kid = ? AND t = ? LIMIT 1)", (kid, at))

    def release(self, kid: str, lease: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM leases WHERE lease = ?", (lease,))

    def renew(self, leases: Iterable[tuple[str, str]], now: float) -> None:
        rows = [(lease, kid, now + LEASE_TTL_S) for kid, lease in leases]
        if rows:
            with self.db.tx() as c:
                c.executemany("INSERT OR REPLACE INTO leases (lease, kid, expires) "
                              "VALUES (?, ?, ?)", rows)

    def chars_today(self, kid: str, now: float) -> int:
        return self.db.read(lambda c: _chars(c, kid, day_of(now)))

    def streams(self, kid: str, now: float) -> int:
        row = self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM leases WHERE kid = ? AND expires > ?", (kid, now)).fetchone())
        return int(row[0])


def _glossary(terms: str, created: float, meta: str | None) -> Glossary:
    return Glossary(load_terms(terms), created,
                    GlossaryMeta.model_validate_json(meta) if meta else None)


class SqliteGlossaries:
    def __init__(self, db: Db) -> None:
        self.db = db

    def get(self, name: str) -> Glossary | None:
        row = self.db.read(lambda c: c.execute(
            "SELECT terms, created, meta FROM glossaries WHERE name = ?", (name,)).fetchone())
        return None if row is None else _glossary(*row)

    def all(self) -> dict[str, Glossary]:
        rows = self.db.read(lambda c: c.execute(
            "SELECT name, terms, created, meta FROM glossaries ORDER BY name").fetchall())
        return {name: _glossary(*rest) for name, *rest in rows}

    def put(self, name: str, terms: dict[str, str], now: float) -> None:
        with self.db.tx() as c:
            c.execute("INSERT INTO glossaries (name, terms, created) VALUES (?, ?, ?) "
                      "ON CONFLICT (name) DO UPDATE SET terms = excluded.terms",
                      (name, dump_terms(terms), now))

    def create(self, name: str, terms: dict[str, str], meta: GlossaryMeta,
               max_per_owner: int) -> bool:
        with self.db.tx() as c:
            (n,) = c.execute("SELECT count(*) FROM glossaries WHERE owner = ?",
                             (meta.owner,)).fetchone()
            if n >= max_per_owner:
                return False
            c.execute("INSERT OR REPLACE INTO glossaries (name, terms, created, meta, owner) "
                      "VALUES (?, ?, ?, ?, ?)", (name, dump_terms(terms), meta.created,
                                                 meta.model_dump_json(), meta.owner))
        return True

    def remove(self, name: str) -> bool:
        with self.db.tx() as c:
            return c.execute("DELETE FROM glossaries WHERE name = ?", (name,)).rowcount > 0


class SqliteContexts:
    def __init__(self, db: Db) -> None:
        self.db = db

    def turns(self, owner: str, session: str, now: float, ttl_s: float) -> list[str]:
        row = self.db.read(lambda c: c.execute(
            "SELECT turns FROM contexts WHERE owner = ? AND session = ? AND used >= ?",
            (owner, session, now - ttl_s)).fetchone())
        out: list[str] = json.loads(row[0]) if row else []
        return out

    def add(self, owner: str, session: str, turn: str, now: float, *, max_turns: int,
            max_sessions: int, ttl_s: float) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM contexts WHERE owner = ? AND used < ?", (owner, now - ttl_s))
            row = c.execute("SELECT turns FROM contexts WHERE owner = ? AND session = ?",
                            (owner, session)).fetchone()
            turns: list[Any] = [*(json.loads(row[0]) if row else []), turn]
            turns = turns[-max_turns:] if max_turns > 0 else []
            c.execute("INSERT OR REPLACE INTO contexts (owner, session, used, turns) "
                      "VALUES (?, ?, ?, ?)", (owner, session, now, json.dumps(turns)))
            c.execute("DELETE FROM contexts WHERE owner = ? AND session NOT IN (SELECT session "
                      "FROM contexts WHERE owner = ? ORDER BY used DESC, rowid DESC LIMIT ?)",
                      (owner, owner, max_sessions))

    def count(self, owner: str, now: float, ttl_s: float) -> int:
        row = self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM contexts WHERE owner = ? AND used >= ?",
            (owner, now - ttl_s)).fetchone())
        return int(row[0])


def sqlite_store(path: Path, url: str) -> Store:
    db = Db(path)
    return Store("sqlite", url, SqliteKeys(db), SqliteUsage(db), SqliteGlossaries(db),
                 SqliteContexts(db), ping=db.ping, close=db.close)
