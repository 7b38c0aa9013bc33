"""The server's engine and prompts for a program that runs them in its own process (the
benchmarks' in-process baselines, through `tolk_server.api`): the same engine, the same
engine arguments and the same prompt as `tolk serve` builds from the same settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tolk_server.app.wiring import build_engine, model_path
from tolk_server.config import Settings
from tolk_server.engine.interface import Engine
from tolk_server.models.profiles import render, resolve_profile

#: `render(text, source, target)`: the exact prompt the engine receives for `text`.
Renderer = Callable[[str, str, str], str]


def open_engine(settings: Settings) -> Engine:
    """The engine `tolk serve` would serve with these settings (vLLM, or the double for
    `engine = "echo"`); not started: `await engine.start()`, and `await engine.shutdown()`."""
    return build_engine(settings)


def engine_args(settings: Settings) -> dict[str, Any]:
    """vLLM's engine arguments for these settings (`AsyncEngineArgs` keywords), as `tolk info`
    shows them."""
    from tolk_server.adapters.vllm import engine_args_dict

    return engine_args_dict(settings, model_path(settings))


def has_cuda() -> bool:
    """Whether the engine would run on an NVIDIA GPU here."""
    from tolk_server.adapters.vllm import has_cuda as cuda

    return cuda()


def prompt_renderer(settings: Settings, engine: Engine | None = None) -> Renderer:
    """The prompt of a plain request (no glossary, no context), as the server renders it: the
    settings' profile, and for a chat profile the model's chat template (`engine`'s, else
    read from the model's tokenizer on first use)."""
    model = model_path(settings)
    profile = resolve_profile(model, settings.profile)
    if engine is None and profile.template not in ("completion", "remote"):
        from tolk_server.adapters.vllm import VllmEngine

        engine = VllmEngine(settings, model)
    chat = engine.chat_template if engine is not None else None

    def rendered(text: str, source: str, target: str) -> str:
        return render(profile, text, source, target, chat)

    return rendered
