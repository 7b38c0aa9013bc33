"""The LibreTranslate API, driven by `libretranslatepy` (unmodified) and plain HTTP over real
sockets, plus the bad input it must survive."""

from __future__ import annotations

import html
import urllib.error
from collections.abc import Iterator

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI

from support.compat_server import CompatServer, compat_server, expected


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with compat_server(tmp_path_factory.mktemp("lt")) as s:
        yield s


def _post(srv: CompatServer, path: str = "/translate", **kw: object) -> httpx.Response:
    return httpx.post(f"{srv.url}{path}", timeout=10, **kw)  # type: ignore[arg-type]


def test_client_translate_detect_languages(srv: CompatServer) -> None:
    lt = LibreTranslateAPI(srv.url, srv.key)
    assert lt.translate("Good morning", "en", "fi") == expected("Good morning", "fi")
    assert lt.translate("Guten Morgen, wie geht es dir heute?", "auto", "en") == expected(
        "Guten Morgen, wie geht es dir heute?", "en")
    found = lt.detect("Guten Morgen, wie geht es dir heute?")
    assert found[0]["language"] == "de" and 50 < found[0]["confidence"] <= 100
    langs = {lang["code"]: lang for lang in lt.languages()}
    assert set(langs) == {"de", "en", "fi", "pt"}
    assert langs["en"]["targets"] == ["de", "fi", "pt"] and langs["en"]["name"] == "English"


def test_list_auto_detection_and_alternatives(srv: CompatServer) -> None:
    body = {"q": ["Where is the railway station, please?", "Wo ist bitte der Bahnhof?"],
            "source": "auto", "target": "fi", "api_key": srv.key}
    r = _post(srv, json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["translatedText"] == [expected(t, "fi") for t in body["q"]]
    assert [d["language"] for d in got["detectedLanguage"]] == ["en", "de"]
    assert "alternatives" not in got
    r = _post(srv, json={**body, "source": "en", "alternatives": 3})
    assert "detectedLanguage" not in r.json() and r.json()["alternatives"] == [[], []]
    single = _post(srv, data={"q": "Good night", "source": "en", "target": "de",
                              "api_key": srv.key}).json()
    assert single == {"translatedText": expected("Good night", "de")}


def test_html_format_keeps_markup_and_newlines(srv: CompatServer) -> None:
    src = "<ul>\n  <li>Good <em>morning</em></li>\n  <li translate=\"no\">tolk</li>\n</ul>\n"
    r = _post(srv, json={"q": src, "source": "en", "target": "fi", "format": "html",
                         "api_key": srv.key})
    words = html.escape(expected("Good morning", "fi"), quote=False).split()
    assert r.json()["translatedText"] == (
        f"<ul>\n  <li>{' '.join(words[:-1])} <em>{words[-1]}</em></li>\n"
        "  <li translate=\"no\">tolk</li>\n</ul>\n")


def test_keys_and_quota(srv: CompatServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as bad:
        LibreTranslateAPI(srv.url, "tolk_nope_nope").translate("hi", "en", "fi")
    assert bad.value.code == 403
    r = _post(srv, data={"q": "hi", "source": "en", "target": "fi"})
    assert r.status_code == 400 and "API key" in r.json()["error"]
    small = {"source": "en", "target": "fi", "api_key": srv.small_key}
    assert _post(srv, json={**small, "q": "x" * 30}).status_code == 200
    r = _post(srv, json={**small, "q": "y" * 30})
    assert r.status_code == 429 and r.json()["error"].startswith("Slowdown:")


def test_bad_input_gives_documented_errors(srv: CompatServer) -> None:
    base = {"source": "en", "target": "fi", "api_key": srv.key}
    r = _post(srv, json={**base, "q": ["hello"] * 10_000})
    assert r.status_code == 400 and "exceeds text limit" in r.json()["error"]
    r = _post(srv, json={**base, "q": "x" * 1_100_000})
    assert r.status_code == 413
    r = _post(srv, json={**base, "q": "x" * 5000})
    assert r.status_code == 400 and r.json() == {
        "error": "Invalid request: request (5000) exceeds text limit (4000)"}
    r = _post(srv, json={**base, "q": "hello", "target": "xx"})
    assert r.status_code == 400 and r.json() == {"error": "xx is not supported"}
    r = _post(srv, json={**base, "q": "hello", "format": "pdf"})
    assert r.status_code == 400 and "format" in r.json()["error"]
    r = _post(srv, json={**base, "q": "hi", "alternatives": "many"})
    assert r.status_code == 400 and "alternatives" in r.json()["error"]
    r = _post(srv, json={**base, "q": ""})
    assert r.json() == {"error": "Invalid request: missing q parameter"}
    broken = "<p>Hello <b>there & <i>you</p></div><script>alert(1)"
    r = _post(srv, json={**base, "q": broken, "format": "html"})
    assert r.status_code == 200
    assert r.json()["translatedText"].endswith("</p></div><script>alert(1)")
    assert httpx.get(f"{srv.url}/ready").status_code == 200


def test_frontend_settings(srv: CompatServer) -> None:
    got = httpx.get(f"{srv.url}/frontend/settings").json()
    assert got["keyRequired"] is True and got["charLimit"] == 4000
    assert got["language"]["source"]["code"] == "auto"


def test_openapi_documents_all_three_apis_with_examples(srv: CompatServer) -> None:
    # with keys configured, the docs need one (unless --public-docs)
    paths = httpx.get(f"{srv.url}/openapi.json",
                      headers={"Authorization": f"Bearer {srv.key}"}).json()["paths"]
    for path in ("/v1/translate", "/translate", "/v2/translate"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert body["examples"], path
    for path in ("/detect", "/languages", "/v2/languages", "/v2/usage", "/v2/glossaries",
                 "/v2/glossaries/{glossary_id}/entries", "/v2/glossary-language-pairs"):
        assert path in paths
