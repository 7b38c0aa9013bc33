"""Quality modes, measured: chrF per mode on a TSV in both directions, and first-token /
end-to-end latency p50/p95 per mode at given concurrencies, all through one `tolk serve`.

    python -m tolk_bench.modes --model models/demo --limit 0 --requests 48 \\
        --out benchmarks/results/modes-cpu
    python -m tolk_bench.modes --config deploy/demo-models.toml ...   # several models

Every request carries `quality`; the result cache is off. Latency is measured by the client
(the Python SDK): call → first streamed chunk, call → `complete`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .quality import DIRECTIONS, scores
from .servers import ServerProcess, free_port, machine_info
from .workload import Pair, default_data, read_pairs

MODES = ("fast", "balanced", "quality")


async def _chrf(url: str, mode: str, pairs: list[Pair], concurrency: int) -> dict[str, Any]:
    from tolk import AsyncClient

    out: dict[str, Any] = {}
    served_by: set[str] = set()
    async with AsyncClient(url, pool_size=4, timeout=300) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(text: str, src: str, tgt: str) -> str:
            async with sem:
                r = await client.translate(text=text, source=src, target=tgt, quality=mode)  # type: ignore[arg-type]
                served_by.add(str(r.frame.get("model")))
                return r.translation

        for src, tgt in DIRECTIONS:
            texts = [p.en if src == "en" else p.fi for p in pairs]
            refs = [p.fi if src == "en" else p.en for p in pairs]
            t0 = time.perf_counter()
            hyps = await asyncio.gather(*(one(t, src, tgt) for t in texts))
            out[f"{src}-{tgt}"] = {**scores(list(hyps), refs),
                                   "wall_s": round(time.perf_counter() - t0, 1)}
    out["served_by"] = sorted(served_by)
    return out


async def _latency(url: str, mode: str, pairs: list[Pair], concurrency: int,
                   requests: int) -> dict[str, Any]:
    from tolk import AsyncClient

    first: list[float] = []
    e2e: list[float] = []
    async with AsyncClient(url, pool_size=max(1, concurrency // 4), timeout=300) as client:
        for k in range(2):  # warm-up (untimed)
            await client.translate(text=pairs[k].en, source="en", target="fi", quality=mode)  # type: ignore[arg-type]
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            p = pairs[i % len(pairs)]
            src, tgt = DIRECTIONS[i % 2]
            text = p.en if src == "en" else p.fi
            async with sem:
                t0 = time.perf_counter()
                t1: float | None = None
                async for _ in client.translate_stream(text=text, source=src, target=tgt,
                                                       quality=mode):  # type: ignore[arg-type]
                    if t1 is None:
                        t1 = time.perf_counter()
                t2 = time.perf_counter()
                first.append(((t1 or t2) - t0) * 1000)
                e2e.append((t2 - t0) * 1000)

        await asyncio.gather(*(one(i) for i in range(requests)))

    def pct(xs: list[float], q: float) -> float:
        return round(float(np.percentile(xs, q)), 1)

    return {"requests": requests, "first_ms_p50": pct(first, 50), "first_ms_p95": pct(first, 95),
            "e2e_ms_p50": pct(e2e, 50), "e2e_ms_p95": pct(e2e, 95)}


def table(doc: dict[str, Any]) -> list[str]:
    levels = doc["concurrency"]
    head = "| mode | model | decoding | chrF en→fi | chrF fi→en |"
    rule = "|---|---|---|---|---|"
    for c in levels:
        head += f" first p50 / p95 @{c} (ms) | e2e p50 / p95 @{c} (ms) |"
        rule += "---|---|"
    lines = [head, rule]
    for mode in doc["modes"]:
        m = doc["results"][mode]
        model = ", ".join(m["chrf"].get("served_by", [])) or doc["model"]
        chrf = {d: m["chrf"].get(d, {}).get("chrf", 0) for d in ("en-fi", "fi-en")}
        row = (f"| `{mode}` | {model} | {m['decoding']} | {chrf['en-fi']:.1f} "
               f"| {chrf['fi-en']:.1f} |")
        for c in levels:
            lat = m["latency"][str(c)]
            row += (f" {lat['first_ms_p50']:.0f} / {lat['first_ms_p95']:.0f} |"
                    f" {lat['e2e_ms_p50']:.0f} / {lat['e2e_ms_p95']:.0f} |")
        lines.append(row)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tolk_bench.modes", description=__doc__)
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--config", default=None,
                    help="server TOML (e.g. `[[models]]` and `[[routes]]`); --model is then "
                         "only the profile the decoding column is read from")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="TSV lines for chrF (0: all)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--requests", type=int, default=48, help="timed requests per level")
    ap.add_argument("--chrf-concurrency", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/modes"))
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra `tolk serve` argument (repeatable)")
    ns = ap.parse_args(argv)
    pairs = read_pairs(ns.data or default_data(), ns.limit or None)
    levels = [int(c) for c in ns.concurrency.split(",")]
    modes = ns.modes.split(",")
    port = free_port()
    env = {**os.environ, "TOLK_CACHE_ENTRIES": "0"}
    cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--model", ns.model,
           "--port", str(port), *ns.serve_arg]
    if ns.config:
        cmd += ["--config", ns.config]
    ns.out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"machine": machine_info(), "model": ns.model, "config": ns.config,
                           "lines": len(pairs),
                           "modes": modes, "concurrency": levels, "results": {}}
    url = f"ws://127.0.0.1:{port}"
    with ServerProcess("tolk", cmd, f"http://127.0.0.1:{port}/ready", env,
                       ns.out / "server.log"):
        info = json.loads(_get(f"http://127.0.0.1:{port}/v1/languages"))
        doc["server"] = info
        # Warm the engine up at every batch size first: the first mode measured must not
        # pay for it (vLLM-CPU's first batches of a new shape are slow).
        for c in levels:
            asyncio.run(_latency(url, "balanced", pairs, c, max(8, 2 * c)))
        for mode in modes:
            res: dict[str, Any] = {"decoding": _decoding(ns.model, mode), "latency": {}}
            for c in levels:
                res["latency"][str(c)] = asyncio.run(_latency(url, mode, pairs, c,
                                                              ns.requests))
                print(mode, c, res["latency"][str(c)], flush=True)
            res["chrf"] = asyncio.run(_chrf(url, mode, pairs, ns.chrf_concurrency))
            print(mode, res["chrf"], flush=True)
            doc["results"][mode] = res
    (ns.out / "modes.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    text = "\n".join(table(doc)) + "\n"
    (ns.out / "modes.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _decoding(model: str, mode: str) -> str:
    """The mode's decoding as the model's profile defines it, e.g. `mbr (8)`."""
    from tolk_server.api import resolve_modes, resolve_profile

    m = resolve_modes(resolve_profile(model, None).modes)[mode]  # type: ignore[index]
    extra = {"beam": f" ({m.beam_width})", "mbr": f" ({m.candidates} + greedy)"}
    return m.decoding + extra.get(m.decoding, "")


if __name__ == "__main__":
    raise SystemExit(main())
