"""What all audio streams share: the recogniser (loaded once, lazily), its slots, the limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import Settings
from .session import AudioLimits
from .transcriber import Transcriber
from .vad import SileroActivity, VadConfig, VoiceActivity


class AudioService:
    def __init__(self, settings: Settings, transcriber: Transcriber | None = None,
                 vad_factory: Callable[[], VoiceActivity] | None = None) -> None:
        self.settings = settings
        self._transcriber = transcriber
        self._loading = asyncio.Lock()
        self.slots = asyncio.Semaphore(settings.asr_workers)  # recognitions at once
        self.vad_factory: Callable[[], VoiceActivity] = vad_factory or SileroActivity
        self.streams = 0  # audio streams open now (all connections)
        s = settings
        self.limits = AudioLimits(max_duration_s=s.audio_max_s, idle_timeout_s=s.audio_idle_s,
                                  max_speed=s.audio_max_speed, burst_s=s.audio_burst_s)
        self.vad_config = VadConfig(min_silence_ms=s.vad_silence_ms,
                                    max_segment_s=s.max_segment_s)

    @property
    def enabled(self) -> bool:
        return self._transcriber is not None or self.settings.asr_backend != "off"

    async def transcriber(self) -> Transcriber:
        """The recogniser, loaded on first use (in a thread: it reads the model from disk)."""
        async with self._loading:
            if self._transcriber is None:
                self._transcriber = await asyncio.to_thread(self._load)
            return self._transcriber

    def _load(self) -> Transcriber:
        s = self.settings
        if s.asr_backend == "vllm":
            raise RuntimeError("asr_backend=vllm is not available in this build")
        from .transcriber import FasterWhisper

        return FasterWhisper(s.asr_model, threads=s.asr_threads)
