"""Policy exploration (issue 13): one server configuration, typed and word-by-word input at
concurrency 8, the raw partials kept so that display policies can be recomputed offline.

    flock /tmp/tolk-engine.lock python explore.py NAME SENTENCES CONCURRENCY SPEED \
        [TOLK_LIVE_SETTING=VALUE ...]   # writes /tmp/w13/NAME.json
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import tolk_bench.live as bench
from tolk_bench.servers import TOLK_BENCH_ENV, ServerProcess, child_env, free_port, tolk_command
from tolk_bench.workload import read_pairs

MODEL = "/work/main/models/demo"
DATA = Path("/work/shared/data/tatoeba-en-fi/dev.tsv")

name, n, conc, speed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
extra = dict(a.split("=", 1) for a in sys.argv[5:])
pairs = read_pairs(DATA, n)
items = [(p.en, "en", "fi", p.fi) for p in pairs] + [(p.fi, "fi", "en", p.en) for p in pairs]
captured: dict[str, Any] = {}
summarize = bench.summarize


def keep(results: list[dict[str, Any]], plains: list[dict[str, Any]], wall: float,
         tok: Any = None) -> dict[str, Any]:
    if "results" in captured:  # a per-direction summary: the first call had them all
        return summarize(results, plains, wall, tok)
    captured["results"] = [
        {k: r[k] for k in ("shown", "source_len", "final_ms", "first_stable_ms", "src")}
        | {"translation": r["frame"]["translation"], "live": r["frame"]["live"]}
        for r in results]
    captured["plains"] = [
        {"src_text": p["live"]["text"], "plain": p["frame"].get("translation", ""),
         "ms": p["ms"], "ref": p["ref"], "live": p["live"]["frame"]["translation"]}
        for p in plains]
    return summarize(results, plains, wall, tok)


bench.summarize = keep
port = free_port()
out = {}
with ServerProcess(name, tolk_command(port, ["--model", MODEL]),
                   f"http://127.0.0.1:{port}/ready", child_env({**TOLK_BENCH_ENV, **extra}),
                   Path(f"/tmp/w13/{name}.log")):
    for mode in ("typed", "word"):
        captured.clear()
        r = asyncio.run(bench.run_mode(f"ws://127.0.0.1:{port}/v1/stream", items, mode, conc,
                                       speed, plain=True))
        r.pop("differing_samples", None)
        print(name, mode, json.dumps(r), flush=True)
        out[mode] = {"summary": r, **captured}  # a copy: cleared for the next mode
Path(f"/tmp/w13/{name}.json").write_text(json.dumps(out))
