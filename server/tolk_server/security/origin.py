"""Browser-origin safety by default, as pure ASGI middleware.

- `Host` allowlist on loopback binds (and wherever `--allowed-host` is given): loopback
  names, the address the connection arrived on, and `--allowed-host` names. A page that
  rebinds its own DNS name to 127.0.0.1 sends its own name as `Host`, and is refused.
- WebSocket upgrades and POST/PUT/PATCH/DELETE requests: from non-browser clients (no
  `Origin`), from the server's own origin (the `Origin` host and port equal the `Host`
  header's), or from an origin in `--allowed-origin`. (A foreign page can post a form
  without a CORS preflight, and Starlette's CORS middleware does not cover WebSockets.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tolk.protocol import ErrorCode, error
from tolk_server.config import Settings, is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
POLICY_VIOLATION = 1008
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def split_host(value: str, default_port: int | None = None) -> tuple[str, int | None]:
    """`example.com:8000` / `[::1]:8000` -> (lowercased name, port); port None if invalid."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    if not port:
        return name, default_port
    return name, int(port) if port.isdigit() else None


def allowed_host_names(settings: Settings) -> frozenset[str] | None:
    """The `Host` names served; None: any (a public bind without `--allowed-host`)."""
    extra = {split_host(h)[0] for h in settings.allowed_hosts}
    if not extra and not is_loopback(settings.host):
        return None
    return LOOPBACK_NAMES | {split_host(settings.host)[0]} | extra


def host_allowed(host: str, names: frozenset[str] | None, local_address: str | None) -> bool:
    """`local_address`: the address the connection arrived on (also a served name)."""
    if names is None:
        return True
    name = split_host(host)[0]
    if name in names or (local_address is not None and name == local_address.lower()):
        return True
    return any(n.startswith("*.") and name.endswith(n[1:]) for n in names)


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    if origin is None:  # not a browser
        return True
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (sandboxed frames, file://) and the like
    try:
        origin_port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    return (parts.hostname.lower(), origin_port) == split_host(host, origin_port)


class OriginGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.names = allowed_host_names(settings)
        self.origins = settings.allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k: v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"host", b"origin")}
        host = headers.get(b"host", "")
        server = scope.get("server")
        if not host_allowed(host, self.names, str(server[0]) if server else None):
            await self._refuse(scope, receive, send, "this Host is not served here "
                               "(add it with --allowed-host)")
            return
        guarded = scope["type"] == "websocket" or scope["method"] in UNSAFE_METHODS
        if guarded and not origin_allowed(headers.get(b"origin"), host, self.origins):
            await self._refuse(scope, receive, send, "cross-origin request refused "
                               "(allow the origin with --allowed-origin)")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
        if scope["type"] == "websocket":  # before the handshake: HTTP 403
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        await JSONResponse(dict(error(ErrorCode.BAD_REQUEST, message)), 403,
                           {"connection": "close"})(scope, receive, send)
