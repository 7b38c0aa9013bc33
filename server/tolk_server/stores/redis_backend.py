"""The `redis://` / `rediss://` store (Redis or Valkey): several hosts, one truth.

Password (`redis://:PASSWORD@host:6379/0`, or `user:PASSWORD@`) and TLS (`rediss://`, with
`?ssl_ca_certs=/path/ca.pem` and friends) are the `redis` package's own URL options. Quota
checks are Lua scripts (`stores.lua`), each atomic on the server. Commands have a short
timeout and one retry (a pooled connection broken by a Redis restart reconnects once); a
store that does not answer raises `StoreError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tolk_server.stores import lua
from tolk_server.stores.interfaces import Store, StoreError
from tolk_server.stores.records import (
    DAY_S,
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

TIMEOUT_S = 0.5  # per command (and per connect): a store that takes longer is down
OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError)
KEYS = "tolk:keys"
GLOSSARY_TERMS, GLOSSARY_META = "tolk:{g}:terms", "tolk:{g}:meta"


@contextlib.contextmanager
def _outage(what: str) -> Iterator[None]:
    try:
        yield
    except OUTAGE as exc:
        raise StoreError(f"redis store ({what}): {exc}") from exc


def _n(limit: int | None) -> int:
    return -1 if limit is None else limit


def _usage_key(kid: str, part: str) -> str:
    return f"tolk:{{u:{kid}}}:{part}"


class RedisKeys:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def get(self, kid: str) -> KeyRecord | None:
        with _outage("keys"):
            raw = self.r.hget(KEYS, kid)
        return None if raw is None else KeyRecord.model_validate_json(raw)

    def all(self) -> dict[str, KeyRecord]:
        with _outage("keys"):
            raw = self.r.hgetall(KEYS)
        return {str(k): KeyRecord.model_validate_json(v) for k, v in raw.items()}

    def any(self) -> bool:
        with _outage("keys"):
            return bool(self.r.exists(KEYS))

    def put(self, record: KeyRecord) -> None:
        with _outage("keys"):
            self.r.hset(KEYS, record.id, record.model_dump_json())

    def revoke(self, kid_or_name: str) -> list[str]:
        hit = [r.model_copy(update={"revoked": True}) for r in self.all().values()
               if kid_or_name in (r.id, r.name) and not r.revoked]
        if hit:
            with _outage("keys"):
                self.r.hset(KEYS, mapping={r.id: r.model_dump_json() for r in hit})
        return [r.id for r in hit]


class RedisUsage:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._reserve = r.register_script(lua.RESERVE)
        self._charge = r.register_script(lua.CHARGE)

    def reserve(self, kid: str, limits: KeyLimits, chars: int, lease: str | None,
                now: float) -> Refusal | None:
        keys = [_usage_key(kid, "rpm"), _usage_key(kid, f"chars:{day_of(now)}"),
                _usage_key(kid, "leases")]
        args: list[str | int] = [
                repr(now), _n(limits.requests_per_minute), _n(limits.chars_per_day),
                _n(limits.concurrent_streams), chars, lease or "", repr(now + LEASE_TTL_S),
                lease or uuid.uuid4().hex, 2 * DAY_S, math.ceil(2 * LEASE_TTL_S), repr(now - 60)]
        with _outage("reserve"):
            verdict, detail = self._reserve(keys=keys, args=args)
        if verdict == "ok":
            return None
        if verdict == "rate":
            return Refusal("rate", rate_retry(now, float(detail)))
        return Refusal("streams", 1.0) if verdict == "streams" else Refusal("chars",
                                                                             day_retry(now))

    def charge(self, kid: str, limits: KeyLimits, chars: int, now: float) -> Refusal | None:
        with _outage("charge"):
            ok = self._charge(keys=[_usage_key(kid, f"chars:{day_of(now)}")],
                              args=[_n(limits.chars_per_day), chars, 2 * DAY_S])
        return None if ok else Refusal("chars", day_retry(now))

    def add_chars(self, kid: str, day: int, chars: int) -> None:
        key = _usage_key(kid, f"chars:{day}")
        pipe = self.r.pipeline()
        pipe.incrby(key, chars)
        pipe.expire(key, 2 * DAY_S)
        with _outage("add_chars"):
            pipe.execute()

    def refund(self, kid: str, lease: str, chars: int, at: float, rate: bool) -> None:
        pipe = self.r.pipeline()
        if chars:
            pipe.decrby(_usage_key(kid, f"chars:{day_of(at)}"), chars)
        if rate:
            pipe.zrem(_usage_key(kid, "rpm"), lease)  # the reservation's member is its lease
        with _outage("refund"):
            pipe.execute()

    def release(self, kid: str, lease: str) -> None:
        with _outage("release"):
            self.r.zrem(_usage_key(kid, "leases"), lease)

    def renew(self, leases: Iterable[tuple[str, str]], now: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        for kid, lease in leases:
            key = _usage_key(kid, "leases")
            pipe.zadd(key, {lease: now + LEASE_TTL_S})
            pipe.expire(key, math.ceil(2 * LEASE_TTL_S))
        if len(pipe):
            with _outage("renew"):
                pipe.execute()

    def chars_today(self, kid: str, now: float) -> int:
        with _outage("usage"):
            raw = self.r.get(_usage_key(kid, f"chars:{day_of(now)}"))
        return int(raw or 0)

    def streams(self, kid: str, now: float) -> int:
        with _outage("usage"):
            return int(self.r.zcount(_usage_key(kid, "leases"), f"({now!r}", "+inf"))


def _owner_set(owner: str) -> str:
    return f"tolk:{{g}}:owner:{owner}"


def _glossary(raw: Any, meta: Any) -> Glossary:
    data = json.loads(raw)
    return Glossary(load_terms(data["terms"]), float(data.get("created", 0.0)),
                    GlossaryMeta.model_validate_json(meta) if meta else None)


class RedisGlossaries:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._create = r.register_script(lua.CREATE_GLOSSARY)

    def get(self, name: str) -> Glossary | None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(GLOSSARY_TERMS, name)
        pipe.hget(GLOSSARY_META, name)
        with _outage("glossaries"):
            raw, meta = pipe.execute()
        return None if raw is None else _glossary(raw, meta)

    def all(self) -> dict[str, Glossary]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(GLOSSARY_TERMS)
        pipe.hgetall(GLOSSARY_META)
        with _outage("glossaries"):
            raw, metas = pipe.execute()
        return {str(k): _glossary(raw[k], metas.get(k)) for k in sorted(raw)}

    def put(self, name: str, terms: dict[str, str], now: float) -> None:
        blob = json.dumps({"terms": json.loads(dump_terms(terms)), "created": now},
                          ensure_ascii=False)
        with _outage("glossaries"):
            self.r.hset(GLOSSARY_TERMS, name, blob)

    def create(self, name: str, terms: dict[str, str], meta: GlossaryMeta,
               max_per_owner: int) -> bool:
        blob = json.dumps({"terms": terms, "created": meta.created}, ensure_ascii=False)
        with _outage("glossaries"):
            return bool(self._create(keys=[GLOSSARY_TERMS, GLOSSARY_META,
                                           _owner_set(meta.owner)],
                                     args=[name, blob, meta.model_dump_json(), max_per_owner]))

    def remove(self, name: str) -> bool:
        with _outage("glossaries"):
            meta = self.r.hget(GLOSSARY_META, name)
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(GLOSSARY_TERMS, name)
            pipe.hdel(GLOSSARY_META, name)
            if meta:
                pipe.srem(_owner_set(GlossaryMeta.model_validate_json(meta).owner), name)
            return bool(pipe.execute()[0])


def _ctx_key(owner: str, part: str) -> str:
    return f"tolk:{{c:{owner}}}:{part}"


class RedisContexts:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._add = r.register_script(lua.ADD_TURN)

    def turns(self, owner: str, session: str, now: float, ttl_s: float) -> list[str]:
        pipe = self.r.pipeline(transaction=False)
        pipe.zscore(_ctx_key(owner, "sessions"), session)
        pipe.lrange(_ctx_key(owner, f"s:{session}"), 0, -1)
        with _outage("contexts"):
            used, turns = pipe.execute()
        return [str(t) for t in turns] if used is not None and used >= now - ttl_s else []

    def add(self, owner: str, session: str, turn: str, now: float, *, max_turns: int,
            max_sessions: int, ttl_s: float) -> None:
        if max_turns <= 0:
            return
        with _outage("contexts"):
            self._add(keys=[_ctx_key(owner, "sessions"), _ctx_key(owner, f"s:{session}")],
                      args=[session, turn, repr(now), max_turns, max_sessions,
                            math.ceil(ttl_s) + 1, repr(now - ttl_s), _ctx_key(owner, "s:")])

    def count(self, owner: str, now: float, ttl_s: float) -> int:
        with _outage("contexts"):
            return int(self.r.zcount(_ctx_key(owner, "sessions"), repr(now - ttl_s), "+inf"))


def redis_store(url: str, shown: str) -> Store:
    """A client for `url` (`shown`: the URL without its password, for logs and /ready)."""
    r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT_S,
                             socket_connect_timeout=TIMEOUT_S,
                             # a pooled connection a restart broke: reconnect once (no
                             # retry on a timeout: an unreachable store costs one timeout)
                             retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                             health_check_interval=30)

    def ping() -> None:
        with _outage("ping"):
            r.ping()

    return Store("redis", shown, RedisKeys(r), RedisUsage(r), RedisGlossaries(r),
                 RedisContexts(r), ping=ping, close=r.close)
