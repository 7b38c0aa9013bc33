"""Request-body guards for every HTTP route, as pure ASGI middleware (nothing buffered).

- A JSON content type for bodies (415 otherwise): a browser page on another origin can
  send `text/plain` or form bodies without a CORS preflight, never `application/json`.
  Routes that must take form bodies (compat APIs) are allowed with `allow_form_bodies`.
- `Content-Length` over the limit: 413 before a byte of the body is read.
- Chunked bodies: counted as they stream in; 413 as soon as they pass the limit.
- The whole body must arrive within `body_timeout_s` (a body at 1 byte/s gets 408).
Each refusal closes the connection (`Connection: close`) rather than reading the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tolk.protocol import ErrorCode, error

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class _Refused(Exception):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                             and media.endswith("+json"))


def allow_form_bodies(app: Any, *path_prefixes: str) -> None:
    """Let these paths (exact, or prefixes ending in `/`) take form bodies as well."""
    app.state.form_body_paths.extend(path_prefixes)


def _form_allowed(path: str, prefixes: list[str]) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes)


ErrorShape = Callable[[str], dict[str, Any]]  # an API's error body for a message


def shape_errors(app: Any, shape: ErrorShape, *path_prefixes: str) -> None:
    """Refusals on these paths (exact, or prefixes ending in `/`) in their API's own shape."""
    app.state.error_shapes.extend((p, shape) for p in path_prefixes)


class HttpGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float,
                 form_paths: list[str],
                 error_shapes: list[tuple[str, ErrorShape]] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.form_paths = form_paths
        self.error_shapes = error_shapes if error_shapes is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            self._check_headers(scope)
            await self.app(scope, self._limited(receive), guarded_send)
        except _Refused as exc:
            if started:  # too late for a status: just drop the connection
                raise
            path = scope["path"]
            shape = next((f for p, f in self.error_shapes if _form_allowed(path, [p])), None)
            body = shape(exc.message) if shape else dict(error(exc.code, exc.message))
            await JSONResponse(body, exc.status, {"connection": "close"})(scope, receive, send)

    def _check_headers(self, scope: Scope) -> None:
        headers = {k: v for k, v in scope["headers"] if k in (b"content-type",
                                                              b"content-length",
                                                              b"transfer-encoding")}
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            raise _Refused(413, ErrorCode.TOO_LARGE,
                           f"the body exceeds {self.max_body_bytes} bytes")
        bodiless = length in (None, b"0") and b"transfer-encoding" not in headers
        if scope["method"] not in BODY_METHODS or bodiless:
            return
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        if is_json_type(ctype):
            return
        media = ctype.split(";", 1)[0].strip().lower()
        if (media in FORM_TYPES or not media) and _form_allowed(scope["path"], self.form_paths):
            return  # the route parses it (these routes read untyped bodies too)
        raise _Refused(415, ErrorCode.BAD_REQUEST, "send the body as JSON, with Content-Type: "
                                           "application/json")

    def _limited(self, receive: Receive) -> Receive:
        deadline = time.monotonic() + self.body_timeout_s
        seen = 0
        done = False

        async def limited() -> Message:
            nonlocal seen, done
            if done:  # after the body: disconnect notices, never timed
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise _Refused(408, ErrorCode.BAD_REQUEST,
                               "the request body took too long") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _Refused(413, ErrorCode.TOO_LARGE,
                                   f"the body exceeds {self.max_body_bytes} bytes")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return limited
