"""Browser security headers: every HTML response gets a strict Content-Security-Policy (its
own, or the bundled page's), no framing, no MIME sniffing and no referrer; every response
gets `nosniff`.

The page's policy: its own scripts only (and `blob:`, for the microphone's AudioWorklet, which
the JS client builds from an inline module), its own styles, its own server to connect to.
`/docs` (Swagger UI) sets its own: its one inline script by hash, inline styles.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = ("object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_CSP = ("default-src 'self'; script-src 'self' blob:; style-src 'self'; "
            "img-src 'self' data:; connect-src 'self'; " + COMMON)
HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def docs_csp(html: bytes) -> str:
    """The policy of a Swagger UI page: its inline scripts allowed by hash, nothing else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.findall(html))
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " + COMMON)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("content-security-policy", PAGE_CSP)
                    for name, value in HEADERS.items():
                        headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, add_headers)
