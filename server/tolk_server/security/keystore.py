"""API keys at rest: a JSON file of salted hashes, never the secrets themselves.

A key looks like `tolk_<id>_<secret>`. The id finds the entry; the secret is checked
against its salted SHA-256 in constant time. Keys are 256-bit random tokens, so a fast
hash is enough (slow hashes are for guessable passwords) and keeps each check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tolk_server.stores.jsonfile import WatchedJsonFile


class KeyLimits(BaseModel):
    requests_per_minute: int | None = Field(None, ge=1)
    chars_per_day: int | None = Field(None, ge=1)
    concurrent_streams: int | None = Field(None, ge=1)


class KeyRecord(BaseModel):
    id: str
    name: str
    salt: str
    sha256: str
    created: float
    revoked: bool = False
    limits: KeyLimits = Field(default_factory=KeyLimits)


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    prefix, _, rest = key.partition("_")
    kid, _, secret = rest.partition("_")
    if prefix != "tolk" or not kid or not secret:
        return None
    return kid, secret


def _parse(raw: Any) -> dict[str, KeyRecord]:
    return {r["id"]: KeyRecord.model_validate(r) for r in raw.get("keys", [])}


class KeyStore:
    """The key file; re-read when it changes, so `tolk keys revoke` takes effect live."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: WatchedJsonFile[dict[str, KeyRecord]] = WatchedJsonFile(
            path, _parse, dict
        )

    def records(self) -> dict[str, KeyRecord]:
        return self._file.load()

    @property
    def enabled(self) -> bool:
        """Auth stays on once any key was issued: revoking the last key locks all out."""
        return bool(self.records())

    def verify(self, key: str) -> KeyRecord | None:
        parsed = parse_key(key)
        if parsed is None:
            return None
        kid, secret = parsed
        rec = self.records().get(kid)
        if rec is None:
            # Spend the same work as a real check, so timing does not reveal valid ids.
            hmac.compare_digest(_hash("00" * 16, secret), "0" * 64)
            return None
        ok = hmac.compare_digest(_hash(rec.salt, secret), rec.sha256)
        return rec if ok and not rec.revoked else None

    def add(self, name: str, limits: KeyLimits | None = None) -> tuple[KeyRecord, str]:
        """Create a key; returns the record and the secret key (shown once, never stored)."""
        kid = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        salt = secrets.token_hex(16)
        rec = KeyRecord(id=kid, name=name, salt=salt, sha256=_hash(salt, secret),
                        created=time.time(), limits=limits or KeyLimits())
        keys = dict(self.records())
        keys[kid] = rec
        self._save(keys)
        return rec, f"tolk_{kid}_{secret}"

    def revoke(self, kid_or_name: str) -> bool:
        keys = dict(self.records())
        hit = [k for k, r in keys.items() if kid_or_name in (k, r.name) and not r.revoked]
        for k in hit:
            keys[k] = keys[k].model_copy(update={"revoked": True})
        if hit:
            self._save(keys)
        return bool(hit)

    def _save(self, keys: dict[str, KeyRecord]) -> None:
        self._file.save({"keys": [r.model_dump() for r in keys.values()]})
