"""Several models in one server (engine doubles): routing, fallback, modes, priorities."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import TINY_PROFILE, wait_ready
from tolk_server.adapters.echo import EchoEngine as FakeEngine
from tolk_server.app.wiring import build_models, create_app
from tolk_server.cli.commands import _settings, build_parser
from tolk_server.config import Settings
from tolk_server.engine.decoding import beam_search, mbr_select
from tolk_server.engine.interface import Delta, EngineError, GenerationParams
from tolk_server.models.modes import Mode
from tolk_server.models.routing import ModelSet, RouteSpec, ServedModel

ROOT = Path(__file__).resolve().parents[1]
SV_PROFILE = TINY_PROFILE.model_copy(update={"name": "sv", "languages": {"en": "English",
                                                                         "sv": "Swedish"}})


class FailingEngine(FakeEngine):
    """Fails every request, before its first token or (with `after`) after some tokens."""

    def __init__(self, after: int = 0) -> None:
        super().__init__()
        self.after = after

    async def generate(self, prompt: str, params: GenerationParams, request_id: str
                       ) -> AsyncGenerator[Delta, None]:
        for _ in range(self.after):
            yield Delta("x", 1)
        raise EngineError("boom")


@pytest.fixture
def serve() -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(models: list[ServedModel], routes: list[RouteSpec] | None = None) -> TestClient:
        app = create_app(Settings(engine="fake", cache_entries=0),
                         models=ModelSet(models, routes or []))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def translate(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/translate", json={"text": "Hello there.", "source": "en",
                                           "target": "fi", "stream": False, **body})
    out: dict[str, Any] = r.json()
    out["status"] = r.status_code
    return out


def test_routes_modes_and_listing(serve: Any) -> None:
    a, b, c = FakeEngine(), FakeEngine(), FakeEngine()
    client = serve([ServedModel("a", a, TINY_PROFILE), ServedModel("b", b, TINY_PROFILE),
                    ServedModel("c", c, SV_PROFILE)],
                   [RouteSpec(quality="fast", models=["b", "a"])])
    assert translate(client)["model"] == "a"
    done = translate(client, quality="fast")
    assert (done["model"], done["quality"]) == ("b", "fast")
    assert translate(client, target="sv")["model"] == "c"  # the only model serving en→sv
    langs = client.get("/v1/languages").json()
    assert [m["name"] for m in langs["models"]] == ["a", "b", "c"]
    by_name = {m["name"]: m for m in langs["models"]}
    assert by_name["c"]["languages"] == ["en", "sv"]
    assert "fast" in by_name["b"]["routed_for"] and "fast" not in by_name["a"]["routed_for"]
    assert by_name["a"]["modes"]["quality"]["decoding"] == "mbr"
    assert [lang["code"] for lang in langs["languages"]] == ["en", "fi", "sv"]
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and len(ready["models"]) == 3
    with client.websocket_connect("/v1/stream") as ws:
        hello = ws.receive_json()
        assert [m["name"] for m in hello["models"]] == ["a", "b", "c"]


def test_fallback_on_dead_and_failing_models_is_reported_and_counted(serve: Any) -> None:
    a, b = FakeEngine(), FakeEngine()
    client = serve([ServedModel("a", a, TINY_PROFILE), ServedModel("b", b, TINY_PROFILE)])
    a.kill()
    done = translate(client)
    assert done["model"] == "b" and done["fallback"] == {"from": "a", "reason": "dead"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert {"name": "a", "state": "dead"} in ready.json()["models"]
    metrics = client.get("/metrics").text
    assert 'tolk_fallbacks_total{model="a",reason="dead",to="b"} 1.0' in metrics


def test_engine_error_before_first_token_falls_back(serve: Any) -> None:
    client = serve([ServedModel("a", FailingEngine(), TINY_PROFILE),
                    ServedModel("b", FakeEngine(), TINY_PROFILE)])
    done = translate(client, text="One sentence. And another one.")
    assert done["status"] == 200 and done["model"] == "b"
    assert done["fallback"] == {"from": "a", "reason": "engine_error"}


def test_no_silent_switch_after_tokens(serve: Any) -> None:
    client = serve([ServedModel("a", FailingEngine(after=2), TINY_PROFILE),
                    ServedModel("b", FakeEngine(), TINY_PROFILE)])
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "id": "r", "text": "Hello there.", "target": "fi",
                      "source": "en"})
        frames = [ws.receive_json() for _ in range(4)]
    assert [f["type"] for f in frames] == ["start", "token", "token", "error"]
    assert frames[-1]["code"] == "engine_error"
    assert 'to="b"' not in client.get("/metrics").text


def test_overloaded_model_falls_back(serve: Any) -> None:
    slow = FakeEngine(token_delay_s=0.05)
    client = serve([ServedModel("a", slow, TINY_PROFILE, max_inflight=1),
                    ServedModel("b", FakeEngine(), TINY_PROFILE)])
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for rid in ("r1", "r2"):
            ws.send_json({"type": "translate", "id": rid, "text": "a b c d e f g h i",
                          "source": "en", "target": "fi", "stream": False})
        done = {}
        while len(done) < 2:
            f = ws.receive_json()
            if f["type"] == "complete":
                done[f["id"]] = f
    assert done["r1"]["model"] == "a" and "fallback" not in done["r1"]
    assert done["r2"]["model"] == "b" and done["r2"]["fallback"]["reason"] == "overloaded"


def test_mode_settings_reach_the_engine_and_requests_override(serve: Any) -> None:
    engine = FakeEngine()
    prof = TINY_PROFILE.model_copy(update={"modes": {
        "quality": Mode(decoding="beam", beam_width=3, length_penalty=0.5, granularity="word"),
        "fast": Mode(max_tokens=7, split=False)}})
    client = serve([ServedModel("a", engine, prof)])
    text = "First sentence here. Second sentence here."
    assert translate(client, text=text, quality="fast").get("sentences") is None  # no split
    assert engine.params_seen[-1].max_tokens == 7
    assert translate(client, text=text, quality="fast", split=True)["sentences"] == 2
    engine.params_seen.clear()
    assert translate(client, text=text, quality="quality")["quality"] == "quality"
    first, second = engine.params_seen
    assert (first.decoding, first.beam_width, first.length_penalty) == ("beam", 3, 0.5)
    assert (first.priority, second.priority) == (0, 1)  # later sentences: bulk priority
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_json({"type": "translate", "id": "w", "text": "one two three", "source": "en",
                      "target": "fi", "quality": "quality"})
        frames = []
        while not frames or frames[-1]["type"] != "complete":
            frames.append(ws.receive_json())
    words = [f["token"] for f in frames if f["type"] == "token"]
    assert words == ["three<sep> ", "two ", "<2fi>one"]  # the mode's granularity: words


def test_model_flags_and_toml(tmp_path: Any) -> None:
    ns = build_parser().parse_args(["serve", "--model", "a=/m/a", "--model", "b=/m/b"])
    assert [(m.name, m.path) for m in _settings(ns).models] == [("a", "/m/a"), ("b", "/m/b")]
    with pytest.raises(SystemExit):
        _settings(build_parser().parse_args(["serve", "--model", "a=/x", "--model", "/y"]))
    cfg = tmp_path / "tolk.toml"
    cfg.write_text('[[models]]\nname = "big"\npath = "/m/big"\nkv_cache_gib = 3\n'
                   '[[routes]]\nquality = "quality"\nmodels = ["big"]\n')
    s = _settings(build_parser().parse_args(["serve", "--config", str(cfg)]))
    assert s.models[0].kv_cache_gib == 3 and s.routes[0].models == ["big"]
    with pytest.raises(ValueError, match="unknown"):
        ModelSet([ServedModel("a", FakeEngine(), TINY_PROFILE)], [RouteSpec(models=["zz"])])


def test_shipped_two_model_config_routes_fast_to_demo_small(serve: Any, monkeypatch: Any
                                                            ) -> None:
    """deploy/demo-models.toml: demo-small serves "fast" (demo behind it), demo the rest."""
    monkeypatch.chdir(ROOT)
    s = _settings(build_parser().parse_args(["serve", "--config", "deploy/demo-models.toml",
                                             "--engine", "fake"]))
    models = build_models(s)
    assert [m.name for m in models.chain("fast", "en", "fi")] == ["demo-small", "demo"]
    for quality in ("balanced", "quality"):
        assert models.chain(quality, "fi", "en")[0].name == "demo"
    assert models.models["demo-small"].profile.name == "tolk-demo-small"
    client = serve(list(models.models.values()), s.routes)
    assert translate(client, quality="fast")["model"] == "demo-small"
    assert translate(client)["model"] == "demo"
    assert translate(client, quality="quality", target="en", source="fi")["model"] == "demo"


def test_beam_search_finds_what_greedy_misses() -> None:
    eos = 0
    table = {(): {1: 0.6, 2: 0.4}, (1,): {0: 0.25, 3: 0.25, 4: 0.25, 5: 0.25},
             (2,): {0: 0.9, 3: 0.1}}

    async def step(tokens: list[int], k: int) -> dict[int, float]:
        dist = table.get(tuple(tokens[1:]), {0: 1.0})
        return {t: math.log(p) for t, p in sorted(dist.items(), key=lambda x: -x[1])[:k]}

    best = asyncio.run(beam_search(step, [99], eos, width=2, max_tokens=5, length_penalty=0))
    assert best.tokens == [2] and best.finish_reason == "stop"
    greedy = asyncio.run(beam_search(step, [99], eos, width=1, max_tokens=5, length_penalty=0))
    assert greedy.tokens[0] == 1


def test_mbr_picks_the_consensus() -> None:
    cands = ["a dog ran off", "the cat sat on the mat", "the cat sat on a mat",
             "the cat sat on the mat"]
    assert mbr_select(cands) == 1
    assert mbr_select(["only"]) == 0
    assert json.dumps(mbr_select(["x", "y"])) in {"0", "1"}


def test_split_input_first_sentence_goes_first(serve: Any) -> None:
    events: list[tuple[str, str]] = []

    class Recording(FakeEngine):
        async def generate(self, prompt: str, params: GenerationParams, request_id: str
                           ) -> AsyncGenerator[Delta, None]:
            events.append(("start", request_id[-2:]))
            async for delta in super().generate(prompt, params, request_id):
                events.append(("out", request_id[-2:]))
                yield delta

    client = serve([ServedModel("a", Recording(first_token_delay_s=0.05), TINY_PROFILE)])
    done = translate(client, text="One here. Two here. Three here.")
    assert done["sentences"] == 3
    assert events[:2] == [("start", "-0"), ("out", "-0")]  # the rest wait for its first output
    assert {e for e in events[2:] if e[0] == "start"} == {("start", "-1"), ("start", "-2")}
