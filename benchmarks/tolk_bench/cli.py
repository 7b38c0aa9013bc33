"""`tolk bench`: argument parsing only; the runner is imported when the command runs.

    tolk bench [options]                 the whole comparison (raw engine, vllm serve,
                                         tolk WebSocket, tolk SSE, front end, optional quality)
    tolk bench quality --data FILE.tsv   chrF/BLEU both directions + streamed == offline check
    tolk bench frontend                  the front end alone over the null engine
    tolk bench frontend --workers 1,2    the same, `tolk serve --workers N` for each N
    tolk bench workers --workers 1,2     the real engine under --workers N: tok/s, TTFT
    tolk bench load --url URL            load a running tolk server (no engine started here)
    tolk bench openai                    TTFT: in-process vLLM against the OpenAI adapter
    tolk bench report DIR                rewrite summary.md and plots from DIR/results.json
"""

from __future__ import annotations

import argparse
from typing import Any, TypeAlias


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.replace(",", " ").split()]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.replace(",", " ").split()]


def _engine_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and engine (the same for every target)")
    g.add_argument("--model", help="model directory or profile name (default: demo)")
    g.add_argument("--profile", help="prompt profile name or TOML path")
    g.add_argument("--max-num-seqs", type=int, default=64)
    g.add_argument("--max-model-len", type=int, default=1024)
    g.add_argument("--kv-cache-gib", type=int, default=2)
    g.add_argument("--dtype", default="auto")
    g.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false",
                   help="allow graph capture (default: eager, as on CPU hosts)")
    g.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false")
    g.add_argument("--load-format", default="auto",
                   help="vLLM load format; 'dummy': random weights of the model's shape "
                        "(speed runs without real weights, see python -m tolk_bench.dummy_model)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="TSV english<TAB>finnish (default: shared Tatoeba dev set)")
    p.add_argument("--out", help="results directory (default: benchmarks/results/DATE-MACHINE)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--streams-per-conn", type=int, default=4,
                   help="requests in flight per WebSocket (connections = concurrency / this)")


def _load_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workload")
    g.add_argument("--concurrency", type=_ints, default=[1, 4, 16, 64, 256],
                   help="fixed-concurrency sweep, e.g. '1,4,16'")
    g.add_argument("--requests", type=int, default=100, help="requests per concurrency level")
    g.add_argument("--max-duration", type=float, default=120.0,
                   help="time limit per point (s): no request is issued after it")
    g.add_argument("--warmup", type=int, default=8, help="untimed warm-up requests")
    g.add_argument("--rates", type=_floats, default=[], help="Poisson arrival rates (req/s)")
    g.add_argument("--rate-requests", type=int, default=50)
    g.add_argument("--long", dest="long_requests", type=int, default=8,
                   help="long-input requests (0: none)")
    g.add_argument("--long-chars", type=int, default=1000)
    g.add_argument("--long-concurrency", type=int, default=4)
    g.add_argument("--max-tokens", type=int, default=64, help="output cap on every path")
    g.add_argument("--long-max-tokens", type=int, default=256)
    g.add_argument("--seed", type=int, default=0)


def _frontend_opts(p: argparse.ArgumentParser, prefix: str = "") -> None:
    g = p.add_argument_group("front end over the null engine")
    g.add_argument(f"--{prefix}fe-concurrency", dest="fe_concurrency", type=_ints,
                   default=[16, 64, 256])
    g.add_argument(f"--{prefix}fe-requests", dest="fe_requests", type=int, default=2000)
    g.add_argument(f"--{prefix}fe-long-chars", dest="fe_long_chars", type=int, default=3000)
    g.add_argument(f"--{prefix}idle", dest="idle", type=_ints, default=[500, 1000, 2000],
                   help="idle WebSocket counts to hold open")
    g.add_argument(f"--{prefix}fe-max-duration", dest="fe_max_duration", type=float,
                   default=30.0)


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_bench_parser(sub: Subparsers) -> None:
    p = sub.add_parser("bench", help="benchmark latency, throughput and quality",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _engine_opts(p)
    _common(p)
    _load_opts(p)
    _frontend_opts(p)
    p.add_argument("--targets", default="raw,vllm-serve,tolk-ws,tolk-sse",
                   help="comma-separated subset of raw,vllm-serve,tolk-ws,tolk-sse")
    p.add_argument("--no-frontend", dest="frontend", action="store_false")
    p.add_argument("--note", dest="notes", action="append", default=[],
                   help="a remark for the summary (repeatable)")
    p.add_argument("--quality-limit", type=int, default=0,
                   help="also run the quality mode on this many lines (0: skip)")
    p.set_defaults(func=_cmd_suite)
    bsub = p.add_subparsers(dest="bench_command",
                            metavar="{quality,frontend,load,live,openai,report}")
    _add_runs(bsub)
    _add_others(bsub)


def _add_runs(bsub: Subparsers) -> None:
    """`tolk bench quality`, `frontend` and `load`."""
    q = bsub.add_parser("quality", help="chrF/BLEU through the server + streamed == offline")
    _engine_opts(q)
    _common(q)
    q.add_argument("--limit", type=int, default=100, help="lines of the TSV (0: all)")
    q.add_argument("--max-tokens", type=int, default=256)
    q.add_argument("--concurrency", type=int, default=8)
    q.add_argument("--no-split", dest="split", action="store_false",
                   help="one engine request per line (default: tolk's sentence splitting, "
                   "mirrored offline sentence by sentence)")
    q.set_defaults(func=_cmd_quality)

    _add_frontend(bsub)
    _add_workers(bsub)

    ld = bsub.add_parser("load", help="load a running tolk server (WebSocket and SSE)")
    _common(ld)
    _load_opts(ld)
    ld.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    ld.add_argument("--transports", default="ws,sse")
    ld.set_defaults(func=_cmd_load)


def _add_others(bsub: Subparsers) -> None:
    """`tolk bench live`, `report` and `audio`."""
    from . import live

    lv = bsub.add_parser("live", help="live input: typed and spoken replays (tolk_bench.live)")
    live.add_args(lv)
    lv.set_defaults(func=live.run)

    from . import openai_engine

    oa = bsub.add_parser("openai", help="TTFT: in-process vLLM against tolk in front of "
                         "vllm serve (the OpenAI adapter), interleaved")
    openai_engine.add_args(oa)
    oa.set_defaults(func=openai_engine.run)

    r = bsub.add_parser("report", help="rewrite summary.md and the plots from results.json")
    r.add_argument("dir")
    r.set_defaults(func=_cmd_report)

    au = bsub.add_parser("audio", help="speech: WER, RTF, phrase-end latency, streams, chrF "
                         "(as `python -m tolk_bench.audio`)")
    try:
        from .audio import add_args as add_audio_args
    except ImportError:  # numpy is missing: the speech benchmark is not available
        pass
    else:
        add_audio_args(au)
    au.set_defaults(func=_cmd_audio)



def _add_frontend(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = bsub.add_parser("frontend", help="the front end alone over the null engine")
    _common(f)
    _frontend_opts(f)
    f.add_argument("--url", help="a running tolk server (no CPU/RSS figures) instead of "
                   "starting `tolk serve --engine fake`")
    f.add_argument("--workers", type=_ints, help="one run per `tolk serve --workers N`, "
                   "e.g. 1,2 (on a SQLite store each)")
    f.add_argument("--rounds", type=int, default=1,
                   help="with --workers: each count this often, interleaved")
    f.add_argument("--fe-rate", type=float, help="with --workers: also an open-loop point at "
                   "this many requests/s (CPU per request at the same load)")
    f.set_defaults(func=_cmd_frontend)


def _add_workers(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = bsub.add_parser("workers", help="the real engine under `tolk serve --workers N`")
    _engine_opts(w)
    _common(w)
    w.add_argument("--workers", type=_ints, default=[1, 2])
    w.add_argument("--rounds", type=int, default=1, help="each count this often, interleaved")
    w.add_argument("--concurrency", type=int, default=16)
    w.add_argument("--requests", type=int, default=160)
    w.add_argument("--max-tokens", type=int, default=64)
    w.set_defaults(func=_cmd_workers)

def _out_dir(ns: argparse.Namespace, machine: dict[str, Any] | None = None) -> Any:
    from datetime import UTC, datetime
    from pathlib import Path

    from .paths import RESULTS_DIR
    from .servers import machine_info, machine_slug

    if ns.out:
        return Path(ns.out)
    m = machine or machine_info()
    return RESULTS_DIR / f"{datetime.now(UTC):%Y-%m-%d}-{machine_slug(m)}"


def _data(ns: argparse.Namespace) -> Any:
    from pathlib import Path

    from .workload import default_data

    return Path(ns.data) if ns.data else default_data()


def _setup(ns: argparse.Namespace) -> Any:
    from .context import make_setup

    return make_setup(ns.model, ns.profile, ns.max_num_seqs, ns.max_model_len, ns.kv_cache_gib,
                      ns.dtype, ns.enforce_eager, ns.prefix_caching, ns.load_format)


def _plan(ns: argparse.Namespace, targets: list[str]) -> Any:
    from .suite import Plan

    return Plan(concurrency=ns.concurrency, requests=ns.requests,
                max_duration_s=ns.max_duration, warmup=ns.warmup, rates=ns.rates,
                rate_requests=ns.rate_requests, long_requests=ns.long_requests,
                long_chars=ns.long_chars, long_concurrency=ns.long_concurrency,
                max_tokens=ns.max_tokens, long_max_tokens=ns.long_max_tokens,
                streams_per_conn=ns.streams_per_conn, seed=ns.seed, targets=targets)


def _fe(ns: argparse.Namespace) -> dict[str, Any]:
    return {"concurrency": ns.fe_concurrency, "requests": ns.fe_requests,
            "long_chars": ns.fe_long_chars, "idle_counts": ns.idle,
            "max_duration_s": ns.fe_max_duration, "streams_per_conn": ns.streams_per_conn}


def _finish(doc: dict[str, Any], ns: argparse.Namespace) -> int:
    from .report import write_results

    out = _out_dir(ns, doc.get("machine"))
    for p in write_results(doc, out):
        print(p)
    return 0


def _cmd_suite(ns: argparse.Namespace) -> int:
    from .suite import TARGETS, run_suite

    targets = [t.strip() for t in ns.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        print(f"unknown targets: {sorted(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    setup = _setup(ns)
    data = _data(ns)
    out = _out_dir(ns)
    quality = None
    if ns.quality_limit:
        quality = {"data": data, "limit": ns.quality_limit,
                   "streams_per_conn": ns.streams_per_conn}
    doc = run_suite(setup, _plan(ns, targets), data, out, _fe(ns) if ns.frontend else None,
                    quality, ns.progress)
    doc["notes"] = list(ns.notes)
    return _finish(doc, ns)


def _cmd_quality(ns: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from .quality import run_quality
    from .report import quality_section
    from .servers import machine_info

    setup = _setup(ns)
    out = _out_dir(ns)
    q = run_quality(setup, out / "logs", _data(ns), ns.limit or None, ns.max_tokens,
                    ns.concurrency, ns.streams_per_conn, ns.progress, ns.split)
    doc = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), "setup": setup.describe(), "quality": q}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    text = "\n".join(quality_section(q)) + "\n"
    (out / "quality.md").write_text(text, encoding="utf-8")
    print(text)
    print(out / "quality.json")
    return 0 if q["exact_match_all"] else 1


def _cmd_frontend(ns: argparse.Namespace) -> int:
    import asyncio
    import json
    from datetime import UTC, datetime

    from .frontend import frontend_ceiling
    from .report import frontend_section
    from .runner import Progress
    from .servers import machine_info, raise_fd_limit
    from .suite import run_frontend

    raise_fd_limit()
    out = _out_dir(ns)
    if ns.workers:
        return _frontend_workers(ns, out)
    with Progress(enabled=ns.progress) as prog:
        if ns.url:
            fe = asyncio.run(frontend_ceiling(ns.url, None, prog, **_fe(ns)))
        else:
            fe = run_frontend(_fe(ns), out / "logs", prog)
    doc = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), "frontend": fe}
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontend.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print("\n".join(frontend_section(fe)))
    return 1 if fe.get("error") else 0


def _write(out: Any, name: str, doc: dict[str, Any], lines: list[str]) -> None:
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(out / f"{name}.json")


def _frontend_workers(ns: argparse.Namespace, out: Any) -> int:
    from datetime import UTC, datetime

    from .runner import Progress
    from .servers import busy_processes, machine_info
    from .workers import frontend_workers_section, run_frontend_workers

    with Progress(enabled=ns.progress) as prog:
        fe = run_frontend_workers(_fe(ns), ns.workers, ns.rounds, out / "logs", prog,
                                  ns.fe_rate)
    doc = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), "busy_at_end": busy_processes(), "frontend_workers": fe}
    _write(out, "frontend-workers", doc, frontend_workers_section(fe))
    return 1 if any(r.get("error") for r in fe["runs"]) else 0


def _cmd_workers(ns: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .runner import Progress
    from .servers import busy_processes, machine_info, raise_fd_limit
    from .workers import engine_workers_section, run_engine_workers

    raise_fd_limit()
    out = _out_dir(ns)
    setup = _setup(ns)
    with Progress(enabled=ns.progress) as prog:
        res = run_engine_workers(setup, _data(ns), ns.workers, ns.rounds, ns.concurrency,
                                 ns.requests, ns.max_tokens, ns.streams_per_conn,
                                 out / "logs", prog)
    doc = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": machine_info(), "busy_at_end": busy_processes(),
           "setup": setup.describe(), "engine_workers": res}
    _write(out, "engine-workers", doc, engine_workers_section(res))
    failed = any(r.get("error") for runs in res["runs"].values() for r in runs)
    return 1 if failed else 0


def _cmd_load(ns: argparse.Namespace) -> int:
    from .loadonly import run_load

    doc = run_load(ns.url, _plan(ns, []), _data(ns), ns.transports.split(","), ns.progress)
    return _finish(doc, ns)


def _cmd_audio(ns: argparse.Namespace) -> int:
    from .audio import run_cli

    run_cli(ns)
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .report import write_results

    d = Path(ns.dir)
    doc = json.loads((d / "results.json").read_text(encoding="utf-8"))
    for p in write_results(doc, d):
        print(p)
    return 0
