"""The browser page imports the JS client from a copy: it must stay identical to the source."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "clients" / "js" / "index.js"
COPY = ROOT / "server" / "tolk_server" / "static" / "tolk-client.js"


def test_static_client_is_an_exact_copy() -> None:
    assert SOURCE.is_file(), f"missing {SOURCE}"
    assert COPY.is_file(), f"missing {COPY}"
    assert COPY.read_bytes() == SOURCE.read_bytes(), (
        f"{COPY.relative_to(ROOT)} differs from {SOURCE.relative_to(ROOT)}; "
        f"run: cp {SOURCE.relative_to(ROOT)} {COPY.relative_to(ROOT)}"
    )


def test_page_assets_are_local() -> None:
    """The page works offline: no CDN, no external fonts or scripts."""
    static = COPY.parent
    for path in static.iterdir():
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text(encoding="utf-8")
            for needle in ("http://", "https://", "//cdn", "fonts.googleapis"):
                if needle in text and path.name not in {"tolk-client.js"}:
                    raise AssertionError(f"{path.name} references {needle!r}")
