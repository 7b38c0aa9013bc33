"""The server's public Python interface: the one module of `tolk_server` that code outside
the server may import. The benchmarks use it (an import-linter contract holds them to it, and
tests/test_structure.py checks it); everything else in `tolk_server` is internal and may move.

Over the network the public interfaces are the wire protocol (`tolk.protocol`), the SDK
(`tolk`) and the `tolk` command line; this module is for a program that runs the engine or the
app in its own process:

    settings = load_settings(None, model="models/demo")
    engine = open_engine(settings)                 # what `tolk serve` would serve
    await engine.start()
    prompt = prompt_renderer(settings, engine)("Good morning.", "en", "fi")
    async for delta in engine.generate(prompt, GenerationParams(max_tokens=16), "r1"):
        print(delta.text, end="")
    app = create_app(settings, engine=engine)       # the ASGI app over the same engine

Names load on first use (a speech name needs the `audio` extra, the others the `server` one).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tolk_server.app.inprocess import (
        Renderer,
        engine_args,
        has_cuda,
        open_engine,
        prompt_renderer,
    )
    from tolk_server.app.wiring import create_app
    from tolk_server.audio.transcriber import FasterWhisper, Transcriber, Transcript
    from tolk_server.config import Settings, load_settings
    from tolk_server.engine.interface import Delta, Engine, GenerationParams
    from tolk_server.live.policy import LivePolicy
    from tolk_server.models.modes import Mode, resolve_modes
    from tolk_server.models.profiles import Profile, model_arg, resolve_profile
    from tolk_server.stores.factory import open_store
    from tolk_server.stores.interfaces import Store, StoreError
    from tolk_server.stores.records import KeyLimits
    from tolk_server.text.segmenter import split_sentences

_LAZY: dict[str, str] = {
    # the settings: flags over TOLK_* over a TOML file (docs/configuration.md)
    "Settings": "config",
    "load_settings": "config",
    # the engine interface (docs/architecture.md), and the server's engine in-process
    "Delta": "engine.interface",
    "Engine": "engine.interface",
    "GenerationParams": "engine.interface",
    "Renderer": "app.inprocess",
    "engine_args": "app.inprocess",
    "has_cuda": "app.inprocess",
    "open_engine": "app.inprocess",
    "prompt_renderer": "app.inprocess",
    # the ASGI app (what `tolk serve` runs under uvicorn)
    "create_app": "app.wiring",
    # models: prompt profiles and quality modes (docs/models-and-modes.md)
    "Mode": "models.modes",
    "Profile": "models.profiles",
    "model_arg": "models.profiles",
    "resolve_modes": "models.modes",
    "resolve_profile": "models.profiles",
    # how the server cuts a text into sentences (one engine request each)
    "split_sentences": "text.segmenter",
    # the live display policy, as data (`TOLK_LIVE_*`)
    "LivePolicy": "live.policy",
    # the state stores (keys, quotas, glossaries, sessions) behind one interface (docs/scaling.md)
    "KeyLimits": "stores.records",
    "Store": "stores.interfaces",
    "StoreError": "stores.interfaces",
    "open_store": "stores.factory",
    # speech recognition (docs/speech.md)
    "FasterWhisper": "audio.transcriber",
    "Transcriber": "audio.transcriber",
    "Transcript": "audio.transcriber",
}

__all__ = [
    "Delta",
    "Engine",
    "FasterWhisper",
    "GenerationParams",
    "KeyLimits",
    "LivePolicy",
    "Mode",
    "Profile",
    "Renderer",
    "Settings",
    "Store",
    "StoreError",
    "Transcriber",
    "Transcript",
    "create_app",
    "engine_args",
    "has_cuda",
    "load_settings",
    "model_arg",
    "open_engine",
    "open_store",
    "prompt_renderer",
    "resolve_modes",
    "resolve_profile",
    "split_sentences",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tolk_server.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tolk_server.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
