"""Live requests take the generator's route: fallback to a peer model, its metrics, and
`first_partial_ms` counted to the first partial that shows text (engine doubles)."""

from __future__ import annotations

import time
from typing import Any

from test_live_ws import drain, ready, update
from test_models_routing import FailingEngine, serve

from conftest import TINY_PROFILE
from tolk_server.adapters.echo import EchoEngine as FakeEngine
from tolk_server.models.routing import ServedModel

__all__ = ["serve"]  # the fixture


def test_live_request_is_served_by_the_fallback_model_when_the_local_engine_fails(
        serve: Any) -> None:
    failing, peer = FailingEngine(), FakeEngine()
    client = serve([ServedModel("a", failing, TINY_PROFILE), ServedModel("b", peer, TINY_PROFILE)])
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json(update("L", "The committee will "))
        ws.send_json(update("L", "The committee will now vote.", final=True))
        frames = drain(ws, {"L"})["L"]
    done = frames[-1]
    assert done["type"] == "complete", done
    assert done["translation"].strip() and done["live"]["engine_tokens"] > 0
    assert any(f["type"] == "partial" and f["stable"] + f["tentative"] for f in frames)
    metrics = client.get("/metrics").text
    assert 'tolk_fallbacks_total{model="a",reason="engine_error",to="b"}' in metrics


def test_first_partial_ms_counts_to_the_first_partial_that_shows_text(make_client: Any) -> None:
    client = make_client(engine=FakeEngine())
    with client.websocket_connect("/v1/stream") as ws:
        ready(ws)
        ws.send_json(update("P", "Hel"))  # a word being typed: an empty partial
        first = ws.receive_json()
        while first["type"] != "partial":
            first = ws.receive_json()
        assert first["stable"] + first["tentative"] == ""
        time.sleep(0.2)
        ws.send_json(update("P", "Hello there my friend.", final=True))
        done = drain(ws, {"P"})["P"][-1]
    assert done["type"] == "complete", done
    assert done["live"]["first_partial_ms"] >= 200
    assert done["first_token_ms"] == done["live"]["first_partial_ms"]
