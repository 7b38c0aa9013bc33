"""`tolk keys`, `tolk glossary` and `tolk store migrate`: what the state store holds.

Each takes `--store URL` (default: TOLK_STORE, else `memory`: the JSON files, `--file`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from pydantic import ValidationError

from tolk.protocol import ProtocolError
from tolk_server.config import Settings, load_settings
from tolk_server.stores.factory import open_store, shown_url
from tolk_server.stores.health import StoreHealth
from tolk_server.stores.interfaces import Store, StoreError

if TYPE_CHECKING:
    from tolk_server.security.keystore import KeyStore
    from tolk_server.text.glossary import GlossaryStore

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
STORE_HELP = ("state store URL: memory (the JSON files), sqlite:///PATH, redis://HOST:PORT/DB "
              "(default: TOLK_STORE, else memory)")


def _settings(ns: argparse.Namespace) -> Settings:
    try:
        return load_settings(store=ns.store)
    except ValidationError as exc:
        raise SystemExit(f"tolk: {exc.errors()[0]['msg']}") from None


def _open(ns: argparse.Namespace, what: str) -> Store:
    settings = _settings(ns)
    if ns.file and settings.store != "memory":
        raise SystemExit(f"tolk: --file names the memory store's {what} file; the store is "
                         f"{shown_url(settings.store)}")
    key_file = Path(ns.file) if ns.file and what == "key" else settings.key_file
    glossary_file = Path(ns.file) if ns.file and what == "glossary" else settings.glossary_file
    try:
        return open_store(settings.store, key_file=key_file, glossary_file=glossary_file)
    except StoreError as exc:
        raise SystemExit(f"tolk: {exc}") from None


def _key_store(ns: argparse.Namespace) -> KeyStore:
    from tolk_server.security.keystore import KeyStore

    store = _open(ns, "key")
    return KeyStore(store.keys, StoreHealth(store))


def _glossary_store(ns: argparse.Namespace) -> GlossaryStore:
    from tolk_server.text.glossary import GlossaryStore

    store = _open(ns, "glossary")
    return GlossaryStore(store.glossaries, StoreHealth(store))


def _guarded(run: argparse.Namespace) -> int:
    """Run the subcommand; a store that does not answer is exit status 1, not a trace."""
    try:
        code: int = run.action_func(run)
    except (StoreError, ProtocolError) as exc:
        print(f"tolk: the state store did not answer: {exc}", file=sys.stderr)
        return 1
    return code


def cmd_glossary(ns: argparse.Namespace) -> int:
    store = _glossary_store(ns)
    if ns.action == "list":
        for name, count in store.names().items():
            print(f"{name}\t{count} terms")
        return 0
    if ns.action == "remove":
        if not store.remove(ns.name):
            print(f"no glossary named {ns.name!r}", file=sys.stderr)
            return 1
        return 0
    terms: dict[str, str] = {}
    if ns.tsv:
        for line in Path(ns.tsv).read_text(encoding="utf-8").splitlines():
            if line.strip():
                src, _, tgt = line.partition("\t")
                terms[src.strip()] = tgt.strip()
    for pair in ns.term or []:
        src, sep, tgt = pair.partition("=")
        if not sep or not src.strip() or not tgt.strip():
            print(f"bad --term {pair!r}: use SOURCE=TARGET", file=sys.stderr)
            return 2
        terms[src.strip()] = tgt.strip()
    if not terms:
        print("give terms with --term SOURCE=TARGET or --tsv FILE", file=sys.stderr)
        return 2
    try:
        store.put(ns.name, terms)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{ns.name}: {len(terms)} terms")
    return 0


def cmd_keys(ns: argparse.Namespace) -> int:
    from tolk_server.security.keystore import KeyLimits

    store = _key_store(ns)
    if ns.action == "add":
        limits = KeyLimits(requests_per_minute=ns.rpm, chars_per_day=ns.chars_per_day,
                           concurrent_streams=ns.concurrent)
        rec, secret = store.add(ns.name, limits)
        print(secret)
        print(f"key {rec.id} ({rec.name}) added; the secret above is shown once and not "
              "stored", file=sys.stderr)
        return 0
    if ns.action == "revoke":
        if not store.revoke(ns.key):
            print(f"no active key {ns.key!r}", file=sys.stderr)
            return 1
        return 0
    for rec in store.records().values():
        state = "revoked" if rec.revoked else "active"
        lim = ", ".join(f"{k}={v}" for k, v in rec.limits.model_dump().items() if v is not None)
        print(f"{rec.id}\t{rec.name}\t{state}\t{lim or 'no limits'}")
    return 0


def cmd_migrate(ns: argparse.Namespace) -> int:
    """Copy a `memory` store's JSON files (keys, glossaries, DeepL glossaries) into a store."""
    from tolk_server.stores.files import FileGlossaries, FileKeys

    target = _settings(ns).store
    if target == "memory":
        print("tolk: name the store to migrate into: --store sqlite:///PATH or redis://…",
              file=sys.stderr)
        return 2
    folder = Path(ns.from_dir).expanduser()
    keys = FileKeys(folder / "keys.json").all()
    glossaries = FileGlossaries(folder / "glossaries.json").all()
    store = open_store(target, key_file=folder / "keys.json",
                       glossary_file=folder / "glossaries.json")
    for rec in keys.values():
        store.keys.put(rec)
    for name, g in glossaries.items():
        if g.meta is None:
            store.glossaries.put(name, g.terms, g.created)
        else:
            store.glossaries.remove(name)  # re-running replaces it
            store.glossaries.create(name, g.terms, g.meta, max_per_owner=len(glossaries))
    print(f"{len(keys)} keys and {len(glossaries)} glossaries "
          f"({sum(g.meta is not None for g in glossaries.values())} of the DeepL API) copied "
          f"from {folder} into {shown_url(target)}")
    return 0


