"""Faults with the REAL engine: kill vLLM's engine-core process under a running server."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import TINY_PROFILE_TOML
from support.processes import engine_core_pids
from support.subprocess_server import tolk_serve

pytestmark = [pytest.mark.engine]


def ready_status(base: str) -> int:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_engine_death_fails_requests_and_exits_nonzero(tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    profile = TINY_PROFILE_TOML
    args = ["--model", str(tiny_model_dir), "--profile", str(profile), "--enforce-eager",
            "--kv-cache-gib", "1", "--max-num-seqs", "8", "--dtype", "float32"]
    with tolk_serve(*args, timeout=240) as (base, proc):
        with connect(base.replace("http", "ws") + "/v1/stream", compression=None) as ws:
            assert json.loads(ws.recv(10))["type"] == "ready"
            for i in range(3):
                ws.send(json.dumps({"type": "translate", "id": f"r{i}", "text": "Hello there.",
                                    "source": "en", "target": "fi", "max_tokens": 900}))
            while json.loads(ws.recv(30))["type"] != "token":
                pass
            cores = engine_core_pids(proc.pid)
            assert cores, "no vLLM engine-core process found"
            for pid in cores:
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            while ready_status(base) == 200:
                assert time.monotonic() - killed < 1.0, "/ready still 200 after 1 s"
                time.sleep(0.02)
            errors = {}
            try:
                while len(errors) < 3:
                    f = json.loads(ws.recv(10))
                    if f["type"] == "error":
                        errors[f["id"]] = f["code"]
                    assert f["type"] != "complete"
            except Exception:
                pass
            assert errors == {f"r{i}": "engine_error" for i in range(3)}
        assert proc.wait(30) != 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "fatal error" in err
