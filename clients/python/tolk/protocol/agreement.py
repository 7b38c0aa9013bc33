"""LocalAgreement-n over target words, with a stable prefix that only a reset may shrink.

Pure code: no clock, no engine. The one place of the rule: the server's live requests feed
each new hypothesis (the translation of the current source text, ideally forced to start with
`stable`) and send what comes out; the SDK's `MockServer` does the same with its own
translations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\s*\S+")


def words(text: str) -> list[str]:
    """Words with their leading white space: they concatenate back to `text.rstrip()`."""
    return _WORD.findall(text)


def common_words(a: str, b: str) -> str:
    """The longest common prefix of `a` and `b` made of whole words of both."""
    out = []
    for x, y in zip(words(a), words(b), strict=False):
        if x != y:
            break
        out.append(x)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Step:
    """What one hypothesis gives: `stable + tentative` is the current translation."""

    stable: str
    tentative: str
    reset: bool


class Agreement:
    """The stable prefix of one live request.

    `stable` grows by the words on which `agree` consecutive hypotheses agree (all but the
    newest hypothesis's last `hold_words` words, which stay tentative until `final`), and changes
    otherwise only through a reset (a source edit under it, or a hypothesis that
    contradicts it), which the caller must report as `reset: true`.
    """

    def __init__(self, hold_words: int = 1, agree: int = 2) -> None:
        self.hold_words = hold_words
        self.agree = max(2, agree)
        self.stable = ""
        self.source = ""
        self._prevs: list[tuple[str, str]] = []  # the last agree - 1 (hypothesis, source)
        self._depends_on = 0  # source characters the stable part was agreed on
        self._reset = False
        self.resets = 0

    def set_source(self, text: str) -> bool:
        """A new source text; True when an edit invalidates the stable part (a reset)."""
        keep = common_prefix_len(self.source, text)
        self.source = text
        # a hypothesis of a text that is no longer a prefix of the source stops counting
        self._prevs = [(h, s) for h, s in self._prevs if len(s) <= keep]
        if self.stable and keep < self._depends_on:
            self._shrink("")
            return True
        return False

    def push(self, hyp: str, final: bool = False) -> Step:
        """Take the hypothesis for the current source; with `final`, commit all of it."""
        if not hyp.startswith(self.stable):
            self._shrink(common_words(self.stable, hyp))
        if final:
            self.stable = hyp
        elif len(self._prevs) == self.agree - 1:
            agreed = hyp
            for prev, _ in self._prevs:
                agreed = common_words(prev, agreed)
            # the newest hypothesis's last words stay tentative: a longer source may still
            # change them (an inflection, a full stop, a better word)
            held = "".join(words(hyp)[: -self.hold_words or None])
            if len(agreed) > len(held):
                agreed = held
            if len(agreed) > len(self.stable) and agreed.startswith(self.stable):
                self.stable = agreed
                self._depends_on = len(self._prevs[0][1])
        self._prevs = [*self._prevs, (hyp, self.source)][-(self.agree - 1):]
        step = Step(self.stable, hyp[len(self.stable):], self._reset)
        self._reset = False
        return step

    def _shrink(self, stable: str) -> None:
        self.stable = stable
        self._prevs = []
        self._reset = True
        self.resets += 1
        if not stable:
            self._depends_on = 0


def common_prefix_len(a: str, b: str) -> int:
    """Characters two texts share from the start (what a display keeps between them)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
