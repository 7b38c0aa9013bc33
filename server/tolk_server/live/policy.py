"""What a live request commits and shows: the re-translation policy, as data.

The defaults are the measured ones (README, "Live input"). `agree` is LocalAgreement-n
(n consecutive hypotheses must agree before words become stable), `hold_words` keeps the
newest hypothesis's last words tentative, `mask_words` hides the last k tentative words
(mask-k), `tentative_words` shows at most that many of the rest (the next words after the
stable text are the likeliest to last), and `tentative` decides when tentative text is shown at all:
"all" (always), "extend" (only when it extends what the client already shows, so a
changed hypothesis never erases shown text; the text falls back to the stable part plus
the tentative words still shown that the new hypothesis keeps), or "none" (stable only).
Arivazhagan et al. 2020, "Re-translation versus streaming for simultaneous translation".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tolk.protocol.agreement import common_words, words

if TYPE_CHECKING:
    from tolk_server.config import Settings

Tentative = Literal["all", "extend", "none"]


@dataclass(frozen=True, slots=True)
class LivePolicy:
    force_prefix: bool = True
    agree: int = 2
    hold_words: int = 1
    mask_words: int = 2
    tentative: Tentative = "all"
    tentative_words: int = 1  # at most this many tentative words shown (0: no cap)

    def shown_tentative(self, shown: str, stable: str, tentative: str) -> str:
        """The tentative text to send, given what the client shows now (`shown`)."""
        if self.tentative == "none":
            return ""
        tentative = masked(tentative, self.mask_words)
        if self.tentative_words > 0:
            tentative = "".join(words(tentative)[: self.tentative_words])
        if self.tentative == "all" or (stable + tentative).startswith(shown):
            return tentative
        if not shown.startswith(stable):  # the stable part moved past it: nothing to keep
            return ""
        return common_words(shown[len(stable):], tentative)


def policy_from(s: Settings) -> LivePolicy:
    """The server's live policy, from its settings (`TOLK_LIVE_*`, the config file)."""
    return LivePolicy(s.live_force_prefix, s.live_agree, s.live_hold_words, s.live_mask_words,
                      s.live_tentative, s.live_tentative_words)


def masked(tentative: str, k: int) -> str:
    """The tentative text without its last `k` words (mask-k, Arivazhagan et al. 2020)."""
    return "".join(words(tentative)[:-k]) if k > 0 else tentative
