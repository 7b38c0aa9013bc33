"""Two models with the REAL engine: kill one model's engine core under load; the other serves."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from conftest import TINY_PROFILE_TOML
from support.processes import engine_core_pids
from support.subprocess_server import tolk_serve

pytestmark = [pytest.mark.engine]


def get(base: str, path: str) -> Any:
    try:
        with urllib.request.urlopen(base + path, timeout=2) as r:
            return json.loads(r.read()) if path != "/metrics" else r.read().decode()
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def test_killing_one_model_falls_back_to_the_other(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "tolk.toml"
    cfg.write_text("".join(
        f'[[models]]\nname = "{name}"\npath = "{tiny_model_dir}"\nprofile = "{TINY_PROFILE_TOML}"\n'
        f"kv_cache_gib = {kv}\n" for name, kv in (("a", 1), ("b", 2))))
    args = ["--config", str(cfg), "--enforce-eager",
            "--max-num-seqs", "8", "--dtype", "float32"]
    with tolk_serve(*args, timeout=300) as (base, proc):
        cores = engine_core_pids(proc.pid)
        assert len(cores) == 2, cores
        with connect(base.replace("http", "ws") + "/v1/stream", compression=None) as ws:
            hello = json.loads(ws.recv(10))
            assert [m["name"] for m in hello["models"]] == ["a", "b"]

            def send(rid: str, max_tokens: int) -> None:
                ws.send(json.dumps({"type": "translate", "id": rid, "text": "Hello there.",
                                    "source": "en", "target": "fi", "max_tokens": max_tokens}))

            for i in range(3):  # load on a: long generations
                send(f"busy{i}", 900)
            tokens: dict[str, int] = {}
            while True:  # a's first output
                f = json.loads(ws.recv(30))
                if f["type"] == "token":
                    tokens[f["id"]] = 1
                    break
            os.kill(cores[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while get(base, "/ready").get("status") != "degraded":
                assert time.monotonic() < deadline, get(base, "/ready")
                time.sleep(0.05)
            for i in range(3):  # not started yet: served by b
                send(f"new{i}", 8)
            ends: dict[str, dict[str, Any]] = {}
            while len(ends) < 6:
                f = json.loads(ws.recv(60))
                if f["type"] == "token":
                    tokens[f["id"]] = tokens.get(f["id"], 0) + 1
                if f["type"] in ("complete", "error"):
                    ends[f["id"]] = f
        failed = [i for i in ends if ends[i]["type"] == "error"]
        assert failed and all(i.startswith("busy") for i in failed), ends
        for rid, end in ends.items():
            if end["type"] == "error":  # it had streamed tokens from a: no switch
                assert end["code"] == "engine_error" and tokens.get(rid), (rid, end)
            elif rid.startswith("busy"):  # a died before its first token: b served it
                assert end["model"] == "b", end
                assert end["fallback"] == {"from": "a", "reason": "engine_error"}, end
            else:  # sent after a was known dead
                assert end["model"] == "b" and end["fallback"] == {"from": "a",
                                                                   "reason": "dead"}, end
        ready = get(base, "/ready")
        assert ready["status"] == "degraded"
        assert {m["name"]: m["state"] for m in ready["models"]} == {"a": "dead", "b": "ready"}
        assert 'tolk_fallbacks_total{model="a",reason="dead",to="b"} 3.0' in get(base, "/metrics")
        assert len(failed) == 3 or 'reason="engine_error",to="b"}' in get(base, "/metrics")
        assert proc.poll() is None  # one model dead of two: degraded, still serving
