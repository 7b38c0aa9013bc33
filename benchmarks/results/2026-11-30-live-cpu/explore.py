"""Exploration: one server config, typed+word at c8, raw partials dumped for offline display policies."""
import asyncio, json, sys, os
from pathlib import Path
from tolk_bench.live import run_mode
import tolk_bench.live as L
from tolk_bench.servers import TOLK_BENCH_ENV, ServerProcess, child_env, free_port, tolk_command
from tolk_bench.workload import read_pairs

name, n, conc, speed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
extra = dict(a.split("=", 1) for a in sys.argv[5:])
pairs = read_pairs(Path("/work/shared/data/tatoeba-en-fi/dev.tsv"), n)
items = [(p.en, "en", "fi", p.fi) for p in pairs] + [(p.fi, "fi", "en", p.en) for p in pairs]
captured = {}
orig = L.summarize
def summ(results, plains, wall, tok=None):
    captured["results"] = [{k: r[k] for k in ("shown", "source_len", "final_ms", "first_stable_ms", "src")} | {"translation": r["frame"]["translation"], "live": r["frame"]["live"]} for r in results]
    captured["plains"] = [{"src_text": p["live"]["text"], "plain": p["frame"].get("translation", ""), "ms": p["ms"], "ref": p["ref"], "live": p["live"]["frame"]["translation"]} for p in plains]
    return orig(results, plains, wall, tok)
L.summarize = summ
port = free_port()
env = child_env({**TOLK_BENCH_ENV, **extra})
out = {}
with ServerProcess(name, tolk_command(port, ["--model", "/work/main/models/demo"]), f"http://127.0.0.1:{port}/ready", env, Path(f"/tmp/w13/{name}.log")):
    for mode in ("typed", "word"):
        r = asyncio.run(run_mode(f"ws://127.0.0.1:{port}/v1/stream", items, mode, conc, speed, plain=True))
        r.pop("differing_samples", None)
        print(name, mode, json.dumps(r), flush=True)
        out[mode] = {"summary": r, **captured}
Path(f"/tmp/w13/{name}.json").write_text(json.dumps(out))
