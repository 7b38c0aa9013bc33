"""Protocol v1: frame schemas, validation and error codes, with no I/O."""

from .chunking import GRANULARITIES, Chunker, Granularity
from .errors import ProtocolError
from .frames import (
    AuthFrame,
    CancelFrame,
    PingFrame,
    TranslateFrame,
    TranslateOptions,
    complete,
    encode,
    error,
    parse_client_frame,
    parse_translate_body,
    pong,
    ready,
    segment,
    start,
    token,
)
from .reassembly import OrderedJoiner
from .types import ERROR_CODES, PROTOCOL_VERSION, TERMINAL_TYPES, ErrorCode, ServerFrame

__all__ = [
    "ERROR_CODES",
    "GRANULARITIES",
    "PROTOCOL_VERSION",
    "TERMINAL_TYPES",
    "AuthFrame",
    "CancelFrame",
    "Chunker",
    "ErrorCode",
    "Granularity",
    "OrderedJoiner",
    "PingFrame",
    "ProtocolError",
    "ServerFrame",
    "TranslateFrame",
    "TranslateOptions",
    "complete",
    "encode",
    "error",
    "parse_client_frame",
    "parse_translate_body",
    "pong",
    "ready",
    "segment",
    "start",
    "token",
]
