"""API-key checks, in constant time."""

from __future__ import annotations

import hashlib
import hmac


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, key: str | None) -> bool:
        """True when `key` is one of the keys; compares against every key, no early exit."""
        if not self._digests:
            return True
        candidate = _digest(key or "")
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(candidate, d)
        return ok and bool(key)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
