"""An existing vLLM deployment as the engine, over its OpenAI-compatible HTTP API.

`OpenAIEngine` is an engine adapter like `adapters.vllm`: tolk renders the prompt with the
model's own profile and sends it raw to `POST /v1/completions`, streamed (server-sent
events), so the server's prefix cache sees the same prompts and a live hypothesis is the
continuation of its prompt plus the stable prefix, as in process. Closing the stream (a
cancel, a disconnect, a superseded hypothesis) closes the HTTP response; vLLM aborts a
request whose client went away. `priority` (vLLM's extra field) is sent only when the
model entry says the server schedules by priority (`vllm serve --scheduling-policy
priority`): other servers refuse a priority other than 0.

Quality decodings: `mbr` is one greedy and one n-sampled request, picked here as in process;
`beam` is vLLM's own beam search (`use_beam_search`, not streamed), which runs at the
server's default priority and has no repetition penalty (refused when the profile sets one).

Health: `GET /v1/models` every second; until it answers with the model the adapter is not
`ready` (a route skips it, `/ready` says `disconnected`), and it is never `dead` (the
server may come back). The API key (from the environment variable `api_key_env`) goes in
the `Authorization` header only, never in a URL or a log line.

    [[models]]
    name = "demo"
    url = "openai+http://10.0.0.5:8000/v1"
    profile = "demo"
    served_model = "demo"     # default: the first model the server lists
    api_key_env = "VLLM_API_KEY"
    priority = true           # the server runs --scheduling-policy priority
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tolk_server.engine.decoding import mbr_select, stop_at
from tolk_server.engine.interface import (
    Delta,
    EngineError,
    EngineInfo,
    GenerationParams,
    RequestRejected,
)
from tolk_server.models.profiles import Profile, resolve_profile
from tolk_server.models.routing import OPENAI, OPENAI_SCHEMES, ModelSpec

log = logging.getLogger("tolk.openai")
HEALTH_PERIOD_S = 1.0
DOWN_AFTER = 3  # failed health polls in a row before the model counts as disconnected
#: The longest wait for the next streamed chunk (a long prompt queued behind others).
READ_TIMEOUT_S = 300.0
_TOO_LARGE = ("maximum context length", "max_model_len", "maximum model length")


def base_url(url: str) -> str:
    """`openai+http://host:port/v1` → `http://host:port/v1` (a key in the URL is refused)."""
    if not url.startswith(OPENAI_SCHEMES):
        raise ValueError(f"not an openai+http(s):// URL: {url!r}")
    plain = url.removeprefix("openai+").rstrip("/")
    if urlsplit(plain).username is not None:
        raise ValueError("an openai+ URL carries no credentials: put the API key in the "
                         "environment variable named by `api_key_env`")
    return plain


def openai_profile(spec: ModelSpec, default: str | None) -> Profile:
    """The model's prompt profile: its own `profile`, else the server's `--profile`, else
    the one that matches its `path` or `served_model` (a directory with a
    tolk_profile.toml, or a model id a profile's `match` names)."""
    name, model = spec.profile or default, spec.path or spec.served_model
    if name is None and not model:
        raise ValueError(f"model {spec.name!r}: an openai+ model needs its prompt profile: "
                         "`profile = NAME` in its [[models]] entry, `--profile NAME`, or "
                         "`path`/`served_model` naming a model a profile matches")
    return resolve_profile(model or "", name)


class OpenAIEngine:
    def __init__(self, url: str, api_key: str | None = None, served_model: str | None = None,
                 priority: bool = False, connect_timeout_s: float = 2.0,
                 health_period_s: float = HEALTH_PERIOD_S, tokenizer: str | None = None
                 ) -> None:
        self.base_url = base_url(url)
        self.served_model = served_model
        self.tokenizer = tokenizer or served_model
        self.priority = priority
        self.connect_timeout_s = connect_timeout_s
        self.health_period_s = health_period_s
        self.info = EngineInfo(name=OPENAI, model=served_model or self.base_url, version="?",
                               settings={"url": self.base_url, "served_model": served_model,
                                         "priority": priority})
        self._api_key = api_key
        self._client: aiohttp.ClientSession | None = None
        self._watch: asyncio.Task[None] | None = None
        self._model: str | None = served_model
        self._ok = False
        self._running = 0
        self._tokenizer: Any = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, priority_scheduling: bool = True) -> OpenAIEngine:
        assert spec.url is not None
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if spec.api_key_env and not key:
            log.warning("model %s: $%s is not set; connecting without a key", spec.name,
                        spec.api_key_env)
        return cls(spec.url, key, spec.served_model, spec.priority and priority_scheduling,
                   spec.connect_timeout_s, tokenizer=spec.path)

    async def start(self) -> None:
        """Returns at once: the server's health is polled in the background."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = aiohttp.ClientSession(
            base_url=self.base_url + "/", headers=headers,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            read_bufsize=2**20,  # the longest line: the first chunk, with the prompt's ids
            timeout=aiohttp.ClientTimeout(connect=self.connect_timeout_s,
                                          sock_read=READ_TIMEOUT_S))
        self._watch = asyncio.create_task(self._keep_watch())

    async def _keep_watch(self) -> None:
        was: bool | None = None
        fails = 0
        while True:
            why = await self._health()
            # One slow answer (its API server starved by a busy engine) is not an outage:
            # the model goes `disconnected` after DOWN_AFTER failed polls in a row.
            fails = 0 if why is None else fails + 1
            self._ok = why is None or (was is True and fails < DOWN_AFTER)
            if self._ok != was:
                was = self._ok
                if why is None:
                    log.info("openai model %s (%s): connected", self.base_url, self._model)
                else:
                    log.warning("openai model %s: not connected: %s", self.base_url, why)
            await asyncio.sleep(self.health_period_s)

    async def _health(self) -> str | None:
        """None when the server lists the model; else why not."""
        assert self._client is not None
        try:
            async with self._client.get(
                    "models", timeout=aiohttp.ClientTimeout(total=self.connect_timeout_s)
            ) as resp:
                if resp.status != 200:
                    return f"GET /models answered {resp.status}"
                doc = json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except ValueError:
            return "GET /models answered no model list"
        try:
            ids = [str(m["id"]) for m in doc["data"]]
        except (KeyError, TypeError):
            return "GET /models answered no model list"
        if self.served_model is None and ids:
            self._model = ids[0]
        if self._model not in ids:
            return f"the server does not serve {self._model!r} (it serves {ids})"
        return None

    async def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        if self._client is None or self._model is None:
            raise EngineError(f"openai model {self.base_url} is not connected")
        self._running += 1
        try:
            if params.decoding == "beam":
                yield await self._beam(prompt, params)
            elif params.decoding == "mbr":
                yield await self._mbr(prompt, params)
            else:
                body = self._body(prompt, params, stream=True)
                async with aclosing(self._stream(body)) as deltas:
                    async for delta in deltas:
                        yield delta
        except (aiohttp.ClientError, TimeoutError) as exc:  # unreachable, broken, timed out
            if isinstance(exc, aiohttp.ClientConnectorError):
                self._ok = False  # /ready says so now, not at the next poll
            raise EngineError(f"openai model {self.base_url}: {type(exc).__name__}: "
                              f"{exc}") from exc
        finally:
            self._running -= 1

    def _body(self, prompt: str, params: GenerationParams, **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model, "prompt": prompt, "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p,
            "repetition_penalty": params.repetition_penalty, "ignore_eos": params.ignore_eos,
            "return_token_ids": True}  # vLLM's: token counts per chunk
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.priority:
            body["priority"] = params.priority
        body.update(over)
        return body

    async def _stream(self, body: dict[str, Any]) -> AsyncGenerator[Delta, None]:
        assert self._client is not None
        async with self._client.post("completions", json=body) as resp:
            if resp.status != 200:
                raise refusal(resp.status, await resp.read())
            finished = False
            try:
                async with aclosing(_lines(resp)) as lines, \
                        aclosing(sse_events(lines)) as events:
                    async for event in events:
                        delta = event_delta(event)
                        if delta is not None:
                            finished = delta.finish_reason is not None
                            yield delta
            finally:
                if not finished:  # closed early or failed: drop the connection, so that
                    resp.close()  # the server aborts the request
            if not finished:
                raise EngineError("the stream ended before the completion finished")

    async def _final(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The choices of one request that is not streamed."""
        assert self._client is not None
        async with self._client.post("completions", json=body) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise refusal(resp.status, raw)
        doc = _json(raw.decode("utf-8", "replace"))
        choices = doc.get("choices") or []
        if not choices:
            raise EngineError("no choices came back")
        return sorted(choices, key=lambda c: int(c.get("index", 0)))

    async def _beam(self, prompt: str, params: GenerationParams) -> Delta:
        """vLLM's own beam search (`use_beam_search`: n beams, the best one first)."""
        if params.repetition_penalty != 1.0:
            raise RequestRejected("bad_request", "beam search on an openai model is vLLM's "
                                  "`use_beam_search`, which has no repetition penalty; this "
                                  "model's profile sets one: use the mbr or greedy decoding")
        body = self._body(prompt, params, stream=False, use_beam_search=True,
                          n=params.beam_width, length_penalty=params.length_penalty,
                          temperature=0.0)
        body.pop("priority", None)  # vLLM's beam search runs at the default priority
        best = (await self._final(body))[0]
        text = stop_at(str(best.get("text") or ""), params.stop)
        return Delta(text, len(best.get("token_ids") or ()), best.get("finish_reason"))

    async def _mbr(self, prompt: str, params: GenerationParams) -> Delta:
        """n sampled candidates plus the greedy one; the minimum-Bayes-risk (chrF) pick."""
        greedy = self._body(prompt, params, stream=False)
        sampled = self._body(prompt, params, stream=False, n=params.candidates,
                             temperature=params.sample_temperature)
        outs = [c for group in await asyncio.gather(self._final(greedy), self._final(sampled))
                for c in group]
        texts = [str(c.get("text") or "") for c in outs]
        pick = await asyncio.to_thread(mbr_select, [t.strip() for t in texts])
        chosen = outs[pick]
        return Delta(texts[pick], len(chosen.get("token_ids") or ()),
                     chosen.get("finish_reason"))

    def running(self) -> int:
        return self._running

    @property
    def ready(self) -> bool:
        return self._client is not None and self._ok

    @property
    def dead(self) -> bool:
        return False  # the server may come back: never dead, only not connected

    def chat_template(self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
        """A chat profile's prompt, from the model's tokenizer on this host (`path`: a
        directory or an HF id; else `served_model`, when it is one)."""
        if self._tokenizer is None:
            if not self.tokenizer:
                raise ValueError("a chat profile on an openai model needs its tokenizer: "
                                 "`path` (a directory or HF id) in its [[models]] entry")
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **kwargs)
        return str(text)

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._client is not None:
            await self._client.close()
            self._client = None


