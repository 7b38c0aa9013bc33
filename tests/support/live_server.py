"""A real uvicorn server on loopback, in a background thread with its own event loop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1; yields the base URL `http://127.0.0.1:PORT`."""
    port = free_port()
    config.setdefault("ws_max_size", 64 * 1024)
    cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                         ws_per_message_deflate=False, **config)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    ready = app.state.tolk.engine_ready
    while not ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
