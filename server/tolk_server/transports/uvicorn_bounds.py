"""uvicorn hardening: its HTTP and WebSocket protocols with bounds that hostile peers cannot
stretch, its logs without query strings, and the `uvicorn.Config` `tolk serve` runs.

- HTTP (httptools): the request line and headers must arrive within `header_timeout_s`
  (a slow-loris sending one byte a second gets 408 and a close) and fit in 64 KiB (else
  400). The body's size and deadline are the ASGI guard's job (`security/http_guard.py`).
- WebSocket (websockets' sans-I/O protocol): while the write buffer is above its
  high-water mark (64 KiB) the socket is not read and pongs are not queued, so a ping
  flood from a peer that never reads costs neither memory nor CPU; a keepalive timeout
  aborts the socket instead of waiting for a flush that never comes; and the app can
  abort a connection it could not close (`abort_connection`), e.g. at the auth deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from tolk_server.config import Settings

ABORT_EXTENSION = "tolk.abort"
KEEPALIVE_PING_S = 25.0  # below the 60-100 s idle timeouts of common proxies
KEEPALIVE_TIMEOUT_S = 20.0
MAX_HEADER_BYTES = 64 * 1024  # request line and headers (httptools has no limit of its own)
CLOSE_GRACE_S = 5.0  # after the app is done, a socket that will not flush is aborted
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 34\r\nconnection: close\r\n\r\nrequest headers took too long\r\n\r\n"
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """httptools with a deadline on the request line and headers of every request."""

    header_timeout_s = 10.0
    max_header_bytes = MAX_HEADER_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:  # uvicorn answers 400 and closes
            raise ValueError("request headers too large")

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # never inside another response
            transport.write(REQUEST_TIMEOUT)
        transport.close()
        self.loop.call_later(CLOSE_GRACE_S, transport.abort)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets' sans-I/O protocol with a bounded write buffer and abortable sockets."""

    close_grace_s = CLOSE_GRACE_S
    pongs_dropped = 0  # class-wide count, for tests and diagnostics

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: MutableMapping[str, Any] | None = self.__dict__.get("scope")
        if scope is not None:  # accepted upgrade: the app may abort the socket
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = {"abort": self.abort}

    def handle_ping(self) -> None:
        pong = b"".join(self.conn.data_to_send())
        if self.writable.is_set():
            self.transport.write(pong)
        else:  # the peer is not reading: answering would only grow our buffer
            type(self).pongs_dropped += 1

    def pause_writing(self) -> None:
        super().pause_writing()
        self.transport.pause_reading()  # a peer that does not read is not read either

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    async def receive(self) -> Any:
        message = await super().receive()
        if not self.writable.is_set() and not self.transport.is_closing():
            self.transport.pause_reading()  # super() may have resumed it
        return message

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.abort()  # the buffered close frame would never be read

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self.loop.call_later(self.close_grace_s, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.disconnected:
            self.abort()

    def abort(self) -> None:
        self.transport.abort()


def abort_connection(scope: MutableMapping[str, Any]) -> bool:
    """Drop the peer's socket at once (no flush); False where the server cannot."""
    ext = (scope.get("extensions") or {}).get(ABORT_EXTENSION) or {}
    abort: Callable[[], None] | None = ext.get("abort")
    if abort is None:
        return False
    abort()
    return True


class RedactQuery(logging.Filter):
    """uvicorn's access and WebSocket log lines without query strings: a URL's query may hold
    a secret or the user's text (`?auth_key=…&text=…`), and neither may reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(map(_redact, record.args))
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.split("?", 1)[0] + "?[redacted]"
    return arg


REDACT_QUERY = RedactQuery()
LOGGERS_WITH_URLS = ("uvicorn.access", "uvicorn.error")  # HTTP access, WebSocket handshakes


def redact_query_strings() -> None:
    """Install `RedactQuery` on uvicorn's loggers (idempotent)."""
    for name in LOGGERS_WITH_URLS:
        logger = logging.getLogger(name)
        if REDACT_QUERY not in logger.filters:
            logger.addFilter(REDACT_QUERY)


def protocol_classes(settings: Settings) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    class Http(GuardedHttpProtocol):
        header_timeout_s = settings.header_timeout_s

    return Http, GuardedWebSocketProtocol


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings of `tolk serve` (tests build their live servers with it too)."""
    http, ws = protocol_classes(settings)
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "http": http,
        "ws": ws,
        "ws_max_size": settings.max_frame_bytes,
        "ws_per_message_deflate": False,  # compression costs CPU and latency on short frames
        "ws_ping_interval": KEEPALIVE_PING_S,
        "ws_ping_timeout": KEEPALIVE_TIMEOUT_S,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 5,
        "h11_max_incomplete_event_size": 16 * 1024,  # used only if httptools is missing
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
    }
    kwargs.update(overrides)
    config = uvicorn.Config(app, **kwargs)  # configures uvicorn's logging
    redact_query_strings()
    return config
