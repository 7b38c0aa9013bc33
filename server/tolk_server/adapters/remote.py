"""A remote model: another tolk server on the private network, reached through the SDK.

`RemoteEngine` is an engine adapter like `vllm_engine`: the planner renders each sentence
with the `remote` profile (the request itself, as JSON), and the adapter sends it to the
peer as a `translate` (unsplit: this server already split it) with `AsyncClient`, streaming
its tokens back as deltas. It connects in the background (startup never waits for it) and
keeps reconnecting; while it is not connected it is not `ready`, so a route skips it, and
a request that reaches it anyway fails after the connect timeout (the chain moves on).

    [[models]]
    name = "peer"
    url = "ws://10.0.0.2:8000"
    api_key_env = "TOLK_PEER_KEY"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from tolk import AsyncClient, Reconnect, Timeout, TolkError, TranslationError
from tolk_server.engine.interface import (
    Delta,
    EngineError,
    EngineInfo,
    GenerationParams,
    RequestRejected,
)
from tolk_server.models.profiles import Profile
from tolk_server.models.routing import REMOTE, ModelSpec

log = logging.getLogger("tolk.remote")
#: Peer error codes that are the peer's failure (the route may fall back), not the request's.
PEER_FAILURES = {"engine_error", "overloaded", "shutting_down", "internal", "unauthorized"}


def remote_profile(languages: Iterable[str]) -> Profile:
    """The profile of a remote model: the peer renders its own prompts."""
    return Profile(name=REMOTE, family=REMOTE, template="remote",
                   languages={c: c for c in sorted(languages)}, supports_glossary=True)


class RemoteEngine:
    def __init__(self, url: str, api_key: str | None = None, connect_timeout_s: float = 2.0,
                 retry_s: float = 5.0) -> None:
        self.url = url
        self.info = EngineInfo(name=REMOTE, model=url, version="?")
        self.api_key = api_key
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self._client: AsyncClient | None = None
        self._watch: asyncio.Task[None] | None = None
        self._running = 0

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RemoteEngine:
        assert spec.url is not None
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if spec.api_key_env and not key:
            log.warning("model %s: $%s is not set; connecting without a key", spec.name,
                        spec.api_key_env)
        return cls(spec.url, key, spec.connect_timeout_s)

    async def start(self) -> None:
        """Returns at once: the connection opens (and reopens) in the background."""
        self._client = AsyncClient(
            self.url, api_key=self.api_key or "", pool_size=1,
            timeout=Timeout(request=None, connect=self.connect_timeout_s),
            reconnect=Reconnect(max_attempts=1), heartbeat_interval=5.0,
            heartbeat_timeout=max(2.0, self.connect_timeout_s))
        self._watch = asyncio.create_task(self._keep_connected())

    async def _keep_connected(self) -> None:
        client, was = self._client, None
        assert client is not None
        while True:
            if not client.connected:
                with contextlib.suppress(TolkError):
                    await client.connect()
            if client.connected != was:
                was = client.connected
                log.log(logging.INFO if was else logging.WARNING, "remote model %s: %s",
                        self.url, "connected" if was else "not connected")
            await asyncio.sleep(self.retry_s)

    async def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        client = self._client
        if client is None:
            raise EngineError("the remote model is not started")
        req: dict[str, Any] = json.loads(prompt)  # rendered by the `remote` profile
        self._running += 1
        try:
            if not client.connected:  # one try, bounded by the connect timeout
                await client.connect()
            stream = client.translate_stream(
                req["text"], target=req["target"], source=req["source"], split=False,
                max_tokens=params.max_tokens, glossary=req.get("glossary") or None,
                quality="balanced" if params.decoding == "greedy" else "quality", timeout=None)
            tokens = 0
            async with stream:
                async for token in stream:
                    tokens += 1
                    yield Delta(token, 1)
            result = stream.result
            if result is not None:
                yield Delta("", max(0, result.tokens - tokens), result.finish_reason)
        except TranslationError as exc:
            if exc.code in PEER_FAILURES:
                raise EngineError(f"remote model {self.url}: {exc}") from exc
            code = "too_large" if exc.code == "too_large" else "bad_request"
            raise RequestRejected(code, f"remote model: {exc.message}") from exc
        except TolkError as exc:  # not connected, the connection was lost, timed out
            raise EngineError(f"remote model {self.url}: {exc}") from exc
        finally:
            self._running -= 1

    def running(self) -> int:
        return self._running

    @property
    def ready(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def dead(self) -> bool:
        return False  # a peer may come back: never dead, only not connected

    def chat_template(self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
        raise ValueError("a remote model renders no chat template")

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._client is not None:
            await self._client.aclose()
