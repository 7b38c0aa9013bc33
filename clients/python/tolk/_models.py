"""The result of a translation, and the event-handler base class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exceptions import TolkError

__all__ = ["TranslationEventHandler", "TranslationResult"]


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


class TranslationEventHandler:
    """Override the callbacks you need; the others do nothing.

    Callbacks run in the caller's context: with `Client`, in the thread that called
    `translate`/iterates `translate_stream`; with `AsyncClient`, in the calling task. An
    exception raised by a callback cancels the request and propagates to the caller.
    """

    def on_start(self, request_id: str) -> None:
        """The server accepted the request; `request_id` is the server's id for it."""

    def on_token(self, token: str, index: int) -> None:
        """One piece of the translation; pieces in `index` order make the full text."""

    def on_complete(self, translation: str, latency_ms: float) -> None:
        """The request finished; `translation` is the whole text."""

    def on_error(self, error: TolkError) -> None:
        """The request failed (server error, timeout, dropped connection); it is raised next."""
