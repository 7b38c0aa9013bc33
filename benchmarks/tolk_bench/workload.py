"""Workloads: real sentences from a TSV file, long inputs, and Poisson arrival times."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .paths import DEFAULT_DATA, SAMPLE_DATA


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One translation request, with the exact prompt every target receives."""

    text: str
    source: str
    target: str
    prompt: str
    max_tokens: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestSpec:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Pair:
    en: str
    fi: str


def default_data() -> Path:
    return DEFAULT_DATA if DEFAULT_DATA.is_file() else SAMPLE_DATA


def read_pairs(path: Path, limit: int | None = None) -> list[Pair]:
    """Lines `english<TAB>finnish` (extra columns ignored; blank or short lines skipped)."""
    out: list[Pair] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                continue
            out.append(Pair(row[0].strip(), row[1].strip()))
            if limit is not None and len(out) >= limit:
                break
    return out


Renderer = Callable[[str, str, str], str]  # (text, source, target) -> prompt


def sentence_specs(
    pairs: list[Pair],
    n: int,
    render: Renderer,
    max_tokens: int,
    seed: int = 0,
    directions: tuple[tuple[str, str], ...] = (("en", "fi"), ("fi", "en")),
) -> list[RequestSpec]:
    """`n` requests over shuffled sentences, alternating the directions."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out: list[RequestSpec] = []
    for i in range(n):
        p = pairs[order[i % len(order)]]
        src, tgt = directions[i % len(directions)]
        text = p.en if src == "en" else p.fi
        out.append(RequestSpec(text, src, tgt, render(text, src, tgt), max_tokens))
    return out


def long_specs(
    pairs: list[Pair],
    n: int,
    render: Renderer,
    max_tokens: int,
    chars: int = 1500,
    seed: int = 1,
) -> list[RequestSpec]:
    """`n` long English inputs (~`chars` characters of consecutive sentences) into Finnish."""
    rng = random.Random(seed)
    out: list[RequestSpec] = []
    for _ in range(n):
        start = rng.randrange(len(pairs))
        parts: list[str] = []
        i = start
        while sum(len(s) + 1 for s in parts) < chars:
            parts.append(pairs[i % len(pairs)].en)
            i += 1
        text = " ".join(parts)[:chars].strip()
        out.append(RequestSpec(text, "en", "fi", render(text, "en", "fi"), max_tokens))
    return out


def poisson_delays(n: int, rate: float, seed: int = 0, burstiness: float = 1.0) -> list[float]:
    """Inter-arrival gaps (s) as `vllm bench serve`: gamma(burstiness, 1/(rate*burstiness)),
    i.e. exponential (a Poisson process) when burstiness is 1; zero gaps at an infinite rate."""
    if rate == float("inf"):
        return [0.0] * n
    import numpy as np

    rng = np.random.default_rng(seed)
    theta = 1.0 / (rate * burstiness)
    return [float(x) for x in rng.gamma(shape=burstiness, scale=theta, size=n)]


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def write_json_report(report: dict[str, Any], out: str | None) -> None:
    """Print a script's JSON report, and write it to `out` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)
