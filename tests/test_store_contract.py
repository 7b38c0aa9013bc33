"""One contract for every store backend: memory, sqlite (a file) and a real redis-server.

Time is passed in (`now`), so windows, days, leases and TTLs are tested without waiting.
The concurrency tests race several clients (each its own connection, as separate processes
would have) for one quota: exactly the quota is granted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tolk_server.stores.factory import check_url, open_store, shown_url
from tolk_server.stores.health import StoreHealth, StoreUnavailable
from tolk_server.stores.interfaces import Store, StoreError
from tolk_server.stores.records import LEASE_TTL_S, GlossaryMeta, KeyLimits, KeyRecord

T0 = 19675 * 86400.0 + 3600  # an hour into a UTC day (2023-11-14)
BACKENDS = ["memory", "sqlite", "redis"]


def url_of(kind: str, tmp_path: Path, redis_server: Any) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if kind == "redis":
        redis_server.flush()
        return str(redis_server.url)
    return "memory"


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Opens stores on one backend: each call is another client (connection)."""
    server = request.getfixturevalue("redis_server") if kind == "redis" else None
    url = url_of(kind, tmp_path, server)
    opened: list[Store] = []

    def open_one() -> Store:
        store = open_store(url, key_file=tmp_path / "keys.json",
                           glossary_file=tmp_path / "glossaries.json")
        opened.append(store)
        return store

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Any) -> Store:
    s: Store = opener()
    return s


def record(kid: str, name: str) -> KeyRecord:
    return KeyRecord(id=kid, name=name, salt="00", sha256="0" * 64, created=T0,
                     limits=KeyLimits(requests_per_minute=5))


def test_keys_put_get_revoke(store: Store) -> None:
    assert store.keys.get("a") is None and not store.keys.any()
    store.keys.put(record("a", "alice"))
    store.keys.put(record("b", "bob"))
    assert store.keys.any() and store.keys.get("a") == record("a", "alice")
    assert set(store.keys.all()) == {"a", "b"}
    assert store.keys.revoke("bob") == ["b"] and store.keys.revoke("b") == []
    assert store.keys.get("b").revoked and not store.keys.get("a").revoked  # type: ignore[union-attr]
    assert store.keys.revoke("nobody") == []
    assert store.keys.get("a").limits.requests_per_minute == 5  # type: ignore[union-attr]


def test_requests_per_minute_window(store: Store) -> None:
    lim = KeyLimits(requests_per_minute=3)
    assert [store.usage.reserve("k", lim, 0, None, T0 + i) for i in range(3)] == [None] * 3
    refused = store.usage.reserve("k", lim, 0, None, T0 + 10)
    assert refused is not None and refused.limit == "rate"
    assert 50 <= refused.retry_after <= 52  # the first leaves the window at T0 + 60
    assert store.usage.reserve("other", lim, 0, None, T0 + 10) is None  # per key
    assert store.usage.reserve("k", lim, 0, None, T0 + 60) is None  # T0's left the window


