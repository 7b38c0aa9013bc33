"""The one exception type of the protocol core: a frame that cannot be honoured."""

from __future__ import annotations

from enum import StrEnum

from .types import ErrorCode


class Limit(StrEnum):
    """Which limit refused a request (`overloaded`): transports map these, never the message."""

    SERVER_CAPACITY = "server_capacity"  # in-flight requests on the whole server
    CONNECTION = "connection"  # in-flight requests on one WebSocket connection
    NOT_READY = "not_ready"  # loading or draining
    KEY_CONCURRENT = "key_concurrent_streams"  # the per-API-key limits below
    KEY_RATE = "key_requests_per_minute"
    KEY_CHARS = "key_chars_per_day"


KEY_LIMITS = frozenset({Limit.KEY_CONCURRENT, Limit.KEY_RATE, Limit.KEY_CHARS})


class ProtocolError(Exception):
    """A request or frame rejected with a protocol error code.

    `limit` and `retry_after` (seconds) are structured details for `overloaded`. `frame`: the
    type of the client frame refused, when it is known (`parse_client_frame` sets it).
    """

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None, *,
                 limit: Limit | None = None, retry_after: float | None = None,
                 frame: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id
        self.limit = limit
        self.retry_after = retry_after
        self.frame = frame
