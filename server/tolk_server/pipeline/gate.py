"""The admission gate: the one place every surface (WebSocket, REST, LibreTranslate, DeepL,
audio, live) asks whether it may take work.

- `principal(key)`: the API key (or none, when keys are not configured), else `unauthorized`;
- `check_ready()`: the engine has loaded and the server is not draining, else `overloaded`
  (`limit: not_ready`); `check_open()` for surfaces that start after the engine is ready
  (a WebSocket connection, an audio stream): only the drain refuses;
- `check_size(text)`: the text-size cap (`max_text_chars`), else `too_large`.

The limits a request then takes (in flight, per connection, per key) are `Admission`'s,
counted once when the pipeline admits it. A refusal is a `ProtocolError`; each surface maps
it to its own answer (an error frame, an HTTP status, a compatible API's error shape).
"""

from __future__ import annotations

import asyncio

from tolk.protocol import ErrorCode, Limit, ProtocolError
from tolk_server.config import Settings
from tolk_server.models.routing import ModelSet
from tolk_server.security.auth import Authenticator, Principal

NO_KEY = "missing or invalid API key"


class Gate:
    def __init__(self, settings: Settings, auth: Authenticator, models: ModelSet) -> None:
        self.settings = settings
        self.auth = auth
        self.models = models
        self.engine_ready = asyncio.Event()  # set once every model's engine has started
        self.draining = False  # set by the drain (SIGTERM): new work is refused

    @property
    def keys_required(self) -> bool:
        return self.auth.enabled

    def principal(self, key: str | None, message: str = NO_KEY) -> Principal:
        """Who presents `key` (anyone, when keys are not configured), or raise `unauthorized`."""
        who = self.auth.authenticate(key)
        if who is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, message)
        return who

    @property
    def ready(self) -> bool:
        """Whether requests are taken: the engines started, one default model alive, no drain."""
        return (self.engine_ready.is_set() and any(m.engine.ready for m in self.models.default)
                and not self.draining)

    def check_ready(self, rid: str | None = None) -> None:
        if not self.ready:
            raise ProtocolError(ErrorCode.OVERLOADED,
                                "the server is not ready (loading or draining)", rid,
                                limit=Limit.NOT_READY)

    def check_open(self, rid: str | None = None) -> None:
        if self.draining:
            raise ProtocolError(ErrorCode.OVERLOADED, "the server is shutting down", rid,
                                limit=Limit.NOT_READY)

    def check_size(self, text: str, rid: str | None = None) -> None:
        cap = self.settings.max_text_chars
        if len(text) > cap:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"text has {len(text)} characters; the limit is {cap}", rid)
