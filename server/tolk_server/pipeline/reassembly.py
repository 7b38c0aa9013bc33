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


class PartsMerge:
    """The texts of a plan's parts as their generations stream in, in any interleaving:
    released strictly in source order, each part's surrounding white space kept. Sans-I/O:
    every method returns the (part, text) pieces that may be emitted now."""

    def __init__(self, spaces: list[tuple[str, str]]) -> None:
        self._spaces = list(spaces)  # (lead, trail) of each part
        self._joiner = OrderedJoiner(len(spaces))

    @property
    def done(self) -> bool:
        return self._joiner.done

    def begin(self) -> list[tuple[int, str]]:
        """The white space before each part (kept as is)."""
        return [r for k, (lead, _) in enumerate(self._spaces) for r in self._joiner.push(k, lead)]

    def add(self, spaces: list[tuple[str, str]]) -> list[tuple[int, str]]:
        """More parts after the last one (known only later), and their leading white space."""
        first = len(self._spaces)
        self._spaces += spaces
        self._joiner.extend(len(spaces))
        return [r for k in range(first, len(self._spaces))
                for r in self._joiner.push(k, self._spaces[k][0])]

    def text(self, k: int, text: str) -> list[tuple[int, str]]:
        return self._joiner.push(k, text)

    def end(self, k: int) -> list[tuple[int, str]]:
        """Part k is complete: its trailing white space, then what it held back."""
        return self._joiner.push(k, self._spaces[k][1]) + self._joiner.finish(k)
