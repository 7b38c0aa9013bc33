"""Streaming figures against a running server: first-chunk latency and chunk size per
granularity, and a long input's first output next to a one-sentence input's.

    python -m tolk_bench.streaming --url ws://127.0.0.1:8000 --data dev.tsv --long FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from .workload import read_pairs, write_json_report


async def one(ws: ClientConnection, rid: str, text: str, source: str, target: str,
              **opts: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "translate", "id": rid, "text": text, "source": source,
                              "target": target, **opts}))
    first: float | None = None
    sizes: list[int] = []
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), 300))
        if f.get("id") != rid:
            continue
        if f["type"] in ("token", "segment"):
            if first is None:
                first = (time.perf_counter() - t0) * 1000
            sizes.append(len(f.get("token") or f.get("text") or ""))
        elif f["type"] in ("complete", "error"):
            return {"first_ms": first, "total_ms": (time.perf_counter() - t0) * 1000,
                    "sizes": sizes, "frame": f}


def pct(values: list[float], q: float) -> float:
    """Percentile by linear interpolation, as numpy's default (and `vllm bench serve`)."""
    return float(np.percentile(values, q * 100)) if values else float("nan")


async def run(url: str, pairs: list[tuple[str, str]], long_text: str, n: int,
              repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url, "requests_per_granularity": n}
    async with connect(url, compression=None, max_size=2**22) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        # Warm-up (and make sure nothing below is a cache hit: every text gets a suffix).
        for i in range(3):
            await one(ws, f"w{i}", pairs[i][0], "en", "fi")
        for gran in ("token", "word", "segment"):
            firsts, sizes = [], []
            for i, (en, _fi) in enumerate(pairs[:n]):
                r = await one(ws, f"{gran}{i}", f"{en} ({gran} {i})", "en", "fi",
                              granularity=gran, split=False)
                if r["first_ms"] is not None:
                    firsts.append(r["first_ms"])
                sizes.extend(r["sizes"])
            out[gran] = {
                "first_chunk_ms_p50": round(pct(firsts, 0.5), 1),
                "first_chunk_ms_p95": round(pct(firsts, 0.95), 1),
                "avg_chunk_chars": round(statistics.fmean(sizes), 2) if sizes else None,
                "chunks": len(sizes),
            }
        single, longer = [], []
        words = len(long_text.split())
        for i in range(repeats):
            r1 = await one(ws, f"s{i}", f"{pairs[i][0]} ({i})", "en", "fi")
            r2 = await one(ws, f"l{i}", f"({i}) {long_text}", "en", "fi")
            single.append(r1["first_ms"])
            longer.append(r2["first_ms"])
            sentences = r2["frame"].get("sentences")
            total_long = r2["total_ms"]
        out["long_input"] = {
            "words": words, "sentences": sentences,
            "first_output_ms_p50": round(pct(longer, 0.5), 1),
            "single_sentence_first_output_ms_p50": round(pct(single, 0.5), 1),
            "long_total_ms_last": round(total_long, 1),
        }
        # The same long input without splitting: what splitting buys.
        r3 = await one(ws, "nosplit", f"(ns) {long_text}", "en", "fi", split=False)
        out["long_input"]["unsplit_first_output_ms"] = round(r3["first_ms"] or 0, 1)
        out["long_input"]["unsplit_total_ms"] = round(r3["total_ms"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-streaming-bench", description=__doc__)
    ap.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream")
    ap.add_argument("--data", required=True, help="TSV english<TAB>finnish")
    ap.add_argument("--long", required=True, help="a text file: the long input (~500 words)")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out")
    ns = ap.parse_args(argv)
    url = ns.url if ns.url.endswith("/v1/stream") else ns.url.rstrip("/") + "/v1/stream"
    pairs = [(p.en, p.fi) for p in read_pairs(Path(ns.data))]
    report = asyncio.run(run(url, pairs, Path(ns.long).read_text(encoding="utf-8").strip(),
                             ns.n, ns.repeats))
    write_json_report(report, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
