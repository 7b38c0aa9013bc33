"""Chunking a stream of text deltas into readable units (token, word or segment). Pure code.

Chunks always concatenate to exactly the input. Time is passed in (milliseconds) by the
caller, so this needs no clock.
"""

from __future__ import annotations

from tolk.protocol import DEFAULT_MAX_DELAY_MS, Granularity

# Sentence or clause punctuation that closes a segment when followed by white space.
SPACED_PUNCT = frozenset(".!?;:,…")
# CJK punctuation closes a segment on its own (CJK text has no spaces).
CJK_PUNCT = frozenset("。！？，、；：")
MIN_SEGMENT_CHARS = 40


def _skip_space(buf: str, j: int) -> int:
    while j < len(buf) and buf[j].isspace():
        j += 1
    return j


def _segment_end(buf: str) -> int:
    """Index just past the first segment boundary in `buf`, or 0 if none is complete."""
    for i, ch in enumerate(buf):
        if ch in CJK_PUNCT:
            return _skip_space(buf, i + 1)
        if ch in SPACED_PUNCT and i + 1 < len(buf) and buf[i + 1].isspace():
            return _skip_space(buf, i + 1)
    return 0


def _last_word_break(buf: str) -> int:
    """Index just past the last white space in `buf` (0 if none): words before it are whole."""
    i = len(buf)
    while i > 0 and not buf[i - 1].isspace():
        i -= 1
    return i


class Chunker:
    """Buffers deltas and releases chunks at boundaries (or after `max_delay_ms`)."""

    def __init__(
        self,
        granularity: Granularity = "token",
        *,
        max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
        min_chars: int = MIN_SEGMENT_CHARS,
    ) -> None:
        self.granularity = granularity
        self.max_delay_ms = max_delay_ms
        self.min_chars = min_chars
        self._buf = ""
        self._since: float | None = None

    @property
    def pending(self) -> str:
        return self._buf

    def deadline(self) -> float | None:
        """When `poll` would flush by time (segment granularity only), else None."""
        if self.granularity != "segment" or self._since is None:
            return None
        return self._since + self.max_delay_ms

    def push(self, text: str, now_ms: float) -> list[str]:
        if not text:
            return []
        if self.granularity == "token":
            return [text]
        if not self._buf:
            self._since = now_ms
        self._buf += text
        return self._release(now_ms)

    def poll(self, now_ms: float) -> list[str]:
        deadline = self.deadline()
        if deadline is not None and now_ms >= deadline:
            return self._take(len(self._buf), now_ms)
        return []

    def finish(self) -> list[str]:
        out = [self._buf] if self._buf else []
        self._buf, self._since = "", None
        return out

    def _release(self, now_ms: float) -> list[str]:
        out: list[str] = []
        if self.granularity == "word":
            cut = _last_word_break(self._buf)
            return self._take(cut, now_ms) if cut else []
        while True:
            cut = _segment_end(self._buf)
            if not cut and len(self._buf) >= self.min_chars:
                cut = _last_word_break(self._buf)
            if not cut:
                break
            out += self._take(cut, now_ms)
        return out

    def _take(self, n: int, now_ms: float) -> list[str]:
        if n <= 0:
            return []
        chunk, self._buf = self._buf[:n], self._buf[n:]
        self._since = now_ms if self._buf else None
        return [chunk]
