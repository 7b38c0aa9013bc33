"""Glossaries: named term lists stored on the server, and term checks for `complete`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypedDict

from tolk.protocol.frames import MAX_TERM_CHARS
from tolk_server.stores.jsonfile import WatchedJsonFile

MAX_TERMS = 500


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


def _parse(raw: Any) -> dict[str, dict[str, str]]:
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in raw.items()}


def owners_path(path: Path) -> Path:
    """The side file of the DeepL API's glossaries (name, languages, owner key id)."""
    return path.with_suffix(".deepl.json")


class GlossaryStore:
    """Named glossaries in one JSON file; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._owners: WatchedJsonFile[dict[str, Any]] = WatchedJsonFile(
            owners_path(path), dict, dict)  # read here; written by compat.deepl_glossaries
        self._file: WatchedJsonFile[dict[str, dict[str, str]]] = WatchedJsonFile(
            path, _parse, dict
        )

    def get(self, name: str) -> dict[str, str] | None:
        return self._file.load().get(name)

    def usable(self, name: str, key_id: str) -> dict[str, str] | None:
        """The terms of `name` if key `key_id` may use them (the operator's glossaries, and
        those it created), else None: another key's glossary reads as an unknown one."""
        terms = self.get(name)
        meta = self._owners.load().get(name) if terms is not None else None
        if meta is not None and (not isinstance(meta, dict) or meta.get("owner") != key_id):
            return None
        return terms

    def names(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self._file.load().items())}

    def put(self, name: str, terms: dict[str, str]) -> None:
        if len(terms) > MAX_TERMS:
            raise ValueError(f"a glossary holds at most {MAX_TERMS} terms")
        if any(len(t) > MAX_TERM_CHARS for pair in terms.items() for t in pair):
            raise ValueError(f"a glossary term has at most {MAX_TERM_CHARS} characters")
        data = dict(self._file.load())
        data[name] = dict(terms)
        self._file.save(data)

    def remove(self, name: str) -> bool:
        data = dict(self._file.load())
        if data.pop(name, None) is None:
            return False
        self._file.save(data)
        return True
