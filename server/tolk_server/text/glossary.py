"""Glossaries: named term lists stored on the server, and term checks for `complete`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, TypeVar

from tolk.protocol.frames import MAX_TERM_CHARS
from tolk_server.stores.files import FileGlossaries
from tolk_server.stores.health import StoreHealth, StoreUnavailable
from tolk_server.stores.interfaces import GlossaryBackend, StoreError
from tolk_server.stores.records import Glossary, GlossaryMeta

MAX_TERMS = 500
T = TypeVar("T")


class TermReport(TypedDict):
    source: str
    target: str
    in_source: bool
    in_output: bool


def _contains(haystack: str, needle: str) -> bool:
    pattern = r"(?<!\w)" + re.escape(needle.casefold()) + r"(?!\w)"
    return re.search(pattern, haystack.casefold()) is not None


def relevant_terms(glossary: dict[str, str], text: str) -> dict[str, str]:
    """The entries whose source term occurs in `text` (case-insensitive, whole words)."""
    return {s: t for s, t in glossary.items() if _contains(text, s)}


def report(glossary: dict[str, str], source: str, output: str) -> list[TermReport]:
    return [
        {"source": s, "target": t, "in_source": _contains(source, s),
         "in_output": _contains(output, t)}
        for s, t in glossary.items()
    ]


class GlossaryStore:
    """Named glossaries in a store (a JSON file: `GlossaryStore(path)`): the operator's
    (`tolk glossary add`) and the DeepL API's, each owned by the key that created it.
    When the store does not answer, a request naming a glossary is refused
    (`StoreUnavailable`) under either policy: its terms cannot be guessed."""

    def __init__(self, source: Path | GlossaryBackend, health: StoreHealth | None = None) -> None:
        self.backend: GlossaryBackend = (FileGlossaries(source) if isinstance(source, Path)
                                         else source)
        self.path = source if isinstance(source, Path) else None  # a glossary file's
        self.health = health or StoreHealth()

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            return self.health.run("glossaries", fn)
        except StoreError:
            raise StoreUnavailable() from None

    def entry(self, name: str) -> Glossary | None:
        return self._run(lambda: self.backend.get(name))

    def get(self, name: str) -> dict[str, str] | None:
        found = self.entry(name)
        return None if found is None else found.terms

    def usable(self, name: str, key_id: str) -> dict[str, str] | None:
        """The terms of `name` if key `key_id` may use them (the operator's glossaries, and
        those it created), else None: another key's glossary reads as an unknown one."""
        found = self.entry(name)
        return found.terms if found is not None and _may_use(found, key_id) else None

    def entries(self, key_id: str | None = None) -> dict[str, Glossary]:
        """Every glossary (`key_id` given: those that key may use)."""
        every = self._run(self.backend.all)
        return {k: g for k, g in every.items() if key_id is None or _may_use(g, key_id)}

    def names(self) -> dict[str, int]:
        return {k: len(g.terms) for k, g in sorted(self.entries().items())}

    def put(self, name: str, terms: dict[str, str]) -> None:
        _check(terms)
        self._run(lambda: self.backend.put(name, dict(terms), time.time()))

    def create(self, name: str, terms: dict[str, str], meta: GlossaryMeta,
               max_per_owner: int) -> bool:
        """A key's glossary (the DeepL API's), unless it has `max_per_owner` already."""
        _check(terms)
        return self._run(lambda: self.backend.create(name, dict(terms), meta, max_per_owner))

    def remove(self, name: str) -> bool:
        return self._run(lambda: self.backend.remove(name))


def _may_use(found: Glossary, key_id: str) -> bool:
    return found.meta is None or found.meta.owner == key_id


def _check(terms: dict[str, str]) -> None:
    if len(terms) > MAX_TERMS:
        raise ValueError(f"a glossary holds at most {MAX_TERMS} terms")
    if any(len(t) > MAX_TERM_CHARS for pair in terms.items() for t in pair):
        raise ValueError(f"a glossary term has at most {MAX_TERM_CHARS} characters")
