"""Live speech: `AudioStream` sends audio to a tolk server and yields transcribed phrases.

    from tolk.realtime import AudioStream

    audio = AudioStream(file="meeting.wav")            # or source=<async iterable of PCM bytes>,
    async for segment in audio.transcribe():           # or device="microphone" (sounddevice)
        print(segment.speaker, segment.text)

    async for segment in AudioStream(file="meeting.wav").translate(target="fi"):
        async for token in segment.translation:        # the phrase's translation, streaming
            print(token, end="")

    async for segment in AudioStream(file="meeting.wav").translate(target="fi", live=True):
        tr = segment.translation                       # every change of a phrase, while spoken
        print(segment.segment, segment.text, tr.stable, tr.tentative, tr.done)

One `AudioStream` is one audio stream over its own `/v1/stream` connection (`audio_start`,
binary PCM s16le frames, `audio_end`). Files are sent at the speed they play (`pace=1.0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
import wave
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import stream_url
from ._exceptions import TolkError, error_from_frame

__all__ = ["AudioStream", "Segment", "SegmentTranslation"]

CHUNK_MS = 100


class SegmentTranslation:
    """A phrase's translation into one language: `async for token in ...`, then `.text`.

    Live (`translate(live=True)`): `.stable` (settled) and `.tentative` (may still change)
    follow the phrase's partial transcripts, `.text` is their sum; the final translation comes
    as one chunk at the end (`async for` and `await` work as without `live`).
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.text = ""
        self.stable = ""
        self.tentative = ""
        self.complete: dict[str, Any] | None = None  # the `complete` frame
        self.error: TolkError | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._streamed = False  # tokens came (not live)
        self.done = False

    def _push(self, token: str) -> None:
        self._streamed = True
        self.text += token
        self._queue.put_nowait(token)

    def _partial(self, stable: str, tentative: str) -> None:
        self.stable, self.tentative = stable, tentative
        self.text = stable + tentative

    def _finish(self, error: TolkError | None = None,
                complete: dict[str, Any] | None = None) -> None:
        if complete is not None:
            self.complete = complete
            if not self._streamed:  # live: the final translation as one chunk
                self.text = ""
                self._push(str(complete["translation"]))
            self.stable, self.tentative = self.text, ""
        self.error, self.done = error, True
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._tokens()

    async def _tokens(self) -> AsyncIterator[str]:
        while (token := await self._queue.get()) is not None:
            yield token
        if self.error is not None:
            raise self.error

    def __await__(self) -> Any:
        async def whole() -> str:
            async for _ in self:
                pass
            return self.text
        return whole().__await__()


@dataclass
class Segment:
    """One phrase: `.start`/`.end` in seconds from the stream's start."""

    segment: int
    speaker: str
    text: str
    language: str
    start: float
    end: float
    final: bool
    translations: dict[str, SegmentTranslation] = field(default_factory=dict, repr=False)

    @property
    def translation(self) -> SegmentTranslation:
        """The translation (the only target, or the first one)."""
        return next(iter(self.translations.values()))


