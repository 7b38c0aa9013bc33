"""The DeepL v2 API, driven by the official `deepl` Python client (unmodified) over real
sockets, plus the bad input it must survive."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

import deepl
import httpx
import pytest

from support.compat_server import CompatServer, compat_server, expected


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with compat_server(tmp_path_factory.mktemp("deepl")) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv: CompatServer) -> deepl.Translator:
    return deepl.Translator(srv.key, server_url=srv.url)


def _post(srv: CompatServer, ctype: str | None = None, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"DeepL-Auth-Key {srv.key}"}
    if ctype:
        headers["Content-Type"] = ctype
    return httpx.post(f"{srv.url}/v2/translate", headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_translate_a_list_with_regional_targets(client: deepl.Translator) -> None:
    out = client.translate_text(["Good morning", "See you tomorrow"], source_lang="EN",
                                target_lang="PT-BR")
    assert [r.text for r in out] == [expected("Good morning", "pt"),
                                     expected("See you tomorrow", "pt")]
    assert [r.detected_source_lang for r in out] == ["EN", "EN"]
    assert [r.billed_characters for r in out] == [12, 16]
    one = client.translate_text("Good evening", target_lang="EN-US", source_lang="DE")
    assert one.text == expected("Good evening", "en")


def test_auto_detection_and_model_type(client: deepl.Translator) -> None:
    out = client.translate_text(["Guten Morgen, wie geht es dir heute?",
                                 "Where is the railway station, please?"],
                                target_lang="FI", model_type="prefer_quality_optimized")
    assert [r.detected_source_lang for r in out] == ["DE", "EN"]
    assert [r.model_type_used for r in out] == ["quality_optimized"] * 2


def test_glossary_lifecycle_through_the_client(client: deepl.Translator,
                                               srv: CompatServer) -> None:
    info = client.create_glossary("house terms", "EN", "DE", {"house": "Haus", "cat": "Katze"})
    assert (info.name, info.source_lang, info.target_lang, info.entry_count) == (
        "house terms", "EN", "DE", 2)
    assert info.glossary_id in [g.glossary_id for g in client.list_glossaries()]
    assert client.get_glossary(info.glossary_id).name == "house terms"
    assert client.get_glossary_entries(info) == {"house": "Haus", "cat": "Katze"}
    pairs = {(p.source_lang, p.target_lang) for p in client.get_glossary_languages()}
    assert ("en", "de") in pairs
    # It lives in tolk's own glossary store, so tolk's other APIs can use it too.
    assert info.glossary_id in json.loads(srv.glossary_file.read_text())
    used = client.translate_text("The house is big", source_lang="EN", target_lang="DE",
                                 glossary=info)
    plain = client.translate_text("The house is big", source_lang="EN", target_lang="DE")
    assert plain.text == expected("The house is big", "de")
    assert '"Haus".' in used.text and "Haus" not in plain.text
    client.delete_glossary(info)
    with pytest.raises(deepl.GlossaryNotFoundException):
        client.get_glossary(info.glossary_id)


def test_glossaries_belong_to_their_key(client: deepl.Translator, srv: CompatServer) -> None:
    from tolk_server.text.glossary import GlossaryStore

    GlossaryStore(srv.glossary_file).put("operator-terms", {"ship": "Schiff"})
    mine = client.create_glossary("mine", "EN", "DE", {"dog": "Hund"})
    other = deepl.Translator(srv.other_key, server_url=srv.url)
    seen = {g.glossary_id for g in other.list_glossaries()}
    assert "operator-terms" in seen and mine.glossary_id not in seen
    with pytest.raises(deepl.GlossaryNotFoundException):
        other.get_glossary_entries(mine.glossary_id)
    with pytest.raises(deepl.GlossaryNotFoundException):
        other.delete_glossary(mine.glossary_id)
    r = httpx.post(f"{srv.url}/v2/translate", timeout=10,
                   headers={"Authorization": f"DeepL-Auth-Key {srv.other_key}"},
                   json={"text": ["dog"], "source_lang": "EN", "target_lang": "DE",
                         "glossary_id": mine.glossary_id})
    assert r.status_code == 400
    used = other.translate_text("ship", source_lang="EN", target_lang="DE",
                                glossary="operator-terms")
    assert '"Schiff".' in used.text
    with pytest.raises(deepl.AuthorizationException, match="server operator"):
        client.delete_glossary("operator-terms")
    client.delete_glossary(mine)


def test_context_reaches_the_model(client: deepl.Translator) -> None:
    out = client.translate_text("The bank", source_lang="EN", target_lang="DE",
                                context="We sat by the river")
    assert out.text == expected("The bank", "de",
                                "Context (do not translate): We sat by the river\n")


def test_languages(client: deepl.Translator) -> None:
    assert {lang.code for lang in client.get_source_languages()} == {"DE", "EN", "FI", "PT"}
    targets = {lang.code for lang in client.get_target_languages()}
    assert {"EN-US", "EN-GB", "PT-BR", "PT-PT", "DE", "FI"} <= targets


def test_usage_bad_key_and_quota(srv: CompatServer) -> None:
    small = deepl.Translator(srv.small_key, server_url=srv.url)
    assert small.get_usage().character.limit == 40
    small.translate_text(["0123456789", "abcdefghij"], source_lang="EN", target_lang="FI")
    usage = small.get_usage().character
    assert (usage.count, usage.limit) == (20, 40)
    with pytest.raises(deepl.QuotaExceededException):  # 456: the whole request is refused
        small.translate_text("x" * 21, source_lang="EN", target_lang="FI")
    assert small.get_usage().character.count == 20
    with pytest.raises(deepl.AuthorizationException):
        deepl.Translator("tolk_nope_nope", server_url=srv.url).translate_text(
            "hi", target_lang="DE")


def test_a_list_is_one_request_of_the_key(srv: CompatServer) -> None:
    """Three texts take one of the key's streams and one of its requests a minute."""
    slow = {"Authorization": f"DeepL-Auth-Key {srv.slow_key}"}
    body = {"text": ["one", "two", "three"], "target_lang": "FI", "source_lang": "EN"}
    for _ in range(2):
        r = httpx.post(f"{srv.url}/v2/translate", json=body, headers=slow, timeout=10)
        assert r.status_code == 200 and len(r.json()["translations"]) == 3
    r = httpx.post(f"{srv.url}/v2/translate", json=body, headers=slow, timeout=10)
    assert r.status_code == 429 and "rate limit" in r.json()["message"]


