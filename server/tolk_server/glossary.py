"""Glossaries: named term lists stored on the server, and term checks for `complete`."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TypedDict

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


class GlossaryStore:
    """Named glossaries in one JSON file; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: tuple[int, int, int] | None = None
        self._data: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            st = self.path.stat()
            mtime = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            self._mtime, self._data = None, {}
            return self._data
        if mtime != self._mtime:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self._data = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in raw.items()}
            self._mtime = mtime
        return self._data

    def get(self, name: str) -> dict[str, str] | None:
        return self._load().get(name)

    def names(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self._load().items())}

    def put(self, name: str, terms: dict[str, str]) -> None:
        if len(terms) > MAX_TERMS:
            raise ValueError(f"a glossary holds at most {MAX_TERMS} terms")
        data = dict(self._load())
        data[name] = dict(terms)
        self._save(data)

    def remove(self, name: str) -> bool:
        data = dict(self._load())
        if data.pop(name, None) is None:
            return False
        self._save(data)
        return True

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".glossaries.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
        self._mtime = None