def test_characters_per_day_and_a_refusal_takes_nothing(store: Store) -> None:
    lim = KeyLimits(requests_per_minute=2, chars_per_day=10)
    assert store.usage.reserve("k", lim, 6, "l1", T0) is None
    refused = store.usage.reserve("k", lim, 5, "l2", T0)
    assert refused is not None and refused.limit == "chars" and refused.retry_after > 3600
    # The refusal counted no request, no characters and no stream:
    assert store.usage.chars_today("k", T0) == 6 and store.usage.streams("k", T0) == 1
    assert store.usage.reserve("k", lim, 4, "l3", T0) is None  # 2nd request of the minute
    assert store.usage.chars_today("k", T0) == 10
    assert store.usage.charge("k", lim, 1, T0) is not None  # a running request's more chars
    tomorrow = T0 + 86400
    assert store.usage.chars_today("k", tomorrow) == 0
    assert store.usage.charge("k", lim, 10, tomorrow) is None
    assert store.usage.chars_today("k", tomorrow) == 10
    store.usage.add_chars("k", int(tomorrow // 86400), 5)  # counted while the store was away
    assert store.usage.chars_today("k", tomorrow) == 15


def test_a_refund_gives_back_the_characters_and_the_place_in_the_window(store: Store) -> None:
    """A request refused after its admission (too deep, an unknown glossary) did no work."""
    lim = KeyLimits(requests_per_minute=1, chars_per_day=10)
    assert store.usage.reserve("k", lim, 7, "l1", T0) is None
    assert store.usage.reserve("k", lim, 1, "l2", T0 + 1) is not None  # the minute's one
    store.usage.refund("k", "l1", 7, T0, rate=True)
    assert store.usage.chars_today("k", T0) == 0
    assert store.usage.reserve("k", lim, 10, "l3", T0 + 2) is None  # both given back
    store.usage.refund("k", "l3", 4, T0 + 2, rate=False)  # characters only
    assert store.usage.chars_today("k", T0) == 6
    assert store.usage.reserve("k", lim, 0, "l4", T0 + 3) is not None  # still its place


def test_stream_leases_are_released_renewed_and_expire(store: Store) -> None:
    lim = KeyLimits(concurrent_streams=2)
    assert store.usage.reserve("k", lim, 0, "a", T0) is None
    assert store.usage.reserve("k", lim, 0, "b", T0) is None
    refused = store.usage.reserve("k", lim, 0, "c", T0)
    assert refused is not None and refused.limit == "streams"
    store.usage.release("k", "a")
    assert store.usage.reserve("k", lim, 0, "c", T0 + 1) is None
    store.usage.renew([("k", "b")], T0 + LEASE_TTL_S - 1)  # b's worker is alive; c's is not
    later = T0 + LEASE_TTL_S + 2
    assert store.usage.streams("k", later) == 1  # c expired: its worker crashed
    assert store.usage.reserve("k", lim, 0, "d", later) is None
    assert store.usage.reserve("k", lim, 0, "e", later) is not None


def test_concurrent_clients_get_exactly_the_quota(opener: Any, kind: str) -> None:
    """Four clients (own connections), 80 attempts at a 30-requests-per-minute key."""
    lim = KeyLimits(requests_per_minute=30, chars_per_day=10_000)
    stores = [opener() for _ in range(4)] if kind != "memory" else [opener()] * 4
    granted: list[int] = []
    lock = threading.Lock()

    def worker(s: Store) -> None:
        for _ in range(20):
            if s.usage.reserve("k", lim, 7, None, T0) is None:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(granted) == 30
    assert stores[0].usage.chars_today("k", T0) == 30 * 7


def test_glossaries_named_and_deepl(store: Store) -> None:
    g = store.glossaries
    assert g.get("eu") is None and g.all() == {}
    g.put("eu", {"European Parliament": "Euroopan parlamentti"}, T0)
    got = g.get("eu")
    assert got is not None and got.meta is None
    assert got.terms == {"European Parliament": "Euroopan parlamentti"}
    meta = GlossaryMeta(name="mine", source_lang="en", target_lang="fi", created=T0,
                        owner="key1")
    assert g.create("g1", {"cat": "kissa"}, meta, max_per_owner=2)
    assert g.create("g2", {"dog": "koira"}, meta, max_per_owner=2)
    assert not g.create("g3", {"cow": "lehmä"}, meta, max_per_owner=2)  # key1 has 2
    assert g.get("g3") is None
    other = meta.model_copy(update={"owner": "key2"})
    assert g.create("g3", {"cow": "lehmä"}, other, max_per_owner=2)
    assert sorted(g.all()) == ["eu", "g1", "g2", "g3"]
    one = g.get("g1")
    assert one is not None and one.meta == meta and one.created == T0
    assert g.remove("g1") and not g.remove("g1") and g.get("g1") is None
    assert g.create("g4", {"x": "y"}, meta, max_per_owner=2)  # key1 has room again
    assert g.remove("eu") and g.get("eu") is None


def test_session_context_turns_ttl_and_lru(store: Store) -> None:
    c = store.contexts
    opts: dict[str, Any] = {"max_turns": 2, "max_sessions": 2, "ttl_s": 100.0}
    for i in range(3):
        c.add("o", "s", f"turn{i}", T0, **opts)
    assert c.turns("o", "s", T0 + 1, 100.0) == ["turn1", "turn2"]
    assert c.turns("other", "s", T0 + 1, 100.0) == []  # owners are apart
    c.add("o", "t", "x", T0 + 2, **opts)
    c.add("o", "u", "y", T0 + 3, **opts)
    assert c.count("o", T0 + 4, 100.0) == 2 and c.turns("o", "s", T0 + 4, 100.0) == []
    assert c.turns("o", "u", T0 + 50, 100.0) == ["y"]
    assert c.turns("o", "u", T0 + 200, 100.0) == [] and c.count("o", T0 + 200, 100.0) == 0
    c.add("o", "u", "z", T0 + 201, **opts)  # an expired session starts afresh
    assert c.turns("o", "u", T0 + 202, 100.0) == ["z"]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_shared_backends_share_state_between_clients(opener: Any) -> None:
    a, b = opener(), opener()
    a.keys.put(record("a", "alice"))
    assert b.keys.get("a") is not None and b.keys.revoke("a") == ["a"]
    assert a.keys.get("a").revoked  # type: ignore[union-attr]
    a.glossaries.put("eu", {"x": "y"}, T0)
    assert b.glossaries.get("eu") is not None
    assert a.usage.reserve("k", KeyLimits(chars_per_day=10), 4, None, T0) is None
    assert b.usage.chars_today("k", T0) == 4
    a.contexts.add("o", "s", "t", T0, max_turns=2, max_sessions=2, ttl_s=60)
    assert b.contexts.turns("o", "s", T0, 60) == ["t"]


def test_a_redis_outage_fails_fast_and_the_breaker_recovers(redis_server: Any,
                                                            tmp_path: Path) -> None:
    redis_server.flush()
    store = open_store(redis_server.url, key_file=tmp_path / "k", glossary_file=tmp_path / "g")
    states: list[bool] = []
    health = StoreHealth(store, "closed", on_state=states.append)
    assert health.probe() and health.describe()["state"] == "up"
    redis_server.kill()
    try:
        t = time.monotonic()
        with pytest.raises(StoreError):
            health.run("reserve", lambda: store.usage.chars_today("k", T0))
        with pytest.raises(StoreError):  # the breaker: no second wait
            health.run("reserve", lambda: store.usage.chars_today("k", T0))
        assert time.monotonic() - t < 1.5
        with pytest.raises(StoreUnavailable):
            health.refuse()
        assert health.describe()["state"] == "down" and health.errors >= 2
        assert StoreHealth(store, "open").refuse() is None
    finally:
        redis_server.start()
    deadline = time.monotonic() + 5
    while not health.probe():  # one try a second while down
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert states == [False, True]
    store.close()


def test_urls_are_checked_and_passwords_are_hidden(tmp_path: Path) -> None:
    for bad in ("memcached://x", "sqlite:///", "memory://x", "nope", "sqlite", "redis"):
        with pytest.raises(ValueError, match="store"):
            check_url(bad)
    assert check_url("rediss://:pw@h:6380/1") == "rediss://:pw@h:6380/1"
    assert shown_url("rediss://:s3cret@h:6380/1") == "rediss://:***@h:6380/1"
    assert "s3cret" not in shown_url("redis://user:s3cret@h/0")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError):  # a file that cannot be made (its folder is a file)
        open_store(f"sqlite:///{tmp_path}/file/x.db", key_file=tmp_path / "k",
                   glossary_file=tmp_path / "g")


def test_redis_with_a_password_over_tls(tmp_path: Path) -> None:
    """`rediss://:PASSWORD@host/db?ssl_ca_certs=…`: TLS and AUTH are the URL's; a wrong
    password is an outage (`StoreError`), never a silent unauthenticated connection."""
    from support.certs import self_signed
    from support.redis_server import running_redis

    cert, key = self_signed(tmp_path)
    with running_redis(password="s3cret", tls=(cert, key)) as server:
        url = f"{server.url}?ssl_ca_certs={cert}"
        store = open_store(url, key_file=tmp_path / "k", glossary_file=tmp_path / "g")
        assert store.url == url.replace("s3cret", "***")
        assert store.usage.reserve("k", KeyLimits(requests_per_minute=1), 3, "l", T0) is None
        assert store.usage.reserve("k", KeyLimits(requests_per_minute=1), 3, "m", T0)
        store.keys.put(record("a", "alice"))
        assert open_store(url, key_file=tmp_path / "k",
                          glossary_file=tmp_path / "g").keys.get("a") is not None
        with pytest.raises(ValueError, match="rediss://"):
            check_url(url.replace("rediss://", "redis://"))
        for wrong in (url.replace("s3cret", "wrong"), url.replace(":s3cret@", ""),
                      server.url.replace("rediss://", "redis://")):  # TLS only
            with pytest.raises(StoreError):
                open_store(wrong, key_file=tmp_path / "k", glossary_file=tmp_path / "g").ping()
        store.close()


def test_concurrent_writers_lose_no_key(opener: Any, kind: str) -> None:
    """Six clients (the memory store: six handles on one key file) add keys at once."""
    stores = [opener() for _ in range(6)]

    def add(s: Store, n: int) -> None:
        for i in range(8):
            s.keys.put(record(f"{n}-{i}", f"k{n}-{i}"))

    threads = [threading.Thread(target=add, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(opener().keys.all()) == 48


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_migrate_copies_the_json_files_into_a_store(opener: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tolk_server.cli.commands import main
    from tolk_server.stores.files import FileGlossaries, FileKeys

    home = tmp_path / "home"
    FileKeys(home / "keys.json").put(record("a", "alice"))
    FileKeys(home / "keys.json").revoke("alice")
    files = FileGlossaries(home / "glossaries.json")
    files.put("eu", {"European Parliament": "Euroopan parlamentti"}, T0)
    meta = GlossaryMeta(name="mine", source_lang="en", target_lang="fi", created=T0,
                        owner="a")
    files.create("g1", {"cat": "kissa"}, meta, max_per_owner=100)
    target = opener()
    for _ in range(2):  # again: the same result
        with pytest.raises(SystemExit) as done:
            main(["store", "migrate", "--from-dir", str(home), "--store", target.url])
        assert done.value.code == 0
        assert "1 keys and 2 glossaries (1 of the DeepL API)" in capsys.readouterr().out
    assert target.keys.get("a").revoked  # type: ignore[union-attr]
    assert target.glossaries.get("eu").terms == {"European Parliament": "Euroopan parlamentti"}  # type: ignore[union-attr]
    assert target.glossaries.get("g1").meta == meta  # type: ignore[union-attr]
    assert sorted(target.glossaries.all()) == ["eu", "g1"]
