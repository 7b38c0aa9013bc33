"""Audio streams over /v1/stream: transcripts, per-phrase translations, bad input, disconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from tolk_bench import speech
from tolk_server.audio.service import AudioService
from tolk_server.audio.transcriber import EchoTranscriber, bundled_model_dir


def echo_client(make_client: Any, **settings: Any) -> tuple[TestClient, AudioService]:
    client: TestClient = make_client(audio_max_speed=1000.0, **settings)
    state = client.app.state.tolk  # type: ignore[attr-defined]
    svc = AudioService(state.settings, transcriber=EchoTranscriber())
    state.audio = svc
    return client, svc


def audio_start(**kw: Any) -> dict[str, Any]:
    return {"type": "audio_start", "id": "A1", "source": "en", "targets": ["fi"],
            "sample_rate": 16000, "channels": 1, "speakers": ["Chair"], **kw}


def send_pcm(ws: WebSocketTestSession, pcm: np.ndarray, chunk: int = 1600) -> None:
    data = pcm.astype("<i2").tobytes()
    step = chunk * 2 * (pcm.shape[1] if pcm.ndim == 2 else 1)
    for i in range(0, len(data), step):
        ws.send_bytes(data[i:i + step])


def until_complete(ws: WebSocketTestSession, rid: str = "A1") -> list[dict[str, Any]]:
    frames = []
    while True:
        f = ws.receive_json()
        frames.append(f)
        if (f.get("id") == rid and f["type"] in ("audio_complete",)) or (
                f["type"] == "error" and "segment" not in f):
            return frames


def test_audio_stream_transcribes_and_translates_each_phrase(make_client: Any,
                                                             phrases: np.ndarray) -> None:
    client, svc = echo_client(make_client)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start())
        send_pcm(ws, phrases)
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    done = frames[-1]
    assert done["type"] == "audio_complete" and done["segments"] == 2
    assert abs(done["audio_ms"] - len(phrases) / 16) <= 1
    finals = [f for f in frames if f["type"] == "transcript" and f["final"]]
    assert [f["segment"] for f in finals] == [0, 1]
    assert all(f["speaker"] == "Chair" and f["language"] == "en" for f in finals)
    assert finals[0]["end_ms"] < finals[1]["start_ms"] < done["audio_ms"]
    partials = [f for f in frames if f["type"] == "transcript" and not f["final"]]
    assert partials and all(p["segment"] in (0, 1) for p in partials)
    for seg in (0, 1):  # one translation per final phrase, tagged with segment/speaker/target
        mine = [f for f in frames if f.get("segment") == seg and f["type"] != "transcript"]
        assert mine[0]["type"] == "start" and mine[-1]["type"] == "complete"
        assert all(f["id"] == "A1" and f["speaker"] == "Chair" and f["target"] == "fi"
                   for f in mine)
        tokens = "".join(f["token"] for f in mine if f["type"] == "token")
        assert tokens == mine[-1]["translation"]
        # the final transcript precedes its translation
        assert frames.index(finals[seg]) < frames.index(mine[0])
    assert svc.streams == 0


def test_stereo_meeting_labels_speakers_by_channel(make_client: Any) -> None:
    client, _ = echo_client(make_client)
    two, _ = speech.meeting([(0, "Good morning everyone."), (1, "Good morning, Chair.")])
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start(channels=2, speakers=["Chair", "Member"], targets=[],
                                 sample_rate=16000, partials=False))
        send_pcm(ws, two)
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    finals = [f for f in frames if f["type"] == "transcript"]
    assert all(f["final"] for f in finals)  # partials off
    assert [f["speaker"] for f in finals] == ["Chair", "Member"]
    assert not [f for f in frames if f["type"] in ("start", "token", "complete")]  # no targets


def test_bad_audio_input_gets_clear_errors(make_client: Any, phrases: np.ndarray) -> None:
    client, svc = echo_client(make_client, audio_max_s=2.0)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(b"\x00\x00")
        err = ws.receive_json()
        assert err["code"] == "bad_request" and "before audio_start" in err["message"]
        ws.send_json(audio_start(sample_rate=96000))
        err = ws.receive_json()
        assert err["code"] == "bad_request" and "96000" in err["message"]
        ws.send_json(audio_start(channels=4))
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_json(audio_start(targets=["xx"]))
        assert ws.receive_json()["code"] == "unsupported_language"
        ws.send_json(audio_start())
        ws.send_json(audio_start(id="A2"))  # one stream per connection
        err = ws.receive_json()
        assert err == {"type": "error", "code": "bad_request", "id": "A2",
                       "message": err["message"]} and "already open" in err["message"]
        ws.send_bytes(b"\x00\x00\x00")  # odd byte count ends stream A1
        err = ws.receive_json()
        assert err["id"] == "A1" and "odd byte count" in err["message"]
        ws.send_bytes(b"\x00\x00")  # the failed stream's late frames are dropped quietly
        ws.send_json(audio_start(id="A3", targets=[]))
        send_pcm(ws, phrases)  # > 2 s: beyond the maximum duration
        frames = until_complete(ws, "A3")
        assert frames[-1]["code"] == "too_large" and frames[-1]["id"] == "A3"
        ws.send_json({"type": "ping"})
        while (f := ws.receive_json())["type"] != "pong":
            assert f["type"] == "transcript"
    assert svc.streams == 0


class LoadingEngine:
    """A recogniser with an engine of its own (as `VllmWhisper`) that is not up yet."""

    name, languages, ready, dead = "loading", (), False, False

    async def start(self) -> None: ...
    async def shutdown(self) -> None: ...
    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "state": "loading"}


def test_speech_off_or_unavailable_is_refused(make_client: Any) -> None:
    for backend, words in (("off", "off"), ("faster-whisper", "loading")):
        client: TestClient = make_client(asr_backend=backend)
        if backend != "off":
            state = client.app.state.tolk  # type: ignore[attr-defined]
            state.audio = AudioService(state.settings, transcriber=LoadingEngine())  # type: ignore[arg-type]
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            ws.send_json(audio_start())
            err = ws.receive_json()
            assert err["code"] == "bad_request" and words in err["message"], err
            ws.send_json({"type": "translate", "id": "t", "text": "Hello.", "target": "fi"})
            while (f := ws.receive_json())["type"] != "complete":  # text still works
                assert f["type"] in ("start", "token")


def test_too_fast_and_idle_senders_are_stopped(make_client: Any, phrases: np.ndarray) -> None:
    client: TestClient = make_client(audio_burst_s=1.0, audio_idle_s=0.5)
    state = client.app.state.tolk  # type: ignore[attr-defined]
    state.audio = AudioService(state.settings, transcriber=EchoTranscriber())
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start())
        send_pcm(ws, phrases)  # ~5 s of audio at once
        frames = until_complete(ws)
        assert frames[-1]["code"] == "overloaded" and "real time" in frames[-1]["message"]
        ws.send_json(audio_start(id="A2"))
        ws.send_bytes(b"\x00\x00" * 1600)
        t0 = time.monotonic()
        frames = until_complete(ws, "A2")  # no more audio, no audio_end
        assert frames[-1]["code"] == "bad_request" and "audio_end" in frames[-1]["message"]
        assert time.monotonic() - t0 < 3
    assert state.audio.streams == 0


def test_disconnect_mid_stream_frees_everything(make_client: Any, phrases: np.ndarray) -> None:
    client, _ = echo_client(make_client)
    state = client.app.state.tolk  # type: ignore[attr-defined]
    slow = EchoTranscriber(delay_s=0.3)
    state.audio = svc = AudioService(state.settings, transcriber=slow)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start())
        send_pcm(ws, phrases)
        while ws.receive_json()["type"] != "transcript":
            pass
        assert svc.streams == 1
    deadline = time.monotonic() + 5
    while svc.streams or state.connections or state.pipeline.admission.inflight:
        assert time.monotonic() < deadline, "audio stream not freed after disconnect"
        time.sleep(0.02)
    assert svc.streams == 0 and not state.connections and state.pipeline.admission.inflight == 0
    calls = slow.calls
    time.sleep(0.5)
    assert slow.calls <= calls + 1  # recognition stopped (at most the phrase in flight)


@pytest.fixture(scope="module")
def real_client() -> Iterator[TestClient]:
    from conftest import TINY_PROFILE, wait_ready
    from tolk_server.adapters.echo import EchoEngine
    from tolk_server.app.wiring import create_app
    from tolk_server.config import Settings

    app = create_app(Settings(engine="fake", audio_max_speed=1000.0), engine=EchoEngine(),
                     profile=TINY_PROFILE)
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.mark.skipif(bundled_model_dir() is None, reason="audio models not installed")
def test_default_recogniser_transcribes_espeak_speech(real_client: TestClient,
                                                      phrases: np.ndarray) -> None:
    import jiwer
    import soxr

    noisy = speech.add_noise(phrases, snr_db=20)
    wide = soxr.resample(noisy, 16000, 24000)
    with real_client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start(targets=[], sample_rate=24000, partials=False))
        send_pcm(ws, wide)  # 24 kHz in: resampled on the server
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    text = " ".join(f["text"] for f in frames if f["type"] == "transcript")
    wer = jiwer.wer("the meeting will begin shortly thank you madam president",
                    text.lower().replace(",", "").replace(".", ""))
    assert wer <= 0.3, text
