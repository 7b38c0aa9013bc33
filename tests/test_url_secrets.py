"""No secret and no user text in a log line; keys are never taken from a URL; the compatible
APIs' early refusals (a body over the limit) come in their own error shape."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.sync.client import connect

from conftest import TINY_PROFILE
from support.live_server import free_port
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.security.keystore import KeyStore
from tolk_server.transports.uvicorn_bounds import uvicorn_config


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Lines]]:
    """`tolk serve`'s uvicorn settings (access log on), its log lines captured."""
    tmp: Path = tmp_path_factory.mktemp("urls")
    store = KeyStore(tmp / "keys.json")
    _, key = store.add("main")
    s = Settings(engine="fake", key_file=store.path, glossary_file=tmp / "g.json",
                 port=free_port(), log_level="info")
    app = create_app(s, engine=EchoEngine(), profile=TINY_PROFILE)
    server = uvicorn.Server(uvicorn_config(app, s))
    lines = Lines()
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addHandler(lines)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{s.port}", key, lines
    finally:
        server.should_exit = True
        thread.join(15)
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(lines)


def test_query_strings_never_reach_a_log_line(served: tuple[str, str, Lines]) -> None:
    url, key, lines = served
    httpx.post(f"{url}/translate?api_key={key}&q=PRIVATE-TEXT&source=en&target=fi")
    httpx.post(f"{url}/v2/translate?auth_key={key}&text=PRIVATE-TEXT&target_lang=FI")
    httpx.get(f"{url}/health?q=PRIVATE-TEXT")
    with connect(url.replace("http", "ws") + f"/v1/stream?api_key={key}&q=PRIVATE-TEXT") as ws:
        ws.recv()
    time.sleep(0.2)
    logged = "\n".join(lines.lines)
    assert "POST /translate?[redacted]" in logged and "GET /health?[redacted]" in logged
    assert "/v1/stream?[redacted]" in logged  # the WebSocket handshake's line
    assert key not in logged and "PRIVATE-TEXT" not in logged


def test_keys_in_the_url_are_refused(served: tuple[str, str, Lines]) -> None:
    url, key, _ = served
    r = httpx.post(f"{url}/translate?api_key={key}", data={"q": "hi", "source": "en",
                                                          "target": "fi"})
    assert r.status_code == 400 and "api_key in the URL" in r.json()["error"]
    r = httpx.post(f"{url}/v2/translate?auth_key={key}", data={"text": "hi",
                                                              "target_lang": "FI"})
    assert r.status_code == 400 and "auth_key in the URL" in r.json()["message"]
    r = httpx.get(f"{url}/v2/usage?auth_key={key}")
    assert r.status_code == 400
    # the official clients' ways still work: a form body (LibreTranslate), a header (DeepL)
    r = httpx.post(f"{url}/translate", data={"q": "hi", "source": "en", "target": "fi",
                                             "api_key": key})
    assert r.status_code == 200
    r = httpx.get(f"{url}/v2/usage", headers={"Authorization": f"DeepL-Auth-Key {key}"})
    assert r.status_code == 200


def test_oversized_bodies_get_each_apis_error_shape(served: tuple[str, str, Lines]) -> None:
    url, key, _ = served
    big = "x" * (1024 * 1024 + 10)
    r = httpx.post(f"{url}/translate", json={"q": big, "source": "en", "target": "fi",
                                             "api_key": key})
    assert r.status_code == 413 and set(r.json()) == {"error"}
    r = httpx.post(f"{url}/v2/translate", json={"text": [big], "target_lang": "FI"},
                   headers={"Authorization": f"DeepL-Auth-Key {key}"})
    assert r.status_code == 413 and set(r.json()) == {"message"}
    r = httpx.post(f"{url}/v1/translate", json={"text": big, "target": "fi"},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 413 and r.json()["code"] == "too_large"  # tolk's own shape
