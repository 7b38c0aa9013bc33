"""tolk: the Python SDK for the tolk translation server.

    import tolk
    with tolk.Client() as client:            # TOLK_URL, TOLK_API_KEY from the environment
        for token in client.translate_stream(text="Good morning!", target="fi"):
            print(token, end="", flush=True)

Importing `tolk` is cheap: the clients (and `websockets`, `pydantic`) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from ._async_client import AsyncClient
    from ._client import Client
    from ._config import USE_CLIENT_DEFAULT, Limits, Reconnect, Timeout
    from ._exceptions import (
        AuthenticationError,
        BadRequestError,
        ConnectionError,
        DuplicateRequestIdError,
        EngineError,
        InternalServerError,
        OverloadedError,
        RequestCancelled,
        RequestExpired,
        RequestTimeout,
        RequestTooLargeError,
        ShuttingDownError,
        TolkConnectionError,
        TolkError,
        TranslationError,
        UndeliverableError,
        UnsupportedLanguageError,
    )
    from ._live import AsyncLiveTranslation, LivePartial, LiveResult, LiveTranslation
    from ._mock import MockServer, MockServerConnection, MockTransport
    from ._models import TranslationResult
    from ._stream import AsyncTranslationStream, TranslationStream
    from ._transport import Transport, WebSocketTransport, WireConnection
    from .events import TranslationEventHandler

_LAZY: dict[str, str] = {
    "AsyncClient": "_async_client",
    "Client": "_client",
    "USE_CLIENT_DEFAULT": "_config",
    "Limits": "_config",
    "Reconnect": "_config",
    "Timeout": "_config",
    "AuthenticationError": "_exceptions",
    "BadRequestError": "_exceptions",
    "ConnectionError": "_exceptions",
    "DuplicateRequestIdError": "_exceptions",
    "EngineError": "_exceptions",
    "InternalServerError": "_exceptions",
    "OverloadedError": "_exceptions",
    "RequestCancelled": "_exceptions",
    "RequestExpired": "_exceptions",
    "RequestTimeout": "_exceptions",
    "RequestTooLargeError": "_exceptions",
    "ShuttingDownError": "_exceptions",
    "UndeliverableError": "_exceptions",
    "TolkConnectionError": "_exceptions",
    "TolkError": "_exceptions",
    "TranslationError": "_exceptions",
    "UnsupportedLanguageError": "_exceptions",
    "AsyncLiveTranslation": "_live",
    "LivePartial": "_live",
    "LiveResult": "_live",
    "LiveTranslation": "_live",
    "MockServer": "_mock",
    "MockServerConnection": "_mock",
    "MockTransport": "_mock",
    "TranslationEventHandler": "events",
    "TranslationResult": "_models",
    "AsyncTranslationStream": "_stream",
    "TranslationStream": "_stream",
    "Transport": "_transport",
    "WebSocketTransport": "_transport",
    "WireConnection": "_transport",
}

__all__ = [
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "AsyncLiveTranslation",
    "AsyncTranslationStream",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConnectionError",
    "DuplicateRequestIdError",
    "EngineError",
    "InternalServerError",
    "Limits",
    "LivePartial",
    "LiveResult",
    "LiveTranslation",
    "MockServer",
    "MockServerConnection",
    "MockTransport",
    "OverloadedError",
    "Reconnect",
    "RequestCancelled",
    "RequestExpired",
    "RequestTimeout",
    "RequestTooLargeError",
    "ShuttingDownError",
    "Timeout",
    "TolkConnectionError",
    "TolkError",
    "TranslationError",
    "TranslationEventHandler",
    "TranslationResult",
    "TranslationStream",
    "Transport",
    "UndeliverableError",
    "UnsupportedLanguageError",
    "WebSocketTransport",
    "WireConnection",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tolk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
