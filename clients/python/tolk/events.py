"""Event handlers: `TranslationEventHandler`, the base class of request observers.

    from tolk.events import TranslationEventHandler
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._exceptions import TolkError

__all__ = ["TranslationEventHandler"]


class TranslationEventHandler:
    """Override the callbacks you need; the others do nothing.

    A per-call handler (`handler=`) runs in the caller's context: with `Client`, in the
    thread that called `translate`/iterates `translate_stream`; with `AsyncClient`, in the
    calling task. An exception raised by it cancels the request and propagates to the caller.

    A client-level handler (`Client(event_handler=...)`) sees every request of the client
    as its frames arrive, iterated or not, on the client's event loop (the background
    thread of `Client`); what it raises is logged, not propagated. Keep it quick.
    """

    def on_start(self, request_id: str) -> None:
        """The server accepted the request; `request_id` is the server's id for it."""

    def on_token(self, token: str, index: int) -> None:
        """One piece of the translation; pieces in `index` order make the full text."""

    def on_complete(self, translation: str, latency_ms: float) -> None:
        """The request finished; `translation` is the whole text."""

    def on_error(self, error: TolkError) -> None:
        """The request failed (server error, timeout, dropped connection); it is raised next."""
