"""The LibreTranslate API (`libretranslate/app.py` is the reference): /translate, /detect,
/languages, /frontend/settings. Same keys, limits and models as tolk's own API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tolk.protocol import ProtocolError
from tolk_server.security.auth import Principal, bearer
from tolk_server.state import ServerState
from tolk_server.stores.health import StoreUnavailable
from tolk_server.text.markup import MarkupMode
from tolk_server.transports.compat.common import (
    check_items,
    check_ready,
    state_of,
    translate_all,
)
from tolk_server.transports.compat.errors import (
    MAX_ITEMS,
    MAX_LT_BODY_BYTES,
    CompatError,
    from_protocol,
    libretranslate_error,
)
from tolk_server.transports.compat.forms import read_fields
from tolk_server.transports.compat.languages import libretranslate_languages, resolve
from tolk_server.transports.openapi_examples import LT_TRANSLATE_ANSWER, LT_TRANSLATE_EXAMPLES

router = APIRouter(tags=["LibreTranslate-compatible"])

_FORM = {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
    "q": {"type": "string"}, "source": {"type": "string"}, "target": {"type": "string"},
    "format": {"type": "string", "enum": ["text", "html"]}, "api_key": {"type": "string"}}}}}
_TRANSLATE_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}, "examples": LT_TRANSLATE_EXAMPLES},
        **_FORM}},
    "responses": {"200": {"description": "Translated text(s)",
                          "content": {"application/json": {"example": LT_TRANSLATE_ANSWER}}},
                  "400": {"description": '`{"error": "..."}`'},
                  "403": {"description": "Invalid API key"},
                  "429": {"description": "Slowdown: a limit of this API key"}},
}


def _who(st: ServerState, request: Request, fields: dict[str, Any]) -> Principal:
    key = fields.get("api_key") or bearer(request.headers.get("authorization"))
    try:
        return st.gate.principal(key if isinstance(key, str) else None)
    except StoreUnavailable as exc:
        raise from_protocol(exc, quota_status=503) from None
    except ProtocolError:
        if key:
            raise CompatError(403, "Invalid API key") from None
        raise CompatError(400, "Please contact the server operator to get an API key") from None


def _check_size(st: ServerState, text: str) -> None:
    """The gate's text-size cap, in LibreTranslate's words."""
    try:
        st.gate.check_size(text)
    except ProtocolError:
        raise CompatError(400, f"Invalid request: request ({len(text)}) exceeds text "
                          f"limit ({st.settings.max_text_chars})") from None


def _lang(st: ServerState, code: Any) -> str:
    found = resolve(code, st.pipeline.profile.languages) if isinstance(code, str) else None
    if found is None:
        raise CompatError(400, f"{code} is not supported")
    return found


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise CompatError(400, "Invalid request: alternatives must be a number") from None


def _confidence(st: ServerState, text: str, code: str) -> dict[str, Any]:
    scores = dict(st.pipeline.detect_confidences(text))
    return {"confidence": round(100 * scores.get(code, 0.0), 1), "language": code}


@router.post("/translate", openapi_extra=_TRANSLATE_DOC)
async def translate(request: Request) -> JSONResponse:
    """Translate a text or a list of texts (LibreTranslate)."""
    st = state_of(request)
    try:
        fields = await read_fields(request, limit=MAX_LT_BODY_BYTES)
        who = _who(st, request, fields)
        q, source, target = fields.get("q"), fields.get("source"), fields.get("target")
        for name, value in (("q", q), ("source", source), ("target", target)):
            if not value:
                raise CompatError(400, f"Invalid request: missing {name} parameter")
        if not isinstance(q, str | list):
            raise CompatError(400, "Invalid request: q must be a string or a list of strings")
        batch = isinstance(q, list)
        texts: list[str] = q if isinstance(q, list) else [str(q)]
        if not all(isinstance(t, str) for t in texts):
            raise CompatError(400, "Invalid request: q must be a string or a list of strings")
        check_items(texts, "q", 400)
        for t in texts:
            _check_size(st, t)
        fmt = fields.get("format") or "text"
        if fmt not in ("text", "html"):
            raise CompatError(400, f"{fmt} format is not supported")
        auto = source == "auto"
        src = None if auto else _lang(st, source)
        tgt = _lang(st, target)
        n_alt = _count(fields.get("alternatives"))
        check_ready(st)
        done = await translate_all(st, who, texts, source=src or "auto", target=tgt,
                                   owner=fields.get("api_key"), quota_status=429,
                                   mode=MarkupMode() if fmt == "html" else None)
    except CompatError as exc:
        if exc.status == 429:
            exc.message = "Slowdown: " + exc.message
        return libretranslate_error(exc)
    out: list[str] = [d["translation"] for d in done]
    body: dict[str, Any] = {"translatedText": out if batch else out[0]}
    if auto:
        detected = [_confidence(st, t, d["source"]) for t, d in zip(texts, done, strict=True)]
        body["detectedLanguage"] = detected if batch else detected[0]
    if n_alt > 0:  # tolk generates one translation per text: no alternatives to offer
        body["alternatives"] = [[] for _ in out] if batch else []
    return JSONResponse(body)


@router.post("/detect")
async def detect(request: Request) -> JSONResponse:
    """Detect the language of a text (LibreTranslate): `[{confidence, language}]`."""
    st = state_of(request)
    try:
        fields = await read_fields(request, limit=MAX_LT_BODY_BYTES)
        _who(st, request, fields)
        q = fields.get("q")
        if not q or not isinstance(q, str):
            raise CompatError(400, "Invalid request: missing q parameter")
    except CompatError as exc:
        return libretranslate_error(exc)
    scores = st.pipeline.detect_confidences(q)
    return JSONResponse([{"confidence": round(100 * v, 1), "language": c} for c, v in scores])


@router.get("/languages")
async def languages(request: Request) -> JSONResponse:
    """The served languages (LibreTranslate): `[{code, name, targets}]`."""
    return JSONResponse(libretranslate_languages(state_of(request).pipeline.profile.languages))


@router.get("/frontend/settings")
async def frontend_settings(request: Request) -> JSONResponse:
    """Settings LibreTranslate front ends read."""
    st = state_of(request)
    codes = sorted(st.pipeline.profile.languages)
    names = st.pipeline.profile.languages
    target = codes[1] if len(codes) > 1 else codes[0]
    return JSONResponse({
        "charLimit": st.settings.max_text_chars, "batchLimit": MAX_ITEMS,
        "frontendTimeout": 500, "apiKeys": st.gate.keys_required,
        "keyRequired": st.gate.keys_required,
        "suggestions": False, "filesTranslation": False, "supportedFilesFormat": [],
        "language": {"source": {"code": "auto", "name": "Auto Detect"},
                     "target": {"code": target, "name": names[target]}},
    })
