"""A live server (real sockets, engine double) for the LibreTranslate/DeepL API tests.

Its profile serves English, Finnish, German and Portuguese, so regional DeepL codes
(EN-US, PT-BR) have something to map onto. The engine double "translates" by reversing the
words of the prompt (`<2{tgt}>{text}<sep>`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.live_server import serve_in_thread
from tolk_server.adapters.echo import EchoEngine, echo_translation
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.models.profiles import Profile
from tolk_server.security.keystore import KeyLimits, KeyStore

PROFILE = Profile(
    name="compat-test", family="tiny", template="completion", prompt="<2{tgt}>{text}<sep>",
    languages={"en": "English", "fi": "Finnish", "de": "German", "pt": "Portuguese"},
    supports_glossary=True, supports_context=True,
)


def expected(text: str, target: str, glossary: str = "") -> str:
    """What the engine double answers for one sentence (no glossary prefix unless given)."""
    return echo_translation(f"{glossary}<2{target}>{text}<sep>")


@dataclass
class CompatServer:
    url: str
    key: str  # unlimited
    small_key: str  # 40 characters a day
    slow_key: str  # 2 requests a minute, 1 at a time
    other_key: str  # unlimited, a second tenant
    glossary_file: Path


@contextmanager
def compat_server(tmp: Path, **settings: object) -> Iterator[CompatServer]:
    store = KeyStore(tmp / "keys.json")
    _, key = store.add("main")
    _, small = store.add("small", KeyLimits(chars_per_day=40))
    _, slow = store.add("slow", KeyLimits(requests_per_minute=2, concurrent_streams=1))
    _, other = store.add("other")
    app = create_app(Settings(engine="fake", key_file=store.path,
                              glossary_file=tmp / "glossaries.json", **settings),  # type: ignore[arg-type]
                     engine=EchoEngine(), profile=PROFILE)
    with serve_in_thread(app) as url:
        yield CompatServer(url, key, small, slow, other, tmp / "glossaries.json")
