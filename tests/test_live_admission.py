"""Live input and the rules of frames that open requests (issue 25, items 3, 4 and 7): the
growth of a live text is charged to the key, later updates inherit the first one's options,
a refusal that does not end a request says so (`about`), and one id rule for every opening
frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from test_hardening import app_with_keys
from test_live_ws import SENTENCE, check_partials, drain, ready, update

from conftest import wait_ready
from tolk_server.security.keystore import KeyLimits

STEP = 300  # characters typed between two updates


def typed(n: int) -> str:
    return ("word " * (n // 5 + 1))[:n]


def _live_until(ws: WebSocketTestSession, rid: str, total: int) -> list[dict[str, Any]]:
    """Type `total` characters in steps; the frames up to the request's terminal frame, and
    then those of the updates sent after it (each opens the id again: refused or not)."""
    for n in range(STEP, total + 1, STEP):
        ws.send_json(update(rid, typed(n), final=n == total))
    frames = drain(ws, {rid})[rid]
    ws.send_json({"type": "ping"})
    while (f := ws.receive_json())["type"] != "pong":
        frames.append(f)
    return frames


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_live_growth_is_charged_to_the_daily_quota(tmp_path: Path) -> None:
    """The observed case: a 3,000-character key, 4 live requests typing 3,900 each."""
    client, store = app_with_keys(tmp_path)
    _, key = store.add("small", KeyLimits(chars_per_day=3000))
    h = {"Authorization": f"Bearer {key}"}
    with client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream", headers=h) as ws:
            ready(ws)
            runs = [_live_until(ws, f"L{i}", 3900) for i in range(4)]
        usage = client.get("/v2/usage", headers={"Authorization": f"DeepL-Auth-Key {key}"})
    # 10 updates of the first request fit (300 characters each); the 11th ends it
    assert runs[0][0]["type"] == "start"  # the others are refused when they open
    assert [f["type"] for r in runs[1:] for f in r] == ["error"] * 39
    ends = [f for frames in runs for f in frames if f["type"] in ("complete", "error")]
    assert {(e["type"], e["code"]) for e in ends} == {("error", "overloaded")}, ends
    assert all(e["retry_after"] > 0 and "about" not in e for e in ends)
    assert usage.json()["character_count"] == 3000


def test_live_edits_are_charged_for_what_they_retype(tmp_path: Path) -> None:
    client, store = app_with_keys(tmp_path)
    _, key = store.add("k", KeyLimits(chars_per_day=100_000))
    with client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream",
                                      headers={"Authorization": f"Bearer {key}"}) as ws:
            ready(ws)
            for text in ("The meeting", "The meeting will", "A meeting will"):
                ws.send_json(update("E", text))
            ws.send_json(update("E", "A meeting will begin.", final=True))
            assert drain(ws, {"E"})["E"][-1]["type"] == "complete"
        keys = client.app.state.tolk.admission.keys  # type: ignore[attr-defined]
        who = client.app.state.tolk.auth.authenticate(key)  # type: ignore[attr-defined]
        # 11 (first) + 5 (" will") + 14 (all retyped from "A") + 7 (" begin.")
        assert keys.chars_today(who.key_id) == 11 + 5 + 14 + 7


def test_the_readme_live_example_runs_without_errors(make_client: Any) -> None:
    """Later updates leave out `target` and `source`: they inherit the first update's."""
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json({"type": "update", "id": "L1", "text": "The meeting", "source": "en",
                      "target": "fi"})
        ws.send_json({"type": "update", "id": "L1", "text": "The meeting will begin"})
        ws.send_json({"type": "update", "id": "L1", "text": "The meeting will begin shortly.",
                      "final": True})
        frames = drain(ws, {"L1"})["L1"]
    assert [f for f in frames if f["type"] == "error"] == []
    done = check_partials(frames)
    assert done["target"] == "fi" and done["live"]["updates"] == 3


