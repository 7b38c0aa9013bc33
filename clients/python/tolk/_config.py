"""Small configuration objects: `Timeout`, `Limits`, `Reconnect`; and URL handling."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_URL",
    "USE_CLIENT_DEFAULT",
    "Limits",
    "Reconnect",
    "Timeout",
    "TimeoutTypes",
    "UseClientDefault",
    "stream_url",
]

DEFAULT_URL: Final = "ws://127.0.0.1:8000"
STREAM_PATH: Final = "/v1/stream"


class UseClientDefault:
    """The type of `USE_CLIENT_DEFAULT`: "this call takes the client's setting"."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault()


@dataclass(frozen=True, slots=True)
class Timeout:
    """Time limits in seconds; `None` means no limit.

    `request`: from sending a request to its last frame (connecting included); a request
    that runs out of time is cancelled on the server and raises `RequestTimeout`.
    `connect`: one attempt to open a connection and receive the server's `ready` frame.
    """

    request: float | None = 60.0
    connect: float | None = 10.0

    def __post_init__(self) -> None:
        for name in ("request", "connect"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Timeout.{name} must be positive or None, not {value!r}")


TimeoutTypes = Timeout | float | int | None


def to_timeout(value: TimeoutTypes) -> Timeout:
    if isinstance(value, Timeout):
        return value
    return Timeout(request=None if value is None else float(value))


@dataclass(frozen=True, slots=True)
class Limits:
    """Connection pool limits.

    `pool_size`: WebSocket connections kept to the server; each request goes to the least
    loaded one. `max_requests_per_connection`: requests in flight on one connection (the
    server's default cap is 64); beyond `pool_size * max_requests_per_connection`, new
    requests wait for a free slot (within their timeout). `max_frame_bytes`: a request
    whose frame is larger fails locally with `RequestTooLargeError` (the server's default
    limit; raise it to match a server configured higher, `None`: no local check).
    """

    pool_size: int = 1
    max_requests_per_connection: int = 64
    max_frame_bytes: int | None = 64 * 1024

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("Limits.pool_size must be at least 1")
        if self.max_requests_per_connection < 1:
            raise ValueError("Limits.max_requests_per_connection must be at least 1")


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a connection is (re)opened: at most `max_attempts` tries per opening, waiting
    `backoff * multiplier**(n-1)` seconds (capped at `max_backoff`, plus up to `jitter` of it
    at random) before try n+1. An authentication failure is never retried."""

    max_attempts: int = 5
    backoff: float = 0.2
    multiplier: float = 2.0
    max_backoff: float = 5.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Reconnect.max_attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1 or self.jitter < 0:
            raise ValueError("Reconnect: backoff values must be non-negative, multiplier >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        base = min(self.max_backoff, self.backoff * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 + self.jitter * random.random())


def stream_url(url: str | None) -> str:
    """The `/v1/stream` WebSocket URL for a server URL (`ws`, `wss`, `http` or `https`).

    `None` reads `TOLK_URL` (default `ws://127.0.0.1:8000`). A URL without a path gets
    `/v1/stream`; one with another path (a proxy prefix) gets it appended.
    """
    raw = url if url is not None else (os.environ.get("TOLK_URL") or DEFAULT_URL)
    parts = urlsplit(raw.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a ws://, wss://, http:// or https:// server URL: {raw!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(STREAM_PATH):
        path += STREAM_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))
