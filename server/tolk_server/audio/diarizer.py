"""Speaker labels behind a `Diarizer` seam: today a label per channel or the client's labels.

A real diarizer (one that clusters voices on one channel) would implement the same call; the
open ones need gated downloads, so none ships.
"""

from __future__ import annotations

from typing import Protocol

from tolk_server.audio.pcm import Samples


class Diarizer(Protocol):
    def speaker(self, channel: int, samples: Samples) -> str: ...


class ChannelDiarizer:
    """Channel k is `labels[k]`; without labels, "Speaker 1", "Speaker 2", …"""

    def __init__(self, labels: list[str], channels: int) -> None:
        self.labels = [labels[k] if k < len(labels) else f"Speaker {k + 1}"
                       for k in range(channels)]

    def speaker(self, channel: int, samples: Samples) -> str:
        return self.labels[channel]
