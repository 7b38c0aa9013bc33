"""Two `tolk serve --engine echo` replicas behind nginx (deploy/nginx/tolk.conf), one truth.

On one real redis-server (tests/support/redis_server.py): a key's requests per minute are
exact across both replicas and every surface (WebSocket, REST, LibreTranslate, DeepL), its
characters per day survive a restart of both, a DeepL glossary and a session follow the
key to the other replica, a revocation reaches the other replica within a second, and a
Redis outage gets each replica's policy (A: `closed`, B: `open`) with nothing lost once it
is back. Then the same quota test on one SQLite file, no Redis.

Each replica is a real process on a free loopback port; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from support.live_server import free_port
from support.nginx import start_nginx
from tolk_server.cli.commands import main

START_TIMEOUT_S = 60.0
# Context and glossary terms show in the prompt, which the echo engine gives back reversed.
PROFILE = """
name = "replica"
family = "replica"
template = "completion"
prompt = "<2{tgt}>{text}<sep>"
supports_context = true
supports_glossary = true
[languages]
en = "English"
fi = "Finnish"
"""


class Replica:
    def __init__(self, folder: Path, store: str, policy: str) -> None:
        self.folder, self.store, self.policy = folder, store, policy
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--engine", "echo",
               "--port", str(self.port), "--store", self.store, "--store-failure", self.policy,
               "--profile", str(self.folder / "replica.toml"), "--asr-backend", "off",
               "--drain-timeout", "1", "--public-metrics", "--log-level", "warning"]
        env = {**os.environ, "TOLK_HOME": str(self.folder), "PYTHONUNBUFFERED": "1"}
        log = (self.folder / f"replica-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"replica not ready:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return (self.folder / f"replica-{self.port}.log").read_text(errors="replace")[-3000:]

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith(name))


class Cluster:
    def __init__(self, store: str, policies: tuple[str, str]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tolk-replicas-"))
        (self.folder / "replica.toml").write_text(PROFILE)
        self.store = f"sqlite:///{self.folder / 'state.db'}" if store == "sqlite" else store
        self.a, self.b = (Replica(self.folder, self.store, p) for p in policies)
        self.nginx: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        for r in (self.a, self.b):
            r.start()
        for r in (self.a, self.b):
            r.wait_ready()
        self.nginx, self.url = start_nginx(self.folder, [self.a.port, self.b.port])

    def restart_replicas(self) -> None:
        for r in (self.a, self.b):
            r.stop()
        for r in (self.a, self.b):
            r.start()
        for r in (self.a, self.b):
            r.wait_ready()

    def stop(self) -> None:
        for r in (self.a, self.b):
            r.stop()
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running(store: str, policies: tuple[str, str]) -> Iterator[Cluster]:
    cluster = Cluster(store, policies)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def on_redis(redis_server: Any) -> Iterator[Cluster]:
    """Replica A fails closed, replica B fails open; both on the session's redis-server."""
    redis_server.flush()
    with running(redis_server.url, ("closed", "open")) as cluster:
        yield cluster


