"""Store files (keys, named glossaries, DeepL glossary metadata) are the owner's only, and
stored glossary terms have the inline terms' length cap."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.compat_server import compat_server
from tolk.protocol.frames import MAX_TERM_CHARS
from tolk_server.cli.commands import main
from tolk_server.security.keystore import KeyStore
from tolk_server.text.glossary import GlossaryStore


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_store_file_is_the_owners_only(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    KeyStore(home / "keys.json").add("a")
    GlossaryStore(tmp_path / "named" / "glossaries.json").put("g", {"a": "b"})
    assert mode(home / "keys.json") == 0o600 and mode(home) == 0o700
    assert mode(tmp_path / "named" / "glossaries.json") == 0o600
    assert mode(tmp_path / "named") == 0o700
    with compat_server(tmp_path / "srv") as srv:  # DeepL glossaries: both of its files
        r = httpx.post(f"{srv.url}/v2/glossaries", timeout=10,
                       headers={"Authorization": f"DeepL-Auth-Key {srv.key}"},
                       json={"name": "n", "source_lang": "en", "target_lang": "fi",
                             "entries": "cat\tkissa", "entries_format": "tsv"})
        assert r.status_code == 201
    files = [srv.glossary_file, srv.glossary_file.with_suffix(".deepl.json")]
    assert [oct(mode(f)) for f in files] == [oct(0o600)] * 2


def test_stored_terms_have_the_inline_cap(tmp_path: Path) -> None:
    store = GlossaryStore(tmp_path / "g.json")
    long = "x" * (MAX_TERM_CHARS + 1)
    for terms in ({long: "y"}, {"y": long}):
        with pytest.raises(ValueError, match=f"at most {MAX_TERM_CHARS} characters"):
            store.put("g", terms)
    store.put("g", {"x" * MAX_TERM_CHARS: "y"})
    with pytest.raises(SystemExit) as exit_:
        main(["glossary", "--file", str(tmp_path / "g.json"), "add", "h", "--term", f"{long}=y"])
    assert exit_.value.code == 2
    with compat_server(tmp_path / "srv") as srv:
        r = httpx.post(f"{srv.url}/v2/glossaries", timeout=10,
                       headers={"Authorization": f"DeepL-Auth-Key {srv.key}"},
                       json={"name": "n", "source_lang": "en", "target_lang": "fi",
                             "entries": f"{long}\tkissa", "entries_format": "tsv"})
        assert r.status_code == 400 and "characters" in r.json()["message"]
