"""One audio stream as a sans-I/O state machine: no sockets, no threads, no clocks of its own.

audio_start → binary frames (`feed`) → audio_end (`end`). The machine cuts each channel into
phrases, asks for recognition (`Recognise`), turns results into `transcript` frames and, for
each final phrase with text, a translation request (`Translate`). Times come in as `now`
(seconds, any monotonic clock). Errors are `ProtocolError`s carrying the stream's id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tolk.protocol import (
    AudioCompleteFrame,
    AudioStartFrame,
    ErrorCode,
    ProtocolError,
    TranscriptFrame,
)
from tolk.protocol import audio_complete as audio_complete_frame
from tolk.protocol import transcript as transcript_frame
from tolk_server.audio.diarizer import ChannelDiarizer, Diarizer
from tolk_server.audio.pcm import TARGET_RATE, PcmError, Resampler, check_format, decode_s16le
from tolk_server.audio.transcriber import Transcript
from tolk_server.audio.vad import Phrase, Segmenter, VadConfig, VoiceActivity


@dataclass(frozen=True)
class AudioLimits:
    max_duration_s: float = 4 * 3600.0  # one stream's audio
    idle_timeout_s: float = 10.0  # no audio and no audio_end for this long: error
    max_speed: float = 1.5  # sustained audio seconds per wall second
    burst_s: float = 5.0  # audio allowed ahead of the wall clock
    max_pending: int = 8  # final phrases awaiting recognition before `overloaded`


@dataclass(frozen=True)
class Recognise:
    """Run the recogniser on a phrase; hand the result to `AudioSession.recognised`."""

    segment: int
    speaker: str
    samples: np.ndarray = field(repr=False)
    start_ms: int
    end_ms: int
    final: bool


@dataclass(frozen=True)
class Translate:
    """Translate a phrase into the stream's targets: a final phrase, or (with `live`) a
    partial one, whose text then drives the phrase's live requests until its final."""

    segment: int
    speaker: str
    text: str
    language: str | None  # None: let the translator detect it
    final: bool = True


