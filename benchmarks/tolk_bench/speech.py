"""Offline test speech: espeak-ng voices, pauses, noise mixed with sox, a stereo meeting.

Generated on demand (cheap) and kept out of git. Needs Debian's `espeak-ng` and `sox`.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16_000
VOICES = {"en": "en-us", "fi": "fi"}
Pcm = npt.NDArray[np.int16]


def available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def say(text: str, lang: str = "en", voice: str | None = None, speed: int = 160) -> Pcm:
    """One utterance as 16 kHz mono int16 (espeak-ng → sox resampling)."""
    espeak = subprocess.run(
        ["espeak-ng", "-v", voice or VOICES.get(lang, lang), "-s", str(speed), "--stdout", text],
        check=True, capture_output=True, timeout=60,
    ).stdout
    raw = subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16",
         "-e", "signed-integer", "-"],
        input=espeak, check=True, capture_output=True, timeout=60,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").copy()


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


@dataclass(frozen=True)
class Utterance:
    text: str
    speaker: int  # channel
    start_s: float
    end_s: float


def phrases(texts: list[str], lang: str = "en", pause_s: float = 0.8, lead_s: float = 0.3,
            voice: str | None = None) -> tuple[Pcm, list[Utterance]]:
    """Sentences with pauses between them (mono), and where each one lies."""
    parts = [silence(lead_s)]
    marks: list[Utterance] = []
    t = lead_s
    for text in texts:
        pcm = say(text, lang, voice)
        marks.append(Utterance(text, 0, t, t + len(pcm) / RATE))
        parts += [pcm, silence(pause_s)]
        t += len(pcm) / RATE + pause_s
    return np.concatenate(parts), marks


def meeting(turns: list[tuple[int, str]], pause_s: float = 0.6,
            voices: tuple[str, str] = ("en-us", "en-gb+m3")) -> tuple[Pcm, list[Utterance]]:
    """A two-speaker stereo meeting: turn k's speaker talks on their channel, the other is quiet.

    Returns (frames, 2) int16 and the utterances in order.
    """
    chans: list[list[Pcm]] = [[silence(0.3)], [silence(0.3)]]
    marks: list[Utterance] = []
    t = 0.3
    for who, text in turns:
        pcm = say(text, voice=voices[who])
        gap = silence(len(pcm) / RATE)
        chans[who].append(pcm)
        chans[1 - who].append(gap)
        marks.append(Utterance(text, who, t, t + len(pcm) / RATE))
        for c in chans:
            c.append(silence(pause_s))
        t += len(pcm) / RATE + pause_s
    left, right = np.concatenate(chans[0]), np.concatenate(chans[1])
    return np.stack([left, right], axis=1), marks


def add_noise(pcm: Pcm, snr_db: float = 20.0) -> Pcm:
    """Mix in sox's pink noise (repeatable: `-R`) at `snr_db` below the speech level."""
    n = len(pcm)
    raw = subprocess.run(
        ["sox", "-R", "-r", str(RATE), "-n", "-t", "raw", "-r", str(RATE), "-c", "1",
         "-b", "16", "-e", "signed-integer", "-", "synth", f"{n}s", "pinknoise", "vol", "0.5"],
        check=True, capture_output=True, timeout=60,
    ).stdout
    noise = np.frombuffer(raw, dtype="<i2").astype(np.float64)[:n]
    speech = pcm.astype(np.float64).reshape(n, -1)
    level = np.sqrt(np.mean(speech[np.abs(speech) > 100] ** 2)) if np.any(speech) else 1.0
    scale = level / (np.sqrt(np.mean(noise ** 2)) or 1.0) * 10 ** (-snr_db / 20)
    mixed = speech + (noise * scale)[:, None]
    return np.clip(mixed, -32768, 32767).astype(np.int16).reshape(pcm.shape)


def write_wav(path: Path, pcm: Pcm, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path
