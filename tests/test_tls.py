"""TLS from certificate flags: `tolk serve --ssl-certfile --ssl-keyfile` serves wss:// and https://."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from support.certs import self_signed
from support.subprocess_server import tolk_serve


def test_wss_and_https_with_certificate_flags(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    args = ["--engine", "fake", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with tolk_serve(*args, timeout=60, scheme="https", ssl_context=ctx) as (base, _proc):
        host = base.replace("https://127.0.0.1", "localhost")
        with urllib.request.urlopen(f"https://{host}/health", context=ctx, timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        with connect(f"wss://{host}/v1/stream", ssl=ctx, compression=None) as ws:
            assert json.loads(ws.recv(5))["type"] == "ready"
            ws.send(json.dumps({"type": "translate", "id": "t", "text": "hello there",
                                "source": "en", "target": "fi"}))
            while json.loads(ws.recv(5))["type"] != "complete":
                pass
