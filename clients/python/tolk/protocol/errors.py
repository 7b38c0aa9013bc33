"""The one exception type of the protocol core: a frame that cannot be honoured."""

from __future__ import annotations

from .types import ErrorCode


class ProtocolError(Exception):
    """A request or frame rejected with a protocol error code."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id
