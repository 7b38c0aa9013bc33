"""The `memory` store's keys and glossaries: JSON files, as before stores existed.

`keys.json` holds `{"keys": [record, ...]}`; `glossaries.json` holds `{name: {source: target}}`
and its side file `glossaries.deepl.json` the DeepL glossaries' metadata `{name: meta}`. Each
change is a read-modify-write under the file's lock (`WatchedJsonFile.locked`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tolk_server.stores.jsonfile import WatchedJsonFile
from tolk_server.stores.records import Glossary, GlossaryMeta, KeyRecord, load_terms


def _parse_keys(raw: Any) -> dict[str, KeyRecord]:
    return {r["id"]: KeyRecord.model_validate(r) for r in raw.get("keys", [])}


def _dump_keys(keys: dict[str, KeyRecord]) -> dict[str, Any]:
    return {"keys": [r.model_dump() for r in keys.values()]}


class FileKeys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: WatchedJsonFile[dict[str, KeyRecord]] = WatchedJsonFile(
            path, _parse_keys, dict)

    def get(self, kid: str) -> KeyRecord | None:
        return self._file.load().get(kid)

    def all(self) -> dict[str, KeyRecord]:
        return dict(self._file.load())

    def any(self) -> bool:
        return bool(self._file.load())

    def put(self, record: KeyRecord) -> None:
        with self._file.locked() as current:
            self._file.save(_dump_keys({**current, record.id: record}))

    def revoke(self, kid_or_name: str) -> list[str]:
        with self._file.locked() as current:
            keys = dict(current)
            hit = [k for k, r in keys.items() if kid_or_name in (k, r.name) and not r.revoked]
            for k in hit:
                keys[k] = keys[k].model_copy(update={"revoked": True})
            if hit:
                self._file.save(_dump_keys(keys))
        return hit


def _parse_terms(raw: Any) -> dict[str, dict[str, str]]:
    return {str(k): load_terms(v) for k, v in raw.items()}


def _parse_meta(raw: Any) -> dict[str, GlossaryMeta]:
    return {str(k): GlossaryMeta.model_validate(v) for k, v in raw.items()
            if isinstance(v, dict) and isinstance(v.get("owner"), str) and "name" in v}


def deepl_path(path: Path) -> Path:
    """The side file of the DeepL API's glossaries (name, languages, owner key id)."""
    return path.with_suffix(".deepl.json")


class FileGlossaries:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._terms: WatchedJsonFile[dict[str, dict[str, str]]] = WatchedJsonFile(
            path, _parse_terms, dict)
        self._meta: WatchedJsonFile[dict[str, GlossaryMeta]] = WatchedJsonFile(
            deepl_path(path), _parse_meta, dict)

    def _stamp(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _entry(self, name: str, terms: dict[str, str]) -> Glossary:
        meta = self._meta.load().get(name)
        return Glossary(dict(terms), meta.created if meta else self._stamp(), meta)

    def get(self, name: str) -> Glossary | None:
        terms = self._terms.load().get(name)
        return None if terms is None else self._entry(name, terms)

    def all(self) -> dict[str, Glossary]:
        return {k: self._entry(k, v) for k, v in sorted(self._terms.load().items())}

    def put(self, name: str, terms: dict[str, str], now: float) -> None:
        with self._terms.locked() as current:
            self._terms.save({**current, name: dict(terms)})

    def create(self, name: str, terms: dict[str, str], meta: GlossaryMeta,
               max_per_owner: int) -> bool:
        with self._terms.locked() as current:  # one lock for both files
            metas = self._meta.load()
            if sum(m.owner == meta.owner for m in metas.values()) >= max_per_owner:
                return False
            self._terms.save({**current, name: dict(terms)})
            self._meta.save({k: v.model_dump() for k, v in {**metas, name: meta}.items()})
        return True

    def remove(self, name: str) -> bool:
        with self._terms.locked() as current:
            metas = dict(self._meta.load())
            data = dict(current)
            found = data.pop(name, None) is not None
            if found:
                self._terms.save(data)
            if metas.pop(name, None) is not None:
                self._meta.save({k: v.model_dump() for k, v in metas.items()})
        return found
