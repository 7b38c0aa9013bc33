"""The live bench over the engine double: each plain `translate` is compared with its own
live request (issue 20: at concurrency > 1 they were paired with another worker's)."""

from __future__ import annotations

import asyncio

from tolk_bench.live import run_mode


def test_plain_paired_with_its_own_live_request(fake_server: str) -> None:
    url = fake_server.replace("http", "ws") + "/v1/stream"
    # Different lengths, so the four workers finish out of step; one unique word each.
    items = [(" ".join(["w"] * (1 + k % 4) + [f"u{k}x"]), "en", "fi", f"ref{k}")
             for k in range(8)]
    out = asyncio.run(run_mode(url, items, "word", 4, speed=40.0, plain=True))
    samples = out["differing_samples"]  # an identical pair holds the same words anyway
    assert out["requests"] == 8 and len(samples) + out["identical_to_plain"] == 8
    for s in samples:
        mark = s["source"].split()[-1]  # the double echoes the source's words
        assert mark in s["plain"] and mark in s["live"], s
