"""The speech benchmark: `python -m tolk_bench.audio` (or `tolk bench audio`).

On espeak-ng speech made from `dev.tsv` sentences (offline, generated on the fly):
- WER of the recogniser(s) on N sentences (clean, and with pink noise at 20 dB SNR), and RTF;
- latency from the end of a phrase to its final transcript and to its first translated token
  (p50/p95), one stream at real time through a live `tolk serve`;
- how many concurrent real-time streams the machine holds (final-transcript p95 < 2 s, no errors);
- chrF of speech → translation beside text → translation (the same server, the same sentences).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import speech
from .paths import RESULTS_DIR
from .servers import TOLK_BENCH_ENV, ServerProcess, child_env, free_port, machine_info
from .workload import Pair, default_data, read_pairs, write_json_report

_WORD = re.compile(r"[^\w' ]+")
HOLD_P95_S = 2.0


def normalise(text: str) -> str:
    return " ".join(_WORD.sub(" ", text.lower()).split())


def pick_sentences(n: int, seed: int = 0) -> list[Pair]:
    """`n` dev.tsv pairs of 4–16 words (the length of spoken phrases), shuffled."""
    pairs = [p for p in read_pairs(default_data()) if 4 <= len(p.en.split()) <= 16]
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


# -- recognition quality and speed ---------------------------------------------------------

def wer_rtf(transcriber: Any, clips: list[np.ndarray], refs: list[str]) -> dict[str, Any]:
    import jiwer

    hyps, busy = [], 0.0
    for clip in clips:
        t = time.perf_counter()
        hyps.append(transcriber.transcribe(clip.astype(np.float32) / 32768, "en").text)
        busy += time.perf_counter() - t
    audio_s = sum(len(c) for c in clips) / speech.RATE
    wer = jiwer.wer([normalise(r) for r in refs], [normalise(h) or "-" for h in hyps])
    return {"wer": round(float(wer), 3), "rtf": round(busy / audio_s, 3),
            "audio_s": round(audio_s, 1), "hypotheses": hyps}


# -- live streams through the server --------------------------------------------------------

async def stream_phrases(url: str, pcm: np.ndarray, marks: list[speech.Utterance],
                         targets: list[str], sid: str) -> dict[str, Any]:
    """One real-time audio stream; per phrase, seconds from its end to its final transcript
    and to its first translated token."""
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    finals: dict[int, tuple[float, dict[str, Any]]] = {}
    first_token: dict[int, float] = {}
    errors: list[dict[str, Any]] = []
    async with connect(url + "/v1/stream", max_size=2**22) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "audio_start", "id": sid, "source": "en",
                                  "targets": targets, "sample_rate": speech.RATE,
                                  "channels": 1, "partials": False}))
        t0 = loop.time()

        async def send() -> None:
            step = speech.RATE // 10
            for k, i in enumerate(range(0, len(pcm), step)):
                await asyncio.sleep(max(0.0, t0 + k * 0.1 - loop.time()))
                await ws.send(pcm[i:i + step].astype("<i2").tobytes())
            await ws.send(json.dumps({"type": "audio_end", "id": sid}))

        sender = asyncio.create_task(send())
        async for raw in ws:
            f = json.loads(raw)
            now = loop.time() - t0
            if f["type"] == "transcript" and f["final"]:
                finals[f["segment"]] = (now, f)
            elif f["type"] == "token" and f["segment"] not in first_token:
                first_token[f["segment"]] = now
            elif f["type"] == "error":
                errors.append(f)
                if "segment" not in f:
                    break
            elif f["type"] == "audio_complete":
                break
        sender.cancel()
    # The segment that ends each phrase: the last final whose end lies near the phrase's end.
    to_final, to_token = [], []
    for m in marks:
        near = [(seg, t, f) for seg, (t, f) in finals.items()
                if m.start_s * 1000 < f["end_ms"] <= m.end_s * 1000 + 700]
        if not near:
            continue
        seg, t, _ = max(near, key=lambda x: x[2]["end_ms"])
        to_final.append(t - m.end_s)
        if seg in first_token:
            to_token.append(first_token[seg] - m.end_s)
    return {"to_final": to_final, "to_token": to_token, "errors": errors,
            "segments": len(finals), "phrases": len(marks)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    fin = [x for r in runs for x in r["to_final"]]
    tok = [x for r in runs for x in r["to_token"]]
    return {"phrases": sum(r["phrases"] for r in runs),
            "matched": len(fin), "errors": sum(len(r["errors"]) for r in runs),
            "final_transcript_s": {"p50": pct(fin, 50), "p95": pct(fin, 95)},
            "first_token_s": {"p50": pct(tok, 50), "p95": pct(tok, 95)}}


async def concurrent(url: str, k: int, audio: tuple[np.ndarray, list[speech.Utterance]],
                     targets: list[str]) -> dict[str, Any]:
    runs = await asyncio.gather(*(stream_phrases(url, audio[0], audio[1], targets, f"S{i}")
                                  for i in range(k)))
    return summarise(list(runs))


async def translate_all(http: str, texts: list[str], conc: int = 4) -> list[str]:
    import httpx

    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(base_url=http, timeout=120) as client:
        async def one(text: str) -> str:
            if not text.strip():
                return ""
            async with sem:
                r = await client.post("/v1/translate", json={"text": text, "source": "en",
                                                             "target": "fi", "stream": False})
                r.raise_for_status()
                return str(r.json()["translation"])
        return list(await asyncio.gather(*(one(t) for t in texts)))


# -- the whole run --------------------------------------------------------------------------

def run(ns: argparse.Namespace) -> dict[str, Any]:
    from tolk_server.api import FasterWhisper

    t_start = time.perf_counter()
    pairs = pick_sentences(ns.sentences)
    with ThreadPoolExecutor(2) as pool:
        clips = [] if ns.wer_from else list(pool.map(lambda p: speech.say(p.en), pairs))
    refs = [p.en for p in pairs]
    report: dict[str, Any] = {"machine": machine_info(), "sentences": len(pairs),
                              "tts": "espeak-ng en-us, 160 wpm", "recognisers": {}}
    hyps: list[str] = []
    if ns.wer_from:  # the recognition part of an earlier run (same sentences)
        earlier = json.loads(Path(ns.wer_from).read_text())
        report["recognisers"], hyps = earlier["recognisers"], earlier["hypotheses"]
        report["wer_run"] = {"file": ns.wer_from, "loadavg": earlier["machine"]["loadavg"]}
    else:
        recognisers: dict[str, Any] = {}
        if "whisper" in ns.recogniser:
            recognisers["faster-whisper tiny.en (bundled)"] = FasterWhisper(threads=ns.threads)
        if "pocketsphinx" in ns.recogniser:  # benchmark only: not a server backend
            from .sphinx import PocketSphinx

            recognisers["pocketsphinx en-us (bundled model)"] = PocketSphinx()
        for extra in ns.asr_model or []:
            recognisers[f"faster-whisper {Path(extra).name}"] = FasterWhisper(extra, ns.threads)
        for name, tr in recognisers.items():
            clean = wer_rtf(tr, clips, refs)
            noisy = wer_rtf(tr, [speech.add_noise(c, 20) for c in clips], refs)
            hyps = hyps or clean["hypotheses"]
            clean.pop("hypotheses")
            report["recognisers"][name] = {"clean": clean, "noise_20db": {"wer": noisy["wer"]}}
            print(name, clean, "noisy", noisy["wer"], file=sys.stderr, flush=True)
    report["hypotheses"] = hyps
    if ns.url or ns.serve:
        report.update(asyncio.run(_live(ns, pairs, hyps)))
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    return report


async def _live(ns: argparse.Namespace, pairs: list[Pair], hyps: list[str]) -> dict[str, Any]:
    import sacrebleu

    out: dict[str, Any] = {}
    server = None
    url = ns.url
    if url is None:
        port = free_port()
        env = child_env({**TOLK_BENCH_ENV, "TOLK_AUDIO_MAX_SPEED": "1.5"})
        cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", *ns.server_flag]
        server = ServerProcess("tolk", cmd, f"http://127.0.0.1:{port}/ready", env,
                               Path(ns.out).parent / "audio-server.log")
        server.start()
        url = f"http://127.0.0.1:{port}"
    ws_url = url.replace("http", "ws", 1)
    try:
        spoken = [p.en for p in pairs[: ns.phrases]]
        audio = await asyncio.to_thread(speech.phrases, spoken, "en", 1.0)
        out["latency_one_stream"] = await concurrent(ws_url, 1, audio, ["fi"])
        print("latency", out["latency_one_stream"], file=sys.stderr, flush=True)
        holds = 0
        out["concurrent_streams"] = {}
        short = await asyncio.to_thread(speech.phrases, spoken[: ns.conc_phrases], "en", 1.0)
        for k in ns.streams:
            res = await concurrent(ws_url, k, short, [])
            out["concurrent_streams"][str(k)] = res
            print("streams", k, res, file=sys.stderr, flush=True)
            p95 = res["final_transcript_s"]["p95"]
            if res["errors"] or p95 is None or p95 > HOLD_P95_S or res["matched"] < res[
                    "phrases"] * 0.9:
                break
            holds = k
        out["real_time_streams_held"] = holds
        refs_fi = [p.fi for p in pairs]
        from_speech = await translate_all(url, hyps)
        from_text = await translate_all(url, [p.en for p in pairs])
        out["chrf"] = {
            "speech_to_translation": round(sacrebleu.corpus_chrf(from_speech, [refs_fi]).score, 1),
            "text_to_translation": round(sacrebleu.corpus_chrf(from_text, [refs_fi]).score, 1)}
    finally:
        if server is not None:
            server.stop()
    return out


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sentences", type=int, default=100, help="for WER, RTF and chrF")
    p.add_argument("--phrases", type=int, default=20, help="phrases in the latency stream")
    p.add_argument("--conc-phrases", type=int, default=6, help="phrases per concurrent stream")
    p.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 2, 3, 4], help="concurrent stream counts to try, in order")
    p.add_argument("--threads", type=int, default=2, help="recogniser CPU threads (WER/RTF)")
    p.add_argument("--asr-model", action="append", help="another faster-whisper model dir")
    p.add_argument("--recogniser", type=lambda s: s.split(","), default=["whisper"],
                   help="built-in recognisers for WER/RTF: whisper, pocketsphinx (benchmark "
                        "only: pip install pocketsphinx); comma-separated")
    p.add_argument("--wer-from", help="reuse the WER/RTF part (and transcripts) of a report")
    p.add_argument("--url", help="a running tolk server (default: start one with --serve)")
    p.add_argument("--serve", action="store_true", help="start `tolk serve` for the live part")
    p.add_argument("--server-flag", action="append", default=[],
                   help="a flag for the started `tolk serve` (repeat)")
    p.add_argument("--out", default=str(RESULTS_DIR / "audio.json"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tolk_bench.audio", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    run_cli(p.parse_args(argv))


def run_cli(ns: argparse.Namespace) -> None:
    if not speech.available():
        sys.exit("the audio benchmark needs Debian's espeak-ng and sox")
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_report(run(ns), ns.out)


if __name__ == "__main__":
    main()
