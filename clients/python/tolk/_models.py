"""The result of a translation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TranslationResult"]


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """A finished translation (the server's `complete` frame). `str(result)` is the text."""

    translation: str
    source: str
    target: str
    tokens: int
    first_token_ms: float | None
    latency_ms: float
    finish_reason: str
    #: The client-side request id (unique per client).
    id: str
    #: The server's request id (from the `start` frame), for its logs.
    request_id: str | None = None
    #: Whether the server answered from its result cache.
    cached: bool = False
    #: The whole `complete` frame (sentences, session, glossary report, ...).
    frame: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        return self.translation
