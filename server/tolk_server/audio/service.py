"""What all audio streams share: the recogniser, its slots, the limits.

faster-whisper loads lazily on the first stream; an engine-backed recogniser (`VllmWhisper`) is
built by the app, started and stopped with the server (`start`/`shutdown`) and shown in /ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from tolk_server.audio.session import AudioLimits
from tolk_server.audio.transcriber import AnyTranscriber
from tolk_server.audio.vad import SileroActivity, VadConfig, VoiceActivity
from tolk_server.config import Settings


@runtime_checkable
class EngineTranscriber(Protocol):
    """A recogniser with an engine of its own, run for the server's lifetime."""

    @property
    def ready(self) -> bool: ...
    @property
    def dead(self) -> bool: ...
    async def start(self) -> None: ...
    async def shutdown(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...


class AudioService:
    def __init__(self, settings: Settings, transcriber: AnyTranscriber | None = None,
                 vad_factory: Callable[[], VoiceActivity] | None = None) -> None:
        self.settings = settings
        self._transcriber = transcriber
        self._loading = asyncio.Lock()
        self.slots = asyncio.Semaphore(settings.asr_workers)  # recognitions at once
        self.vad_factory: Callable[[], VoiceActivity] = vad_factory or SileroActivity
        self._idle_vads: list[VoiceActivity] = []  # made once, reused by later streams
        self.streams = 0  # audio streams open now (all connections)
        s = settings
        self.limits = AudioLimits(max_duration_s=s.audio_max_s, idle_timeout_s=s.audio_idle_s,
                                  max_speed=s.audio_max_speed, burst_s=s.audio_burst_s)
        self.vad_config = VadConfig(min_silence_ms=s.vad_silence_ms,
                                    max_segment_s=s.max_segment_s)

    def take_vad(self) -> VoiceActivity:
        """A voice-activity model: an idle one, else a new one (slow: call it off the loop)."""
        try:
            return self._idle_vads.pop()
        except IndexError:
            return self.vad_factory()

    def give_back_vads(self, vads: list[VoiceActivity]) -> None:
        """A closed stream's models, reset, for the next streams (at most one per stream the
        server admits, and its channels)."""
        for vad in vads:
            if len(self._idle_vads) < self.settings.max_audio_streams * 2:
                vad.reset()
                self._idle_vads.append(vad)

    @property
    def engine(self) -> EngineTranscriber | None:
        tr = self._transcriber
        return tr if isinstance(tr, EngineTranscriber) else None

    @property
    def unavailable(self) -> str | None:
        """Why audio streams are refused (None: they are accepted)."""
        if self._transcriber is None and self.settings.asr_backend == "off":
            return "speech input is off on this server"
        if (engine := self.engine) is not None:
            if engine.dead:
                return "the speech recognition engine died; text translation still works"
            if not engine.ready:
                return "the speech recognition engine is loading; retry shortly"
        return None

    async def start(self) -> None:
        if (engine := self.engine) is not None:
            await engine.start()

    async def shutdown(self) -> None:
        if (engine := self.engine) is not None:
            await engine.shutdown()

    def describe(self) -> dict[str, Any]:
        if (engine := self.engine) is not None:
            return engine.describe()
        s = self.settings
        loaded = self._transcriber is not None
        return {"backend": s.asr_backend, "model": s.asr_model or "tiny.en (bundled)",
                "state": "ready" if loaded else "loads on first use"}

    async def transcriber(self) -> AnyTranscriber:
        """The recogniser, loaded on first use (in a thread: it reads the model from disk)."""
        async with self._loading:
            if self._transcriber is None:
                self._transcriber = await asyncio.to_thread(self._load)
            return self._transcriber

    def _load(self) -> AnyTranscriber:
        s = self.settings
        from tolk_server.audio.transcriber import FasterWhisper

        return FasterWhisper(s.asr_model, threads=s.asr_threads)
