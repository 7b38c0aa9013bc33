"""Quality modes as data: what `"fast"`, `"balanced"` and `"quality"` mean for a model.

A profile (or a `[[models]]` entry of the server config) may set, per mode:

    [modes.quality]
    decoding = "beam"        # "greedy", "beam" (width, length penalty) or "mbr"
    beam_width = 4
    length_penalty = 1.0
    max_tokens = 256
    granularity = "segment"  # the default granularity of the mode (a request may override)
    split = true             # the default sentence splitting (a request may override)
    model = "big"            # which model serves the mode (routing)
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from tolk.protocol import Granularity

Quality = Literal["fast", "balanced", "quality"]
QUALITIES: tuple[Quality, ...] = get_args(Quality)
DEFAULT_QUALITY: Quality = "balanced"
Decoding = Literal["greedy", "beam", "mbr"]


class Mode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decoding: Decoding = "greedy"
    beam_width: int = Field(4, ge=1, le=16)
    length_penalty: float = Field(1.0, ge=0.0, le=4.0)
    # n-best sampling + minimum Bayes risk (chrF) selection; the greedy output is a candidate.
    candidates: int = Field(8, ge=2, le=32)
    sample_temperature: float = Field(0.7, gt=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    granularity: Granularity | None = None
    split: bool | None = None
    model: str | None = None


# The built-in meaning, used for any mode a profile leaves out (chosen by measurement:
# see the README's quality-mode table).
BUILTIN_MODES: dict[Quality, Mode] = {
    "fast": Mode(max_tokens=64),  # caps runaway outputs: the lowest tail latency
    "balanced": Mode(),
    "quality": Mode(decoding="mbr", candidates=8),
}


def resolve_modes(overrides: dict[Quality, Mode] | None) -> dict[Quality, Mode]:
    """The built-in modes with a profile's (or a model config's) overrides on top."""
    return {q: (overrides or {}).get(q, BUILTIN_MODES[q]) for q in QUALITIES}
