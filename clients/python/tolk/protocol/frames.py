"""Client frames (validated with pydantic), decoding, and server-frame builders.

Pure code: no sockets, no clocks, no engine. Transports feed text in and get
frames or a `ProtocolError` out.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .errors import ProtocolError
from .types import (
    DEFAULT_MAX_DELAY_MS,
    PROTOCOL_VERSION,
    SERVER_ID_PREFIX,
    CompleteFrame,
    ErrorCode,
    ErrorFrame,
    Granularity,
    PartialFrame,
    PongFrame,
    ReadyFrame,
    SegmentFrame,
    StartFrame,
    TokenFrame,
)

LANG_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
ID_MAX = 128


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)




def _valid_unicode(value: str) -> str:
    """Every client string must encode as UTF-8: a lone surrogate (`"\\ud800"`) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _not_reserved(value: str) -> str:
    if value.startswith(SERVER_ID_PREFIX):
        raise ValueError(f"ids starting with {SERVER_ID_PREFIX!r} are reserved for the server")
    return value


# The one string type of client frames: valid Unicode (every string field uses it).
WireStr = Annotated[str, AfterValidator(_valid_unicode)]
Lang = Annotated[WireStr, Field(pattern=LANG_PATTERN, max_length=35)]
MAX_TERM_CHARS = 200  # one glossary term (source or target), inline or stored
Term = Annotated[WireStr, Field(min_length=1, max_length=MAX_TERM_CHARS)]
Name = Annotated[WireStr, Field(min_length=1, max_length=ID_MAX)]
RequestId = Annotated[Name, AfterValidator(_not_reserved)]
Quality = Literal["fast", "balanced", "quality"]
MAX_TARGETS = 8
MAX_GLOSSARY_TERMS = 200


class TranslateOptions(_Frame):
    """The fields a translation request carries, over WebSocket and over HTTP alike."""

    id: RequestId | None = None
    text: WireStr
    source: Annotated[WireStr, Field(pattern=LANG_PATTERN + "|^auto$")] | None = None
    target: Lang | None = None
    targets: Annotated[list[Lang], Field(min_length=1, max_length=MAX_TARGETS)] | None = None
    stream: bool = True
    max_tokens: Annotated[int, Field(ge=1, le=8192)] | None = None
    granularity: Granularity = "token"
    max_delay_ms: Annotated[int, Field(ge=0, le=10_000)] = DEFAULT_MAX_DELAY_MS
    split: bool = True
    session: Name | None = None
    glossary: Annotated[dict[Term, Term], Field(max_length=MAX_GLOSSARY_TERMS)] | None = None
    glossary_id: Name | None = None
    # "html": translate the text nodes of an HTML fragment, keep the markup byte for byte.
    format: Literal["text", "html"] = "text"
    # Surrounding text that helps the model (not translated); profiles with context only.
    context: Annotated[WireStr, Field(max_length=4000)] | None = None
    quality: Quality | None = None

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> TranslateOptions:
        if (self.target is None) == (self.targets is None):
            raise ValueError("give exactly one of `target` or `targets`")
        if self.targets is not None and len(set(self.targets)) != len(self.targets):
            raise ValueError("`targets` must not repeat a language")
        return self

    @property
    def target_list(self) -> list[str]:
        return list(self.targets) if self.targets is not None else [str(self.target)]


class AuthFrame(_Frame):
    type: Literal["auth"]
    api_key: Annotated[WireStr, Field(max_length=512)]


class TranslateFrame(TranslateOptions):
    type: Literal["translate"]


class UpdateFrame(TranslateOptions):
    """Live input: the whole current source text of live request `id`. The first update of
    an id opens the request with its options; a later one may leave them out (it inherits
    them: `follow_up`)."""

    type: Literal["update"]
    id: RequestId
    final: bool = False

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> UpdateFrame:  # replaces the check of TranslateOptions
        if self.target is not None and self.targets is not None:
            raise ValueError("give exactly one of `target` or `targets`")
        return self


# What a later `update` carries on its own; every other field is the live request's option.
UPDATE_OWN_FIELDS = frozenset({"type", "id", "text", "final"})


def follow_up(first: UpdateFrame, later: UpdateFrame) -> UpdateFrame:
    """A later `update` of the live request that `first` opened: its text and `final` with
    `first`'s options. Raises `bad_request` if it changes an option; the caller answers with
    `about: "update"` (the request goes on)."""
    for name in sorted(later.model_fields_set - UPDATE_OWN_FIELDS):
        mine, theirs = getattr(later, name), getattr(first, name)
        if name == "source" and {mine, theirs} <= {None, "auto"}:
            continue
        if mine != theirs:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"an update cannot change `{name}` of a live request: "
                "leave it out (it keeps the first update's) or open a new one", later.id,
                frame="update")
    return first.model_copy(update={"text": later.text, "final": later.final})


class CancelFrame(_Frame):
    type: Literal["cancel"]
    id: Name


class PingFrame(_Frame):
    type: Literal["ping"]