def _store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help=STORE_HELP)


def add_store_commands(sub: Subcommands) -> None:
    """`tolk glossary`, `tolk keys`, `tolk store`."""
    _add_glossary(sub)
    _add_keys(sub)
    st = sub.add_parser("store", help="the state store (keys, quotas, glossaries, sessions)")
    st_sub = st.add_subparsers(dest="action", required=True)
    mig = st_sub.add_parser("migrate", help="copy the JSON files of a memory store (keys.json, "
                            "glossaries.json, glossaries.deepl.json) into --store")
    mig.add_argument("--from-dir", default=os.environ.get("TOLK_HOME", "~/.tolk"),
                     help="the folder of those files (default: TOLK_HOME or ~/.tolk)")
    _store_flag(mig)
    mig.set_defaults(func=_guarded, action_func=cmd_migrate)


def _add_glossary(sub: Subcommands) -> None:
    """`tolk glossary add|list|remove`: the server's stored glossaries."""
    gl = sub.add_parser("glossary", help="manage named glossaries stored on the server")
    gl.add_argument("--file", help="the memory store's glossary file (default: "
                    "TOLK_GLOSSARY_FILE or ~/.tolk/glossaries.json)")
    _store_flag(gl)
    gl_sub = gl.add_subparsers(dest="action", required=True)
    add = gl_sub.add_parser("add", help="add or replace a glossary")
    add.add_argument("name")
    add.add_argument("--term", action="append", help="SOURCE=TARGET (repeatable)")
    add.add_argument("--tsv", help="a file of SOURCE<TAB>TARGET lines")
    gl_sub.add_parser("list", help="list glossaries")
    rm = gl_sub.add_parser("remove", help="remove a glossary")
    rm.add_argument("name")
    gl.set_defaults(func=_guarded, action_func=cmd_glossary)


def _add_keys(sub: Subcommands) -> None:
    """`tolk keys add|list|revoke`: API keys and their limits."""
    keys = sub.add_parser("keys", help="manage API keys (stored as salted hashes)")
    keys.add_argument("--file", help="the memory store's key file (default: TOLK_KEY_FILE or "
                      "~/.tolk/keys.json)")
    _store_flag(keys)
    keys_sub = keys.add_subparsers(dest="action", required=True)
    kadd = keys_sub.add_parser("add", help="create a key and print it once")
    kadd.add_argument("name")
    kadd.add_argument("--rpm", type=int, help="requests per minute")
    kadd.add_argument("--chars-per-day", type=int)
    kadd.add_argument("--concurrent", type=int, help="concurrent streams")
    keys_sub.add_parser("list", help="list keys (never the secrets)")
    krev = keys_sub.add_parser("revoke", help="revoke a key by id or name")
    krev.add_argument("key")
    keys.set_defaults(func=_guarded, action_func=cmd_keys)
