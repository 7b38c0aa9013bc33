"""Protocol v1 wire types: the frames the server sends, and the error codes."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any, Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1
# Ids the server assigns (`srv-N`); client ids must not start with it.
SERVER_ID_PREFIX = "srv-"

# How streamed text is cut into frames (the chunker itself is server code).
Granularity = Literal["token", "word", "segment"]
GRANULARITIES: tuple[Granularity, ...] = ("token", "word", "segment")
DEFAULT_MAX_DELAY_MS = 300



class ErrorCode(StrEnum):
    """The `code` of an `error` frame (a str enum: each member is its wire value)."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    TOO_LARGE = "too_large"
    DUPLICATE_ID = "duplicate_id"
    CANCELLED = "cancelled"
    OVERLOADED = "overloaded"
    ENGINE_ERROR = "engine_error"
    EXPIRED = "expired"  # an idle live request
    INTERNAL = "internal"
    SHUTTING_DOWN = "shutting_down"  # the drain deadline passed with the request still running


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    POLICY_VIOLATION = 1008  # authentication failed or timed out
    SERVICE_RESTART = 1012  # draining: reconnect (to another replica)
    TRY_AGAIN_LATER = 1013  # the connection cap
    UNDELIVERABLE = 4001  # frames could not be delivered (the client did not read): its
    # requests were cancelled and it gets no terminal frame for them


ERROR_CODES: tuple[ErrorCode, ...] = tuple(ErrorCode)

FinishReason = Literal["stop", "length", "cancelled", "error"]


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    protocol: int
    model: str
    languages: list[str]
    auth: bool
    # With several models: each one's name, languages and the modes it is routed for.
    models: NotRequired[list[dict[str, Any]]]


class StartFrame(TypedDict):
    type: Literal["start"]
    id: str
    request_id: str
    source: str
    target: str
    segment: NotRequired[int]  # translations of an audio stream's phrases
    speaker: NotRequired[str]


class TokenFrame(TypedDict):
    type: Literal["token"]
    id: str
    token: str
    index: int
    seq: NotRequired[int]  # the source sentence, when a long input was split
    target: NotRequired[str]  # with `targets`
    segment: NotRequired[int]
    speaker: NotRequired[str]


class SegmentFrame(TypedDict):
    type: Literal["segment"]
    id: str
    text: str
    index: int
    seq: NotRequired[int]
    target: NotRequired[str]
    segment: NotRequired[int]
    speaker: NotRequired[str]


class TermReport(TypedDict):
    source: str
    target: str
    in_source: bool
    in_output: bool


class PartialFrame(TypedDict):
    """A live request's current translation: `stable` never changes without `reset`."""

    type: Literal["partial"]
    id: str
    version: int  # the number of the `update` it answers (1-based)
    stable: str
    tentative: str
    reset: NotRequired[bool]
    segment: NotRequired[int]  # a phrase of an audio stream (`audio_start.live`)
    speaker: NotRequired[str]
    target: NotRequired[str]


class LiveStats(TypedDict):
    updates: int
    partials: int
    resets: int
    normalized_erasure: float
    laal: float
    first_partial_ms: float | None
    final_ms: float
    engine_tokens: NotRequired[int]  # tokens the engine generated for all hypotheses


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
    sentences: NotRequired[int]
    cached: NotRequired[bool]
    session: NotRequired[str]
    glossary: NotRequired[list[TermReport]]
    segment: NotRequired[int]
    speaker: NotRequired[str]
    live: NotRequired[LiveStats]
    quality: NotRequired[str]
    model: NotRequired[str]
    fallback: NotRequired[dict[str, str]]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    id: NotRequired[str]
    code: ErrorCode
    message: str
    target: NotRequired[str]
    # The client frame type it answers ("update", "cancel", …): not a request's terminal
    # frame (see `is_terminal`).
    about: NotRequired[str]
    retry_after: NotRequired[float]  # `overloaded`: seconds until the limit frees up
    segment: NotRequired[int]
    speaker: NotRequired[str]


class PongFrame(TypedDict):
    type: Literal["pong"]


class TranscriptFrame(TypedDict):
    """A phrase of an audio stream: partials (`final` false) then exactly one final."""

    type: Literal["transcript"]
    id: str
    segment: int
    speaker: str
    language: str
    start_ms: int
    end_ms: int
    text: str
    final: bool


class AudioCompleteFrame(TypedDict):
    """An audio stream's terminal frame (or an `error` with its id)."""

    type: Literal["audio_complete"]
    id: str
    segments: int
    audio_ms: int


ServerFrame = (
    ReadyFrame | StartFrame | TokenFrame | SegmentFrame | PartialFrame | CompleteFrame | ErrorFrame
    | PongFrame | TranscriptFrame | AudioCompleteFrame
)
# The frames that end a request (one per target): the only definition of this set. The JS
# client's `TERMINAL_TYPES` (clients/js/index.js) is checked against it by tests/test_protocol.py.
TERMINAL_TYPES: frozenset[str] = frozenset({"complete", "error"})


def is_terminal(frame: Mapping[str, Any]) -> bool:
    """Whether `frame` ends its request (one target of it): a `complete`, or an `error` that
    does not answer one client frame. The one rule, on every surface: an error frame that
    does not end a request carries `about` (the type of the frame it refuses)."""
    return frame.get("type") in TERMINAL_TYPES and "about" not in frame
