"""The exceptions the SDK raises.

    TolkError                        base of everything below
    ├── ConnectionError              cannot connect, or the connection dropped
    │   └── UndeliverableError       the server closed the connection because it could not
    │                                deliver frames (the client did not read); requests were
    │                                cancelled (close code 4001)
    ├── RequestTimeout               a request outlived its timeout (also a builtin TimeoutError)
    └── TranslationError             the server answered with an `error` frame; `.code`
        ├── BadRequestError          bad_request (also raised locally for an invalid request)
        ├── AuthenticationError      unauthorized (missing or wrong API key)
        ├── UnsupportedLanguageError unsupported_language
        ├── RequestTooLargeError     too_large
        ├── DuplicateRequestIdError  duplicate_id
        ├── RequestCancelled         cancelled
        ├── OverloadedError          overloaded (retry later)
        ├── EngineError              engine_error
        ├── RequestExpired           expired (an idle live request)
        ├── ShuttingDownError        shutting_down (the server drained; retry elsewhere)
        └── InternalServerError      internal

`ConnectionError` shadows the builtin of the same name on purpose: inside `tolk` it is the
SDK's own type. It is not a subclass of the builtin; use `tolk.TolkConnectionError` where the
shadowing would confuse.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConnectionError",
    "DuplicateRequestIdError",
    "EngineError",
    "InternalServerError",
    "OverloadedError",
    "RequestCancelled",
    "RequestExpired",
    "RequestTimeout",
    "RequestTooLargeError",
    "ShuttingDownError",
    "TolkConnectionError",
    "TolkError",
    "TranslationError",
    "UndeliverableError",
    "UnsupportedLanguageError",
    "error_from_frame",
]


class TolkError(Exception):
    """Base class of every exception the SDK raises."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The client-side request `id` this error concerns, when it concerns one.
        self.request_id = request_id


class ConnectionError(TolkError):
    """The connection could not be opened, or it dropped while the request was in flight."""


TolkConnectionError = ConnectionError


class UndeliverableError(ConnectionError):
    """The server could not deliver this connection's frames (the client stopped reading) and
    closed it with code 4001; the requests in flight were cancelled on the server."""


class RequestTimeout(TolkError, builtins.TimeoutError):
    """The request did not finish within its timeout; it was cancelled on the server."""


class TranslationError(TolkError):
    """The server ended the request with an `error` frame. `code` is the protocol error code."""

    default_code: ClassVar[str] = "internal"

    def __init__(
        self, message: str, *, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.code: str = code or self.default_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequestError(TranslationError):
    default_code = "bad_request"


class AuthenticationError(TranslationError):
    default_code = "unauthorized"


class UnsupportedLanguageError(TranslationError):
    default_code = "unsupported_language"


class RequestTooLargeError(TranslationError):
    default_code = "too_large"


class DuplicateRequestIdError(TranslationError):
    default_code = "duplicate_id"


class RequestCancelled(TranslationError):
    default_code = "cancelled"


class OverloadedError(TranslationError):
    default_code = "overloaded"


class EngineError(TranslationError):
    default_code = "engine_error"


class RequestExpired(TranslationError):
    """A live request got no `update` for the server's idle time."""

    default_code = "expired"


class InternalServerError(TranslationError):
    default_code = "internal"


class ShuttingDownError(TranslationError):
    default_code = "shutting_down"


_BY_CODE: dict[str, type[TranslationError]] = {
    cls.default_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        UnsupportedLanguageError,
        RequestTooLargeError,
        DuplicateRequestIdError,
        RequestCancelled,
        OverloadedError,
        EngineError,
        RequestExpired,
        InternalServerError,
        ShuttingDownError,
    )
}


def error_from_frame(frame: Mapping[str, Any], request_id: str | None = None) -> TranslationError:
    """The exception for a server `error` frame (an unknown code gives a plain TranslationError)."""
    code = str(frame.get("code") or "internal")
    message = str(frame.get("message") or code)
    rid = frame.get("id")
    cls = _BY_CODE.get(code, TranslationError)
    return cls(message, code=code, request_id=rid if isinstance(rid, str) else request_id)
