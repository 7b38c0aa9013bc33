"""Live input against the SDK's in-memory MockServer (no server, no sockets)."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tolk import AsyncClient, Client, MockServer, MockTransport
from tolk.protocol.agreement import Agreement


def upper(text: str, source: str, target: str) -> str:
    return text.upper()


async def test_mock_live_partials_grow_then_complete() -> None:
    server = MockServer(translate=upper)
    async with AsyncClient("ws://mock", transport=MockTransport(server)) as client:
        async with client.live(target="fi", source="en") as live:
            stable = ""
            text = ""
            for word in "the meeting will begin".split():
                text = f"{text} {word}".strip()
                await live.update(text)
                p = await live.__anext__()
                assert p.version == len(server.live[live.id]) and not p.reset
                assert p.stable.startswith(stable) and p.text == text.upper()
                stable = p.stable
            assert stable == "THE MEETING WILL"  # agreed on by two consecutive texts
            result = await live.finish(text + " soon")
    assert result.translation == "THE MEETING WILL BEGIN SOON"
    assert result.live["updates"] == 5 and result.live["resets"] == 0
    assert live.latest is not None and live.latest.stable == result.translation
    assert server.completed == [live.id] and server.live[live.id][-1]["final"] is True


async def test_mock_live_edit_resets() -> None:
    server = MockServer(translate=upper)
    async with AsyncClient("ws://mock", transport=MockTransport(server)) as client:
        live = client.live(target="fi")
        for text in ("a b c", "a b c d"):
            await live.update(text)
            await live.__anext__()
        assert live.latest is not None and live.latest.stable == "A B C"
        await live.update("x b c d")  # an edit under the stable text
        p = await live.__anext__()
        assert p.reset and p.stable == "" and p.tentative == "X B C D"
        result = await live.finish()
    assert result.live["resets"] == 1 and result.live["normalized_erasure"] > 0
    assert [f["text"] for f in server.live[live.id]] == [
        "a b c", "a b c d", "x b c d", "x b c d"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "bb", "c.", "dd,"]), max_size=6).map(" ".join),
                min_size=1, max_size=6))
def test_the_mock_commits_by_the_servers_agreement_rule(texts: list[str]) -> None:
    """The mock's partials are `tolk.protocol.agreement`'s steps (the rule is written once)."""
    rule = Agreement(hold_words=0)
    expected = [rule.push(t, final=i == len(texts) - 1) for i, t in enumerate(texts)]
    server = MockServer(translate=lambda text, source, target: text)
    with Client("ws://mock", transport=MockTransport(server)) as client, \
            client.live(target="fi", source="en") as live:
        got = []
        for text in texts[:-1]:
            live.update(text)
            got.append(live.next_partial(timeout=5))
        result = live.finish(texts[-1])
        got.append(live.latest)
    assert [(p.stable, p.tentative, p.reset) for p in got if p is not None] == [
        (s.stable, s.tentative, s.reset) for s in expected]
    assert result.live["resets"] == rule.resets


async def test_mock_update_for_a_translate_id_is_refused() -> None:
    server = MockServer(token_delay=0.05)
    end = await MockTransport(server).connect("ws://mock", {}, None)
    assert json.loads(await end.recv())["type"] == "ready"
    await end.send(json.dumps({"type": "translate", "id": "T", "text": "a b c", "target": "fi"}))
    await end.send(json.dumps({"type": "update", "id": "T", "text": "a b", "target": "fi"}))
    frames = []
    while not frames or frames[-1]["type"] != "complete":
        frames.append(json.loads(await end.recv()))
    refused = [f for f in frames if f["type"] == "error"]
    assert refused and refused[0]["about"] == "update" and refused[0]["code"] == "bad_request"
    assert server.completed == ["T"] and "T" not in server.live
    await end.close()


def test_mock_live_sync_and_cancel() -> None:
    server = MockServer(translate=upper)
    with Client("ws://mock", transport=MockTransport(server)) as client:
        with client.live(target="fi") as live:
            live.update("hello there")
            first = live.next_partial(timeout=5)
            assert first is not None and first.tentative == "HELLO THERE"
        # leaving the block before `complete` cancels the live request on the server
        assert client.translate("ok", target="fi").translation == "OK"
        for _ in range(500):  # the cancel is sent in the background
            if server.cancelled:
                break
            time.sleep(0.01)
    assert len(server.cancelled) == 1 and server.cancelled[0] in server.live
