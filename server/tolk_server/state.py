"""What the transport shares: settings, engine, translator, metrics and keys."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .auth import KeyRing
from .config import Settings
from .engine import Engine
from .metrics import Metrics
from .translator import Translator


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    translator: Translator
    metrics: Metrics
    keyring: KeyRing
    model_name: str
    engine_ready: asyncio.Event = field(default_factory=asyncio.Event)
    startup_error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self.engine_ready.is_set() and self.engine.ready
