"""A stored glossary is its owner's: another key passing its id, on any surface and for any
target, is answered exactly as for an id that does not exist (issue 25, item 2)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_http_routes import sse_frames
from test_live_ws import drain

from conftest import wait_ready
from support.compat_server import PROFILE
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.security.keystore import KeyStore
from tolk_server.text.glossary import GlossaryStore

TERMS = {"house": "Haus"}
TEXT = "The house is red."


@pytest.fixture
def two_tenants(tmp_path: Path) -> Iterator[tuple[TestClient, str, str, str]]:
    """A server, keys A and B, and the id of a glossary that A created (DeepL API)."""
    store = KeyStore(tmp_path / "keys.json")
    _, a = store.add("tenant-a")
    _, b = store.add("tenant-b")
    app = create_app(Settings(engine="fake", key_file=store.path,
                              glossary_file=tmp_path / "glossaries.json"),
                     engine=EchoEngine(), profile=PROFILE)
    with TestClient(app) as client:
        wait_ready(client)
        r = client.post("/v2/glossaries", headers={"Authorization": f"DeepL-Auth-Key {a}"},
                        json={"name": "a's terms", "source_lang": "en", "target_lang": "de",
                              "entries": "house\tHaus\n", "entries_format": "tsv"})
        assert r.status_code == 201, r.text
        yield client, a, b, r.json()["glossary_id"]


def _same_shape(foreign: Any, unknown: Any, gid: str) -> None:
    """The answers differ only in the id that was asked for (and the request ids)."""
    def norm(x: Any) -> str:
        x = str(x).replace(gid, "GID").replace("no-such-glossary", "GID")
        return re.sub(r'"(request_id|id)":"(srv-\d+|[0-9a-f]+)"', "", x)
    assert norm(foreign) == norm(unknown)


def _ws(client: TestClient, key: str, frames: list[dict[str, Any]]) -> dict[str, Any]:
    with client.websocket_connect("/v1/stream",
                                  headers={"Authorization": f"Bearer {key}"}) as ws:
        assert ws.receive_json()["type"] == "ready"
        for f in frames:
            ws.send_json(f)
        return drain(ws, {str(f["id"]) for f in frames})


def test_the_owner_and_the_operator_glossary_still_work(two_tenants: Any, tmp_path: Path) -> None:
    client, a, b, gid = two_tenants
    GlossaryStore(tmp_path / "glossaries.json").put("operator", {"red": "rot"})
    got = _ws(client, a, [{"type": "translate", "id": "t", "text": TEXT, "source": "en",
                           "target": "de", "glossary_id": gid}])
    assert got["t"][-1]["type"] == "complete"
    assert [t["source"] for t in got["t"][-1]["glossary"]] == ["house"]
    got = _ws(client, b, [{"type": "translate", "id": "t", "text": TEXT, "source": "en",
                           "target": "de", "glossary_id": "operator"}])
    assert [t["target"] for t in got["t"][-1]["glossary"]] == ["rot"]


@pytest.mark.parametrize("frame", [
    {"type": "translate", "target": "de"},
    {"type": "translate", "targets": ["de", "fi"]},
    {"type": "update", "target": "de"},
    {"type": "update", "target": "de", "final": True},
    {"type": "translate", "target": "de", "format": "html"},
])
def test_websocket_refuses_another_keys_glossary_as_unknown(two_tenants: Any,
                                                            frame: dict[str, Any]) -> None:
    client, _, b, gid = two_tenants
    base = {"id": "r", "text": TEXT, "source": "en", **frame}
    foreign = _ws(client, b, [{**base, "glossary_id": gid}])["r"]
    unknown = _ws(client, b, [{**base, "glossary_id": "no-such-glossary"}])["r"]
    assert [f["type"] for f in foreign] == ["error"], foreign  # nothing ran
    assert foreign[0]["code"] == "bad_request" and "Haus" not in str(foreign)
    _same_shape(foreign, unknown, gid)


@pytest.mark.parametrize("extra", [{}, {"targets": ["de", "fi"]}, {"stream": True},
                                   {"format": "html"}])
def test_v1_translate_refuses_another_keys_glossary_as_unknown(two_tenants: Any,
                                                               extra: dict[str, Any]) -> None:
    client, a, b, gid = two_tenants
    body = {"text": TEXT, "source": "en", "target": "de", "stream": False, **extra}
    if "targets" in extra:
        del body["target"]
    h = {"Authorization": f"Bearer {b}"}
    foreign = client.post("/v1/translate", json={**body, "glossary_id": gid}, headers=h)
    unknown = client.post("/v1/translate", json={**body, "glossary_id": "no-such-glossary"},
                          headers=h)
    assert foreign.status_code == unknown.status_code == 400
    assert "Haus" not in foreign.text
    _same_shape(foreign.text, unknown.text, gid)
    mine = client.post("/v1/translate", json={**body, "glossary_id": gid},
                       headers={"Authorization": f"Bearer {a}"})
    assert mine.status_code == 200 and "Haus" in mine.text
    if extra.get("stream"):
        assert sse_frames(mine.text)[-1]["type"] == "complete"


def test_deepl_translate_refuses_another_keys_glossary_as_unknown(two_tenants: Any) -> None:
    client, _, b, gid = two_tenants
    body = {"text": [TEXT], "source_lang": "EN", "target_lang": "DE"}
    h = {"Authorization": f"DeepL-Auth-Key {b}"}
    foreign = client.post("/v2/translate", json={**body, "glossary_id": gid}, headers=h)
    unknown = client.post("/v2/translate", json={**body, "glossary_id": "no-such-glossary"},
                          headers=h)
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json() == unknown.json()


def test_the_planner_checks_the_owner(two_tenants: Any) -> None:
    """The one place a glossary id is resolved: every caller gets the check."""
    from tolk.protocol import ProtocolError, TranslateOptions

    client, a, b, gid = two_tenants
    planner = client.app.state.tolk.pipeline.planner  # type: ignore[attr-defined]
    opts = TranslateOptions(text=TEXT, source="en", targets=["de", "fi"], glossary_id=gid)
    assert [j.glossary for j in planner.plan(opts, "x", owner=_key_id(client, a))] == [TERMS] * 2
    with pytest.raises(ProtocolError, match="no glossary named"):
        planner.plan(opts, "x", owner=_key_id(client, b))


def _key_id(client: TestClient, key: str) -> str:
    who = client.app.state.tolk.auth.authenticate(key)  # type: ignore[attr-defined]
    assert who is not None
    return str(who.key_id)
