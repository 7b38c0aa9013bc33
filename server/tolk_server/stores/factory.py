"""`open_store(url)`: the store a URL names.

- `memory` (the default): one process. Keys and glossaries stay in their JSON files
  (`key_file`, `glossary_file`); usage and session context live in the process.
- `sqlite:///PATH`: one file for the processes of one host (`sqlite:///state.db` is relative
  to the working directory, `sqlite:////var/lib/tolk/state.db` absolute).
- `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` (TLS): several hosts.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tolk_server.stores.files import FileGlossaries, FileKeys
from tolk_server.stores.interfaces import Store
from tolk_server.stores.memory import MemoryContexts, MemoryUsage

SCHEMES = ("memory", "sqlite", "redis", "rediss")


def check_url(url: str) -> str:
    """`url` if it names a store, else `ValueError` saying what does."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if url != "memory" and scheme not in SCHEMES[1:]:
        raise ValueError(f"unknown store {shown_url(url)!r}: use memory, sqlite:///PATH, "
                         "redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
    if scheme == "redis" and "ssl" in urlsplit(url).query:
        raise ValueError(f"store {shown_url(url)!r}: ssl_* options need rediss:// (TLS)")
    if scheme == "sqlite" and not sqlite_path(url).name:
        raise ValueError(f"store {url!r}: name a file, e.g. sqlite:////var/lib/tolk/state.db")
    return url


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def shown_url(url: str) -> str:
    """`url` without its password (for logs, errors and /ready)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(url: str, *, key_file: Path, glossary_file: Path) -> Store:
    """The store `url` names (`check_url`); a shared one is opened lazily or raises
    `StoreError` (sqlite: a file it cannot open)."""
    check_url(url)
    if url == "memory":
        return Store("memory", url, FileKeys(key_file), MemoryUsage(),
                     FileGlossaries(glossary_file), MemoryContexts())
    if url.startswith("sqlite:"):
        from tolk_server.stores.sqlite_backend import sqlite_store

        return sqlite_store(sqlite_path(url), url)
    from tolk_server.stores.redis_backend import redis_store  # the `redis` package, only here

    return redis_store(url, shown_url(url))
