"""PCM s16le decoding, channel de-interleaving and streaming resampling to 16 kHz."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

TARGET_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000
MAX_CHANNELS = 2

Samples = npt.NDArray[np.float32]


class PcmError(ValueError):
    """Bytes that are not whole s16le frames of the announced channel count."""


def check_format(sample_rate: int, channels: int) -> None:
    """Raise `PcmError` for a rate or channel count the server does not take."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise PcmError(f"sample_rate {sample_rate} is not supported; use {MIN_RATE}–{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise PcmError(f"channels {channels} is not supported; use 1–{MAX_CHANNELS}")


def decode_s16le(data: bytes, channels: int) -> Samples:
    """Interleaved s16le bytes → float32 array shaped (frames, channels), in [-1, 1)."""
    if len(data) % 2:
        raise PcmError(f"binary frame has an odd byte count ({len(data)}); PCM is s16le")
    if len(data) % (2 * channels):
        raise PcmError(f"binary frame holds a partial sample frame for {channels} channels")
    ints = np.frombuffer(data, dtype="<i2")
    return (ints.astype(np.float32) / 32768.0).reshape(-1, channels)


class Resampler:
    """Streaming resampler (soxr): any supported rate in, 16 kHz out, channels kept."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        check_format(sample_rate, channels)
        self.channels = channels
        self._stream = (
            None if sample_rate == TARGET_RATE
            else soxr.ResampleStream(sample_rate, TARGET_RATE, channels, dtype="float32")
        )

    def push(self, frames: Samples, last: bool = False) -> Samples:
        """Frames (n, channels) in; 16 kHz frames (m, channels) out."""
        if self._stream is None:
            return frames
        out: Samples = self._stream.resample_chunk(frames, last=last)
        return out.reshape(-1, self.channels)


def to_s16le(samples: Samples) -> bytes:
    """float32 (n,) or (n, channels) → interleaved s16le bytes (for clients and tests)."""
    clipped = np.clip(samples, -1.0, 32767 / 32768)
    return (clipped * 32768.0).astype("<i2").tobytes()
