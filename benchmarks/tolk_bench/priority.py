"""Live updates under bulk load, with and without priority scheduling.

    python -m tolk_bench.priority --model models/demo --data benchmarks/data/wmt19-en-fi-300.tsv \\
        --long benchmarks/data/long-500w.en.txt --bulk 8 -n 12

Starts a tolk server twice (`priority_scheduling` on, then off: first come, first served),
keeps `--bulk` long inputs in flight on one connection (each one resent when it ends), and
meanwhile replays `-n` sentences as live input word by word on another: each `update` waits
for the `partial` that answers it. Reports the hypothesis latency (update → its partial)
p50/p95, the final latency, and how many bulk sentences finished meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .servers import TOLK_BENCH_ENV, ServerProcess, child_env, free_port, tolk_command
from .streaming import pct
from .workload import read_pairs, write_json_report


async def bulk_load(url: str, text: str, n: int, stop: asyncio.Event,
                    done: list[int]) -> None:
    """Keep `n` long inputs in flight until `stop`; count the sentences they finished."""
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=2**24) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        seq = 0

        async def send() -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"type": "translate", "id": f"b{seq}", "source": "en",
                                      "target": "fi", "text": f"({seq}) {text}"}))

        for _ in range(n):
            await send()
        inflight = n
        while inflight:
            f = json.loads(await ws.recv())
            if f["type"] in ("complete", "error"):
                inflight -= 1
                done.append(f.get("sentences", 0) if f["type"] == "complete" else 0)
                if not stop.is_set():
                    await send()
                    inflight += 1


async def live_run(url: str, sentences: list[str]) -> dict[str, list[float]]:
    """Each sentence as live input, word by word; every update waits for its partial."""
    from websockets.asyncio.client import connect

    hyp: list[float] = []
    final: list[float] = []
    async with connect(url, compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for i, sentence in enumerate(sentences):
            words = sentence.split(" ")
            for k in range(1, len(words) + 1):
                last = k == len(words)
                text = " ".join(words[:k]) + ("" if last else " ")
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "update", "id": f"L{i}", "text": text,
                                          "source": "en", "target": "fi", "final": last}))
                while True:
                    f = json.loads(await asyncio.wait_for(ws.recv(), 600))
                    if f["type"] == "error" and "about" not in f:
                        raise RuntimeError(f"live request failed: {f}")
                    if f["type"] == "partial" and f["version"] == k:
                        hyp.append((time.perf_counter() - t0) * 1000)
                        if not last:
                            break
                    if f["type"] == "complete":
                        final.append((time.perf_counter() - t0) * 1000)
                        break
    return {"hypothesis_ms": hyp, "final_ms": final}


async def measure(url: str, sentences: list[str], long_text: str, bulk: int,
                  warmup_s: float) -> dict[str, Any]:
    alone = await live_run(url, sentences[:3])  # warm-up, and the unloaded figure
    stop, done = asyncio.Event(), list[int]()
    load = asyncio.create_task(bulk_load(url, long_text, bulk, stop, done))
    await asyncio.sleep(warmup_s)  # the bulk inputs are split and queued
    t0 = time.perf_counter()
    live = await live_run(url, sentences)
    wall = time.perf_counter() - t0
    finished = sum(done)
    stop.set()
    load.cancel()
    hyp = live["hypothesis_ms"]
    return {
        "unloaded_hypothesis_ms_p50": round(pct(alone["hypothesis_ms"], 0.5), 1),
        "hypotheses": len(hyp),
        "hypothesis_ms_p50": round(pct(hyp, 0.5), 1),
        "hypothesis_ms_p95": round(pct(hyp, 0.95), 1),
        "final_ms_p50": round(pct(live["final_ms"], 0.5), 1),
        "final_ms_p95": round(pct(live["final_ms"], 0.95), 1),
        "live_wall_s": round(wall, 1),
        "bulk_sentences_finished": finished,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-priority-bench", description=__doc__)
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--engine", default="vllm", help="vllm, or echo (a smoke run)")
    ap.add_argument("--max-num-seqs", type=int, help="the engine's batch (default: tolk's)")
    ap.add_argument("--data", required=True, help="TSV english<TAB>finnish")
    ap.add_argument("--long", required=True, help="a text file: one bulk input (~500 words)")
    ap.add_argument("--bulk", type=int, default=8, help="long inputs kept in flight")
    ap.add_argument("-n", type=int, default=12, help="live sentences")
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--logs", default="/tmp/tolk-priority-bench")
    ap.add_argument("--out")
    ns = ap.parse_args(argv)
    pairs = read_pairs(Path(ns.data))
    sentences = [p.en for p in pairs[100:100 + ns.n] if len(p.en.split()) >= 4]
    long_text = Path(ns.long).read_text(encoding="utf-8").strip()
    report: dict[str, Any] = {"model": ns.model, "bulk_inputs": ns.bulk,
                              "max_num_seqs": ns.max_num_seqs,
                              "bulk_words": len(long_text.split()),
                              "live_sentences": len(sentences), "runs": {}}
    for name, on in (("priority", "true"), ("fcfs", "false")):
        port = free_port()
        env = child_env({**TOLK_BENCH_ENV, "TOLK_PRIORITY_SCHEDULING": on})
        flags = ["--model", ns.model, "--engine", ns.engine]
        if ns.max_num_seqs:
            flags += ["--max-num-seqs", str(ns.max_num_seqs)]
        with ServerProcess(name, tolk_command(port, flags),
                           f"http://127.0.0.1:{port}/ready", env, Path(ns.logs) / f"{name}.log"):
            r = asyncio.run(measure(f"ws://127.0.0.1:{port}/v1/stream", sentences, long_text,
                                    ns.bulk, ns.warmup_s))
        report["runs"][name] = r
        print(name, json.dumps(r), file=sys.stderr, flush=True)
    write_json_report(report, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
