"""Protocol v1 wire types: the frames the server sends, and the error codes."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1

ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "unsupported_language",
    "too_large",
    "duplicate_id",
    "cancelled",
    "overloaded",
    "engine_error",
    "internal",
]
ERROR_CODES: tuple[ErrorCode, ...] = (
    "bad_request",
    "unauthorized",
    "unsupported_language",
    "too_large",
    "duplicate_id",
    "cancelled",
    "overloaded",
    "engine_error",
    "internal",
)

FinishReason = Literal["stop", "length", "cancelled", "error"]


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    protocol: int
    model: str
    languages: list[str]
    auth: bool


class StartFrame(TypedDict):
    type: Literal["start"]
    id: str
    request_id: str
    source: str
    target: str


class TokenFrame(TypedDict):
    type: Literal["token"]
    id: str
    token: str
    index: int


class CompleteFrame(TypedDict):
    type: Literal["complete"]
    id: str
    translation: str
    source: str
    target: str
    tokens: int
    first_token_ms: float | None
    latency_ms: float
    finish_reason: str


class ErrorFrame(TypedDict):
    type: Literal["error"]
    id: NotRequired[str]
    code: ErrorCode
    message: str


class PongFrame(TypedDict):
    type: Literal["pong"]


ServerFrame = ReadyFrame | StartFrame | TokenFrame | CompleteFrame | ErrorFrame | PongFrame
TERMINAL_TYPES = frozenset({"complete", "error"})
