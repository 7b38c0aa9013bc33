"""Server-frame builders of the audio path (`transcript`, `audio_complete`)."""

from __future__ import annotations

from .types import AudioCompleteFrame, TranscriptFrame


def transcript(rid: str, segment: int, speaker: str, language: str, start_ms: int,
               end_ms: int, text: str, final: bool) -> TranscriptFrame:
    return {"type": "transcript", "id": rid, "segment": segment, "speaker": speaker,
            "language": language, "start_ms": start_ms, "end_ms": end_ms, "text": text,
            "final": final}


def audio_complete(rid: str, segments: int, audio_ms: int) -> AudioCompleteFrame:
    return {"type": "audio_complete", "id": rid, "segments": segments, "audio_ms": audio_ms}
