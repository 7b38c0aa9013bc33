"""A fake OpenAI-compatible completions server (vLLM's wire format), on a real loopback port.

What it answers depends on the prompt: it contains `too-long` (400, context length), `bad`
(400), `boom` (500), `midway` (one token, then an error event), `cut` (one token, then the
stream ends), `slow` (a token every 20 ms for up to 10 s), `bytewise` (a stream in one-byte writes, with
CRLF line ends, a comment and a multi-line event); anything else streams
"Hel", "lo", " world" and stops. Not streamed: `n` choices (`cand0`, `cand1`, …; with
`mbr-majority`, most of them say "same"). Every request body and its headers are kept;
`down` makes every route answer 503; `aborted` holds the prompts of streams the client
closed early.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from support.live_server import free_port


@dataclass
class FakeOpenAI:
    url: str = ""  # http://127.0.0.1:PORT/v1
    key: str | None = None
    models: list[str] = field(default_factory=lambda: ["fake"])
    down: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    streaming: int = 0

    @property
    def openai_url(self) -> str:
        return "openai+" + self.url


def _chunk(text: str, ids: list[int], reason: str | None = None) -> str:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason,
              "token_ids": ids}
    return "data: " + json.dumps({"object": "text_completion", "choices": [choice]}) + "\n\n"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "BadRequestError",
                                   "code": status}}, status_code=status)


def build_app(fake: FakeOpenAI) -> FastAPI:
    app = FastAPI()

    def refused(request: Request) -> Response | None:
        if fake.down:
            return Response(status_code=503)
        if fake.key and request.headers.get("authorization") != f"Bearer {fake.key}":
            return _error(401, "Unauthorized")
        return None

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        return JSONResponse({"object": "list", "data": [{"id": m} for m in fake.models]})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        body = await request.json()
        fake.bodies.append(body)
        fake.headers.append(dict(request.headers))
        prompt = str(body["prompt"])
        for word, status, message in (
                ("too-long", 400, "This model's maximum context length is 512 tokens."),
                ("bad", 400, "temperature must be non-negative"), ("boom", 500, "kaput")):
            if word in prompt:
                return _error(status, message)
        if not body.get("stream"):
            return JSONResponse({"choices": _choices(body)})
        return StreamingResponse(_stream(fake, prompt), media_type="text/event-stream")

    return app


def _choices(body: dict[str, Any]) -> list[dict[str, Any]]:
    n = int(body.get("n") or 1)
    texts = [f"cand{i}" for i in range(n)]
    if "mbr-majority" in str(body["prompt"]) and n > 1:
        texts = ["same"] * (n - 1) + ["odd"]
    return [{"index": i, "text": t, "finish_reason": "stop", "token_ids": [7] * (i + 1)}
            for i, t in reversed(list(enumerate(texts)))]  # out of order on purpose


async def _stream(fake: FakeOpenAI, prompt: str) -> AsyncIterator[str | bytes]:
    fake.streaming += 1
    done = False
    try:
        if "slow" in prompt:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                yield _chunk("x", [9])
                await asyncio.sleep(0.02)
            yield _chunk("", [2], "length")
        elif "midway" in prompt:
            yield _chunk("Hel", [5])
            yield "data: " + json.dumps({"error": {"message": "engine died", "code": 500}})
            yield "\n\n"
        elif "cut" in prompt:
            yield _chunk("Hel", [5])
        elif "bytewise" in prompt:  # CRLF, a comment, multi-line data, each byte on its own
            raw = (": hello\r\n\r\n" + _chunk("a", [1]).replace("\n", "\r\n")
                   + 'data: {"choices":\ndata: [{"text": "b", "token_ids": [2, 3]}]}\n\n'
                   + 'data: {"choices": []}\n\n' + _chunk("", [4], "stop")
                   + "data: [DONE]\n\n" + _chunk("late", [5]))
            for byte in raw.encode():
                yield bytes([byte])
        else:
            # one event split over several writes, and a comment line, as proxies may do
            yield ": keep-alive\n\n"
            yield _chunk("Hel", [5])[:9]
            yield _chunk("Hel", [5])[9:]
            yield _chunk("lo", [6, 7])
            yield _chunk(" world", [8], "stop")
            yield "data: [DONE]\n\n"
        done = True
    finally:
        fake.streaming -= 1
        if not done:
            fake.aborted.append(prompt)


@contextmanager
def fake_openai(key: str | None = None) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(key=key)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(fake), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "fake server did not start"
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
