"""Measures of re-translation: normalized erasure and LAAL (source characters).

Pure code, shared by the server (the `live` figures of a `complete` frame) and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

from .agreement import common_prefix_len, words


def normalized_erasure(outputs: Sequence[str], final: str) -> float:
    """Characters deleted from one shown output to the next, ÷ the final length.

    Arivazhagan et al. (2020), "Re-translation versus streaming for simultaneous
    translation", in characters. `outputs` are the shown translations in order.
    """
    erased = 0
    prev = ""
    for out in [*outputs, final]:
        erased += len(prev) - common_prefix_len(prev, out)
        prev = out
    return erased / max(1, len(final))


def laal(outputs: Sequence[tuple[int, str]], final: str, source_len: int,
         reference_words: int | None = None) -> float:
    """Length-adaptive average lagging in source characters (SimulEval, Papi et al. 2022).

    `outputs` are (source characters read, shown translation) in order. A target word's
    delay is the source read when it appeared in its final form for good (re-translation:
    Arivazhagan et al. 2020). Without a reference, |Y*| is taken as |Y|.
    """
    fw = words(final)
    if not fw or source_len <= 0:
        return 0.0
    seq = [*outputs, (source_len, final)]
    matched = []
    for _, out in seq:
        ow = words(out)
        m = 0
        while m < len(ow) and m < len(fw) and ow[m] == fw[m]:
            m += 1
        matched.append(m)
    # suffix minimum: words 1..m are final from output k on
    delays = [source_len] * len(fw)
    floor = len(fw)
    for k in range(len(seq) - 1, -1, -1):
        floor = min(floor, matched[k])
        for i in range(floor):
            delays[i] = min(delays[i], seq[k][0])
    rate = source_len / max(len(fw), reference_words or 0)
    total = 0.0
    tau = 0
    for i, d in enumerate(delays):
        total += d - i * rate
        tau = i + 1
        if d >= source_len:
            break
    return total / tau
