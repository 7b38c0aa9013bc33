"""A SIGTERM to the whole process group (systemd's `KillMode=control-group`, Ctrl-C in a
terminal) drains like a SIGTERM to the main process: with the REAL engine, whose engine
core gets the signal too."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import TINY_PROFILE_TOML
from support.processes import engine_core_pids
from support.subprocess_server import tolk_serve
from tolk_server.adapters.shield import (
    call_shielded,
    engine_core_processes,
    stop_engine_processes,
)

N = 20


def _sleeper(ready: Any) -> None:
    ready.set()
    time.sleep(30)


def test_processes_started_shielded_ignore_a_group_sigterm() -> None:
    """The mechanism alone (no vLLM): a spawned child keeps running through SIGTERM,
    and stops on SIGINT, which is how the server stops the engine."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_sleeper, args=(ready,), name="EngineCore")
    call_shielded(proc.start)
    try:
        assert ready.wait(30)
        os.kill(proc.pid or 0, signal.SIGTERM)
        proc.join(1.0)
        assert proc.is_alive(), "SIGTERM stopped a shielded process"
        # Other engines may run in this process (the suite's shared engine): stop only ours.
        assert proc in engine_core_processes()
        stop_engine_processes([proc])
        proc.join(10)
        assert not proc.is_alive()
    finally:
        proc.kill()
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


async def _stream_then_killpg(url: str, pgid: int) -> dict[str, dict[str, Any]]:
    terminal: dict[str, dict[str, Any]] = {}
    async with connect(url, compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for i in range(N):
            await ws.send(json.dumps({"type": "translate", "id": f"r{i}", "stream": True,
                                      "text": "Hello there.", "source": "en",
                                      "target": "fi", "max_tokens": 400}))
        started: set[str] = set()
        while len(started) < N:  # every request is running in the engine
            f = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if f["type"] == "token":
                started.add(f["id"])
            elif f["type"] in ("complete", "error"):
                terminal[f["id"]] = f
                started.add(f["id"])
        os.killpg(pgid, signal.SIGTERM)
        try:
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if f["type"] in ("complete", "error"):
                    assert f["id"] not in terminal, "two terminal frames"
                    terminal[f["id"]] = f
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in (1000, 1012)
    return terminal


@pytest.mark.engine
def test_group_sigterm_drains_with_the_real_engine(tiny_model_dir: Path) -> None:
    args = ["--model", str(tiny_model_dir), "--profile", str(TINY_PROFILE_TOML),
            "--enforce-eager", "--kv-cache-gib", "1", "--max-num-seqs", "32",
            "--dtype", "float32", "--drain-timeout", "30"]
    with tolk_serve(*args, timeout=240) as (base, proc):
        cores = engine_core_pids(proc.pid)
        assert cores, "no vLLM engine-core process found"
        url = base.replace("http", "ws") + "/v1/stream"
        terminal = asyncio.run(_stream_then_killpg(url, os.getpgid(proc.pid)))
        codes = {k: f.get("code", f["type"]) for k, f in terminal.items()}
        assert codes == {f"r{i}": "complete" for i in range(N)}
        assert proc.wait(60) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
