"""The SDKs' live input (`client.live`) against a live server with the engine double."""

from __future__ import annotations

import pytest

import tolk
from tolk import AsyncClient, Client


def ws(url: str) -> str:
    return "ws://" + url.removeprefix("http://")


async def test_async_live_partials_then_finish(fake_server: str) -> None:
    async with AsyncClient(ws(fake_server)) as client:
        async with client.live(target="fi", source="en") as live:
            text = ""
            stable = ""
            for word in "The meeting will begin shortly".split():
                text = f"{text} {word}".strip()
                await live.update(text)
                partial = await live.__anext__()
                assert partial.reset or partial.stable.startswith(stable)
                stable = partial.stable
            result = await live.finish(text + ".")
        assert live.latest is not None and result.translation == live.latest.text
        assert result.live["updates"] == 6 and result.live["partials"] >= 1
        assert result.source == "en" and result.target == "fi"
        # a bad option fails locally
        with pytest.raises(tolk.BadRequestError):
            await client.live(target="not a language").update("x")


def test_sync_live(fake_server: str) -> None:
    with Client(ws(fake_server)) as client, client.live(target="fi") as live:
        live.update("Hello there")
        first = live.next_partial(timeout=10)
        assert first is not None and first.version == 1
        live.update("Hello there, friend", final=True)
        partials = list(live.partials())
        assert partials[-1].tentative == ""
        assert live.result is not None and live.result.translation == partials[-1].stable