class AudioStartFrame(_Frame):
    """Opens an audio stream: binary frames of PCM s16le (interleaved) follow."""

    type: Literal["audio_start"]
    id: RequestId
    source: Annotated[str, Field(pattern=LANG_PATTERN + "|^auto$")] = "auto"
    targets: Annotated[list[Lang], Field(max_length=MAX_TARGETS)] = Field(default_factory=list)
    sample_rate: int = 16000
    channels: int = 1
    speakers: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                        Field(max_length=8)] = Field(default_factory=list)
    quality: Quality | None = None  # each phrase's translation runs in this mode
    partials: bool = True  # partial transcripts while a phrase is spoken
    # Translate partial transcripts live (`partial` frames: stable and tentative text).
    live: bool = False

    @model_validator(mode="after")
    def _live_needs_partials(self) -> AudioStartFrame:
        if self.live and not self.partials:
            raise ValueError("`live` translates partial transcripts: it needs `partials`")
        return self


class AudioEndFrame(_Frame):
    type: Literal["audio_end"]
    id: Annotated[str, Field(min_length=1, max_length=ID_MAX)]


AnyClientFrame = (
    AuthFrame | TranslateFrame | UpdateFrame | CancelFrame | PingFrame | AudioStartFrame
    | AudioEndFrame
)
ClientFrame = Annotated[AnyClientFrame, Field(discriminator="type")]
_CLIENT_FRAME: TypeAdapter[AnyClientFrame] = TypeAdapter(ClientFrame)
CLIENT_TYPES = ("auth", "translate", "update", "cancel", "ping", "audio_start", "audio_end")
# The frames that open a request: their ids are `RequestId`s (no `srv-`), one open request
# per id on a connection. A refusal of any other frame never ends a request (`about`).
OPENING_TYPES = frozenset({"translate", "update", "audio_start"})


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"][1:] or e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def parse_client_frame(data: str | bytes) -> AnyClientFrame:
    """Decode one client frame or raise `ProtocolError(ErrorCode.BAD_REQUEST)`.

    The error carries the frame's `id` when one could be read, so the client
    can match it to its request.
    """
    try:
        obj: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    raw_id = obj.get("id")
    rid = _echo_id(raw_id)
    kind = obj.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"unknown frame type {kind!r}; expected one of {CLIENT_TYPES}", rid,
        )
    try:
        return _CLIENT_FRAME.validate_python(obj)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid {kind} frame: {_describe(exc)}",
                            rid, frame=kind) from None


def parse_translate_body(obj: Any) -> TranslateOptions:
    """Validate an HTTP `POST /v1/translate` body (the translate frame without `type`)."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "body must be a JSON object")
    obj = {k: v for k, v in obj.items() if k != "type"}
    raw_id = obj.get("id")
    rid = _echo_id(raw_id)
    try:
        return TranslateOptions.model_validate(obj)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid request: {_describe(exc)}",
                            rid) from None


def _echo_id(raw: Any) -> str | None:
    """A client's id, if it is fit to be echoed in an error frame."""
    if not isinstance(raw, str) or not 0 < len(raw) <= ID_MAX:
        return None
    try:
        return _valid_unicode(raw)
    except ValueError:
        return None


def encode(frame: Any) -> str:
    """Serialise a server frame as compact JSON (UTF-8 text, not ASCII-escaped). A string that
    is not valid Unicode is escaped rather than left to break the socket's UTF-8 encoding."""
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(frame, separators=(",", ":"))
    return text


def ready(model: str, languages: list[str], auth: bool) -> ReadyFrame:
    return {
        "type": "ready",
        "protocol": PROTOCOL_VERSION,
        "model": model,
        "languages": languages,
        "auth": auth,
    }


def start(rid: str, request_id: str, source: str, target: str) -> StartFrame:
    return {"type": "start", "id": rid, "request_id": request_id, "source": source,
            "target": target}


def token(rid: str, text: str, index: int) -> TokenFrame:
    return {"type": "token", "id": rid, "token": text, "index": index}


def segment(rid: str, text: str, index: int) -> SegmentFrame:
    return {"type": "segment", "id": rid, "text": text, "index": index}


def complete(
    rid: str,
    translation: str,
    source: str,
    target: str,
    tokens: int,
    first_token_ms: float | None,
    latency_ms: float,
    finish_reason: str,
) -> CompleteFrame:
    return {
        "type": "complete",
        "id": rid,
        "translation": translation,
        "source": source,
        "target": target,
        "tokens": tokens,
        "first_token_ms": None if first_token_ms is None else round(first_token_ms, 3),
        "latency_ms": round(latency_ms, 3),
        "finish_reason": finish_reason,
    }


def partial(rid: str, version: int, stable: str, tentative: str,
            reset: bool = False) -> PartialFrame:
    frame: PartialFrame = {"type": "partial", "id": rid, "version": version, "stable": stable,
                           "tentative": tentative}
    if reset:
        frame["reset"] = True
    return frame


def error(code: ErrorCode, message: str, rid: str | None = None) -> ErrorFrame:
    frame: ErrorFrame = {"type": "error", "code": code, "message": message}
    if rid is not None:
        frame["id"] = rid
    return frame


def refusal(exc: ProtocolError, rid: str | None = None,
            about: str | None = None) -> ErrorFrame:
    """The `error` frame for `exc` (with its `retry_after`, if any). `about`: the type of the
    client frame refused when that refusal does not end the request its id names (the request
    goes on); see `is_terminal`."""
    frame = error(exc.code, exc.message, rid or exc.request_id)
    if exc.retry_after is not None:
        frame["retry_after"] = exc.retry_after
    if about is not None:
        frame["about"] = about
    return frame


def pong() -> PongFrame:
    return {"type": "pong"}
