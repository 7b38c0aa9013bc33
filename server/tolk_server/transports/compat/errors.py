"""Errors of the compatible APIs, each in its own API's shape."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from tolk.protocol import KEY_LIMITS, ErrorCode, Limit, ProtocolError

# The most texts one request may carry (DeepL documents 50; LibreTranslate's batch limit).
MAX_ITEMS = 50
# The most bytes a request body may have: DeepL documents 128 KiB; LibreTranslate has no
# such limit, so it gets room for a full batch of maximum-length texts.
MAX_BODY_BYTES = 128 * 1024
MAX_LT_BODY_BYTES = 1024 * 1024


class CompatError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The paths of each API (exact, or prefixes ending in `/`), for refusals made before a
# route runs (`http_guard`: body too large, too slow…).
LT_PATHS = ("/translate", "/detect", "/languages", "/frontend/settings")
DEEPL_PATHS = ("/v2/", "/v3/")


def libretranslate_body(message: str) -> dict[str, Any]:
    return {"error": message}


def deepl_body(message: str) -> dict[str, Any]:
    return {"message": message}


def libretranslate_error(exc: CompatError) -> JSONResponse:
    return JSONResponse(libretranslate_body(exc.message), status_code=exc.status)


def deepl_error(exc: CompatError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
    return JSONResponse(deepl_body(exc.message), status_code=exc.status, headers=headers)


def from_protocol(exc: ProtocolError, *, quota_status: int) -> CompatError:
    """Map a tolk error onto HTTP statuses the compatible APIs document (by its code and
    structured `limit`, never by its message)."""
    if exc.limit == Limit.KEY_CHARS:
        return CompatError(quota_status, "Quota exceeded: " + exc.message)
    if exc.limit in KEY_LIMITS:
        return CompatError(429, "Too many requests: " + exc.message)
    status = {ErrorCode.BAD_REQUEST: 400, ErrorCode.UNSUPPORTED_LANGUAGE: 400,
              ErrorCode.TOO_LARGE: 413, ErrorCode.UNAUTHORIZED: 403,
              ErrorCode.OVERLOADED: 503, ErrorCode.ENGINE_ERROR: 503}.get(exc.code, 500)
    return CompatError(status, exc.message)
