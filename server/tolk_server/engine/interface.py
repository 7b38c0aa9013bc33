"""The engine interface. Implementations: `vllm_engine.VllmEngine` and `echo_engine.EchoEngine`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None
    # Quality decodings (tolk_server.engine.decoding): "greedy" streams; "beam" and "mbr" yield
    # the chosen translation as one delta when it is known.
    decoding: str = "greedy"
    beam_width: int = 4
    length_penalty: float = 1.0
    candidates: int = 8
    sample_temperature: float = 0.7
    # Lower runs first when the engine schedules by priority (0: conversation, 1: bulk).
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Delta:
    """New output since the last delta: text (whole characters only) and token count."""

    text: str
    tokens: int
    finish_reason: str | None = None


@dataclass
class EngineInfo:
    name: str
    model: str
    version: str
    settings: dict[str, Any] = field(default_factory=dict)


class EngineError(Exception):
    """The engine failed or died; requests in flight cannot finish."""


class RequestRejected(Exception):
    """The engine refused this one request (e.g. the prompt exceeds the context)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Engine(Protocol):
    info: EngineInfo

    async def start(self) -> None: ...

    def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        """Stream deltas; closing the iterator aborts the request in the engine."""
        ...

    def running(self) -> int:
        """Requests the engine holds now (queued or running)."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def dead(self) -> bool: ...

    def chat_template(
        self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]
    ) -> str: ...

    async def shutdown(self) -> None: ...