def cli(store: str, *args: str) -> str:
    """`tolk keys|glossary --store STORE ARGS…` in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([args[0], "--store", store, *args[1:]])
    assert done.value.code == 0, out.getvalue()
    return out.getvalue().strip()


def rest(base: str, key: str, text: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{base}/v1/translate", headers={"Authorization": f"Bearer {key}"},
                      json={"text": text, "source": "en", "target": "fi", **extra}, timeout=10)


def usage(base: str, key: str) -> int:
    r = httpx.get(f"{base}/v2/usage", headers={"Authorization": f"DeepL-Auth-Key {key}"},
                  timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["character_count"])


async def ws_translate(base: str, key: str, text: str, **extra: Any) -> dict[str, Any]:
    """One request on a new WebSocket connection; its terminal frame."""
    async with connect(base.replace("http://", "ws://") + "/v1/stream", compression=None,
                       additional_headers={"Authorization": f"Bearer {key}"},
                       open_timeout=10) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if first["type"] == "error":
            return dict(first)
        await ws.send(json.dumps({"type": "translate", "id": "r", "text": text,
                                  "source": "en", "target": "fi", **extra}))
        for _ in range(500):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("complete", "error"):
                return dict(frame)
    raise AssertionError("no terminal frame")


async def one_of_each(url: str, key: str, i: int, surface: str) -> tuple[str, bool, bool]:
    """A request on `surface` on a new connection: (surface, accepted, refused by the rate
    limit)."""
    text = f"Request {i} about the weather."
    if surface == "ws":
        frame = await ws_translate(url, key, text)
        return surface, frame["type"] == "complete", "request rate limit" in frame.get(
            "message", "")
    async with httpx.AsyncClient(timeout=10) as client:
        if surface == "rest":
            r = await client.post(f"{url}/v1/translate", json={
                "text": text, "source": "en", "target": "fi"},
                headers={"Authorization": f"Bearer {key}"})
        elif surface == "libretranslate":
            r = await client.post(f"{url}/translate", json={
                "q": text, "source": "en", "target": "fi", "api_key": key})
        else:
            r = await client.post(f"{url}/v2/translate", json={
                "text": [text], "source_lang": "EN", "target_lang": "FI"},
                headers={"Authorization": f"DeepL-Auth-Key {key}"})
    return surface, r.status_code == 200, r.status_code == 429


async def exactly_the_quota(cluster: Cluster, key: str, rpm: int) -> None:
    surfaces = ["ws", "rest", "libretranslate", "deepl"] * 4
    before = [r.metric("tolk_requests_total") + r.metric("tolk_errors_total")
              for r in (cluster.a, cluster.b)]
    results = await asyncio.gather(*(one_of_each(cluster.url, key, i, s)
                                     for i, s in enumerate(surfaces)))
    accepted = [s for s, ok, _ in results if ok]
    refused = [s for s, ok, limited in results if not ok and limited]
    assert len(accepted) == rpm and len(refused) == len(surfaces) - rpm, results
    after = [r.metric("tolk_requests_total") + r.metric("tolk_errors_total")
             for r in (cluster.a, cluster.b)]
    assert all(n > b for n, b in zip(after, before, strict=True))  # both replicas took some


async def test_requests_per_minute_are_exact_across_replicas_and_surfaces(
        on_redis: Cluster) -> None:
    key = cli(on_redis.store, "keys", "add", "rpm10", "--rpm", "10")
    await exactly_the_quota(on_redis, key, 10)


def test_a_deepl_glossary_created_on_a_is_used_and_deleted_on_b(on_redis: Cluster) -> None:
    key = cli(on_redis.store, "keys", "add", "glossaries")
    auth = {"Authorization": f"DeepL-Auth-Key {key}"}
    r = httpx.post(f"{on_redis.a.url}/v2/glossaries", headers=auth, timeout=10, json={
        "name": "weather", "source_lang": "en", "target_lang": "fi",
        "entries": "weather\tsää", "entries_format": "tsv"})
    assert r.status_code == 201, r.text
    gid = r.json()["glossary_id"]
    r = httpx.post(f"{on_redis.b.url}/v2/translate", headers=auth, timeout=10, json={
        "text": ["The weather is nice."], "source_lang": "EN", "target_lang": "FI",
        "glossary_id": gid})
    assert r.status_code == 200 and '"sää"' in r.json()["translations"][0]["text"], r.text
    done = rest(on_redis.b.url, key, "The weather is nice.", glossary_id=gid).json()
    assert done["glossary"][0]["target"] == "sää", done
    assert httpx.delete(f"{on_redis.b.url}/v2/glossaries/{gid}", headers=auth,
                        timeout=10).status_code == 204
    assert httpx.get(f"{on_redis.a.url}/v2/glossaries/{gid}", headers=auth,
                     timeout=10).status_code == 404
    r = httpx.post(f"{on_redis.a.url}/v2/translate", headers=auth, timeout=10, json={
        "text": ["The weather is nice."], "target_lang": "FI", "glossary_id": gid})
    assert r.status_code == 400, r.text


def test_a_key_revoked_on_a_is_refused_on_b_within_a_second(on_redis: Cluster) -> None:
    key = cli(on_redis.store, "keys", "add", "revoked")
    assert rest(on_redis.b.url, key, "Hello there.").status_code == 200  # B has it cached
    assert rest(on_redis.a.url, key, "Hello there.").status_code == 200
    cli(on_redis.store, "keys", "revoke", "revoked")
    t0 = time.monotonic()
    refused_after: dict[str, float] = {}
    while len(refused_after) < 2:  # each replica's cached record lasts at most 0.5 s
        for name, replica in (("A", on_redis.a), ("B", on_redis.b)):
            if name not in refused_after and rest(replica.url, key, "Hi.").status_code == 401:
                refused_after[name] = time.monotonic() - t0
        assert time.monotonic() - t0 < 3.0, f"still taken: {refused_after}"
        time.sleep(0.02)
    assert max(refused_after.values()) <= 1.0, refused_after


def ws(base: str, key: str, text: str, **extra: Any) -> dict[str, Any]:
    return asyncio.run(ws_translate(base, key, text, **extra))


def test_a_session_continues_on_the_other_replica(on_redis: Cluster) -> None:
    key = cli(on_redis.store, "keys", "add", "sessions")
    first = ws(on_redis.a.url, key, "The sky is blue.", session="trip")
    assert first["type"] == "complete" and "blue" in first["translation"]
    # A new connection, to the other replica: the earlier turn is this request's context.
    again = ws(on_redis.b.url, key, "Rain tomorrow.", session="trip")
    assert again["type"] == "complete" and "blue." in again["translation"], again
    other = ws(on_redis.b.url, key, "Rain tomorrow.", session="another")
    assert "blue." not in other["translation"]
    # Over HTTP too: the key's sessions, whichever replica answers.
    assert rest(on_redis.b.url, key, "Snow in May.", session="h").status_code == 200
    done = rest(on_redis.a.url, key, "Sun in June.", session="h").json()
    assert "May." in done["translation"], done


def test_characters_per_day_survive_a_restart_of_both_replicas(on_redis: Cluster) -> None:
    key = cli(on_redis.store, "keys", "add", "chars", "--chars-per-day", "100")
    assert rest(on_redis.a.url, key, "x" * 40).status_code == 200
    assert rest(on_redis.b.url, key, "y" * 40).status_code == 200
    on_redis.restart_replicas()
    assert usage(on_redis.a.url, key) == usage(on_redis.b.url, key) == 80
    refused = rest(on_redis.b.url, key, "z" * 30)
    assert refused.status_code == 429 and "daily character" in refused.json()["message"]
    assert rest(on_redis.a.url, key, "z" * 20).status_code == 200
    assert usage(on_redis.b.url, key) == 100


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_redis_outage_gets_each_policy_and_nothing_is_lost(
        on_redis: Cluster, redis_server: Any) -> None:
    a, b = on_redis.a, on_redis.b
    key = cli(on_redis.store, "keys", "add", "outage", "--chars-per-day", "1000")
    assert cli(on_redis.store, "glossary", "add", "kept", "--term", "sky=taivas")
    assert rest(a.url, key, "a" * 10).status_code == 200
    assert rest(b.url, key, "b" * 10).status_code == 200  # B knows the key (open: it may)
    redis_server.kill()
    try:
        refused = rest(a.url, key, "c" * 10)  # A: closed
        assert refused.status_code == 503 and refused.json()["code"] == "engine_error"
        ready = httpx.get(f"{a.url}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["store"]["state"] == "down"
        frame = ws(a.url, key, "Hello.")
        assert frame["code"] == "engine_error", frame
        for _ in range(2):  # B: open, on its own limits; what it counts is kept
            assert rest(b.url, key, "d" * 10).status_code == 200
        assert httpx.get(f"{b.url}/ready", timeout=5).json()["store"]["state"] == "down"
        assert a.metric("tolk_store_errors_total") > 0 and a.metric("tolk_store_up") == 0
        # Through nginx (which never re-sends a POST): A's answers are 503, B's are served.
        through = [rest(on_redis.url, key, "e" * 10) for _ in range(4)]
        statuses = {r.status_code: r for r in through}
        assert set(statuses) <= {200, 503}, [r.text for r in through]
        assert 503 not in statuses or statuses[503].json()["code"] == "engine_error"
        by_nginx = sum(r.status_code == 200 for r in through)
    finally:
        redis_server.start()
    for r in (a, b):  # each notices within a second (one try a second while it is down)
        _wait(lambda r=r: httpx.get(f"{r.url}/ready", timeout=5).json()["store"]["state"]
              == "up", 5, "the store is back")
    assert rest(b.url, key, "f" * 10).status_code == 200  # B adds what it counted alone
    assert usage(a.url, key) == 10 + 10 + 2 * 10 + by_nginx * 10 + 10
    done = rest(a.url, key, "The sky.", glossary_id="kept").json()
    assert done["glossary"][0]["target"] == "taivas", done


async def test_two_replicas_on_one_sqlite_file_share_the_quota() -> None:
    with running("sqlite", ("closed", "closed")) as c:
        key = cli(c.store, "keys", "add", "rpm10", "--rpm", "10")
        await exactly_the_quota(c, key, 10)
        assert usage(c.a.url, key) == usage(c.b.url, key) > 0
