"""Transports: how the client gets a connection that exchanges text frames.

`WebSocketTransport` is the real one (the `websockets` library, imported on first use).
`MockTransport` (in `_mock.py`) is an in-memory one for tests. A transport only moves
text frames; the protocol logic lives in the connection pool above it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "Transport",
    "TransportClosed",
    "TransportConnectError",
    "WebSocketTransport",
    "WireConnection",
]


class TransportClosed(Exception):
    """The connection is closed (raised by `WireConnection.recv`/`send`)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed (code {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class TransportConnectError(Exception):
    """A connection could not be opened. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class WireConnection(abc.ABC):
    """One open connection carrying text frames."""

    @abc.abstractmethod
    async def send(self, text: str) -> None:
        """Send one text frame; raise `TransportClosed` if the connection is gone."""

    @abc.abstractmethod
    async def recv(self) -> str:
        """The next text frame; raise `TransportClosed` once the connection is closed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""


class Transport(abc.ABC):
    """Opens `WireConnection`s. Subclass it to plug another transport into the clients."""

    @abc.abstractmethod
    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float | None
    ) -> WireConnection:
        """Open a connection to `url`, or raise `TransportConnectError`."""


class _WebSocket(WireConnection):
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def recv(self) -> str:
        from websockets.exceptions import ConnectionClosed

        try:
            msg = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return msg if isinstance(msg, str) else msg.decode("utf-8", "replace")

    async def close(self) -> None:
        await self._ws.close()


def _has_proxy_option(connect: Any) -> bool:
    import inspect

    return "proxy" in inspect.signature(connect).parameters


def _closed(exc: Any) -> TransportClosed:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return TransportClosed(rcvd.code, rcvd.reason)
    return TransportClosed(None, "connection lost")


class WebSocketTransport(Transport):
    """WebSocket connections with the `websockets` library (no compression, no proxy unless
    `proxy` is given; `websockets`' own keepalive is off: the client sends protocol pings)."""

    def __init__(self, *, proxy: str | None = None, max_size: int | None = 16 * 1024 * 1024,
                 **connect_kwargs: Any) -> None:
        self.proxy = proxy
        self.max_size = max_size
        self.connect_kwargs = connect_kwargs

    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float | None
    ) -> WireConnection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        options = dict(self.connect_kwargs)
        if self.proxy is not None or _has_proxy_option(connect):
            options["proxy"] = self.proxy  # websockets >= 15 would read *_PROXY from the env
        try:
            ws = await connect(
                url,
                additional_headers=dict(headers),
                compression=None,
                open_timeout=open_timeout,
                ping_interval=None,
                max_size=self.max_size,
                user_agent_header=f"tolk-python/{__version__}",
                **options,
            )
        except InvalidURI as exc:
            raise TransportConnectError(f"invalid URL: {exc}", retryable=False) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise TransportConnectError(
                f"server rejected the WebSocket upgrade with HTTP {status}",
                retryable=status >= 500 or status == 429,
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise TransportConnectError(f"{type(exc).__name__}: {exc}") from exc
        return _WebSocket(ws)
