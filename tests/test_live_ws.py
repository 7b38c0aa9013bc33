"""Live requests (`update` → `partial`… → `complete`) over the WebSocket, with the engine double."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from starlette.testclient import WebSocketTestSession
from test_ws_routes import translate

from tolk_server.adapters.echo import EchoEngine as FakeEngine

SENTENCE = "The committee will now consider the amendments one by one"


def update(rid: str, text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "update", "id": rid, "text": text, "source": "en", "target": "fi", **kw}


def ready(ws: WebSocketTestSession) -> None:
    assert ws.receive_json()["type"] == "ready"


def drain(ws: WebSocketTestSession, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Frames until each id's terminal frame (an error `about` an update is not one)."""
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    pending = set(ids)
    while pending:
        msg = ws.receive_json()
        frames[msg.get("id", "")].append(msg)
        if msg["type"] in ("complete", "error") and "about" not in msg:
            assert msg["id"] in pending, f"second terminal frame for {msg['id']}"
            pending.discard(msg["id"])
    return frames


def check_partials(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The stable rule on one live request's frames; returns its `complete` frame."""
    assert frames[0]["type"] == "start"
    partials = [f for f in frames if f["type"] == "partial"]
    done = frames[-1]
    assert done["type"] == "complete", done
    stable = ""
    version = 0
    for p in partials:
        assert p["version"] >= version
        version = p["version"]
        if not p.get("reset"):
            assert p["stable"].startswith(stable), (stable, p)
        stable = p["stable"]
    last = partials[-1]
    assert last["stable"] + last["tentative"] == done["translation"] == last["stable"]
    live = done["live"]
    assert live["partials"] == len(partials)
    assert live["resets"] == sum(bool(p.get("reset")) for p in partials)
    assert live["normalized_erasure"] >= 0 and live["laal"] >= 0 and live["final_ms"] >= 0
    return done


def test_typing_streams_partials_and_completes(make_client: Any) -> None:
    engine = FakeEngine(token_delay_s=0.001)
    client = make_client(engine=engine)
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        words = SENTENCE.split()
        for i in range(1, len(words) + 1):
            ws.send_json(update("L1", " ".join(words[:i])))
            time.sleep(0.02)
        ws.send_json(update("L1", SENTENCE + ".", final=True))
        done = check_partials(drain(ws, {"L1"})["L1"])
    assert done["live"]["updates"] == len(words) + 1
    assert done["translation"]  # the fake engine answers something for every text
    assert engine.running() == 0


def test_bad_updates(make_client: Any) -> None:
    client = make_client(engine=FakeEngine(token_delay_s=0.02), max_text_chars=100)
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        # an update for an id that is a plain translate in flight: the translate goes on
        ws.send_json(translate("T", SENTENCE))
        ws.send_json(update("T", "Hello"))
        frames = drain(ws, {"T"})["T"]
        err = next(f for f in frames if f["type"] == "error")
        assert err["code"] == "bad_request" and err["about"] == "update"
        assert frames[-1]["type"] == "complete"
        # updates after final
        ws.send_json(update("F", SENTENCE, final=True))
        ws.send_json(update("F", SENTENCE + " again"))
        frames = drain(ws, {"F"})["F"]
        late = [f for f in frames if f["type"] == "error"]
        assert [(f["code"], f["about"]) for f in late] == [("bad_request", "update")]
        assert frames[-1]["type"] == "complete"
        # text over the cap ends the live request with too_large
        ws.send_json(update("C", "short"))
        ws.send_json(update("C", "x" * 101))
        frames = drain(ws, {"C"})["C"]
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "too_large"
        # targets are refused; so is an unserved language
        ws.send_json({"type": "update", "id": "M", "text": "hi", "targets": ["fi", "en"]})
        assert ws.receive_json()["code"] == "bad_request"
        ws.send_json(update("U", "hi", target="xx"))
        assert ws.receive_json()["code"] == "unsupported_language"


def test_cancel_and_idle_expiry(make_client: Any) -> None:
    engine = FakeEngine(token_delay_s=0.05)
    client = make_client(engine=engine, live_idle_s=0.3)
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json(update("X", SENTENCE))
        ws.send_json({"type": "cancel", "id": "X"})
        frames = drain(ws, {"X"})["X"]
        assert frames[-1]["code"] == "cancelled"
        ws.send_json(update("I", "Hello there", source="auto"))
        frames = drain(ws, {"I"})["I"]
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "expired"
        assert [f["type"] for f in frames].count("error") == 1
        # the id is free again: a new live request with it works
        ws.send_json(update("I", "Hello", final=True))
        check_partials(drain(ws, {"I"})["I"])
    assert engine.running() == 0


async def test_ten_thousand_updates_in_a_second_over_a_socket(fake_server: str) -> None:
    """Over real loopback sockets: the burst goes out in about a second and is coalesced."""
    import json

    import psutil
    from websockets.asyncio.client import connect

    proc = psutil.Process()
    async with connect("ws://" + fake_server.removeprefix("http://") + "/v1/stream",
                       compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        for i in range(10_000):
            await ws.send(json.dumps(update("S", f"{SENTENCE} {i}")))
        sent_s = time.perf_counter() - t0
        await ws.send(json.dumps(update("S", SENTENCE, final=True)))
        frames = []
        while not frames or frames[-1]["type"] not in ("complete", "error"):
            frames.append(json.loads(await ws.recv()))
        grown = proc.memory_info().rss - rss0
    done = check_partials(frames)
    assert done["live"]["updates"] == 10_001
    assert done["live"]["partials"] < 1_000, done["live"]  # most texts were replaced unread
    assert sent_s < 5, sent_s  # about 1 s on an idle 2-core machine
    assert grown < 50 * 2**20, grown  # no queue of texts: memory stays flat


def test_keystrokes_inside_a_word_do_not_abort_the_hypothesis(make_client: Any) -> None:
    engine = FakeEngine(token_delay_s=0.01)
    client = make_client(engine=engine)
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json(update("W", "The meeting "))
        for k in range(1, 6):  # the next word is being typed: nothing new to translate yet
            ws.send_json(update("W", "The meeting " + "begin"[:k]))
        head = [ws.receive_json(), ws.receive_json()]
        assert head[1]["type"] == "partial"  # one hypothesis for "The meeting "
        ws.send_json(update("W", "The meeting will begin", final=True))
        check_partials(head + drain(ws, {"W"})["W"])
    assert engine.aborted == [], (head, engine.aborted)
