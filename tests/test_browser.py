"""End-to-end: the page at `/` in headless Chromium, against a real server (engine double).

Needs Debian's Chromium (`apt-get install -y chromium`, at /usr/bin/chromium or $TOLK_CHROMIUM)
and Playwright for Python (`pip install playwright`; the package only: no `playwright install`,
the browser is the system one). Either missing makes these tests FAIL, not skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import TINY_PROFILE
from support.live_server import serve_in_thread
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("TOLK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

LIVE_TEXT = "The meeting will begin shortly, so please take your seats and switch off your phones."
AGENT_TEXT = "Hello, my name is Anna. How can I help you today?"
CUSTOMER_TEXT = "Hei! Laskussani on virhe, voitteko tarkistaa sen?"


def _need_browser() -> tuple[Any, str]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is not installed. Set-up: `.venv/bin/pip install playwright` "
            "(the package only; never `playwright install`: the browser is Debian's chromium)",
            pytrace=False,
        )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Set-up: `apt-get update && apt-get install -y "
            "chromium` (or point TOLK_CHROMIUM at a Chromium binary)",
            pytrace=False,
        )
    return sync_playwright, CHROMIUM


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """A fresh headless Chromium profile (persistent context over a temporary user-data-dir)."""
    sync_playwright, chromium = _need_browser()
    user_data = tempfile.mkdtemp(prefix="tolk-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                user_data,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1100},
                locale="en-US",
                timeout=60_000,
            )
            context.set_default_timeout(TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


class Page:
    """A page on the server, with what it logged and every request it made off the server."""

    def __init__(self, context: Any, base: str) -> None:
        self.base = base
        self.page = context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        origin = urlsplit(base).netloc
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on(
            "console",
            lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error"
            else None,
        )

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith("data:") or urlsplit(url).netloc == origin:
                route.continue_()
            else:  # the page must work offline: nothing may come from elsewhere
                self.foreign.append(url)
                route.abort()

        self.page.route("**/*", guard)

    def open(self) -> Any:
        page = self.page
        page.goto(self.base + "/")
        page.wait_for_selector("#conn-status[data-state='open']")
        page.wait_for_selector("body[data-ready='true']")
        # Record every frame the page's client receives, for the checks below.
        page.evaluate("() => { window.__frames = []; tolk.client.on('frame', (f) => window.__frames.push(f)); }")
        return page

    def frames(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate("() => window.__frames")
        return result

    def close(self) -> None:
        self.page.close()
        assert self.foreign == [], f"the page fetched from outside the server: {self.foreign}"
        assert self.errors == [], f"the page logged errors: {self.errors}"


@pytest.fixture
def tolk_page(browser_context: Any, fake_server: str) -> Iterator[Page]:
    p = Page(browser_context, fake_server)
    try:
        yield p
    finally:
        p.close()


def server_translation(base: str, text: str, source: str, target: str) -> str:
    """The server's own answer for the same request (`POST /v1/translate`, no streaming)."""
    r = httpx.post(
        f"{base}/v1/translate",
        json={"text": text, "source": source, "target": target, "stream": False},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    translation: str = r.json()["translation"]
    return translation


# Record the text of `sel` (or of the last `part` inside it) on every DOM change.
WATCH = """([sel, part]) => {
  window.__seen = [];
  const el = document.querySelector(sel);
  const read = () => {
    if (!part) return el.textContent;
    const last = [...el.querySelectorAll(part)].pop();
    return last ? last.textContent : '';
  };
  new MutationObserver(() => window.__seen.push(read())).observe(el, {
    childList: true, characterData: true, subtree: true,
  });
}"""


def assert_streamed(page: Any, expected: str) -> None:
    """The text grew through several prefixes of the final translation."""
    seen = [s for s in page.evaluate("() => window.__seen") if s]
    partial = {s for s in seen if s != expected and expected.startswith(s)}
    assert len(partial) >= 3, f"no streaming seen: {seen[:10]}"


def test_page_is_served_with_local_assets(fake_server: str) -> None:
    r = httpx.get(fake_server + "/", timeout=10)
    assert r.status_code == 200
    assert 'id="live-input"' in r.text
    for asset in ("app.js", "style.css", "tolk-client.js"):
        a = httpx.get(f"{fake_server}/{asset}", timeout=10)
        assert a.status_code == 200, asset
    js = httpx.get(f"{fake_server}/tolk-client.js", timeout=10)
    assert "javascript" in js.headers["content-type"]


def test_languages_fill_the_selectors(tolk_page: Page) -> None:
    page = tolk_page.open()

    def codes(sel: str) -> list[str]:
        values: list[str] = page.eval_on_selector_all(f"{sel} option", "os => os.map(o => o.value)")
        return values

    assert codes("#live-source") == ["auto", "en", "fi"]
    assert codes("#live-target") == ["en", "fi"]
    assert codes("#agent-lang") == ["en", "fi"]
    assert codes("#customer-lang") == ["en", "fi"]
    assert page.input_value("#live-source") == "auto"
    assert page.input_value("#live-target") == "fi"
    assert page.input_value("#agent-lang") == "en"
    assert page.input_value("#customer-lang") == "fi"
    assert "English" in page.inner_text("#live-target")
    # Every control has an accessible name.
    for label in ("Text to translate", "Agent's message", "Customer's message"):
        assert page.get_by_label(label).count() == 1, label


# Record every distinct text of the live box's stable part, as the DOM changes.
WATCH_STABLE = """() => {
  window.__stable = [];
  const box = document.querySelector('#live-output');
  const read = () => {
    const s = box.querySelector('.stable');
    const text = s ? s.textContent : '';
    if (window.__stable.at(-1) !== text) window.__stable.push(text);
  };
  new MutationObserver(read).observe(box, { childList: true, characterData: true, subtree: true });
}"""


def test_live_translation_streams_as_you_type(tolk_page: Page, fake_server: str) -> None:
    page = tolk_page.open()
    page.select_option("#live-source", "en")
    page.select_option("#live-target", "fi")
    page.evaluate(WATCH_STABLE)
    page.locator("#live-input").press_sequentially(LIVE_TEXT, delay=15)
    page.wait_for_function(
        "(text) => { const o = document.querySelector('#live-output');"
        " return o.dataset.state === 'done' && o.dataset.sourceText === text; }",
        arg=LIVE_TEXT,
    )
    frames = tolk_page.frames()
    done = [f for f in frames if f["type"] == "complete"]
    partials = [f for f in frames if f["type"] == "partial"]
    assert len(done) == 1, "one live request for the whole typing"
    assert page.text_content("#live-output") == done[0]["translation"]
    assert page.get_attribute("#live-output", "lang") == "fi"
    assert done[0]["live"]["updates"] >= len(LIVE_TEXT) // 2  # no debounce: keystrokes go out
    assert len(partials) >= 3, "partials streamed while typing"
    # Typing only appends: the stable text never shrinks or changes, partial after partial.
    stable = page.evaluate("() => window.__stable")
    assert any(stable), stable
    for before, after in itertools.pairwise(stable):
        assert after.startswith(before), (before, after)
    assert all(not p.get("reset") for p in partials)
    # Tentative text is drawn in grey, stable text in the normal ink.
    grey = page.evaluate("() => getComputedStyle(document.querySelector('#live-output .tentative')).color")
    ink = page.evaluate("() => getComputedStyle(document.querySelector('#live-output .stable')).color")
    assert grey != ink
    stats = page.text_content("#live-stats") or ""
    assert "en → fi" in stats and "first partial" in stats and "final" in stats, stats


def test_typing_shows_a_typing_bubble_on_the_other_side(tolk_page: Page, fake_server: str) -> None:
    page = tolk_page.open()
    page.locator("#agent-input").press_sequentially("Hello, how can I help", delay=20)
    bubble = page.locator("#customer-log li[data-testid='typing']")
    bubble.wait_for()
    page.wait_for_function(
        "() => (document.querySelector(\"#customer-log li[data-testid='typing'] .body\")"
        " || {}).textContent")
    assert "typing" in (bubble.text_content() or "")
    page.click("#agent-send")
    _last_received(page, "customer-log")
    assert page.locator("#customer-log li[data-testid='typing']").count() == 0


def _last_received(page: Any, log: str) -> Any:
    item = page.locator(f"#{log} li[data-direction='received']").last
    item.wait_for()
    page.wait_for_function(
        "(sel) => { const li = [...document.querySelectorAll(sel)].pop();"
        " return li && li.dataset.state === 'done'; }",
        arg=f"#{log} li[data-direction='received']",
    )
    return item


def test_chat_translates_both_ways(tolk_page: Page, fake_server: str) -> None:
    page = tolk_page.open()
    assert page.input_value("#agent-lang") == "en"
    assert page.input_value("#customer-lang") == "fi"

    # The agent writes in English; the customer reads Finnish, with the original in small.
    page.evaluate(WATCH, ["#customer-log", "[data-testid='translation']"])
    page.fill("#agent-input", AGENT_TEXT)
    page.click("#agent-send")
    got = _last_received(page, "customer-log")
    expected = server_translation(fake_server, AGENT_TEXT, "en", "fi")
    assert got.get_by_test_id("translation").text_content() == expected
    assert got.get_by_test_id("translation").get_attribute("lang") == "fi"
    assert (got.get_by_test_id("original").text_content() or "").endswith(AGENT_TEXT)
    assert got.get_by_test_id("original").get_attribute("lang") == "en"
    sent = page.locator("#agent-log li[data-direction='sent']").last
    assert sent.get_by_test_id("text").text_content() == AGENT_TEXT
    assert page.input_value("#agent-input") == ""
    assert_streamed(page, expected)  # into the customer's pane

    # The customer answers in Finnish; the agent reads English.
    page.fill("#customer-input", CUSTOMER_TEXT)
    page.press("#customer-input", "Enter")
    got = _last_received(page, "agent-log")
    assert got.get_by_test_id("translation").text_content() == server_translation(
        fake_server, CUSTOMER_TEXT, "fi", "en"
    )
    assert got.get_by_test_id("translation").get_attribute("lang") == "en"
    assert (got.get_by_test_id("original").text_content() or "").endswith(CUSTOMER_TEXT)
    assert page.locator("#customer-log li[data-direction='sent']").last.get_by_test_id(
        "text"
    ).text_content() == CUSTOMER_TEXT
    # Each pane shows two messages: one sent, one received.
    for log in ("agent-log", "customer-log"):
        assert page.locator(f"#{log} li").count() == 2


def test_screenshot(tolk_page: Page, fake_server: str) -> None:
    """Both widgets in use, saved to tests/artifacts/browser-live.png for a look."""
    page = tolk_page.open()
    page.fill("#live-input", LIVE_TEXT)
    page.wait_for_selector("#live-output[data-state='done']")
    for who, text in (("agent", AGENT_TEXT), ("customer", CUSTOMER_TEXT), ("agent", "Of course, one moment please.")):
        page.fill(f"#{who}-input", text)
        page.click(f"#{who}-send")
        other = "customer" if who == "agent" else "agent"
        _last_received(page, f"{other}-log")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "browser-live.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000


def test_page_asks_for_the_api_key(browser_context: Any) -> None:
    """With API keys configured, the page says so, takes the key, and then works."""
    app = create_app(Settings(engine="fake", api_keys=["k1"], auth_timeout_s=1),
                     engine=EchoEngine(), profile=TINY_PROFILE)
    with serve_in_thread(app) as base:
        p = Page(browser_context, base)
        try:
            page = p.page
            page.goto(base + "/")
            page.wait_for_selector("#conn-status[data-state='error']")
            assert "API key" in (page.text_content("#conn-status") or "")
            assert page.get_attribute("#settings", "open") is not None
            page.fill("#api-key", "k1")
            page.press("#api-key", "Enter")
            page.wait_for_selector("#conn-status[data-state='open']")
            page.wait_for_selector("body[data-ready='true']")
            page.fill("#live-input", "Good morning")
            page.wait_for_selector("#live-output[data-state='done']")
            assert page.text_content("#live-output")
        finally:
            p.close()
