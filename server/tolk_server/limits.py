"""Per-key limits: requests per minute, characters per day, concurrent streams."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from tolk.protocol import ProtocolError

from .keystore import KeyLimits


@dataclass
class _Usage:
    recent: deque[float] = field(default_factory=deque)
    day: int = -1
    chars: int = 0
    streams: int = 0


class KeyLimiter:
    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}

    def acquire(self, key_id: str, limits: KeyLimits, chars: int, rid: str,
                now: float | None = None) -> None:
        """Count one request against the key, or raise `overloaded` (HTTP 429)."""
        now = time.time() if now is None else now
        u = self._usage.setdefault(key_id, _Usage())
        if limits.concurrent_streams is not None and u.streams >= limits.concurrent_streams:
            raise ProtocolError("overloaded", "concurrent stream limit of this API key", rid)
        if limits.requests_per_minute is not None:
            while u.recent and now - u.recent[0] >= 60:
                u.recent.popleft()
            if len(u.recent) >= limits.requests_per_minute:
                raise ProtocolError("overloaded", "request rate limit of this API key", rid)
        day = int(now // 86400)
        if day != u.day:
            u.day, u.chars = day, 0
        if limits.chars_per_day is not None and u.chars + chars > limits.chars_per_day:
            raise ProtocolError("overloaded", "daily character limit of this API key", rid)
        if limits.requests_per_minute is not None:
            u.recent.append(now)
        u.chars += chars
        u.streams += 1

    def release(self, key_id: str) -> None:
        u = self._usage.get(key_id)
        if u is not None and u.streams > 0:
            u.streams -= 1
