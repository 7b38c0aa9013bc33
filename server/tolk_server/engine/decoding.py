"""Quality decodings above the engine, engine-agnostic: beam search and MBR selection.

`beam_search` drives an engine one token at a time, the way vLLM's own serving code does
(`vllm/entrypoints/generate/beam_search/online.py`): every live beam is a one-token request
with `2 × width` logprobs; the best `width` extensions survive; a beam that picks EOS is
complete. Unlike vLLM's loop, which always runs `max_tokens` steps, it stops as soon as no
live beam can beat the best complete one. `mbr_select` picks, among n-best candidates, the
one with the highest expected chrF against the others (minimum Bayes risk).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

#: One engine step: (token ids so far, how many) → {token id: logprob} of the next token.
Step = Callable[[list[int], int], Awaitable[dict[int, float]]]


@dataclass(frozen=True, slots=True)
class Hypothesis:
    tokens: list[int]  # output tokens, without EOS
    logprob: float
    finish_reason: str  # "stop" (EOS) or "length"

    def score(self, length_penalty: float) -> float:
        length = len(self.tokens) + (1 if self.finish_reason == "stop" else 0)
        return _norm(self.logprob, length, length_penalty)


async def beam_search(step: Step, prompt: list[int], eos: int, width: int, max_tokens: int,
                      length_penalty: float = 1.0) -> Hypothesis:
    """The best hypothesis of a beam search of `width` beams."""
    live: list[tuple[float, list[int]]] = [(0.0, [])]
    done: list[Hypothesis] = []
    for _ in range(max_tokens):
        outs = await asyncio.gather(*(step(prompt + toks, 2 * width) for _, toks in live))
        grown: list[tuple[float, list[int]]] = []
        for (logprob, toks), nxt in zip(live, outs, strict=True):
            for tid, lp in nxt.items():
                if tid == eos:
                    done.append(Hypothesis(toks, logprob + lp, "stop"))
                else:
                    grown.append((logprob + lp, [*toks, tid]))
        grown.sort(key=lambda c: c[0], reverse=True)
        live = grown[:width]
        if not live or _settled(done, live, width, length_penalty):
            break
    done.extend(Hypothesis(toks, lp, "length") for lp, toks in live)
    return max(done, key=lambda h: h.score(length_penalty))


def _settled(done: list[Hypothesis], live: list[tuple[float, list[int]]], width: int,
             length_penalty: float) -> bool:
    """Enough complete beams, or none of the live ones can still overtake the best one."""
    if len(done) >= width:
        return True
    if not done:
        return False
    best_done = max(h.score(length_penalty) for h in done)
    best_live = max(_norm(lp, len(toks) + 1, length_penalty) for lp, toks in live)
    return best_done >= best_live


def _norm(logprob: float, length: int, length_penalty: float) -> float:
    divisor: float = max(1.0, float(length)) ** length_penalty
    return logprob / divisor


def stop_at(text: str, stop: Sequence[str]) -> str:
    """Cut at the first stop string (a beam search decodes without the engine's stop check)."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


def mbr_select(candidates: Sequence[str]) -> int:
    """The index of the candidate with the highest mean chrF against all candidates."""
    from sacrebleu.metrics.chrf import CHRF

    if len(candidates) <= 1:
        return 0
    chrf = CHRF()
    counts = Counter(candidates)
    unique = list(counts)
    best, best_gain = 0, -1.0
    for i, hyp in enumerate(unique):
        gain = sum(n * (100.0 if ref == hyp else chrf.sentence_score(hyp, [ref]).score)
                   for ref, n in counts.items())
        if gain > best_gain:
            best, best_gain = i, gain
    return candidates.index(unique[best])
