"""How long the server's event loop is held: `/health` polled from a thread of this process
(the server runs in another, so the probe does not share its interpreter lock)."""

from __future__ import annotations

import http.client
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

MAX_POLLS = 100_000
POLL_TIMEOUT_S = 60.0


class HealthProbe:
    """`with HealthProbe(base) as probe: ...`: `/health` polled every `period_s` while the
    block runs; `probe.worst` is the slowest answer (seconds), `probe.polls` their number."""

    def __init__(self, base: str, period_s: float = 0.005) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.period_s = period_s
        self.worst = 0.0
        self.polls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        assert self._first.wait(POLL_TIMEOUT_S), "no /health answer"
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(POLL_TIMEOUT_S + 5)

    def _poll(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=POLL_TIMEOUT_S)
        try:
            for _ in range(MAX_POLLS):
                if self._stop.is_set():
                    return
                t0 = time.perf_counter()
                try:
                    conn.request("GET", "/health")
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                except OSError as exc:
                    ok = False
                    self.failures.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port,
                                                      timeout=POLL_TIMEOUT_S)
                took = time.perf_counter() - t0
                if ok:
                    self.worst = max(self.worst, took)
                    self.polls += 1
                    self._first.set()
                time.sleep(self.period_s)
        finally:
            conn.close()