class AudioSession:
    def __init__(self, start: AudioStartFrame, now: float,
                 vad_factory: Callable[[], VoiceActivity],
                 vad_config: VadConfig | None = None, limits: AudioLimits | None = None,
                 diarizer: Diarizer | None = None) -> None:
        self.id = start.id
        self.start = start
        self.limits = limits or AudioLimits()
        try:
            check_format(start.sample_rate, start.channels)
        except PcmError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc), start.id) from None
        # A label per channel: one segmenter per channel. Otherwise mix down to one.
        self.split = start.channels > 1 and len(start.speakers) == start.channels
        lanes = start.channels if self.split else 1
        self.diarizer = diarizer or ChannelDiarizer(list(start.speakers), lanes)
        self.resampler = Resampler(start.sample_rate, start.channels)
        cfg = vad_config or VadConfig()
        if not start.partials:
            cfg = VadConfig(**{**cfg.__dict__, "partial_every_ms": 0})
        self.lanes = [Segmenter(vad_factory(), cfg) for _ in range(lanes)]
        self._open: list[tuple[int, int] | None] = [None] * lanes  # (phrase start, segment)
        self.t0 = now
        self.last_audio = now
        self.frames_in = 0  # sample frames received, at the client's rate
        self.next_segment = 0
        self.finals = 0  # final transcripts sent
        self.live_open: set[int] = set()  # segments whose partials are translated live
        self.pending_finals = 0
        self.ended = False

    @property
    def audio_ms(self) -> int:
        return int(self.frames_in * 1000 / self.start.sample_rate)

    @property
    def buffered_samples(self) -> int:
        return sum(s.buffered_samples for s in self.lanes)

    def _fail(self, code: ErrorCode, message: str) -> ProtocolError:
        return ProtocolError(code, message, self.id)

    def feed(self, data: bytes, now: float) -> list[Recognise]:
        if self.ended:
            raise self._fail(ErrorCode.BAD_REQUEST, "audio after audio_end")
        try:
            frames = decode_s16le(data, self.start.channels)
        except PcmError as exc:
            raise self._fail(ErrorCode.BAD_REQUEST, str(exc)) from None
        self.frames_in += len(frames)
        self.last_audio = now
        seconds = self.frames_in / self.start.sample_rate
        if seconds > self.limits.max_duration_s:
            raise self._fail(ErrorCode.TOO_LARGE,
                             f"audio exceeds {self.limits.max_duration_s:.0f} s")
        ahead = seconds - (now - self.t0) * self.limits.max_speed
        if ahead > self.limits.burst_s:
            raise self._fail(ErrorCode.OVERLOADED, "audio arrives faster than real time; "
                             "send it at the speed it is spoken")
        return self._push(self.resampler.push(frames))

    def end(self) -> list[Recognise]:
        """audio_end: the phrases in progress become final."""
        if self.ended:
            raise self._fail(ErrorCode.BAD_REQUEST, "audio_end was already sent")
        self.ended = True
        tail = self.resampler.push(np.zeros((0, self.start.channels), np.float32), last=True)
        jobs = self._push(tail)
        for lane, seg in enumerate(self.lanes):
            jobs += [self._job(lane, p) for p in seg.flush()]
        return jobs

    def idle(self, now: float) -> bool:
        return not self.ended and now - self.last_audio > self.limits.idle_timeout_s

    def _push(self, frames: np.ndarray) -> list[Recognise]:
        if not len(frames):
            return []
        jobs: list[Recognise] = []
        if self.split:
            for lane, seg in enumerate(self.lanes):
                lane_audio = np.ascontiguousarray(frames[:, lane])
                jobs += [self._job(lane, p) for p in seg.push(lane_audio)]
        else:
            mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
            jobs += [self._job(0, p) for p in self.lanes[0].push(np.ascontiguousarray(mono))]
        return jobs

    def _job(self, lane: int, phrase: Phrase) -> Recognise:
        open_ = self._open[lane]
        if open_ is not None and open_[0] == phrase.start:
            segment = open_[1]
        else:
            segment = self.next_segment
            self.next_segment += 1
        self._open[lane] = None if phrase.final else (phrase.start, segment)
        if phrase.final:
            self.pending_finals += 1
            if self.pending_finals > self.limits.max_pending:
                raise self._fail(ErrorCode.OVERLOADED, "speech recognition cannot keep up")
        return Recognise(segment, self.diarizer.speaker(lane, phrase.samples), phrase.samples,
                         phrase.start * 1000 // TARGET_RATE, phrase.end * 1000 // TARGET_RATE,
                         phrase.final)

    def recognised(self, job: Recognise, result: Transcript
                   ) -> tuple[TranscriptFrame, Translate | None]:
        """A recognition result: its transcript frame, and for a final phrase what to translate."""
        source = self.start.source if self.start.source != "auto" else None
        language = result.language or source or "und"
        frame = transcript_frame(self.id, job.segment, job.speaker, language, job.start_ms,
                                 job.end_ms, result.text, job.final)
        language_in = source or result.language
        if not job.final:
            # With `live`, a partial's text is the live input of the phrase's translation.
            if not (self.start.live and self.start.targets and result.text):
                return frame, None
            self.live_open.add(job.segment)
            return frame, Translate(job.segment, job.speaker, result.text, language_in, False)
        self.pending_finals -= 1
        self.finals += 1
        todo = None
        live = job.segment in self.live_open
        self.live_open.discard(job.segment)
        if (result.text or live) and self.start.targets:  # an open live request ends too
            todo = Translate(job.segment, job.speaker, result.text, language_in)
        return frame, todo

    def complete(self) -> AudioCompleteFrame:
        return audio_complete_frame(self.id, self.finals, self.audio_ms)
