"""HTTP routes: translate (JSON or SSE) through the pipeline, languages, health, readiness,
metrics, docs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tolk.protocol import (
    KEY_LIMITS,
    TERMINAL_TYPES,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    ServerFrame,
    TranslateOptions,
    encode,
    error,
    parse_translate_body,
)
from tolk_server.security.auth import bearer
from tolk_server.security.headers import docs_csp
from tolk_server.state import ServerState
from tolk_server.stores.health import StoreUnavailable
from tolk_server.transports.openapi_examples import COMPLETE_EXAMPLE, TRANSLATE_EXAMPLES

router = APIRouter()

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.UNSUPPORTED_LANGUAGE: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.DUPLICATE_ID: 409,
    ErrorCode.CANCELLED: 499,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.ENGINE_ERROR: 502,
    ErrorCode.INTERNAL: 500,
    ErrorCode.SHUTTING_DOWN: 503,
}


def _state(request: Request) -> ServerState:
    st: ServerState = request.app.state.tolk
    return st


def error_response(exc: ProtocolError) -> JSONResponse:
    """The HTTP answer to a rejected request: the status comes from the code and the
    structured `limit` (a per-key limit is 429), never from the message."""
    status = HTTP_STATUS[exc.code]
    headers: dict[str, str] | None = None
    if isinstance(exc, StoreUnavailable):  # an engine_error, but one to retry: 503
        status, headers = 503, {"Retry-After": "1"}
    if exc.code == ErrorCode.OVERLOADED:
        headers = {"Retry-After": "1"}
        if exc.limit in KEY_LIMITS:
            status = 429
    if exc.code == ErrorCode.UNAUTHORIZED:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(
        dict(error(exc.code, exc.message, exc.request_id)),
        status_code=status,
        headers=headers,
    )


def _frame_error(frame: ErrorFrame) -> ProtocolError:
    return ProtocolError(frame["code"], frame["message"], frame.get("id"))


def _sse(frame: ServerFrame) -> str:
    return f"event: {frame['type']}\ndata: {encode(frame)}\n\n"


@router.post(
    "/v1/translate",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {
                "schema": TranslateOptions.model_json_schema(),
                "examples": TRANSLATE_EXAMPLES,
            }},
        },
        "responses": {"200": {"description": "The `complete` frame (JSON), or with "
                              "`\"stream\": true` / `Accept: text/event-stream` an event "
                              "stream of v1 frames.",
                              "content": {"application/json": {"example": COMPLETE_EXAMPLE},
                                          "text/event-stream": {}}}},
    },
)
async def translate(request: Request) -> Response:
    """Translate text. JSON by default; `"stream": true` or `Accept: text/event-stream`
    answers with Server-Sent Events carrying v1 frames."""
    st = _state(request)
    try:
        who = st.gate.principal(bearer(request.headers.get("authorization")))
        st.gate.check_ready()
        try:
            body: Any = json.loads(await request.body())
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "body is nested too deeply") from None
        sse = "text/event-stream" in request.headers.get("accept", "")
        if isinstance(body, dict):  # an explicit `stream` wins over the Accept header
            sse = body.get("stream") is True or (sse and body.get("stream") is not False)
            body = {**body, "stream": sse}
        opts = parse_translate_body(body)
    except ProtocolError as exc:
        st.pipeline.reject(exc)
        return error_response(exc)
    try:
        sessions = st.http_sessions(request.headers.get("authorization"))
        run = await st.pipeline.submit(opts, who, sessions)
    except ProtocolError as exc:  # counted by the pipeline
        return error_response(exc)

    if opts.stream:

        async def events() -> AsyncIterator[str]:
            async with run, aclosing(run.events()) as frames:
                async for frame in frames:
                    yield _sse(frame)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    finals: list[ServerFrame] = []
    async with run, aclosing(run.events()) as frames:
        async for frame in frames:
            if frame["type"] in TERMINAL_TYPES:
                finals.append(frame)
    if opts.targets is None:
        if finals[0]["type"] == "error":
            return error_response(_frame_error(finals[0]))
        return JSONResponse(finals[0])
    return JSONResponse({"id": run.id, "results": finals})


@router.get("/v1/languages")
async def languages(request: Request) -> dict[str, Any]:
    st = _state(request)
    prof = st.pipeline.profile
    names = {c: n for m in reversed(st.models.default) for c, n in m.profile.languages.items()}
    return {
        "model": st.model_name,
        "profile": prof.name,
        "languages": [{"code": c, "name": names[c]} for c in st.pipeline.languages],
        "auto_detect": True,
        "models": st.models.describe(),
        "routes": st.models.describe_routes(),
    }


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    st = _state(request)
    models = [{"name": m.name, "state": m.state()} for m in st.models.default]
    asr = st.audio.describe() if st.audio is not None else {"backend": "off"}
    store = st.store_health.describe()
    store_down = store["state"] != "up"
    if st.gate.ready and not (store_down and store["policy"] == "closed"):
        degraded = (any(m["state"] not in ("ready", "connected") for m in models)
                    or asr.get("state") == "dead" or store_down)
        return JSONResponse({"status": "degraded" if degraded else "ready",
                             "model": st.model_name, "models": models, "asr": asr,
                             "store": store})
    detail = ("engine dead" if st.models.dead else "store down" if st.gate.ready
              else "loading")
    return JSONResponse({"status": detail, "models": models, "asr": asr, "store": store},
                        status_code=503)


def _guard(request: Request, public: bool) -> JSONResponse | None:
    """With API keys configured, operator endpoints need one unless the operator opened them
    (`--public-metrics`, `--public-docs`)."""
    st = _state(request)
    if public or not st.gate.keys_required:
        return None
    try:
        st.gate.principal(bearer(request.headers.get("authorization")))
    except ProtocolError as exc:
        return error_response(exc)
    return None


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    st = _state(request)
    if (refused := _guard(request, st.settings.public_metrics)) is not None:
        return refused
    _engine_gauges(st)
    return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")


def _engine_gauges(st: ServerState) -> None:
    """The engines' gauges, as of this scrape: requests held, queued beyond the batch (local
    engines: a remote tolk server's batch is its own), and which engines died."""
    models = st.models.default
    held = {m.name: m.engine.running() for m in models}
    batch = st.settings.max_num_seqs * st.settings.data_parallel_size
    st.metrics.engine_running.set(sum(held.values()))
    if st.metrics.shared and len(models) == 1:  # --workers: one model, in every worker
        held = {models[0].name: int(st.metrics.value("tolk_engine_running_requests"))}
    st.metrics.engine_queue.set(sum(max(0, held[m.name] - batch) for m in models
                                    if not m.remote))
    for m in models:
        st.metrics.engine_dead.labels(m.name).set(1 if m.engine.dead else 0)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    if (refused := _guard(request, _state(request).settings.public_docs)) is not None:
        return refused
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> Response:
    if (refused := _guard(request, _state(request).settings.public_docs)) is not None:
        return refused
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="tolk API",
        swagger_js_url="/_static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/_static/swagger/swagger-ui.css",
        swagger_favicon_url="/_static/swagger/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )
    page.headers["content-security-policy"] = docs_csp(bytes(page.body))
    return page
