"""Protocol core, with no sockets: every frame type, validation and error mapping."""

from __future__ import annotations

import json

import pytest

from tolk.protocol import (
    ERROR_CODES,
    AuthFrame,
    CancelFrame,
    PingFrame,
    ProtocolError,
    TranslateFrame,
    complete,
    encode,
    error,
    parse_client_frame,
    parse_translate_body,
    pong,
    ready,
    start,
    token,
)


def test_translate_frame_defaults() -> None:
    f = parse_client_frame('{"type":"translate","text":"Hi","target":"fi"}')
    assert isinstance(f, TranslateFrame)
    assert f.id is None and f.source is None and f.stream is True


def test_all_client_frames_parse() -> None:
    assert isinstance(parse_client_frame('{"type":"auth","api_key":"k"}'), AuthFrame)
    assert isinstance(parse_client_frame('{"type":"cancel","id":"r1"}'), CancelFrame)
    assert isinstance(parse_client_frame('{"type":"ping"}'), PingFrame)
    f = parse_client_frame(
        json.dumps({"type": "translate", "id": "r1", "text": "x", "source": "auto",
                    "target": "fi", "stream": False})
    )
    assert isinstance(f, TranslateFrame) and f.stream is False and f.source == "auto"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1,2]", "JSON object"),
        ('{"type":"nope"}', "unknown frame type"),
        ('{"text":"x","target":"fi"}', "unknown frame type"),
        ('{"type":"translate","target":"fi"}', "text"),
        ('{"type":"translate","text":5,"target":"fi"}', "text"),
        ('{"type":"translate","text":"x","target":"f i"}', "target"),
        ('{"type":"translate","text":"x","target":"fi","stream":"yes"}', "stream"),
        ('{"type":"translate","text":"x","target":"fi","bogus":1}', "bogus"),
        ('{"type":"translate","id":"","text":"x","target":"fi"}', "id"),
        ('{"type":"cancel"}', "id"),
        ('{"type":"auth"}', "api_key"),
    ],
)
def test_bad_frames_raise_bad_request(raw: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(raw)
    assert info.value.code == "bad_request"
    assert fragment in info.value.message


def test_error_keeps_the_request_id() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame('{"type":"translate","id":"r9","target":"fi"}')
    assert info.value.request_id == "r9"


def test_http_body_ignores_type_and_validates() -> None:
    opts = parse_translate_body({"type": "translate", "text": "x", "target": "fi"})
    assert opts.text == "x"
    with pytest.raises(ProtocolError):
        parse_translate_body({"text": "x"})
    with pytest.raises(ProtocolError):
        parse_translate_body(["x"])


def test_server_frames_round_trip_as_compact_utf8() -> None:
    frames = [
        ready("m", ["en", "fi"], auth=False),
        start("r1", "abc", "en", "fi"),
        token("r1", "Hyvää", 0),
        complete("r1", "Hyvää", "en", "fi", 3, 1.23456, 9.87654, "stop"),
        error("cancelled", "bye", "r1"),
        pong(),
    ]
    for f in frames:
        text = encode(f)
        assert json.loads(text) == f
    assert "Hyvää" in encode(token("r1", "Hyvää", 0))
    c = complete("r1", "x", "en", "fi", 1, 1.23456, 9.87654, "stop")
    assert c["first_token_ms"] == 1.235 and c["latency_ms"] == 9.877
    assert ready("m", [], True)["protocol"] == 1


def test_error_frame_without_id_has_no_id_key() -> None:
    assert "id" not in error("bad_request", "x")
    assert set(ERROR_CODES) >= {"bad_request", "unauthorized", "cancelled", "overloaded"}


def test_js_client_terminal_types_match_the_protocol() -> None:
    import re
    from pathlib import Path

    from tolk.protocol import TERMINAL_TYPES

    js = (Path(__file__).resolve().parents[1] / "clients" / "js" / "index.js").read_text()
    m = re.search(r"export const TERMINAL_TYPES = Object\.freeze\(\[([^\]]*)\]\)", js)
    assert m, "clients/js/index.js must export TERMINAL_TYPES"
    assert set(re.findall(r"'(\w+)'", m.group(1))) == set(TERMINAL_TYPES)


def test_request_table_one_terminal_frame_per_target() -> None:
    from tolk.protocol import ErrorCode, ProtocolError, RequestTable, Route

    table: RequestTable[str] = RequestTable()
    table.open("a", "task", ["fi", "sv"], tagged=True)
    with pytest.raises(ProtocolError) as exc:
        table.open("a", "again")
    assert exc.value.code == ErrorCode.DUPLICATE_ID
    assert table.observe({"type": "start", "id": "a", "target": "fi"}) is Route.DELIVER
    assert table.observe({"type": "complete", "id": "a", "target": "fi"}) is Route.DELIVER
    assert table.observe({"type": "complete", "id": "a", "target": "fi"}) is Route.DROP
    assert table.request_cancel("a") is not None and table.request_cancel("b") is None
    ends = table.end_open("a", ErrorCode.CANCELLED, "cancelled by client")
    assert [(f["code"], f.get("target")) for f in ends] == [("cancelled", "sv")]
    assert table.observe({"type": "error", "id": "a", "target": "sv", "code": "x"}) is Route.DROP
    assert table.observe({"type": "pong"}) is Route.OTHER
    table.open("b", "t")
    assert table.observe({"type": "error", "id": "b", "code": "internal"}) is Route.LAST
    assert table.close("b") is not None and "b" not in table and len(table) == 1
