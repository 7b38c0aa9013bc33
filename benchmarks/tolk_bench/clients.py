"""Load-generator clients, one per target, each an async `RequestSpec -> RequestResult`.

Timing follows `vllm bench serve`: the clock starts just before the request is sent; every
streamed chunk (here: a `token` frame) that arrives is timestamped on arrival; the first gives
TTFT, the later ones ITL gaps; the last one ends the E2E latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .metrics import RequestResult
from .workload import RequestSpec

RequestFn = Callable[[RequestSpec], Awaitable[RequestResult]]


class _Track:
    __slots__ = ("done", "last", "parts", "result")

    def __init__(self, result: RequestResult) -> None:
        self.result = result
        self.parts: list[str] = []
        self.last = result.start_time
        self.done: asyncio.Future[RequestResult] = asyncio.get_running_loop().create_future()


def _on_token(t: _Track, piece: str, ts: float) -> None:
    r = t.result
    if r.chunks == 0:
        r.ttft = ts - r.start_time
    else:
        r.itl.append(ts - t.last)
    t.last = ts
    r.chunks += 1
    t.parts.append(piece)


def _on_complete(t: _Track, frame: dict[str, Any], ts: float) -> None:
    r = t.result
    r.text = "".join(t.parts)
    if r.chunks == 0:  # nothing streamed (an empty translation): first output is the end
        r.ttft = ts - r.start_time
        t.last = ts
    r.latency = t.last - r.start_time
    r.output_tokens = int(frame.get("tokens") or 0)
    r.mismatch = r.text != frame.get("translation")
    r.success = True


def _on_error(t: _Track, frame: dict[str, Any]) -> None:
    t.result.error = str(frame.get("code") or "error")
    t.result.error_message = str(frame.get("message") or "")[:300]


# --------------------------------------------------------------------------- WebSocket


class WsConnection:
    """One protocol-v1 connection carrying many concurrent requests, keyed by `id`."""

    def __init__(self, ws: Any, split: bool = False) -> None:
        self.ws = ws
        self.split = split
        self.tracks: dict[str, _Track] = {}
        self.closed = False
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, wait_s: float = 30.0, split: bool = False) -> WsConnection:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, max_size=None, open_timeout=wait_s,
                           ping_interval=None)
        msg = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
        if msg.get("type") != "ready":
            await ws.close()
            raise RuntimeError(f"expected a ready frame, got {msg}")
        return cls(ws, split)

    async def _read(self) -> None:
        loads = json.loads
        clock = time.perf_counter
        try:
            async for raw in self.ws:
                ts = clock()
                frame = loads(raw)
                t = self.tracks.get(frame.get("id", ""))
                if t is None:
                    continue
                kind = frame["type"]
                if kind == "token":
                    _on_token(t, frame["token"], ts)
                elif kind == "complete":
                    _on_complete(t, frame, ts)
                    self._finish(frame["id"], t)
                elif kind == "error":
                    _on_error(t, frame)
                    self._finish(frame["id"], t)
        except Exception:  # the connection broke: fail what is in flight
            pass
        finally:
            self.closed = True
            for rid, t in list(self.tracks.items()):
                t.result.error = t.result.error or "connection_closed"
                self._finish(rid, t)

    def _finish(self, rid: str, t: _Track) -> None:
        self.tracks.pop(rid, None)
        if not t.done.done():
            t.done.set_result(t.result)

    async def request(self, rid: str, spec: RequestSpec, stream: bool = True) -> RequestResult:
        frame = {"type": "translate", "id": rid, "text": spec.text, "source": spec.source,
                 "target": spec.target, "max_tokens": spec.max_tokens, "stream": stream,
                 "split": self.split}
        data = json.dumps(frame, ensure_ascii=False)
        r = RequestResult(prompt_chars=len(spec.text))
        if self.closed:
            r.error = "connection_closed"
            return r
        r.start_time = time.perf_counter()
        t = _Track(r)
        self.tracks[rid] = t
        try:
            await self.ws.send(data)
        except Exception as exc:
            self.tracks.pop(rid, None)
            r.error, r.error_message = "connection_closed", str(exc)[:300]
            return r
        return await t.done

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(BaseException):
            await self.reader


@dataclass
class WsPool:
    """`connections` WebSockets; each request goes to the connection with the fewest in
    flight (so concurrency C over N connections carries about C/N requests per connection).

    `split=False` (the default here) asks tolk for one engine request per input, so that it
    renders exactly the prompt the baselines get; `True` is tolk's own default (sentences
    translated in parallel)."""

    url: str
    conns: list[WsConnection] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    async def open(cls, base_url: str, connections: int, split: bool = False) -> WsPool:
        url = ws_url(base_url)
        pool = cls(url)
        pool.conns = list(await asyncio.gather(
            *(WsConnection.open(url, split=split) for _ in range(max(1, connections)))))
        return pool

    async def request(self, spec: RequestSpec) -> RequestResult:
        live = [c for c in self.conns if not c.closed] or self.conns
        conn = min(live, key=lambda c: len(c.tracks))
        return await conn.request(f"b{next(self._ids)}", spec)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.conns))


def ws_url(base_url: str) -> str:
    u = base_url.rstrip("/")
    if u.startswith("http"):
        u = "ws" + u[4:]
    return u if u.endswith("/v1/stream") else u + "/v1/stream"


def http_url(base_url: str) -> str:
    u = base_url.rstrip("/").removesuffix("/v1/stream")
    if u.startswith("ws"):
        u = "http" + u[2:]
    return u


# --------------------------------------------------------------------------- SSE


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class SseSession:
    """POST a JSON body, then yield (arrival time, data) for each Server-Sent Event.

    aiohttp (what `vllm bench serve` uses: the lighter client, and the load generator shares
    the host's cores) when installed, else httpx. Events that arrive in one read get the
    same timestamp, as in vLLM's benchmark."""

    def __init__(self, concurrency: int, timeout: float = 600.0) -> None:
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self._aio: Any = None
        self._httpx: Any = None

    def _session(self) -> None:
        if self._aio is not None or self._httpx is not None:
            return
        try:
            import aiohttp

            conn = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
            self._aio = aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=self.timeout))
        except ImportError:  # pragma: no cover - a client-only install
            import httpx

            limits = httpx.Limits(max_connections=self.concurrency,
                                  max_keepalive_connections=self.concurrency)
            self._httpx = httpx.AsyncClient(
                limits=limits, timeout=httpx.Timeout(self.timeout, connect=30.0))

    async def events(self, url: str, body: dict[str, Any]) -> AsyncIterator[tuple[float, str]]:
        self._session()
        if self._aio is not None:
            async with self._aio.post(url, json=body) as resp:
                if resp.status != 200:
                    raise HttpError(resp.status, await resp.read())
                buf = b""
                async for chunk in resp.content.iter_any():
                    ts = time.perf_counter()
                    buf += chunk
                    *messages, buf = buf.split(b"\n\n")
                    for msg in messages:
                        for data in _data_lines(msg):
                            yield ts, data
                for data in _data_lines(buf):
                    yield time.perf_counter(), data
            return
        async with self._httpx.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                raise HttpError(resp.status_code, await resp.aread())
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    yield time.perf_counter(), line[5:].strip()

    async def close(self) -> None:
        if self._aio is not None:
            await self._aio.close()
        if self._httpx is not None:
            await self._httpx.aclose()


