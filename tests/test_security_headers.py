"""Browser security headers on every HTML response (the page, /docs, refusals), and /docs
still renders under its policy in headless Chromium (no CSP violation logged)."""

from __future__ import annotations

from typing import Any

import httpx
from test_browser import Page, browser_context  # noqa: F401  (a fixture)

HTML_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options",
                "referrer-policy")


def test_html_responses_carry_the_headers(fake_server: str) -> None:
    for path in ("/", "/index.html", "/docs"):
        r = httpx.get(fake_server + path, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert all(h in r.headers for h in HTML_HEADERS), (path, dict(r.headers))
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split(
            "script-src")[1].split(";")[0]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(fake_server + "/", timeout=10).headers["content-security-policy"]
    assert "script-src 'self' blob:;" in page and "style-src 'self';" in page
    assert httpx.get(fake_server + "/health").headers["x-content-type-options"] == "nosniff"


def test_docs_render_under_their_policy(browser_context: Any, fake_server: str) -> None:  # noqa: F811
    p = Page(browser_context, fake_server)
    try:
        p.page.goto(fake_server + "/docs")
        p.page.wait_for_selector(".opblock-summary-path", timeout=15_000)  # the operations
        assert p.page.locator(".opblock").count() > 5
    finally:
        p.close()  # asserts nothing was logged (a CSP violation is a console error)


def test_page_cannot_be_framed_and_runs_under_its_policy(browser_context: Any,  # noqa: F811
                                                         fake_server: str) -> None:
    p = Page(browser_context, fake_server)
    try:
        p.page.goto(fake_server + "/")
        p.page.wait_for_selector("#conn-status[data-state='open']")
        p.page.wait_for_selector("body[data-ready='true']")
    finally:
        p.close()
