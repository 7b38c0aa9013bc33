"""Live translation of an audio stream's partial transcripts (`audio_start.live`) and the
stream's `quality`, over a real socket: the engine double and a recogniser double whose text
grows as a phrase is spoken."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from conftest import TINY_PROFILE
from tolk.realtime import AudioStream
from tolk_bench import speech
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.audio.pcm import Samples
from tolk_server.audio.service import AudioService
from tolk_server.audio.transcriber import Transcript
from tolk_server.audio.vad import VadConfig
from tolk_server.config import Settings

SCRIPT = "the committee will now consider the amendments to the budget one by one".split()


class GrowingTranscriber:
    """The script's first words, three per second of the phrase: a partial grows word by word."""

    name = "growing"
    languages: tuple[str, ...] = ("en",)

    def transcribe(self, samples: Samples, language: str | None = None) -> Transcript:
        return Transcript(" ".join(SCRIPT[:max(1, round(len(samples) / 16000 * 3))]), "en")


def in_order(prompt: str) -> str:
    """An engine rule whose hypotheses of a growing text agree: the source words in upper case,
    in order, continuing the forced prefix (the prompt is `<2fi>{text}<sep>{forced}`)."""
    source, _, forced = prompt.partition("<sep>")
    whole = " ".join(w.upper() for w in source.split(">", 1)[-1].split())
    return whole[len(forced):] if whole.startswith(forced) else whole


@pytest.fixture(scope="module")
def pcm() -> np.ndarray:
    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    audio, _ = speech.phrases(["The committee will now consider the amendments one by one.",
                               "Thank you."], pause_s=0.7)
    return audio


@pytest.fixture(scope="module")
def live_server() -> Iterator[tuple[str, EchoEngine, Any]]:
    from support.live_server import serve_in_thread

    engine = EchoEngine(token_delay_s=0.003)
    engine.translate = in_order
    # partials show the whole tentative text (no mask, no cap: not the server's default)
    app = create_app(Settings(engine="fake", audio_max_speed=100.0, live_mask_words=0,
                              live_tentative_words=0), engine=engine, profile=TINY_PROFILE)
    svc = AudioService(app.state.tolk.settings, transcriber=GrowingTranscriber())
    svc.vad_config = VadConfig(partial_every_ms=250)
    app.state.tolk.audio = svc
    with serve_in_thread(app, ws_max_size=2**20) as url:
        yield url.replace("http", "ws") + "/v1/stream", engine, app.state.tolk


def run_stream(url: str, pcm: np.ndarray, **start: Any) -> list[dict[str, Any]]:
    """Send the audio at 4 × real time; the frames up to `audio_complete`."""
    data = pcm.astype("<i2").tobytes()
    with connect(url) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(json.dumps({"type": "audio_start", "id": "A1", "source": "en",
                            "targets": ["fi"], "speakers": ["Chair"], **start}))
        for i in range(0, len(data), 3200):  # 100 ms
            ws.send(data[i:i + 3200])
            time.sleep(0.025)
        ws.send(json.dumps({"type": "audio_end", "id": "A1"}))
        frames = []
        while (f := json.loads(ws.recv(timeout=20)))["type"] != "audio_complete":
            assert f["type"] != "error" or "segment" in f, f
            frames.append(f)
    return frames