def _data_lines(msg: bytes) -> list[str]:
    out = []
    for line in msg.split(b"\n"):
        if line.startswith(b"data:"):
            out.append(line[5:].strip().decode("utf-8"))
    return out


class TolkSse:
    """tolk's `POST /v1/translate` with `"stream": true` (Server-Sent Events, v1 frames)."""

    def __init__(self, base_url: str, concurrency: int, timeout: float = 600.0,
                 split: bool = False) -> None:
        self.url = http_url(base_url) + "/v1/translate"
        self.split = split
        self.sse = SseSession(concurrency, timeout)
        self._ids = itertools.count(1)

    async def request(self, spec: RequestSpec) -> RequestResult:
        body = {"id": f"s{next(self._ids)}", "text": spec.text, "source": spec.source,
                "target": spec.target, "max_tokens": spec.max_tokens, "stream": True,
                "split": self.split}
        r = RequestResult(prompt_chars=len(spec.text))
        r.start_time = time.perf_counter()
        t = _Track(r)
        try:
            async for ts, data in self.sse.events(self.url, body):
                frame = json.loads(data)
                kind = frame.get("type")
                if kind == "token":
                    _on_token(t, frame["token"], ts)
                elif kind == "complete":
                    _on_complete(t, frame, ts)
                elif kind == "error":
                    _on_error(t, frame)
            if not r.success and not r.error:
                r.error = "incomplete"
        except HttpError as exc:
            try:
                _on_error(t, json.loads(exc.body))
            except ValueError:
                r.error = f"http_{exc.status}"
        except Exception as exc:
            r.success = False
            r.error, r.error_message = "transport", repr(exc)[:300]
        return r

    async def close(self) -> None:
        await self.sse.close()


class OpenAICompletions:
    """`vllm serve`'s `POST /v1/completions`, streamed, with the rendered prompt: parsed like
    `async_request_openai_completions` in vLLM's benchmark (every chunk with `choices` is a
    timestamped chunk, `usage.completion_tokens` the output length)."""

    def __init__(self, base_url: str, model: str, concurrency: int,
                 sampling: dict[str, Any], timeout: float = 600.0) -> None:
        self.url = http_url(base_url) + "/v1/completions"
        self.model = model
        self.sampling = sampling
        self.sse = SseSession(concurrency, timeout)

    async def request(self, spec: RequestSpec) -> RequestResult:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.sampling,
        }
        r = RequestResult(prompt_chars=len(spec.text))
        r.start_time = st = time.perf_counter()
        recent = st
        text: list[str] = []
        first = False
        try:
            async for ts, chunk in self.sse.events(self.url, payload):
                if chunk == "[DONE]":
                    continue
                data = json.loads(chunk)
                if choices := data.get("choices"):
                    if not first:
                        first = True
                        r.ttft = ts - st
                    else:
                        r.itl.append(ts - recent)
                    recent = ts
                    r.chunks += 1
                    text.append(choices[0].get("text") or "")
                elif usage := data.get("usage"):
                    r.output_tokens = int(usage.get("completion_tokens") or 0)
            r.text = "".join(text)
            r.latency = recent - st
            r.success = first
            if not first:
                r.error = "no_chunk"
        except HttpError as exc:
            r.error, r.error_message = f"http_{exc.status}", exc.body[:300].decode(errors="replace")
        except Exception as exc:
            r.success = False
            r.error, r.error_message = "transport", repr(exc)[:300]
        return r

    async def close(self) -> None:
        await self.sse.close()