async def _lines(resp: aiohttp.ClientResponse) -> AsyncGenerator[str, None]:
    async for raw in resp.content:  # one line each, with its line end
        yield raw.decode("utf-8").rstrip("\r\n")


async def sse_events(lines: AsyncIterator[str]) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON payloads of a server-sent event stream, up to `data: [DONE]`."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:  # a comment, another field, or a blank line between events
            continue
        payload, data = "\n".join(data), []
        if payload == "[DONE]":
            return
        yield _json(payload)
    if data and (payload := "\n".join(data)) != "[DONE]":
        yield _json(payload)


def _json(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise EngineError(f"the server sent an event that is not JSON: {payload[:100]!r}"
                          ) from exc
    if not isinstance(event, dict):
        raise EngineError(f"the server sent an event that is not an object: {payload[:100]!r}")
    return event


def event_delta(event: Mapping[str, Any]) -> Delta | None:
    """One streamed chunk as a delta (None: nothing new, e.g. a usage chunk)."""
    if "error" in event or event.get("object") == "error":
        err = event.get("error", event)
        err = err if isinstance(err, Mapping) else {"message": str(err)}
        raise refusal(int(err.get("code") or 500), err)
    choices = event.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    text = str(choice.get("text") or "")
    ids = choice.get("token_ids")
    tokens = len(ids) if isinstance(ids, list) else (1 if text else 0)
    reason = choice.get("finish_reason")
    if reason in ("abort", "error"):
        raise EngineError(f"the server ended the completion: {reason}")
    if not text and not tokens and reason is None:
        return None
    return Delta(text, tokens, reason)


def refusal(status: int, body: bytes | Mapping[str, Any]) -> Exception:
    """An error answer as the engine's exception: 400 refuses this request (too_large when
    the prompt exceeds the context), anything else is the server's failure."""
    message = _message(body)
    if status == 400:
        too_large = any(s in message for s in _TOO_LARGE)
        return RequestRejected("too_large" if too_large else "bad_request", message)
    return EngineError(f"the server answered {status}: {message}")


def _message(body: bytes | Mapping[str, Any]) -> str:
    if isinstance(body, Mapping):
        return str(body.get("message") or body)[:500]
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    err = doc.get("error", doc) if isinstance(doc, dict) else doc
    return str(err.get("message") if isinstance(err, dict) and "message" in err else err)[:500]