def test_partial_transcripts_are_translated_live(live_server: tuple[str, EchoEngine, Any],
                                                 pcm: np.ndarray) -> None:
    url, engine, _ = live_server
    frames = run_stream(url, pcm, live=True, quality="fast")
    said = [f for f in frames if f["type"] == "transcript" and f["segment"] == 0]
    out = [f for f in frames if f["type"] != "transcript" and f["segment"] == 0]
    assert len([f for f in said if not f["final"] and f["text"]]) >= 3
    assert out[0]["type"] == "start" and out[-1]["type"] == "complete"
    assert all(f["id"] == "A1" and f["speaker"] == "Chair" and f["target"] == "fi" for f in out)
    assert not [f for f in out if f["type"] == "token"]  # live: partials, then complete
    partials = [f for f in out if f["type"] == "partial"]
    assert len(partials) >= 2
    stable = ""
    for p in partials:  # the source only grows: stable never shrinks nor changes
        assert not p.get("reset") and p["stable"].startswith(stable), (stable, p)
        stable = p["stable"]
    assert [p["version"] for p in partials] == sorted(p["version"] for p in partials)
    assert any(p["tentative"] for p in partials[:-1])
    assert partials[-2]["stable"]  # stable text came before the phrase was final
    final = next(f for f in said if f["final"])
    done = out[-1]
    # the first partial translation precedes the final transcript; the complete follows it
    assert frames.index(partials[0]) < frames.index(final) < frames.index(done)
    assert done["translation"] == partials[-1]["stable"] and partials[-1]["tentative"] == ""
    assert done["quality"] == "fast" and done["live"]["updates"] >= 2
    assert done["translation"] == final["text"].upper()  # the final transcript, translated
    for seg in {f["segment"] for f in frames}:  # exactly one terminal frame per phrase
        assert len([f for f in frames if f.get("segment") == seg
                    and f["type"] in ("complete", "error")]) == 1
    assert engine.running() == 0


def test_quality_reaches_each_phrase_translation(live_server: tuple[str, EchoEngine, Any],
                                                 pcm: np.ndarray) -> None:
    url, _, _ = live_server
    frames = run_stream(url, pcm[: 16000 * 2], quality="quality", partials=False)
    done = [f for f in frames if f["type"] == "complete"]
    assert done and all(f["quality"] == "quality" for f in done)
    frames = run_stream(url, pcm[: 16000 * 2])
    assert all(f["quality"] == "balanced" for f in frames if f["type"] == "complete")
    with connect(url) as ws:  # a mode that does not exist, or live without partials
        ws.recv()
        for bad in ({"quality": "best"}, {"live": True, "partials": False}):
            ws.send(json.dumps({"type": "audio_start", "id": "A2", **bad}))
            assert json.loads(ws.recv())["code"] == "bad_request"


async def test_sdk_exposes_live_translations(live_server: tuple[str, EchoEngine, Any],
                                             pcm: np.ndarray) -> None:
    url, _, _ = live_server

    async def chunks() -> Any:
        data = pcm.astype("<i2").tobytes()
        for i in range(0, len(data), 3200):
            yield data[i:i + 3200]
            await asyncio.sleep(0.025)

    audio = AudioStream(source=chunks(), url=url, language="en", speakers=["Chair"])
    seen: list[tuple[int, bool, str, str, bool]] = []
    finals = {}
    async for seg in audio.translate(target="fi", live=True):  # each change of a phrase
        tr = seg.translation
        seen.append((seg.segment, seg.final, tr.stable, tr.tentative, tr.done))
        if seg.final:
            finals[seg.segment] = seg
    assert sorted(finals) == [0, 1] and seen[-1][4]  # ends with a translation done
    first = [s for s in seen if s[0] == 0]
    assert any(not final and (stable or tentative) for _, final, stable, tentative, _ in first)
    for seg in finals.values():
        text = await seg.translation
        assert text == seg.translation.text == seg.translation.stable != ""
        assert seg.translation.complete is not None and seg.translation.tentative == ""


def test_disconnect_mid_phrase_frees_live_requests(live_server: tuple[str, EchoEngine, Any],
                                                   pcm: np.ndarray) -> None:
    url, engine, state = live_server
    data = pcm.astype("<i2").tobytes()
    with connect(url) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "audio_start", "id": "A1", "source": "en",
                            "targets": ["fi"], "live": True}))
        for i in range(0, len(data), 3200):
            ws.send(data[i:i + 3200])
            time.sleep(0.025)
            with contextlib.suppress(TimeoutError):
                if json.loads(ws.recv(timeout=0))["type"] == "partial":
                    break  # a live request is open: leave in the middle of the phrase
        else:
            pytest.fail("no partial translation")
    deadline = time.monotonic() + 5
    while state.audio.streams or state.pipeline.admission.inflight or engine.running():
        assert time.monotonic() < deadline, "live requests not freed after the disconnect"
        time.sleep(0.02)
