"""A request's quality mode resolved against a model: its engine params and streaming defaults.

What the request sets wins over the mode's defaults (`tolk_server.models.modes`), and the
model's profile gives the sampling and stop strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from tolk.protocol import Granularity, TranslateOptions
from tolk_server.engine.interface import GenerationParams
from tolk_server.models.modes import DEFAULT_QUALITY, Mode, Quality
from tolk_server.models.profiles import Sampling


@dataclass(frozen=True, slots=True)
class ModeSettings:
    """What a request runs under its mode: the engine params and the streaming defaults."""

    quality: Quality
    params: GenerationParams
    granularity: Granularity
    split: bool


def mode_settings(opts: TranslateOptions, modes: dict[Quality, Mode], sampling: Sampling,
                  stop: tuple[str, ...], max_len: int) -> ModeSettings:
    """Resolve a request's mode: what the request sets wins over the mode's defaults."""
    quality: Quality = opts.quality or DEFAULT_QUALITY
    mode = modes[quality]
    given = opts.model_fields_set
    granularity = opts.granularity
    if "granularity" not in given and mode.granularity is not None:
        granularity = mode.granularity
    split = opts.split if "split" in given or mode.split is None else mode.split
    params = GenerationParams(
        max_tokens=min(opts.max_tokens or mode.max_tokens or sampling.max_tokens, max_len),
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        repetition_penalty=sampling.repetition_penalty,
        stop=stop,
        ignore_eos=sampling.ignore_eos,
        decoding=mode.decoding,
        beam_width=mode.beam_width,
        length_penalty=mode.length_penalty,
        candidates=mode.candidates,
        sample_temperature=mode.sample_temperature,
    )
    return ModeSettings(quality, params, granularity, split)
