"""Live input: dev sentences replayed as typing (keystroke by keystroke) and as speech
(word by word), at 1 and 8 concurrent live requests, against a tolk server it starts.

    python -m tolk_bench.live --model models/demo --data dev.tsv -n 200 [--speed 1]

Reports normalized erasure, LAAL (source characters), time to the first stable word,
final_ms, chrF of the final translation next to a plain `translate` of the final text, and
engine tokens per final output token with and without prefix forcing (a second server with
TOLK_LIVE_FORCE_PREFIX=false).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .servers import TOLK_BENCH_ENV, ServerProcess, child_env, free_port, tolk_command
from .workload import read_pairs, write_json_report

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

CHARS_PER_S = 8.0
WORDS_PER_S = 2.5  # about 150 words a minute: speech


def steps(text: str, mode: str) -> list[str]:
    """The successive source texts a typist (per character) or a recogniser (per word) sends."""
    if mode == "typed":
        return [text[:k] for k in range(1, len(text) + 1)]
    words = text.split(" ")  # a recogniser emits whole words: each ends with a space
    return [" ".join(words[:k]) + " " for k in range(1, len(words))] + [text]


async def live_one(ws: ClientConnection, rid: str, text: str, src: str, tgt: str, mode: str,
                   speed: float, frames: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    interval = (1 / CHARS_PER_S if mode == "typed" else 1 / WORDS_PER_S) / speed
    t0 = time.perf_counter()
    first_stable: float | None = None
    texts = steps(text, mode)
    shown: list[tuple[int, str, str]] = []  # (source characters sent, stable, tentative)
    for k, t in enumerate(texts):
        final = k == len(texts) - 1
        if final:
            t_final = time.perf_counter()
        await ws.send(json.dumps({"type": "update", "id": rid, "text": t, "source": src,
                                  "target": tgt, "final": final}))
        deadline = time.perf_counter() + (0 if final else interval)
        while True:  # read this request's frames until the next keystroke is due
            wait = deadline - time.perf_counter()
            if not final and wait <= 0:
                break
            try:
                f = await asyncio.wait_for(frames.get(), None if final else wait)
            except TimeoutError:
                break
            if f["type"] == "partial":
                shown.append((len(texts[f["version"] - 1]), f["stable"], f["tentative"]))
                if f["stable"].strip() and first_stable is None:
                    first_stable = (time.perf_counter() - t0) * 1000
            if f["type"] in ("complete", "error") and "about" not in f:
                if f["type"] == "error":
                    raise RuntimeError(f"live request {rid} failed: {f}")
                return {"final_ms": (time.perf_counter() - t_final) * 1000,
                        "first_stable_ms": first_stable, "frame": f, "shown": shown,
                        "source_len": len(text)}
    raise AssertionError("unreachable")


async def plain_one(ws: ClientConnection, rid: str, text: str, src: str, tgt: str,
                    frames: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "translate", "id": rid, "text": text, "source": src,
                              "target": tgt, "stream": False, "split": False}))
    while True:
        f = await frames.get()
        if f["type"] in ("complete", "error"):
            return {"ms": (time.perf_counter() - t0) * 1000, "frame": f}


async def run_mode(url: str, items: list[tuple[str, str, str, str]], mode: str, conc: int,
                   speed: float, plain: bool, tokenizer: Any = None) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    results: list[dict[str, Any]] = []
    plains: list[dict[str, Any]] = []
    work = list(enumerate(items))

    async def worker(w: int) -> None:
        async with connect(url, compression=None, max_size=2**22) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}

            async def reader() -> None:
                async for msg in ws:
                    f = json.loads(msg)
                    q = queues.get(f.get("id", ""))
                    if q is not None:
                        q.put_nowait(f)

            rtask = asyncio.create_task(reader())
            while work:
                i, (text, src, tgt, ref) = work.pop(0)
                rid = f"{mode}-{w}-{i}"
                queues[rid] = asyncio.Queue()
                r = await live_one(ws, rid, text, src, tgt, mode, speed, queues[rid])
                r["ref"], r["src"], r["text"] = ref, src, text
                results.append(r)
                if plain:
                    queues["p" + rid] = asyncio.Queue()
                    p = await plain_one(ws, "p" + rid, text, src, tgt, queues["p" + rid])
                    p["ref"], p["live"] = ref, r  # not len(results) - 1: other workers append
                    plains.append(p)
            rtask.cancel()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    wall = time.perf_counter() - t0
    out = summarize(results, plains, wall, tokenizer)
    out["by_direction"] = {}
    for src in dict.fromkeys(r["src"] for r in results):
        tgt = "fi" if src == "en" else "en"
        out["by_direction"][f"{src}-{tgt}"] = summarize(
            [r for r in results if r["src"] == src],
            [p for p in plains if p["live"]["src"] == src], wall, tokenizer)
    return out


def summarize(results: list[dict[str, Any]], plains: list[dict[str, Any]],
              wall_s: float, tokenizer: Any = None) -> dict[str, Any]:
    import sacrebleu

    from .streaming import pct

    lives = [r["frame"]["live"] for r in results]
    final = [r["final_ms"] for r in results]
    first = [r["first_stable_ms"] for r in results if r["first_stable_ms"] is not None]
    out: dict[str, Any] = {
        "requests": len(results), "wall_s": round(wall_s, 1),
        "normalized_erasure_mean": round(statistics.fmean(x["normalized_erasure"]
                                                          for x in lives), 4),
        "laal_chars_mean": round(statistics.fmean(x["laal"] for x in lives), 2),
        "first_stable_word_ms_p50": round(pct(first, 0.5), 1),
        "first_stable_word_ms_p95": round(pct(first, 0.95), 1),
        "final_ms_p50": round(pct(final, 0.5), 1), "final_ms_p95": round(pct(final, 0.95), 1),
        "resets": sum(x["resets"] for x in lives),
        "updates": sum(x["updates"] for x in lives),
        "partials": sum(x["partials"] for x in lives),
        "engine_tokens": sum(x.get("engine_tokens", 0) for x in lives),
    }
    out["slowest_finals"] = [  # what to look at when final_ms has a tail
        {"final_ms": round(r["final_ms"], 1), "source": r["text"],
         "translation": r["frame"]["translation"], "live": r["frame"]["live"]}
        for r in sorted(results, key=lambda r: -r["final_ms"])[:5]]
    out["display_mask_k"] = mask_k(results)
    if plains:
        hyps = [p["live"]["frame"]["translation"] for p in plains]
        plain_hyps = [p["frame"].get("translation", "") for p in plains]
        refs = [p["ref"] for p in plains]
        live_chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
        plain_chrf = sacrebleu.corpus_chrf(plain_hyps, [refs]).score
        plain_ms = [p["ms"] for p in plains]
        out.update({
            "chrf_live_vs_ref": round(live_chrf, 2), "chrf_plain_vs_ref": round(plain_chrf, 2),
            "chrf_loss": round(plain_chrf - live_chrf, 2),
            "chrf_live_vs_plain": round(sacrebleu.corpus_chrf(hyps, [plain_hyps]).score, 2),
            "identical_to_plain": sum(a == b for a, b in zip(hyps, plain_hyps, strict=True)),
            "plain_ms_p50": round(pct(plain_ms, 0.5), 1),
            "plain_ms_p95": round(pct(plain_ms, 0.95), 1),
            "final_output_tokens": sum(p["frame"].get("tokens", 0) for p in plains),
            "differing_samples": [
                {"source": p["live"]["text"], "live": h, "plain": ph}
                for p, h, ph in zip(plains, hyps, plain_hyps, strict=True) if h != ph][:12],
        })
        out["engine_tokens_per_final_token"] = round(
            out["engine_tokens"] / max(1, out["final_output_tokens"]), 2)
        if tokenizer is not None:  # per token of the live finals themselves
            n = sum(len(tokenizer(h, add_special_tokens=False)["input_ids"]) for h in hyps)
            out["live_final_tokens"] = n
            out["engine_tokens_per_live_final_token"] = round(out["engine_tokens"] / max(1, n), 2)
    return out


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--data", required=True, help="TSV english<TAB>finnish")
    ap.add_argument("-n", type=int, default=200, help="sentences per direction")
    ap.add_argument("--n1", type=int, help="sentences per direction at concurrency 1")
    ap.add_argument("--speed", type=float, default=1.0, help="time compression of the replay")
    ap.add_argument("--modes", default="typed,word")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--directions", default="en-fi,fi-en", help="which directions to replay")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unforced server")
    ap.add_argument("--live", action="append", default=[], metavar="NAME=VALUE",
                    help="a live policy setting for both servers, e.g. mask_words=0 "
                    "(TOLK_LIVE_MASK_WORDS); default: the server's defaults")
    ap.add_argument("--logs", default="/tmp/tolk-live-bench")
    ap.add_argument("--out")


DISPLAYS = {"all": (0, "all", 0), "mask1": (1, "all", 0), "mask2": (2, "all", 0),
            "mask3": (3, "all", 0), "extend": (0, "extend", 0), "extend+mask2": (2, "extend", 0),
            "cap1": (0, "all", 1), "mask1+cap1": (1, "all", 1), "mask2+cap1": (2, "all", 1),
            "mask3+cap1": (3, "all", 1), "stable": (0, "none", 0)}


def mask_k(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Erasure and LAAL had the server shown the tentative text by another display policy
    (mask-k, "extend", stable only: `LivePolicy.shown_tentative`), recomputed from the same
    partials; meaningful when the server sent them unmasked (`live_tentative=all`, mask 0).
    `corpus_erasure` is the total erased over the total final length; the mean is per
    sentence."""
    from tolk.protocol.measures import laal, normalized_erasure
    from tolk_server.api import LivePolicy

    out = {}
    for name, (k, how, cap) in DISPLAYS.items():
        policy = LivePolicy(mask_words=k, tentative=how,  # type: ignore[arg-type]
                            tentative_words=cap)
        ne, la, erased, total = [], [], 0.0, 0
        for r in results:
            final = r["frame"]["translation"]
            seq: list[tuple[int, str]] = []
            for n, st, te in r["shown"][:-1]:
                seq.append((n, st + policy.shown_tentative(seq[-1][1] if seq else "", st, te)))
            e = normalized_erasure([o for _, o in seq], final)
            ne.append(e)
            erased += e * max(1, len(final))
            total += max(1, len(final))
            la.append(laal(seq, final, r["source_len"]))
        out[name] = {"normalized_erasure_mean": round(statistics.fmean(ne), 4),
                     "corpus_erasure": round(erased / total, 4),
                     "laal_chars_mean": round(statistics.fmean(la), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-live-bench", description=__doc__)
    add_args(ap)
    return run(ap.parse_args(argv))


def run(ns: argparse.Namespace) -> int:
    pairs = read_pairs(Path(ns.data), ns.n)
    items = [(p.en, "en", "fi", p.fi) for p in pairs] + [(p.fi, "fi", "en", p.en) for p in pairs]
    report: dict[str, Any] = {"model": ns.model, "sentences_per_direction": ns.n,
                              "speed": ns.speed, "chars_per_s": CHARS_PER_S,
                              "words_per_s": WORDS_PER_S, "live_policy": ns.live, "runs": {}}
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(ns.model)
    except Exception:  # a profile name, or no tokenizer files: skip that figure
        tokenizer = None
    servers = [("forced", "true")] + ([] if ns.no_baseline else [("unforced", "false")])
    for name, force in servers:
        port = free_port()
        policy = {f"TOLK_LIVE_{k.upper()}": v for k, v in (a.split("=", 1) for a in ns.live)}
        env = child_env({**TOLK_BENCH_ENV, **policy, "TOLK_LIVE_FORCE_PREFIX": force})
        cmd = tolk_command(port, ["--model", ns.model])
        with ServerProcess(name, cmd, f"http://127.0.0.1:{port}/ready", env,
                           Path(ns.logs) / f"{name}.log"):
            url = f"ws://127.0.0.1:{port}/v1/stream"
            for mode in ns.modes.split(","):
                for conc in (int(c) for c in ns.concurrency.split(",")):
                    if name == "unforced" and conc != max(int(c) for c in
                                                          ns.concurrency.split(",")):
                        continue
                    n1 = ns.n1 if conc == 1 and ns.n1 else ns.n
                    sel = [it for it in items[:n1] + items[len(pairs):len(pairs) + n1]
                           if f"{it[1]}-{it[2]}" in ns.directions.split(",")]
                    key = f"{name}/{mode}/c{conc}"
                    r = asyncio.run(run_mode(url, sel, mode, conc, ns.speed, plain=True,
                                             tokenizer=tokenizer))
                    report["runs"][key] = r
                    print(key, json.dumps(r), file=sys.stderr, flush=True)
                    write_json_report(report, ns.out)  # each run as it ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
