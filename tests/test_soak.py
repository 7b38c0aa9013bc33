"""The 1-minute soak variant (the 10-minute run is `python -m tolk_bench.soak`, a benchmark).

A real `tolk serve` with the real engine; 200 connections on loopback with random
requests, cancels and disconnects; it stops by itself.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import TINY_PROFILE_TOML
from support.subprocess_server import tolk_serve
from tolk_bench.soak import SENTENCES, run_soak

pytestmark = [pytest.mark.engine]


def test_one_minute_soak(tiny_model_dir: Path, tmp_path: Path) -> None:
    profile = TINY_PROFILE_TOML
    args = ["--model", str(tiny_model_dir), "--profile", str(profile), "--enforce-eager",
            "--kv-cache-gib", "1", "--max-num-seqs", "64", "--dtype", "float32"]
    with tolk_serve(*args, timeout=240, env={"TOLK_CACHE_ENTRIES": "0"}) as (base, _proc):
        report = asyncio.run(run_soak(base.replace("http", "ws") + "/v1/stream",
                                      connections=200, duration_s=60, warmup_s=20,
                                      texts=SENTENCES, max_tokens=16, ping_floods=2))
    out = Path("tests/artifacts")
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak-1min.json").write_text(json.dumps(report, indent=2))
    assert report["sent"] > 1000 and report["completed"] > 500, report
    assert report["cancels_sent"] > 0 and report["dropped_connections"] > 0
    assert report["ping_floods"] > 0
    assert report["checks"] == {k: True for k in report["checks"]}, report
