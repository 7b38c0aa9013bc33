"""`tolk serve --workers 2` over the engine double (each worker has its own echo engine):
the supervisor, its sockets, restarts and the shared /metrics, fast. The same with the
real engine, one engine core for both workers: tests/test_workers.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.workers import (
    get,
    kill_a_worker_mid_streams,
    metric,
    open_spread,
    run_streams,
    supervisor,
    wait_for,
    worker_pids,
)
from tolk_server.cli.commands import build_parser

SLOW_TEXT = " ".join(f"word{i}" for i in range(60))  # one sentence, ~120 pieces of 3 chars


def test_workers_refuse_the_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    ns = build_parser().parse_args(["serve", "--engine", "echo", "--workers", "2"])
    os.environ.pop("TOLK_STORE", None)
    assert ns.func(ns) == 2
    err = capsys.readouterr().err
    assert "--workers N>1 needs a store that the workers share" in err
    assert "sqlite:///" in err and "redis://" in err


@pytest.fixture(scope="module")
def echo_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("workers-echo")
    log = d / "supervisor.log"
    env = {"TOLK_STORE": f"sqlite:///{d}/state.db", "TOLK_CACHE_ENTRIES": "0"}
    with supervisor("--engine", "echo", "--workers", "2", "--fake-token-delay-ms", "20",
                    "--worker-restarts", "2", "--asr-backend", "off", log=log, env=env,
                    timeout=60) as (base, _):
        wait_for(lambda: len(worker_pids(log)) == 2, 30, "two workers")
        yield base, log


def test_connections_spread_and_metrics_add_up(echo_workers: tuple[str, Path]) -> None:
    base, _ = echo_workers
    url = base.replace("http", "ws") + "/v1/stream"
    before = metric(get(base, "/metrics")[0], 'tolk_requests_total{outcome="complete"}')

    async def go() -> list[str]:
        conns = await open_spread(url, 12, workers=2)
        results = await asyncio.gather(*(run_streams(ws, [f"r{i}"], "Hello there", 32)
                                         for i, (ws, _) in enumerate(conns)))
        for ws, _ in conns:
            await ws.close()
        assert all(len(t) == 1 and t[0]["type"] == "complete"
                   for r in results for t in r.values()), results
        return [w for _, w in conns]

    served = asyncio.run(go())
    assert set(served) == {"0", "1"}
    text, _ = get(base, "/metrics")  # from one worker: the sum over both
    after = metric(text, 'tolk_requests_total{outcome="complete"}')
    assert after - before == len(served)
    assert metric(text, 'tolk_worker_up{worker="0"}') == 1
    assert metric(text, 'tolk_worker_up{worker="1"}') == 1
    assert metric(text, "tolk_inflight_requests") == 0


def test_a_killed_worker_fails_only_its_streams_and_comes_back(
        echo_workers: tuple[str, Path]) -> None:
    base, log = echo_workers
    url = base.replace("http", "ws") + "/v1/stream"
    victim = 1
    old = worker_pids(log)[victim]

    by = asyncio.run(kill_a_worker_mid_streams(url, 6, 2, SLOW_TEXT, old, start_timeout=30,
                                               settle_s=0.3))
    assert by["0"] and by["1"]
    for result in by[str(1 - victim)]:  # the other worker's streams: each one terminal frame
        assert all(len(t) == 1 and t[0]["type"] == "complete" for t in result.values())
    for result in by[str(victim)]:  # the dead worker's: cut off, no terminal frame
        assert all(t == [] for t in result.values()), result
    wait_for(lambda: worker_pids(log)[victim] != old, 30, "the restart")
    wait_for(lambda: metric(get(base, "/metrics")[0], f'tolk_worker_up{{worker="{victim}"}}')
             == 1, 60, "the restarted worker's gauge")
    assert "restarting in" in log.read_text()

    async def served_again() -> bool:
        conns = await open_spread(url, 2, workers=2)
        results = [await run_streams(ws, ["again"], "Hello", 16) for ws, _ in conns]
        for ws, _ in conns:
            await ws.close()
        return all(r["again"] and r["again"][0]["type"] == "complete" for r in results)

    assert asyncio.run(served_again())


def test_a_key_s_quota_holds_across_both_workers(tmp_path: Path) -> None:
    """`--rpm 10` on the SQLite store the workers share: exactly 10 of 16 requests are
    accepted, whichever worker each connection reached (both did)."""
    import contextlib
    import io
    import urllib.error
    import urllib.request

    from tolk_server.cli.commands import main

    store = f"sqlite:///{tmp_path}/state.db"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["keys", "--store", store, "add", "rpm10", "--rpm", "10"])
    assert done.value.code == 0
    key = out.getvalue().strip()
    env = {"TOLK_STORE": store, "TOLK_CACHE_ENTRIES": "0"}
    with supervisor("--engine", "echo", "--workers", "2", "--asr-backend", "off",
                    log=tmp_path / "supervisor.log", env=env, timeout=60) as (base, _):
        results = []
        for i in range(16):  # one connection each: the kernel spreads them
            req = urllib.request.Request(
                base + "/v1/translate", method="POST",
                data=f'{{"text": "Hello {i}", "source": "en", "target": "fi"}}'.encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    results.append((r.status, r.headers["x-tolk-worker"]))
            except urllib.error.HTTPError as e:
                results.append((e.code, e.headers["x-tolk-worker"]))
    assert sorted(s for s, _ in results) == [200] * 10 + [429] * 6, results
    assert {w for _, w in results} == {"0", "1"}, results


def test_remote_models_give_each_worker_its_own_adapter(tmp_path: Path) -> None:
    """No local engine (an OpenAI-compatible vLLM as the model, the Helm chart's frontend
    topology): each worker talks to it over its own adapter, and both serve."""
    from conftest import TINY_PROFILE_TOML
    from support.fake_openai import fake_openai

    env = {"TOLK_STORE": f"sqlite:///{tmp_path}/state.db", "TOLK_CACHE_ENTRIES": "0"}
    with fake_openai() as fake, supervisor(
            "--workers", "2", "--model", f"big=openai+{fake.url}", "--profile",
            str(TINY_PROFILE_TOML), "--asr-backend", "off", log=tmp_path / "supervisor.log",
            env=env, timeout=60) as (base, _):
        url = base.replace("http", "ws") + "/v1/stream"

        async def go() -> list[tuple[str, str]]:
            conns = await open_spread(url, 4, workers=2)
            out = [(w, (await run_streams(ws, ["a"], "Hello", 16))["a"][0]["type"])
                   for ws, w in conns]
            for ws, _ in conns:
                await ws.close()
            return out

        served = asyncio.run(go())
        assert {w for w, _ in served} == {"0", "1"}
        assert all(t == "complete" for _, t in served), served
        assert len(fake.bodies) == len(served)


def test_a_worker_that_cannot_build_its_app_stops_the_supervisor(tmp_path: Path) -> None:
    """A configuration error is not retried `worker_restarts` times: exit 1 at once."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--workers", "2", "--port", "0",
           "--model", "big=openai+http://127.0.0.1:9/v1", "--asr-backend", "off"]  # no profile
    env = {**os.environ, "TOLK_STORE": f"sqlite:///{tmp_path}/state.db"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the app could not be built" in done.stderr
    assert "a worker could not start" in done.stderr
    assert "restarting in" not in done.stderr
