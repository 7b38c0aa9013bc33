"""The records the stores keep (higher layers import them from here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

LEASE_TTL_S = 30.0  # a stream lease not renewed for this long is freed (a crashed worker's)
DAY_S = 86400


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


class GlossaryMeta(BaseModel):
    """What the DeepL API also reports about a glossary, and the key that created it."""

    name: str
    source_lang: str = ""
    target_lang: str = ""
    created: float = 0.0
    owner: str


@dataclass(frozen=True, slots=True)
class Glossary:
    terms: dict[str, str]
    created: float  # when it was stored (the operator's: when its file last changed)
    meta: GlossaryMeta | None = None  # None: an operator's glossary (`tolk glossary add`)


Refused = Literal["streams", "rate", "chars"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation took nothing: which limit, and when to retry (seconds)."""

    limit: Refused
    retry_after: float


def day_of(now: float) -> int:
    return int(now // DAY_S)


def rate_retry(now: float, oldest: float) -> float:
    """Seconds until the oldest request of the minute window leaves it."""
    return max(1.0, float(int(60 - (now - oldest)) + 1))


def day_retry(now: float) -> float:
    return float((day_of(now) + 1) * DAY_S - int(now))


def dump_terms(terms: dict[str, str]) -> str:
    return json.dumps(terms, ensure_ascii=False, sort_keys=True)


def load_terms(raw: Any) -> dict[str, str]:
    data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return {str(a): str(b) for a, b in data.items()}
