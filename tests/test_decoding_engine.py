"""Beam search and n-best + MBR through the REAL engine (the shared tiny vLLM engine)."""

from __future__ import annotations

from typing import Any

import pytest

from tolk_server.engine.interface import GenerationParams

pytestmark = [pytest.mark.engine]


@pytest.mark.parametrize("decoding", ["beam", "mbr"])
async def test_quality_decodings_run_on_the_engine(tiny_engine: Any, decoding: str) -> None:
    params = GenerationParams(max_tokens=4, decoding=decoding, beam_width=2, candidates=2,
                              seed=1)
    deltas = [d async for d in tiny_engine.generate("<2fi>Hello there.<sep>", params,
                                                    f"dec-{decoding}")]
    assert len(deltas) == 1  # not streamed: the chosen translation at once
    assert deltas[0].tokens == 4 and deltas[0].finish_reason == "length"  # no EOS in tiny
    assert tiny_engine.running() == 0
