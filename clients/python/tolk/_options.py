"""What a request asks for: one options type for `translate`, `translate_stream` and `live`,
on `Client` and `AsyncClient` alike.

The keyword arguments are typed once, here (`TranslateKwargs`, and `LiveKwargs` for the
options a live request takes); each call builds one frozen `RequestOptions` from them and
passes it down to the frame it becomes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Required, TypedDict

from ._exceptions import BadRequestError, RequestTooLargeError, TolkError
from .protocol import ProtocolError, parse_client_frame
from .protocol.frames import Quality
from .protocol.types import Granularity

__all__ = ["LiveKwargs", "RequestOptions", "TranslateKwargs", "translate_frame", "update_frame"]


class LiveKwargs(TypedDict, total=False):
    """The keyword arguments of `live(...)`."""

    target: Required[str]
    source: str | None
    session: str | None
    glossary: Mapping[str, str] | None
    glossary_id: str | None
    max_tokens: int | None


class TranslateKwargs(LiveKwargs, total=False):
    """The keyword arguments of `translate(...)` and `translate_stream(...)` (besides `text`,
    `timeout` and `handler`). `quality`: `"fast"`, `"balanced"` (the server's default) or
    `"quality"`."""

    granularity: Granularity | None
    max_delay_ms: int | None
    split: bool | None
    quality: Quality | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOptions:
    """The options of one request; `None` leaves a field to the server's default."""

    target: str
    source: str | None = None
    session: str | None = None
    glossary: Mapping[str, str] | None = None
    glossary_id: str | None = None
    max_tokens: int | None = None
    granularity: Granularity | None = None
    max_delay_ms: int | None = None
    split: bool | None = None
    quality: Quality | None = None

    def wire(self) -> dict[str, Any]:
        """The options as frame fields: those that are set (a glossary as a plain dict)."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = dict(value) if isinstance(value, Mapping) else value
        return out


def _encode(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def translate_frame(rid: str, text: str, stream: bool, options: RequestOptions,
                    max_frame_bytes: int | None) -> str:
    """The `translate` frame, checked as the server checks it; raises `BadRequestError` or
    `RequestTooLargeError` (over `max_frame_bytes`, `None`: no limit) instead of sending it."""
    error: TolkError | None = None
    try:
        frame = _encode({"type": "translate", "id": rid, "text": text, "stream": stream,
                         **options.wire()})
        parse_client_frame(frame)
    except ProtocolError as exc:
        error = BadRequestError(exc.message, request_id=rid)
    except (TypeError, ValueError) as exc:
        error = BadRequestError(f"invalid request: {exc}", request_id=rid)
    else:
        if (max_frame_bytes is not None
                and len(frame.encode("utf-8", "surrogatepass")) > max_frame_bytes):
            error = RequestTooLargeError(f"the request frame exceeds {max_frame_bytes} bytes",
                                         request_id=rid)
    if error is not None:
        raise error
    return frame


def update_frame(rid: str, text: str, final: bool, options: RequestOptions) -> str:
    """An `update` frame of live request `rid` (the whole current text), checked as the
    server checks it; raises `BadRequestError`."""
    obj = {"type": "update", "id": rid, "text": text, **options.wire()}
    if final:
        obj["final"] = True
    frame = _encode(obj)
    try:
        parse_client_frame(frame)
    except ProtocolError as exc:
        raise BadRequestError(exc.message, request_id=rid) from None
    return frame