def test_html_tag_handling_keeps_markup(client: deepl.Translator) -> None:
    src = '<p>Hello <b>big</b> world</p><x>Keep me</x><pre>raw &amp; text</pre>'
    out = client.translate_text(src, source_lang="EN", target_lang="DE",
                                tag_handling="html", ignore_tags=["x"])
    want = html.escape(expected("Hello big world", "de"), quote=False).split()
    assert out.text.startswith(f"<p>{want[0]} <b>{want[1]}</b> ")
    assert out.text.endswith("</p><x>Keep me</x><pre>raw &amp; text</pre>")


def test_form_bodies_with_repeated_text(srv: CompatServer) -> None:
    r = _post(srv, data={"text": ["one two", "three"], "target_lang": "de",
                         "source_lang": "en", "split_sentences": "0", "formality": "more"})
    assert r.status_code == 200, r.text
    assert [t["text"] for t in r.json()["translations"]] == [expected("one two", "de"),
                                                             expected("three", "de")]


def test_bad_input_gives_documented_errors(srv: CompatServer, tmp_path: Path) -> None:
    many = ["hello"] * 10_000
    r = _post(srv, json={"text": many, "target_lang": "DE"})
    assert r.status_code == 413 and "10000" in r.json()["message"]
    form = "&".join(["text=hello"] * 10_000) + "&target_lang=DE"
    r = _post(srv, "application/x-www-form-urlencoded", content=form)
    assert r.status_code == 413
    r = _post(srv, json={"text": ["x" * 200_000], "target_lang": "DE"})
    assert r.status_code == 413
    r = _post(srv, json={"text": ["hello"], "target_lang": "XX"})
    assert r.status_code == 400 and r.json() == {
        "message": "Value for 'target_lang' not supported."}
    r = _post(srv, json={"text": ["hello"], "target_lang": "DE", "source_lang": "KLINGON"})
    assert r.status_code == 400
    r = _post(srv, "application/json", content=b"{nope")
    assert r.status_code == 400
    r = _post(srv, json={"text": ["hi"], "target_lang": "DE", "glossary_id": "missing"})
    assert r.status_code == 400
    broken = "<div><p>unclosed <i>tags & stray < here</div></span><!-- open"
    r = _post(srv, json={"text": [broken], "target_lang": "DE", "source_lang": "EN",
                         "tag_handling": "html"})
    assert r.status_code == 200
    text = r.json()["translations"][0]["text"]
    assert text.startswith("<div><p>") and text.endswith("</div></span><!-- open")
    r = _post(srv, json={"text": ["", " \n"], "target_lang": "DE"})
    assert [(t["text"], t["detected_source_language"], t["billed_characters"])
            for t in r.json()["translations"]] == [("", "", 0), (" \n", "", 2)]
    assert httpx.get(f"{srv.url}/ready").status_code == 200
