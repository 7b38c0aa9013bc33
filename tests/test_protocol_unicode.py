"""Every client string is valid Unicode or `bad_request` (a property test over all fields)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tolk.protocol import ErrorCode, ProtocolError, encode, parse_client_frame, parse_translate_body

VALID: dict[str, dict[str, Any]] = {
    "translate": {"type": "translate", "id": "r1", "text": "hello", "source": "en",
                  "target": "fi", "session": "s1", "glossary_id": "g1",
                  "glossary": {"cat": "kissa"}, "context": "earlier text"},
    "translate_targets": {"type": "translate", "id": "r1", "text": "hello", "targets": ["fi"]},
    "auth": {"type": "auth", "api_key": "k"},
    "cancel": {"type": "cancel", "id": "r1"},
}
# (frame, path to a string): every string field a client can send.
FIELDS = [("translate", ("id",)), ("translate", ("text",)), ("translate", ("source",)),
          ("translate", ("target",)), ("translate", ("session",)),
          ("translate", ("glossary_id",)), ("translate", ("glossary", "cat")),
          ("translate", ("context",)),
          ("translate", ("glossary", None)), ("translate_targets", ("targets", 0)),
          ("auth", ("api_key",)), ("cancel", ("id",))]

surrogate = st.integers(0xD800, 0xDFFF).map(chr)
text = st.text(st.characters(codec="utf-8"), max_size=8)
bad_strings = st.tuples(text, surrogate, text).map("".join)


def _put(frame: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    frame = json.loads(json.dumps(frame))
    if path == ("glossary", None):  # a key, not a value
        frame["glossary"] = {value: "kissa"}
        return frame
    node: Any = frame
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return frame


@pytest.mark.parametrize(("kind", "path"), FIELDS)
@settings(max_examples=15, deadline=None)
@given(value=bad_strings)
def test_lone_surrogates_are_bad_request_in_every_field(kind: str, path: tuple[Any, ...],
                                                        value: str) -> None:
    frame = _put(VALID[kind], path, value)
    wire = json.dumps(frame)  # \udxxx escapes, as a client would send them
    with pytest.raises(ProtocolError) as exc:
        parse_client_frame(wire)
    assert exc.value.code == ErrorCode.BAD_REQUEST
    # the error frame can always be sent: its id (if any) and message are valid UTF-8
    encode({"type": "error", "id": exc.value.request_id, "message": exc.value.message}).encode()
    if frame["type"] == "translate":
        body = {k: v for k, v in frame.items() if k != "type"}
        with pytest.raises(ProtocolError):
            parse_translate_body(json.loads(json.dumps(body)))


@pytest.mark.parametrize("kind", list(VALID))
def test_the_valid_frames_parse(kind: str) -> None:
    parse_client_frame(json.dumps(VALID[kind]))


def test_server_ids_are_reserved() -> None:
    with pytest.raises(ProtocolError, match="reserved"):
        parse_client_frame(json.dumps({**VALID["translate"], "id": "srv-1"}))


def test_encode_never_emits_invalid_utf8() -> None:
    assert encode({"type": "error", "message": "\ud800"}).encode() == b'{"type":"error","message":"\\ud800"}'
