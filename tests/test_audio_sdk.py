"""The SDK's `tolk.realtime.AudioStream` and `tolk listen` against a live server (engine double,
real default recogniser), and `async for` over the synchronous client's streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_PROFILE
from tolk import Client
from tolk.realtime import AudioStream
from tolk_bench import speech
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.audio.transcriber import bundled_model_dir
from tolk_server.config import Settings

pytestmark = pytest.mark.skipif(bundled_model_dir() is None, reason="audio models not installed")
SENTENCES = ["The meeting will begin shortly.", "Thank you, Madam President."]


@pytest.fixture(scope="module")
def audio_server() -> Iterator[str]:
    from support.live_server import serve_in_thread

    app = create_app(Settings(engine="fake", audio_max_speed=100.0),
                     engine=EchoEngine(token_delay_s=0.002), profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        yield url.replace("http", "ws")


@pytest.fixture(scope="module")
def meeting_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    pcm, _ = speech.phrases(SENTENCES, pause_s=0.7)
    return speech.write_wav(tmp_path_factory.mktemp("audio") / "meeting.wav", pcm)


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


async def test_audio_stream_translates_a_file(audio_server: str, meeting_wav: Path) -> None:
    audio = AudioStream(file=meeting_wav, url=audio_server, language="en", speakers=["Chair"],
                        pace=None)
    got = []
    async for seg in audio.translate(target="fi"):
        tokens = [t async for t in seg.translation]
        got.append((seg, "".join(tokens)))
        assert seg.final and seg.speaker == "Chair" and seg.language == "en"
        assert "".join(tokens) == seg.translation.text != ""
    assert len(got) == 2 and audio.summary is not None and audio.summary["segments"] == 2
    assert got[0][0].end < got[1][0].start
    assert len(words(got[0][0].text) & words(SENTENCES[0])) >= 3


async def test_audio_stream_from_pcm_chunks(audio_server: str, meeting_wav: Path) -> None:
    import wave

    with wave.open(str(meeting_wav)) as w:
        data = w.readframes(w.getnframes())

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 3200):
            yield data[i:i + 3200]

    audio = AudioStream(source=chunks(), url=audio_server, language="en")
    segs = [s async for s in audio.transcribe(partials=True)]
    finals = [s for s in segs if s.final]
    assert len(finals) == 2 and finals[0].speaker == "Speaker 1"
    assert all(s.segment in (0, 1) for s in segs)


async def test_sync_client_stream_is_async_iterable_without_blocking(fake_server: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    with Client(fake_server.replace("http", "ws")) as client:
        tokens = [t async for t in client.translate_stream("one two three four five six "
                                                           "seven eight", target="fi")]
    task.cancel()
    assert len(tokens) >= 8 and ticks >= 5  # the loop kept running while tokens came


def test_tolk_listen_prints_transcript_and_translation(audio_server: str, meeting_wav: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tolk_server.cli.commands import build_parser

    ns = build_parser().parse_args(["listen", str(meeting_wav), "--target", "fi", "--source",
                                    "en", "--url", audio_server, "--fast"])
    t0 = time.monotonic()
    assert ns.func(ns) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[1].startswith("  fi: ") and "Speaker 1]" in out[0]
    assert "meeting" in out[0].lower() and time.monotonic() - t0 < 20
    assert np.isfinite(float(out[2].split("s ")[0].strip("[ ")))


def test_tolk_listen_live_prints_each_phrase_once(audio_server: str, meeting_wav: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tolk_server.cli.commands import build_parser

    ns = build_parser().parse_args(["listen", str(meeting_wav), "--target", "fi", "--source",
                                    "en", "--url", audio_server, "--fast", "--live",
                                    "--quality", "fast"])
    assert ns.func(ns) == 0
    out = capsys.readouterr().out.splitlines()  # not a terminal: final lines only
    assert len(out) == 4 and out[1].startswith("  fi: ") and out[3].startswith("  fi: ")
    assert "meeting" in out[0].lower() and len(out[1]) > len("  fi: ")


def test_readme_speech_example_runs_with_a_file(audio_server: str, meeting_wav: Path,
                                                tmp_path: Path) -> None:
    """The speech page's example (docs/speech.md), as written, with meeting.wav beside it."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    page = (Path(__file__).resolve().parents[1] / "docs" / "speech.md").read_text(encoding="utf-8")
    section = page[page.index("# Speech input"):]
    code = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert code is not None and "AudioStream(file=\"meeting.wav\")" in code.group(1)
    shutil.copy(meeting_wav, tmp_path / "meeting.wav")
    (tmp_path / "example.py").write_text(code.group(1), encoding="utf-8")
    env = {**os.environ, "TOLK_URL": audio_server}
    env.pop("TOLK_API_KEY", None)
    out = subprocess.run([sys.executable, "example.py"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("[Speaker 1] ") and lines[1].strip(), lines
