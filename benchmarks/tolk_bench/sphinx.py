"""pocketsphinx as a benchmark-only recogniser (`tolk bench audio --recogniser pocketsphinx`).

Not a server backend and not a runtime dependency: `pip install tolk[sphinx]` (or
`pip install pocketsphinx`) to measure it. It uses the en-us model that ships in the wheel.
"""

from __future__ import annotations

import numpy as np

from tolk_server.api import Transcript


class PocketSphinx:
    """CMU pocketsphinx 5 with its bundled en-us acoustic model, language model and dictionary."""

    name = "pocketsphinx en-us"
    languages: tuple[str, ...] = ("en",)

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise SystemExit("pocketsphinx is not installed: pip install pocketsphinx") from exc
        self._decoder = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        pcm = np.clip(samples * 32768, -32768, 32767).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return Transcript(hyp.hypstr if hyp is not None else "", "en")
