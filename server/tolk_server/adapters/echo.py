"""The engine double: deterministic, no model (tests, demos of the page, the bench's null engine).

It "translates" by reversing the order of the words and emits 1–4 character
pieces as tokens, with an optional delay per token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from tolk_server.engine.interface import Delta, EngineError, EngineInfo, GenerationParams


def echo_translation(prompt: str) -> str:
    return " ".join(reversed(prompt.split()))


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class EchoEngine:
    def __init__(self, token_delay_s: float = 0.0, first_token_delay_s: float = 0.0) -> None:
        self.info = EngineInfo(name="fake", model="fake", version="0")
        self.token_delay_s = token_delay_s
        self.first_token_delay_s = first_token_delay_s
        #: The params of every request, in arrival order (tests look at decodings, priorities).
        self.params_seen: list[GenerationParams] = []
        self._running: set[str] = set()
        self._ready = False
        self._dead = False
        self.aborted: list[str] = []
        #: What it answers for a prompt (tests may swap in another rule).
        self.translate: Callable[[str], str] = echo_translation

    async def start(self) -> None:
        self._ready = True

    async def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        if self._dead:
            raise EngineError("engine is dead")
        if request_id in self._running:
            raise EngineError(f"duplicate engine request id {request_id}")
        self._running.add(request_id)
        self.params_seen.append(params)
        finished = False
        try:
            parts = pieces(self.translate(prompt))
            out = parts[: params.max_tokens]
            if self.first_token_delay_s:
                await asyncio.sleep(self.first_token_delay_s)
            for i, piece in enumerate(out):
                if self._dead:
                    raise EngineError("engine died")
                if self.token_delay_s and i:
                    await asyncio.sleep(self.token_delay_s)
                elif i % 8 == 7:
                    await asyncio.sleep(0)
                last = i == len(out) - 1
                reason = None
                if last:
                    reason = "length" if len(parts) > params.max_tokens else "stop"
                yield Delta(piece, 1, reason)
            if not out:
                yield Delta("", 0, "stop")
            finished = True
        finally:
            self._running.discard(request_id)
            if not finished:
                self.aborted.append(request_id)

    def running(self) -> int:
        return len(self._running)

    @property
    def ready(self) -> bool:
        return self._ready and not self._dead

    @property
    def dead(self) -> bool:
        return self._dead

    def kill(self) -> None:
        self._dead = True

    def chat_template(self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    async def shutdown(self) -> None:
        self._ready = False
