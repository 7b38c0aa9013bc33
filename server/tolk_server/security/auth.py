"""Who is calling: API keys from the settings (plaintext, e.g. TOLK_API_KEYS) and from
the key store (salted hashes). Every check is constant-time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from tolk_server.security.keystore import KeyLimits, KeyStore


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    limits: KeyLimits


ANONYMOUS = Principal("anonymous", KeyLimits())


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    def __init__(self, keys: list[str], store: KeyStore | None = None) -> None:
        self._digests = [_digest(k) for k in keys if k]
        self.store = store

    @property
    def enabled(self) -> bool:
        return bool(self._digests) or (self.store is not None and self.store.enabled)

    def authenticate(self, key: str | None) -> Principal | None:
        """The caller behind `key`; ANONYMOUS when no keys are configured; None if refused."""
        if not self.enabled:
            return ANONYMOUS
        if not key:
            return None
        candidate = _digest(key)
        match = -1
        for i, d in enumerate(self._digests):  # compare against every key: no early exit
            if hmac.compare_digest(candidate, d):
                match = i
        if match >= 0:
            return Principal(f"config-{match}", KeyLimits())
        if self.store is not None:
            rec = self.store.verify(key)
            if rec is not None:
                return Principal(rec.id, rec.limits)
        return None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