def test_changing_an_option_mid_request_is_refused_and_the_request_goes_on(
        make_client: Any) -> None:
    client = make_client()
    errors0 = _metric(client, 'tolk_requests_total{outcome="error"}')
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json(update("L", "The committee will"))
        ws.send_json(update("L", "The committee will now", target="en"))  # a change
        ws.send_json(update("L", "The committee will now", quality="fast"))
        ws.send_json({"type": "update", "id": "L", "text": 5})  # malformed, for an open id
        ws.send_json(update("L", SENTENCE, final=True))  # the same options: fine
        frames = drain(ws, {"L"})["L"]
    refused = [f for f in frames if f["type"] == "error"]
    assert [(f["code"], f["about"], f["id"]) for f in refused] == [("bad_request", "update",
                                                                    "L")] * 3
    assert "target" in refused[0]["message"] and "quality" in refused[1]["message"]
    done = check_partials(frames)
    assert done["target"] == "fi" and done["live"]["updates"] == 2
    assert _metric(client, 'tolk_requests_total{outcome="error"}') == errors0  # none terminal


def test_a_first_update_without_target_ends_that_request(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json({"type": "update", "id": "N", "text": "hello"})
        err = ws.receive_json()
        assert err["code"] == "bad_request" and err["id"] == "N" and "about" not in err
        ws.send_json(update("N", "hello", final=True))  # the id was never opened
        check_partials(drain(ws, {"N"})["N"])


def test_reserved_ids_are_refused_on_every_opening_frame(make_client: Any) -> None:
    """The observed case: `srv-2` as a live id made the next id-less translate fail."""
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json({"type": "translate", "text": "hello", "source": "en", "target": "fi"})
        first = drain(ws, {"srv-1"})["srv-1"]
        assert first[-1]["type"] == "complete"
        for frame in (update("srv-2", "hello there"),
                      {"type": "audio_start", "id": "srv-2"}):
            ws.send_json(frame)
            err = ws.receive_json()
            assert err["code"] == "bad_request" and "reserved" in err["message"], err
        ws.send_json({"type": "translate", "text": "hello", "source": "en", "target": "fi"})
        assert drain(ws, {"srv-2"})["srv-2"][-1]["type"] == "complete"


def test_audio_start_cannot_take_the_id_of_a_request_in_flight(make_client: Any) -> None:
    from tolk_server.adapters.echo import EchoEngine

    client = make_client(engine=EchoEngine(token_delay_s=0.02))
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json({"type": "translate", "id": "T", "text": SENTENCE, "source": "en",
                      "target": "fi"})
        ws.send_json({"type": "audio_start", "id": "T"})
        ws.send_json(update("T", "hello"))
        frames = drain(ws, {"T"})["T"]
    refused = [(f["code"], f.get("about")) for f in frames if f["type"] == "error"]
    assert refused == [("duplicate_id", "audio_start"), ("bad_request", "update")]
    assert frames[-1]["type"] == "complete"


async def test_the_sdk_mock_follows_the_same_update_rules() -> None:
    import json

    from tolk import MockServer, MockTransport

    wire = await MockTransport(MockServer()).connect("ws://mock", {}, None)
    assert json.loads(await wire.recv())["type"] == "ready"
    await wire.send(json.dumps({"type": "update", "id": "L", "text": "the meeting",
                                "source": "en", "target": "fi"}))
    await wire.send(json.dumps({"type": "update", "id": "L", "text": "the meeting will",
                                "target": "en"}))
    await wire.send(json.dumps({"type": "update", "id": "L", "text": "the meeting will begin",
                                "final": True}))
    frames = []
    while not frames or frames[-1]["type"] != "complete":
        frames.append(json.loads(await wire.recv()))
    refused = [f for f in frames if f["type"] == "error"]
    assert [(f["code"], f["about"]) for f in refused] == [("bad_request", "update")]
    assert frames[-1]["target"] == "fi" and frames[-1]["live"]["updates"] == 2
    await wire.close()
