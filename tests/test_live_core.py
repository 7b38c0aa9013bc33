"""The pure live core: LocalAgreement-n's stable prefix (property tests), the display
policy, and the metrics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tolk.protocol.agreement import Agreement, common_words, words
from tolk.protocol.measures import laal, normalized_erasure
from tolk_server.live.policy import LivePolicy

WORD = st.sampled_from(["a", "bb", "ccc", "d.", "ee,", "ff"])
TEXT = st.lists(WORD, max_size=8).map(" ".join)


@st.composite
def sessions(draw: st.DrawFn) -> list[tuple[str, str, bool]]:
    """(source, hypothesis, forced) steps: the source grows or is edited at random."""
    steps = []
    src = ""
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()) or not src:
            src += draw(st.sampled_from([" ", "x", "y", "z "]))
        else:  # an edit somewhere in the text
            cut = draw(st.integers(0, len(src) - 1))
            src = src[:cut] + draw(st.sampled_from(["", "q", "w "]))
        steps.append((src, draw(TEXT), draw(st.booleans())))
    return steps


POLICY = st.builds(LivePolicy, agree=st.integers(2, 4), hold_words=st.integers(0, 2),
                   mask_words=st.integers(0, 3),
                   tentative=st.sampled_from(["all", "extend", "none"]),
                   tentative_words=st.integers(0, 2))


@settings(max_examples=300, deadline=None)
@given(sessions(), POLICY)
def test_stable_never_changes_without_reset(steps: list[tuple[str, str, bool]],
                                            policy: LivePolicy) -> None:
    ag = Agreement(policy.hold_words, policy.agree)
    prev_stable = ""
    shown: list[str] = []
    hyp = ""
    display = ""
    for src, cont, forced in steps:
        edited = ag.set_source(src)
        hyp = (ag.stable + cont) if forced else cont  # forced: a prompt continuation
        step = ag.push(hyp)
        assert step.stable + step.tentative == hyp
        # what the client is shown: the stable text and a whole-word head of the tentative
        tent = policy.shown_tentative("" if step.reset else display, step.stable,
                                      step.tentative)
        assert step.tentative.startswith(tent) and len(words(tent)) <= len(words(
            step.tentative))
        if policy.tentative_words:
            assert len(words(tent)) <= policy.tentative_words
        if policy.tentative == "none":
            assert tent == ""
        display = step.stable + tent
        if not step.reset:
            assert not edited
            assert step.stable.startswith(prev_stable)
        prev_stable = step.stable
        shown.append(hyp)
    last = ag.push(hyp, final=True)
    assert last.stable == hyp and last.tentative == ""  # the final translation is the last hyp
    assert last.reset is False  # it agrees with the stable prefix it was forced on
    assert normalized_erasure(shown, hyp) >= 0


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_common_words_is_a_whole_word_prefix(a: str, b: str) -> None:
    c = common_words(a, b)
    assert a.startswith(c) and b.startswith(c)
    assert len(words(c)) <= min(len(words(a)), len(words(b)))


def test_local_agreement_commits_what_two_hypotheses_share() -> None:
    ag = Agreement()
    ag.set_source("The meet")
    s1 = ag.push("Tapaaminen")
    assert (s1.stable, s1.tentative) == ("", "Tapaaminen")
    ag.set_source("The meeting will")
    s2 = ag.push("Kokous tulee")
    assert s2.stable == ""  # no agreement yet
    ag.set_source("The meeting will begin")
    s3 = ag.push("Kokous alkaa")
    assert (s3.stable, s3.tentative, s3.reset) == ("Kokous", " alkaa", False)
    ag.set_source("The meeting will begin soon")
    s3 = ag.push("Kokous alkaa pian.")
    assert (s3.stable, s3.tentative) == ("Kokous alkaa", " pian.")
    # an edit of text the stable part was agreed on resets it
    assert ag.set_source("A meeting will begin")
    s4 = ag.push("Eräs kokous alkaa")
    assert (s4.stable, s4.reset) == ("", True) and ag.resets == 1
    # an edit after it does not
    ag = Agreement()
    for src, hyp in [("Good", "Hyvä"), ("Good mor", "Hyvää huomenta"),
                     ("Good morning", "Hyvää huomenta")]:
        ag.set_source(src)
        last = ag.push(hyp)
    assert last.stable == "Hyvää"  # the last word waits for a longer hypothesis
    assert not ag.set_source("Good morning!!")


def test_local_agreement_3_and_the_display_policy() -> None:
    ag = Agreement(hold_words=0, agree=3)
    for src, hyp in [("a ", "x y"), ("a b ", "x y z"), ("a b c ", "x q z")]:
        ag.set_source(src)
        last = ag.push(hyp)
    assert last.stable == "x"  # only the word all three hypotheses share
    assert not ag.set_source("a b c d ")
    assert ag.push("x q z w").stable == "x"  # "x y z" is still one of the three
    ag.set_source("a b c d e ")
    assert ag.push("x q z w").stable == "x q z"  # hold 0: the newest's words may commit
    p = LivePolicy(mask_words=1, tentative_words=1)
    assert p.shown_tentative("", "x", " a b c") == " a"
    assert p.shown_tentative("", "x", " a") == ""
    ext = LivePolicy(tentative="extend", mask_words=0, tentative_words=0)
    assert ext.shown_tentative("x a b", "x", " a b c") == " a b c"  # extends: shown
    assert ext.shown_tentative("x a b", "x", " a q c") == " a"  # keeps what still holds
    assert ext.shown_tentative("x a b", "x y", " c") == ""  # the stable text moved past it
    assert LivePolicy(tentative="none").shown_tentative("", "x", " a") == ""


def test_normalized_erasure() -> None:
    # "ab" → "ac" erases 1; "ac" → "acd" erases 0; final "acd" has length 3
    assert normalized_erasure(["ab", "ac", "acd"], "acd") == pytest.approx(1 / 3)
    assert normalized_erasure(["a", "ab"], "ab") == 0


def test_laal_in_source_characters() -> None:
    # an ideal wait-0 policy on a 10-char source and 2 target words: delays 5 and 10
    outs = [(5, "yksi"), (10, "yksi kaksi")]
    assert laal(outs, "yksi kaksi", 10) == pytest.approx((5 + (10 - 5)) / 2)
    # a word that changes later counts from when it settled
    outs = [(5, "eka"), (8, "yksi"), (10, "yksi kaksi")]
    assert laal(outs, "yksi kaksi", 10) == pytest.approx((8 + 5) / 2)
    assert laal([], "", 10) == 0


def test_update_frame_parses_and_needs_an_id() -> None:
    from tolk.protocol import ProtocolError, UpdateFrame, parse_client_frame, partial

    f = parse_client_frame('{"type":"update","id":"L1","text":"Hi","target":"fi","final":true}')
    assert isinstance(f, UpdateFrame) and f.final and f.text == "Hi"
    with pytest.raises(ProtocolError):
        parse_client_frame('{"type":"update","text":"Hi","target":"fi"}')
    assert partial("L1", 2, "a", " b") == {"type": "partial", "id": "L1", "version": 2,
                                           "stable": "a", "tentative": " b"}
    assert partial("L1", 3, "", "", reset=True)["reset"] is True


def test_settled_text_and_mask_k() -> None:
    from tolk_server.live.session import masked, settled

    assert settled("The meet") == "The "
    assert settled("The meeting ") == "The meeting "
    assert settled("Hello") == ""
    assert settled("one\ntw") == "one\n"
    assert masked(" alkaa pian.", 1) == " alkaa"
    assert masked(" alkaa pian.", 0) == " alkaa pian."
    assert masked(" alkaa", 3) == ""
