"""Whisper served by vLLM (`--asr-backend vllm`): the real engine on a tiny random Whisper.

The weights are random, so the text is gibberish: these tests check the plumbing (frames,
one final per phrase, language detection, lifecycle, /ready), not the words.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from test_audio_ws import LoadingEngine, audio_start, send_pcm, until_complete

from tolk_server.adapters.vllm_transcriber import VllmWhisper, decoder_prompt, is_multilingual
from tolk_server.audio.service import AudioService
from tolk_server.audio.transcriber import bundled_model_dir
from tolk_server.config import Settings


def _whisper_in_vllm() -> bool:
    return importlib.util.find_spec("vllm.model_executor.models.whisper") is not None


needs_whisper = pytest.mark.skipif(
    not _whisper_in_vllm() or bundled_model_dir() is None,
    reason="vLLM without Whisper support, or no Whisper tokenizer (make audio-models)")


def test_task_prompt_and_multilingual_flag(tmp_path: Path) -> None:
    assert decoder_prompt("fi", True) == (
        "<|startoftranscript|><|fi|><|transcribe|><|notimestamps|>")
    assert decoder_prompt(None, False) == "<|startoftranscript|><|notimestamps|>"
    (tmp_path / "config.json").write_text('{"vocab_size": 51864}')
    assert not is_multilingual(tmp_path)  # an English-only checkpoint
    (tmp_path / "generation_config.json").write_text('{"is_multilingual": true}')
    assert is_multilingual(tmp_path)


def test_vllm_backend_needs_weights_and_refuses_audio_until_loaded(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="--asr-model PATH"):
        Settings(engine="fake", asr_backend="vllm")
    with pytest.raises(FileNotFoundError, match="HF-format Whisper"):
        VllmWhisper(Settings(engine="fake", asr_backend="vllm", asr_model=str(tmp_path)),
                    str(tmp_path))

    engine = LoadingEngine()
    svc = AudioService(Settings(engine="fake"), transcriber=engine)  # type: ignore[arg-type]
    assert svc.unavailable is not None and "loading" in svc.unavailable
    engine.dead = True
    assert svc.unavailable is not None and "died" in svc.unavailable


@pytest.fixture(scope="module")
def whisper_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from conftest import TINY_PROFILE, wait_ready
    from support.tiny_whisper import build_tiny_whisper
    from tolk_server.adapters.echo import EchoEngine
    from tolk_server.app.wiring import create_app

    tokenizer = bundled_model_dir()
    assert tokenizer is not None
    model = build_tiny_whisper(tmp_path_factory.mktemp("whisper"), tokenizer / "tokenizer.json")
    settings = Settings(engine="fake", asr_backend="vllm", asr_model=str(model),
                        audio_max_speed=1000.0, asr_workers=2)
    app = create_app(settings, engine=EchoEngine(), profile=TINY_PROFILE)
    with TestClient(app) as client:
        wait_ready(client, timeout_s=180)  # the recogniser's engine starts with the server
        yield client
    assert app.state.tolk.audio.engine.describe()["state"] == "stopped"  # with the server


@needs_whisper
def test_whisper_on_vllm_transcribes_and_translates_each_phrase(
        whisper_client: TestClient, phrases: np.ndarray) -> None:
    asr = whisper_client.get("/ready").json()["asr"]
    assert asr["backend"] == "vllm" and asr["state"] == "ready" and asr["multilingual"]
    with whisper_client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start())  # source "en", target fi
        send_pcm(ws, phrases)
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    done = frames[-1]
    assert done["type"] == "audio_complete" and done["segments"] == 2, frames[-3:]
    finals = [f for f in frames if f["type"] == "transcript" and f["final"]]
    assert [f["segment"] for f in finals] == [0, 1]  # exactly one final per phrase
    assert all(f["language"] == "en" and f["speaker"] == "Chair" for f in finals)
    assert all(isinstance(f["text"], str) and f["text"].strip() for f in finals)  # gibberish
    for seg in (0, 1):  # each final phrase's translation streams, tagged with its segment
        mine = [f for f in frames if f.get("segment") == seg and f["type"] != "transcript"]
        assert mine[0]["type"] == "start" and mine[-1]["type"] == "complete", mine


@needs_whisper
def test_whisper_on_vllm_detects_the_language_with_auto(
        whisper_client: TestClient, phrases: np.ndarray) -> None:
    with whisper_client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json(audio_start(source="auto", targets=[], partials=False))
        send_pcm(ws, phrases)
        ws.send_json({"type": "audio_end", "id": "A1"})
        frames = until_complete(ws)
    assert frames[-1]["type"] == "audio_complete" and frames[-1]["segments"] == 2, frames[-3:]
    finals = [f for f in frames if f["type"] == "transcript"]
    assert len(finals) == 2 and all(f["final"] for f in finals), finals
    # Whisper's language token, parsed: one of its codes (random weights pick any).
    from vllm.model_executor.models.whisper import WhisperForConditionalGeneration as W

    assert all(f["language"] in W.supported_languages for f in finals), finals
