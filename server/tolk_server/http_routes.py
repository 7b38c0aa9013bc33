"""HTTP routes: translate (JSON or SSE), languages, health, readiness, metrics, docs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from tolk.protocol import (
    ErrorCode,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    encode,
    error,
    parse_translate_body,
)

from .auth import bearer
from .state import ServerState

router = APIRouter()

HTTP_STATUS: dict[ErrorCode, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "unsupported_language": 422,
    "too_large": 413,
    "duplicate_id": 409,
    "cancelled": 499,
    "overloaded": 503,
    "engine_error": 502,
    "internal": 500,
}


def _state(request: Request) -> ServerState:
    st: ServerState = request.app.state.tolk
    return st


def error_response(exc: ProtocolError) -> JSONResponse:
    status = HTTP_STATUS[exc.code]
    headers = {"Retry-After": "1"} if exc.code == "overloaded" else None
    if exc.code == "overloaded" and "limit of this API key" in exc.message:
        status = 429
    if exc.code == "unauthorized":
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(
        dict(error(exc.code, exc.message, exc.request_id)),
        status_code=status,
        headers=headers,
    )


def _sse(frame: ServerFrame) -> str:
    return f"event: {frame['type']}\ndata: {encode(frame)}\n\n"


@router.post(
    "/v1/translate",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TranslateOptions.model_json_schema()}},
        }
    },
)
async def translate(request: Request) -> Response:
    """Translate text. `"stream": true` answers with Server-Sent Events carrying v1 frames."""
    st = _state(request)
    try:
        who = st.auth.authenticate(bearer(request.headers.get("authorization")))
        if who is None:
            raise ProtocolError("unauthorized", "missing or invalid API key")
        if not st.ready:
            raise ProtocolError("overloaded", "the server is not ready (loading or draining)")
        try:
            body: Any = json.loads(await request.body())
        except ValueError as exc:
            raise ProtocolError("bad_request", f"body is not valid JSON: {exc}") from None
        opts = parse_translate_body(body)
        tr = st.translator
        rid = opts.id or tr.new_id()
        sessions = st.http_sessions(request.headers.get("authorization"))
        jobs = st.admit(opts, rid, who, sessions)
    except ProtocolError as exc:
        st.metrics.errors.labels(exc.code).inc()
        return error_response(exc)

    if opts.stream:

        async def events() -> AsyncIterator[str]:
            try:
                async with aclosing(tr.stream_many(jobs)) as frames:
                    async for frame in frames:
                        yield _sse(frame)
            except ProtocolError as exc:
                st.metrics.errors.labels(exc.code).inc()
                yield _sse(error(exc.code, exc.message, rid))
            finally:
                st.release(who)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    finals: list[ServerFrame] = []
    try:
        async with aclosing(tr.stream_many(jobs)) as frames:
            async for frame in frames:
                if frame["type"] in ("complete", "error"):
                    finals.append(frame)
    except ProtocolError as exc:
        st.metrics.errors.labels(exc.code).inc()
        return error_response(exc)
    finally:
        st.release(who)
    if opts.targets is None:
        return JSONResponse(finals[0])
    return JSONResponse({"id": rid, "results": finals})


@router.get("/v1/languages")
async def languages(request: Request) -> dict[str, Any]:
    st = _state(request)
    prof = st.translator.profile
    return {
        "model": st.model_name,
        "profile": prof.name,
        "languages": [{"code": c, "name": prof.languages[c]} for c in st.translator.languages],
        "auto_detect": True,
    }


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    st = _state(request)
    if st.ready:
        return JSONResponse({"status": "ready", "model": st.model_name})
    detail = "engine dead" if st.engine.dead else "loading"
    return JSONResponse({"status": detail}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    st = _state(request)
    st.metrics.engine_running.set(st.engine.running())
    return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="tolk API",
        swagger_js_url="/_static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/_static/swagger/swagger-ui.css",
        swagger_favicon_url="/_static/swagger/favicon-32x32.png",
    )
