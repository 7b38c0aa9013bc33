"""The server's public interface (`tolk_server.api`) and the overhead bench built on it: the
engine in-process beside the app over the same engine, here the engine double."""

from __future__ import annotations

import asyncio

import pytest

import tolk_server.api as api
from tolk_bench.overhead import measure
from tolk_models import DEMO_DIR


def test_every_public_name_resolves() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError):
        api.VllmEngine  # noqa: B018 - an adapter is not public


def test_the_renderer_is_the_servers() -> None:
    settings = api.load_settings(None, model=str(DEMO_DIR), profile="demo", engine="echo")
    render = api.prompt_renderer(settings)
    prompt = render("Good morning.", "en", "fi")
    assert "Good morning." in prompt and prompt != "Good morning."
    assert api.split_sentences("One. Two.", "en") == ["One. ", "Two."]


def test_overhead_over_the_engine_double() -> None:
    out = asyncio.run(measure(str(DEMO_DIR), "demo", requests=6, max_tokens=4, levels=[1, 3],
                              engine="echo"))
    for c in (1, 3):
        r = out["results"][f"concurrency_{c}"]
        assert r["samples"] == 12  # two interleaved rounds of 6
        assert 0 < r["engine_ttft_ms_p50"] <= r["engine_ttft_ms_p95"]
        assert 0 < r["ws_ttft_ms_p50"] <= r["ws_ttft_ms_p95"]
