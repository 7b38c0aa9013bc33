"""Reassembling parts translated in parallel, strictly in source order. Pure code."""

from __future__ import annotations


class OrderedJoiner:
    """Parts 0..n-1 stream text in any interleaving; text leaves strictly in part order.

    Part k+1 may finish first, but its text is held until part k is complete.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("need at least one part")
        self.n = n
        self._current = 0
        self._held: list[list[str]] = [[] for _ in range(n)]
        self._done = [False] * n

    @property
    def current(self) -> int:
        """The part whose text is flowing now (n once all are done)."""
        return self._current

    @property
    def done(self) -> bool:
        return self._current >= self.n

    def extend(self, more: int) -> None:
        """Add `more` parts after the last one (known only later)."""
        self.n += more
        self._held += [[] for _ in range(more)]
        self._done += [False] * more

    def push(self, k: int, text: str) -> list[tuple[int, str]]:
        """Add text for part k; returns the (part, text) pieces that may be emitted now."""
        if self._done[k]:
            raise ValueError(f"part {k} already finished")
        if k == self._current:
            return [(k, text)] if text else []
        if text:
            self._held[k].append(text)
        return []

    def finish(self, k: int) -> list[tuple[int, str]]:
        """Mark part k complete; returns held text of later parts that is now released."""
        if self._done[k]:
            raise ValueError(f"part {k} already finished")
        self._done[k] = True
        out: list[tuple[int, str]] = []
        while self._current < self.n and self._done[self._current]:
            self._current += 1
            if self._current < self.n:
                held, self._held[self._current] = self._held[self._current], []
                out += [(self._current, t) for t in held]
        return out
