"""The page's Meeting section in headless Chromium with a fake microphone playing a WAV file:
the transcript and the translation of each phrase appear (real default recogniser, engine
double). Same Chromium and Playwright set-up as test_browser.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import CHROMIUM_ARGS, Page, _need_browser

from conftest import TINY_PROFILE
from support.live_server import serve_in_thread
from tolk_bench import speech
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.audio.transcriber import bundled_model_dir
from tolk_server.config import Settings

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(bundled_model_dir() is None, reason="audio models not installed")]


@pytest.fixture(scope="module")
def meeting_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert speech.available(), "install Debian's espeak-ng and sox (make system-deps)"
    pcm, _ = speech.phrases(["The meeting will begin shortly.", "Thank you, Madam President."],
                            pause_s=1.0, lead_s=0.5)
    return speech.write_wav(tmp_path_factory.mktemp("mic") / "mic.wav", pcm)


@pytest.fixture(scope="module")
def mic_context(meeting_wav: Path) -> Iterator[Any]:
    sync_playwright, chromium = _need_browser()
    user_data = tempfile.mkdtemp(prefix="tolk-chromium-mic-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                user_data, executable_path=chromium, headless=True,
                args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream",
                      "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={meeting_wav}",
                      "--autoplay-policy=no-user-gesture-required"],
                viewport={"width": 1280, "height": 1400}, locale="en-US", timeout=60_000)
            context.set_default_timeout(30_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture(scope="module")
def audio_server() -> Iterator[str]:
    app = create_app(Settings(engine="fake"), engine=EchoEngine(token_delay_s=0.002),
                     profile=TINY_PROFILE)
    with serve_in_thread(app) as url:
        yield url


def test_meeting_tab_shows_transcript_and_translation(mic_context: Any,
                                                      audio_server: str) -> None:
    p = Page(mic_context, audio_server)
    page = p.open()
    page.select_option("#meeting-target", "fi")
    page.fill("#meeting-speaker", "Chair")
    page.click("#meeting-start")
    page.wait_for_selector("#meeting-start[data-state='recording']")
    # The fake microphone loops the file: wait for a finished phrase with its translation.
    done = page.wait_for_selector("#meeting-log li .translation[data-done='true']",
                                  timeout=45_000)
    row = done.evaluate_handle("el => el.closest('li')")
    said = row.evaluate("li => li.querySelector('.said').textContent")
    final = row.evaluate("li => li.querySelector('.said').dataset.final")
    speaker = row.evaluate("li => li.querySelector('.speaker').textContent")
    translation = done.text_content() or ""
    assert speaker == "Chair" and final == "true"
    assert {"meeting", "will", "begin", "shortly", "thank", "madam", "president"} & set(
        said.lower().replace(",", "").replace(".", "").split()), said
    assert translation.strip()
    frames = p.frames()
    assert any(f["type"] == "transcript" and f["final"] for f in frames)
    # "Translate live" (on by default): the phrase's translation came as partial frames
    assert any(f["type"] == "partial" and f.get("segment") is not None for f in frames)
    assert page.is_checked("#meeting-live")
    page.click("#meeting-start")  # stop: the stream ends with audio_complete
    page.wait_for_selector("#meeting-start[data-state='idle']", timeout=30_000)
    assert any(f["type"] == "audio_complete" for f in p.frames())
    p.close()
