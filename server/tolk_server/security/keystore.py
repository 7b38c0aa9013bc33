"""API keys at rest: salted hashes in a store (`stores`), never the secrets themselves.

A key looks like `tolk_<id>_<secret>`. The id finds the record; the secret is checked
against its salted SHA-256 in constant time. Keys are 256-bit random tokens, so a fast
hash is enough (slow hashes are for guessable passwords) and keeps each check cheap.

With a shared store (sqlite, redis) a record is cached for at most `VERIFY_CACHE_S`, so a
key revoked on one replica is refused on every replica within that time. When the store
does not answer: `closed` refuses (`StoreUnavailable`), `open` goes on with the record
last seen (a key never seen by this process is refused).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from tolk_server.stores.files import FileKeys
from tolk_server.stores.health import StoreHealth, StoreUnavailable
from tolk_server.stores.interfaces import KeyBackend, StoreError
from tolk_server.stores.records import KeyLimits, KeyRecord

__all__ = ["VERIFY_CACHE_S", "KeyLimits", "KeyRecord", "KeyStore", "parse_key"]
VERIFY_CACHE_S = 0.5
MAX_CACHED = 4096


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    prefix, _, rest = key.partition("_")
    kid, _, secret = rest.partition("_")
    if prefix != "tolk" or not kid or not secret:
        return None
    return kid, secret


class KeyStore:
    """The keys of a store (a key file: `KeyStore(path)`); `tolk keys revoke` takes effect
    on a running server."""

    def __init__(self, source: Path | KeyBackend, health: StoreHealth | None = None) -> None:
        self.backend: KeyBackend = FileKeys(source) if isinstance(source, Path) else source
        self.path = source if isinstance(source, Path) else None  # a key file's
        self.health = health or StoreHealth()
        # A file is re-read when it changes (a stat per check): no cache needed.
        self.cache_s = 0.0 if isinstance(self.backend, FileKeys) else VERIFY_CACHE_S
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._seen: dict[str, KeyRecord] = {}  # the `open` policy's last known records
        self._enabled: tuple[float, bool] = (0.0, False)

    def records(self) -> dict[str, KeyRecord]:
        return self.health.run("keys", self.backend.all)

    @property
    def enabled(self) -> bool:
        """Auth stays on once any key was issued: revoking the last key locks all out."""
        stamp, on = self._enabled
        if on or time.monotonic() - stamp < self.cache_s:
            return on
        try:
            on = self.health.run("keys", self.backend.any)
        except StoreError:
            on = True  # unknown: refuse rather than open the server to anyone
        self._enabled = (time.monotonic(), on)
        return on

    def _record(self, kid: str) -> KeyRecord | None:
        now = time.monotonic()
        hit = self._cache.get(kid)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        try:
            rec = self.health.run("keys", lambda: self.backend.get(kid))
        except StoreError:
            self.health.refuse()  # closed: StoreUnavailable
            if kid not in self._seen:
                raise StoreUnavailable() from None
            return self._seen[kid]
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[kid] = (now, rec)
        if rec is not None and self.health.open:
            self._seen[kid] = rec
        return rec

    def verify(self, key: str) -> KeyRecord | None:
        parsed = parse_key(key)
        if parsed is None:
            return None
        kid, secret = parsed
        rec = self._record(kid)
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
        self.health.run("keys", lambda: self.backend.put(rec))
        self._cache.pop(kid, None)
        return rec, f"tolk_{kid}_{secret}"

    def revoke(self, kid_or_name: str) -> bool:
        hit = self.health.run("keys", lambda: self.backend.revoke(kid_or_name))
        for kid in hit:
            self._cache.pop(kid, None)
            self._seen.pop(kid, None)
        return bool(hit)