class AudioStream:
    """Audio from a WAV file, an async iterable of PCM bytes, or the microphone."""

    def __init__(self, file: str | os.PathLike[str] | None = None, *,
                 source: AsyncIterable[bytes] | None = None, device: str | None = None,
                 sample_rate: int = 16000, channels: int = 1, language: str = "auto",
                 speakers: list[str] | None = None, url: str | None = None,
                 api_key: str | None = None, pace: float | None = 1.0) -> None:
        if sum(x is not None for x in (file, source, device)) != 1:
            raise ValueError("give exactly one of file=, source= or device=")
        self.file = Path(file) if file is not None else None
        self.source = source
        self.device = device
        self.sample_rate, self.channels = sample_rate, channels
        if self.file is not None:
            with wave.open(str(self.file), "rb") as w:
                if w.getsampwidth() != 2:
                    raise ValueError(f"{self.file}: only 16-bit PCM WAV files are supported")
                self.sample_rate, self.channels = w.getframerate(), w.getnchannels()
        self.language = language
        self.speakers = list(speakers or [])
        self.url = stream_url(url)
        self.api_key = api_key if api_key is not None else os.environ.get("TOLK_API_KEY")
        self.pace = pace
        self.id = f"audio-{uuid.uuid4().hex[:8]}"
        #: The `audio_complete` frame once the stream is over.
        self.summary: dict[str, Any] | None = None

    async def transcribe(self, partials: bool = False) -> AsyncIterator[Segment]:
        """Final phrases as they are recognised (and the partials, with `partials=True`)."""
        async for seg in self._run([], partials):
            if seg.final or partials:
                yield seg

    async def translate(self, target: str | None = None, targets: list[str] | None = None,
                        *, live: bool = False, quality: str | None = None,
                        ) -> AsyncIterator[Segment]:
        """Final phrases, each with its translation(s) streaming in `segment.translation`.

        `live=True`: a phrase is translated while it is spoken; its `Segment` is yielded at
        every change of its transcript (`.text`, `.final`) or translation (`.translation`'s
        `.stable`, `.tentative`, `.done`). `quality`: the mode of every translation.
        """
        langs = list(targets or ([target] if target else []))
        if not langs:
            raise ValueError("give target= or targets=")
        async for seg in self._run(langs, live, live=live, quality=quality):
            if seg.final or live:
                yield seg

    # -- the connection ------------------------------------------------------------------

    async def _run(self, targets: list[str], partials: bool, live: bool = False,
                   quality: str | None = None) -> AsyncIterator[Segment]:
        from websockets.asyncio.client import connect

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        async with connect(self.url, additional_headers=headers, max_size=2**22) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") == "error":
                raise error_from_frame(hello)
            start: dict[str, Any] = {
                "type": "audio_start", "id": self.id, "source": self.language,
                "targets": targets, "sample_rate": self.sample_rate, "channels": self.channels,
                "speakers": self.speakers, "partials": partials}
            if live:
                start["live"] = True
            if quality is not None:
                start["quality"] = quality
            await ws.send(json.dumps(start))
            # A reader task keeps reading while the caller awaits a phrase's translation.
            out: asyncio.Queue[Segment | BaseException | None] = asyncio.Queue()
            open_: dict[int, Segment] = {}
            sender = asyncio.create_task(self._send(ws))
            reader = asyncio.create_task(self._read(ws, out, open_, targets, live))
            try:
                while (item := await out.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                for task in (sender, reader):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                for seg in open_.values():
                    for tr in seg.translations.values():
                        if not tr.done:
                            tr._finish(TolkError("the audio stream ended"))

    async def _read(self, ws: Any, out: asyncio.Queue[Segment | BaseException | None],
                    open_: dict[int, Segment], targets: list[str], live: bool) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                seg = self._on_frame(frame, open_, targets, live)
                if seg is not None:
                    out.put_nowait(seg)
                if frame.get("type") == "audio_complete" and frame.get("id") == self.id:
                    self.summary = frame
                    break
            else:
                raise TolkError("the connection closed before audio_complete")
            # translations still streaming after audio_complete cannot happen: the server
            # sends audio_complete once every phrase's translation is done
            out.put_nowait(None)
        except BaseException as exc:
            out.put_nowait(exc)
            if not isinstance(exc, Exception):
                raise

    def _on_frame(self, frame: dict[str, Any], open_: dict[int, Segment],
                  targets: list[str], live: bool = False) -> Segment | None:
        kind = frame.get("type")
        if frame.get("id") != self.id:
            return None
        if kind == "transcript":
            seg = Segment(int(frame["segment"]), str(frame["speaker"]), str(frame["text"]),
                          str(frame["language"]), frame["start_ms"] / 1000,
                          frame["end_ms"] / 1000, bool(frame["final"]))
            known = open_.get(seg.segment)
            if known is not None:  # live: the phrase's translations go on
                seg.translations = known.translations
                open_[seg.segment] = seg
                if seg.final and all(t.done for t in seg.translations.values()):
                    open_.pop(seg.segment)
            elif (seg.final or live) and seg.text and targets:
                seg.translations = {t: SegmentTranslation(t) for t in targets}
                open_[seg.segment] = seg
            return seg
        if "segment" not in frame:
            if kind == "error":
                raise error_from_frame(frame)
            return None
        seg_ = open_.get(int(frame["segment"]))
        tr = seg_.translations.get(str(frame.get("target"))) if seg_ else None
        if seg_ is None or tr is None:
            return None
        if kind == "token":
            tr._push(str(frame["token"]))
        elif kind == "segment":
            tr._push(str(frame["text"]))
        elif kind == "partial":
            tr._partial(str(frame["stable"]), str(frame["tentative"]))
        elif kind in ("complete", "error"):
            tr._finish(error_from_frame(frame) if kind == "error" else None,
                       frame if kind == "complete" else None)
            if all(t.done for t in seg_.translations.values()) and seg_.final:
                open_.pop(seg_.segment, None)
        return seg_ if live and kind in ("partial", "complete", "error") else None

    async def _send(self, ws: Any) -> None:
        async for chunk in self._chunks():
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "audio_end", "id": self.id}))

    def _chunks(self) -> AsyncIterator[bytes]:
        if self.file is not None:
            return _wav_chunks(self.file, self.pace)
        if self.source is not None:
            return _passthrough(self.source)
        return _microphone(self.sample_rate, self.channels)


async def _passthrough(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for chunk in source:
        if chunk:
            yield bytes(chunk)


async def _wav_chunks(path: Path, pace: float | None) -> AsyncIterator[bytes]:
    """The file in 100 ms chunks, at `pace` × real time (None: as fast as it reads)."""
    loop = asyncio.get_running_loop()
    with wave.open(str(path), "rb") as w:
        frames = w.getframerate() * CHUNK_MS // 1000
        t0 = loop.time()
        sent = 0.0
        while data := w.readframes(frames):
            yield data
            sent += CHUNK_MS / 1000
            if pace:
                await asyncio.sleep(max(0.0, t0 + sent / pace - loop.time()))


async def _microphone(rate: int, channels: int) -> AsyncIterator[bytes]:
    """The default input device through `sounddevice` (the `mic` extra), until cancelled."""
    try:
        import sounddevice
    except ImportError as exc:
        raise RuntimeError("the microphone needs `pip install tolk[mic]` (sounddevice)") from exc
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100)

    def put(chunk: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # the consumer is behind: drop audio
            queue.put_nowait(chunk)

    def callback(data: Any, frames: int, time_: Any, status: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(put, bytes(data))

    with sounddevice.RawInputStream(samplerate=rate, channels=channels, dtype="int16",
                                    blocksize=rate * CHUNK_MS // 1000, callback=callback):
        while True:
            yield await queue.get()
