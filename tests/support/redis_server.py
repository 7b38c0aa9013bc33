"""A real `redis-server` (the Debian package) on a free loopback port, for the tests.

Append-only file with `appendfsync always`, so a SIGKILLed server loses nothing it
acknowledged: `kill()` then `start()` brings back the same data on the same port. Every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support.live_server import free_port

START_TIMEOUT_S = 10.0


def redis_binary() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
         if os.path.exists(p)), None)
    if found is None:
        pytest.fail("redis-server is not installed; install it with `apt-get install -y "
                    "redis-server` (Debian/Ubuntu, `make system-deps`)")
    return found


class RedisServer:
    """`tls`: (certificate, key) to serve TLS only, with `password` required."""

    def __init__(self, binary: str, folder: Path, password: str | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.password, self.tls = password, tls
        auth = f":{password}@" if password else ""
        host = "localhost" if tls else "127.0.0.1"  # the certificate's name
        self.url = f"{'rediss' if tls else 'redis'}://{auth}{host}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            cert, key = self.tls
            args[1:3] = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                         str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                         "--tls-auth-clients", "no"]
        return args

    def _probe(self) -> redis.Redis:
        if self.tls:
            return redis.Redis(host="localhost", port=self.port, password=self.password,
                               ssl=True, ssl_ca_certs=str(self.tls[0]), socket_timeout=0.5,
                               socket_connect_timeout=0.5)
        return redis.Redis(port=self.port, password=self.password, socket_timeout=0.5,
                           socket_connect_timeout=0.5)

    def start(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        client = self._probe()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                       + (self.folder / "redis.log").read_text()[-2000:])
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError("redis-server did not answer PING")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (the append-only file has every write)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=2)

    def flush(self) -> None:
        with self.client() as c:
            c.flushall()


@contextlib.contextmanager
def running_redis(password: str | None = None,
                  tls: tuple[Path, Path] | None = None) -> Iterator[RedisServer]:
    folder = Path(tempfile.mkdtemp(prefix="tolk-redis-"))
    server = RedisServer(redis_binary(), folder, password, tls)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
