"""The browser page: local assets only, and the JS client served from its one source file."""

from __future__ import annotations

from pathlib import Path

from tolk_server.app.wiring import JS_CLIENT, STATIC_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_js_client_is_served_from_its_source() -> None:
    assert JS_CLIENT.resolve() == (ROOT / "clients" / "js" / "index.js").resolve()
    assert not (STATIC_DIR / "tolk-client.js").exists(), "no committed copy of the JS client"


def test_page_assets_are_local() -> None:
    """The page works offline: no CDN, no external fonts or scripts."""
    for path in STATIC_DIR.iterdir():
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text(encoding="utf-8")
            for needle in ("http://", "https://", "//cdn", "fonts.googleapis"):
                if needle in text:
                    raise AssertionError(f"{path.name} references {needle!r}")
