"""DeepL v2 glossaries, kept in tolk's glossary store (terms, usable by every API) with what
DeepL also reports: name, languages, creation time, and the key that created it. A key sees
the operator's glossaries (`tolk glossary add`, read-only here) and its own; it cannot see,
use or delete another key's. With a shared store (sqlite, redis), every replica sees the
same glossaries."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tolk.protocol import ProtocolError
from tolk_server.security.auth import Principal
from tolk_server.state import ServerState
from tolk_server.stores.records import Glossary, GlossaryMeta
from tolk_server.text.glossary import GlossaryStore
from tolk_server.transports.compat.common import deepl_principal, state_of
from tolk_server.transports.compat.errors import CompatError, deepl_error, from_protocol
from tolk_server.transports.compat.forms import read_fields
from tolk_server.transports.compat.languages import deepl_code, resolve

router = APIRouter(prefix="/v2", tags=["DeepL-compatible"])
TSV = "text/tab-separated-values"
MAX_PER_KEY = 100  # glossaries one key may create


def _store(st: ServerState) -> GlossaryStore:
    store = st.pipeline.glossaries
    if store is None:
        raise CompatError(503, "this server has no glossary store")
    return store


def usable(st: ServerState, gid: str, who: Principal) -> bool:
    """Whether `who` may see and use glossary `gid` (the operator's, or its own)."""
    store = st.pipeline.glossaries
    try:
        return store is not None and store.usable(gid, who.key_id) is not None
    except ProtocolError as exc:  # the store is away
        raise from_protocol(exc, quota_status=503) from None


def _info(gid: str, found: Glossary) -> dict[str, Any]:
    meta = found.meta
    return {
        "glossary_id": gid, "name": meta.name if meta else gid, "ready": True,
        "source_lang": meta.source_lang if meta else "",
        "target_lang": meta.target_lang if meta else "",
        "creation_time": datetime.fromtimestamp(found.created, UTC).isoformat().replace(
            "+00:00", "Z"),
        "entry_count": len(found.terms),
    }


def _usable(st: ServerState, gid: str, who: Principal) -> Glossary:
    found = _store(st).entry(gid)
    if found is None or (found.meta is not None and found.meta.owner != who.key_id):
        raise CompatError(404, "Glossary not found")
    return found


def parse_entries(text: str, fmt: str) -> dict[str, str]:
    """DeepL glossary entries: TSV (`source<TAB>target` lines) or CSV."""
    if fmt not in ("tsv", "csv"):
        raise CompatError(400, f"Unsupported entries_format {fmt!r}: use tsv or csv")
    rows = (csv.reader(io.StringIO(text)) if fmt == "csv"
            else (line.split("\t") for line in text.splitlines()))
    entries: dict[str, str] = {}
    for row in rows:
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise CompatError(400, f"Invalid glossary entry: {row!r}")
        entries[row[0].strip()] = row[1].strip()
    if not entries:
        raise CompatError(400, "Glossary entries must not be empty")
    return entries


Handler = Callable[[ServerState, Principal, dict[str, Any]], Awaitable[Response]]


async def _guard(request: Request, handler: Handler) -> Response:
    """Authenticate, read the fields, run `handler`; errors in DeepL's shape."""
    try:
        st = state_of(request)
        fields = await read_fields(request)
        who = deepl_principal(st, request, fields)
        return await handler(st, who, fields)
    except CompatError as exc:
        return deepl_error(exc)
    except ProtocolError as exc:  # the store is away
        return deepl_error(from_protocol(exc, quota_status=503))


@router.post("/glossaries", status_code=201)
async def create(request: Request) -> Response:
    """Create a glossary (DeepL v2): `name`, `source_lang`, `target_lang`, `entries`,
    `entries_format` (tsv or csv)."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CompatError(400, "Parameter 'name' not specified")
        served = st.pipeline.profile.languages
        langs = [resolve(str(fields.get(k, "")), served) for k in ("source_lang", "target_lang")]
        if langs[0] is None or langs[1] is None:
            raise CompatError(400, "Unsupported glossary source and target language pair")
        terms = parse_entries(str(fields.get("entries", "")),
                              str(fields.get("entries_format", "tsv")))
        gid = str(uuid.uuid4())
        meta = GlossaryMeta(name=name, source_lang=deepl_code(langs[0]).lower(),
                            target_lang=deepl_code(langs[1]).lower(), created=time.time(),
                            owner=who.key_id)
        try:
            made = _store(st).create(gid, terms, meta, MAX_PER_KEY)
        except ValueError as exc:
            raise CompatError(400, str(exc)) from None
        if not made:
            raise CompatError(400, f"This key has {MAX_PER_KEY} glossaries: delete one first")
        return JSONResponse(_info(gid, _usable(st, gid, who)), status_code=201)

    return await _guard(request, run)


@router.get("/glossaries")
async def list_all(request: Request) -> Response:
    """List glossaries (DeepL v2): every glossary in tolk's store."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        return JSONResponse({"glossaries": [
            _info(g, found) for g, found in _store(st).entries(who.key_id).items()]})

    return await _guard(request, run)


@router.get("/glossaries/{glossary_id}")
async def get_one(request: Request, glossary_id: str) -> Response:
    """One glossary's details (DeepL v2)."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        return JSONResponse(_info(glossary_id, _usable(st, glossary_id, who)))

    return await _guard(request, run)


@router.get("/glossaries/{glossary_id}/entries")
async def entries(request: Request, glossary_id: str) -> Response:
    """A glossary's entries as TSV (DeepL v2)."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        terms = _usable(st, glossary_id, who).terms
        return PlainTextResponse("".join(f"{s}\t{t}\n" for s, t in terms.items()),
                                 media_type=TSV)

    return await _guard(request, run)


@router.delete("/glossaries/{glossary_id}", status_code=204)
async def delete(request: Request, glossary_id: str) -> Response:
    """Delete a glossary (DeepL v2)."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        if _usable(st, glossary_id, who).meta is None:
            raise CompatError(403, "This glossary belongs to the server operator "
                                   "(`tolk glossary remove`)")
        if not _store(st).remove(glossary_id):
            raise CompatError(404, "Glossary not found")
        return Response(status_code=204)

    return await _guard(request, run)


@router.get("/glossary-language-pairs")
async def language_pairs(request: Request) -> Response:
    """Language pairs glossaries support (DeepL v2): every served pair."""

    async def run(st: ServerState, who: Principal, fields: dict[str, Any]) -> Response:
        codes = sorted({deepl_code(c).lower() for c in st.pipeline.profile.languages})
        return JSONResponse({"supported_languages": [
            {"source_lang": s, "target_lang": t} for s in codes for t in codes if s != t]})

    return await _guard(request, run)
