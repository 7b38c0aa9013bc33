"""A remote model: another tolk server (a real one, on loopback) as a route's fallback."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_models_routing import FailingEngine

from support.live_server import serve_in_thread
from support.subprocess_server import tolk_serve
from tolk_models import DEMO_DIR
from tolk_server.adapters.echo import EchoEngine
from tolk_server.adapters.remote import RemoteEngine, remote_profile
from tolk_server.app.wiring import create_app
from tolk_server.cli.commands import _settings, build_parser
from tolk_server.config import load_settings
from tolk_server.models.routing import ModelSet, ModelSpec, ServedModel

PEER_KEY = "peer-secret-key"


def http(base: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read().decode()
            return r.status, raw if path == "/metrics" else json.loads(raw)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def peer() -> Iterator[str]:
    """The peer: `tolk serve --engine echo` in its own process, with an API key."""
    with tolk_serve("--engine", "echo", env={"TOLK_API_KEYS": PEER_KEY}, timeout=60) as (
            base, _):
        yield base.replace("http://", "ws://")


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A port that accepts TCP connections and never answers (a hung peer)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"ws://127.0.0.1:{s.getsockname()[1]}"


def test_local_failure_falls_back_to_the_peer(peer: str, blackhole: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLK_PEER_KEY", PEER_KEY)
    cfg = tmp_path / "tolk.toml"
    cfg.write_text(
        f'[[models]]\nname = "local"\npath = "{DEMO_DIR}"\n'
        f'[[models]]\nname = "hung"\nurl = "{blackhole}"\nconnect_timeout_s = 0.5\n'
        f'[[models]]\nname = "peer"\nurl = "{peer}"\napi_key_env = "TOLK_PEER_KEY"\n'
        '[[routes]]\nquality = "fast"\nmodels = ["local", "hung"]\n')
    settings = load_settings(str(cfg), engine="echo", cache_entries=0)
    app = create_app(settings)
    app.state.tolk.models.models["local"].engine = FailingEngine()  # fails before a token
    t0 = time.monotonic()
    with serve_in_thread(app) as base:
        assert time.monotonic() - t0 < 10  # startup does not wait for the hung peer
        deadline = time.monotonic() + 15
        while (states := {m["name"]: m["state"] for m in http(base, "/ready")[1]["models"]}
               )["peer"] != "connected":
            assert time.monotonic() < deadline, states
            time.sleep(0.05)
        status, ready = http(base, "/ready")
        assert status == 200 and ready["status"] == "degraded"  # the hung peer
        assert states == {"local": "ready", "hung": "disconnected", "peer": "connected"}

        body = {"text": "Good morning. The meeting will begin shortly.", "source": "en",
                "target": "fi", "stream": False}
        status, done = http(base, "/v1/translate", body)
        assert status == 200, done
        assert done["model"] == "peer" and done["sentences"] == 2
        assert done["fallback"] == {"from": "local", "reason": "engine_error"}
        # the peer's engine double echoes its own prompt, words reversed, per sentence
        assert "morning." in done["translation"] and "shortly." in done["translation"]

        t1 = time.monotonic()  # the route ends at the hung peer: it fails fast
        status, err = http(base, "/v1/translate", {**body, "quality": "fast"})
        assert status == 502 and err["code"] == "engine_error", err
        assert time.monotonic() - t1 < 5

        metrics = http(base, "/metrics")[1]
    assert 'tolk_fallbacks_total{model="local",reason="engine_error",to="hung"} 2.0' in metrics
    assert 'tolk_fallbacks_total{model="hung",reason="not_ready",to="peer"} 1.0' in metrics


def test_model_specs_for_remote_models() -> None:
    ns = build_parser().parse_args(["serve", "--model", "demo=models/demo",
                                    "--model", "peer=ws://10.0.0.2:8000"])
    local, remote = _settings(ns).models
    assert (local.path, local.url) == ("models/demo", None)
    assert (remote.path, remote.url) == (None, "ws://10.0.0.2:8000")
    with pytest.raises(ValueError, match="either"):
        ModelSpec(name="x", path="/m", url="ws://h:1")
    with pytest.raises(ValueError, match="url"):
        ModelSpec(name="x", url="ftp://h")
    with pytest.raises(ValueError, match="first model must be a local"):
        ModelSet([ServedModel("peer", RemoteEngine("ws://h:1"), remote_profile(["en"])),
                  ServedModel("local", EchoEngine(), remote_profile(["en"]))])


def test_the_config_example_loads() -> None:
    example = Path(__file__).parents[1] / "deploy" / "tolk-fallback.toml"
    s = load_settings(str(example))
    assert [(m.name, m.url) for m in s.models] == [("demo", None), ("peer", "ws://10.0.0.2:8000")]
    assert s.models[1].api_key_env == "TOLK_PEER_KEY" and s.routes[0].models == ["demo", "peer"]
    assert s.priorities.of("live", 5000, split=False) == (0, 0)


def test_sdk_connect_and_connected() -> None:
    import asyncio

    import tolk

    async def main() -> None:
        client = tolk.AsyncClient(transport=tolk.MockTransport(tolk.MockServer()))
        assert not client.connected
        await client.connect()
        assert client.connected
        await client.aclose()
        assert not client.connected
        with pytest.raises(tolk.ConnectionError):
            await client.connect()

    asyncio.run(main())
