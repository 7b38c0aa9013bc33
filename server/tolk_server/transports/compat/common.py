"""What both compatible APIs share: running a list of texts through tolk's request path."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

from fastapi import Request

from tolk.protocol import TERMINAL_TYPES, ProtocolError, ServerFrame, TranslateOptions
from tolk_server.pipeline.submit import Run
from tolk_server.security.auth import Principal
from tolk_server.state import ServerState
from tolk_server.stores.health import StoreUnavailable
from tolk_server.text.markup import MarkupMode
from tolk_server.transports.compat.errors import MAX_ITEMS, CompatError, from_protocol


def state_of(request: Request) -> ServerState:
    st: ServerState = request.app.state.tolk
    return st


def check_items(texts: list[str], what: str, status: int) -> None:
    if len(texts) > MAX_ITEMS:
        raise CompatError(status, f"Invalid request: request ({len(texts)}) exceeds text "
                          f"limit ({MAX_ITEMS}) for {what}")


async def _finals(run: Run) -> list[ServerFrame]:
    async with aclosing(run.events()) as frames:
        return [f async for f in frames if f["type"] in TERMINAL_TYPES]


async def translate_all(st: ServerState, who: Principal, texts: list[str], *, source: str | None,
                        target: str, owner: str | None, mode: MarkupMode | None = None,
                        quota_status: int = 429, **extra: Any) -> list[dict[str, Any]]:
    """Translate each text through tolk's own request path (keys, limits, glossaries, cache),
    concurrently: `{"translation", "source"}` per text, in order. Blank texts come back as
    they are. Raises `CompatError`."""
    todo = [i for i, t in enumerate(texts) if t.strip()]
    try:
        opts = [TranslateOptions.model_validate({"text": texts[i], "source": source,
                                                 "target": target, "stream": False, **extra})
                for i in todo]
    except ValueError as exc:
        raise CompatError(400, f"Invalid request: {exc}") from None
    known = "" if source in (None, "auto") else source
    out: list[dict[str, Any]] = [{"translation": t, "source": known} for t in texts]
    if not opts:
        return out
    try:
        batch = await st.pipeline.submit_many(opts, who, st.http_sessions(owner), mode)
    except ProtocolError as exc:  # counted by the pipeline
        raise from_protocol(exc, quota_status=quota_status) from None
    async with batch:
        results = await asyncio.gather(*(_finals(run) for run in batch.runs))
    for i, frames in zip(todo, results, strict=True):
        frame: dict[str, Any] = dict(frames[0])
        if frame["type"] == "error":
            raise from_protocol(ProtocolError(frame["code"], frame["message"]),
                                quota_status=quota_status)
        out[i] = {"translation": frame["translation"], "source": frame["source"]}
    return out


def deepl_key(request: Request, fields: dict[str, Any]) -> str | None:
    """`Authorization: DeepL-Auth-Key KEY` (or Bearer), else the legacy `auth_key` field."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("deepl-auth-key", "bearer") and value.strip():
        return value.strip()
    key = fields.get("auth_key")
    return key if isinstance(key, str) and key else None


def deepl_principal(st: ServerState, request: Request, fields: dict[str, Any]) -> Principal:
    try:
        return st.gate.principal(deepl_key(request, fields))
    except StoreUnavailable as exc:
        raise from_protocol(exc, quota_status=503) from None
    except ProtocolError:
        raise CompatError(403, "Authorization failure: missing or invalid auth key") from None


def check_ready(st: ServerState) -> None:
    """The gate's readiness, as both compatible APIs answer it (503)."""
    try:
        st.gate.check_ready()
    except ProtocolError:
        raise CompatError(503, "the server is not ready") from None
