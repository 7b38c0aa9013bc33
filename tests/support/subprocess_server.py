"""`tolk serve` as a real child process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from support.live_server import free_port


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float,
               ssl_context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(base.replace("127.0.0.1", "localhost") + "/ready",
                                        timeout=1, context=ssl_context) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server not ready")


@contextmanager
def tolk_serve(*args: str, timeout: float = 180, env: dict[str, str] | None = None,
               scheme: str = "http", ssl_context: ssl.SSLContext | None = None,
               ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    base = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout, ssl_context)
        yield base, proc
    finally:
        # The server leads its own process group: take vLLM's engine processes down with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
