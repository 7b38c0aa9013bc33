"""Request bodies of the compatible APIs: JSON or form-urlencoded (repeated fields), plus the
query string; read with a size cap."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from tolk_server.transports.compat.errors import MAX_BODY_BYTES, CompatError

Fields = dict[str, Any]
MAX_FORM_FIELDS = 1000
SECRET_FIELDS = frozenset({"auth_key", "api_key"})  # never taken from a query string


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CompatError(413, f"request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CompatError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_fields(request: Request, lists: frozenset[str] = frozenset(),
                      limit: int = MAX_BODY_BYTES) -> Fields:
    """The request's fields. Form fields named in `lists` are lists (repeatable); others are
    the last value given. JSON bodies are taken as they are."""
    fields: Fields = {}
    for k, v in parse_qsl(request.url.query, keep_blank_values=True):
        if k in SECRET_FIELDS:
            raise CompatError(400, f"{k} in the URL is not accepted (URLs get logged): send "
                              "the key in the Authorization header or in the request body")
        _put(fields, k, v, k in lists)
    body = await read_body(request, limit)
    if not body.strip():
        return fields
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or (not ctype and body.lstrip()[:1] in (b"{", b"[")):
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise CompatError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CompatError(400, "body must be a JSON object")
        fields.update(obj)
        return fields
    if ctype not in ("", "application/x-www-form-urlencoded"):
        raise CompatError(415 if ctype != "multipart/form-data" else 400,
                          f"unsupported content type {ctype!r}: send JSON or a url-encoded form")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CompatError(400, f"form body could not be read: {exc}") from None
    if text.count("&") >= MAX_FORM_FIELDS:
        raise CompatError(413, f"Invalid request: more than {MAX_FORM_FIELDS} form fields")
    try:
        pairs = parse_qsl(text, keep_blank_values=True)
    except ValueError as exc:
        raise CompatError(400, f"form body could not be read: {exc}") from None
    for k, v in pairs:
        _put(fields, k, v, k in lists)
    return fields


def _put(fields: Fields, key: str, value: str, as_list: bool) -> None:
    if as_list:
        fields.setdefault(key, []).append(value)
    else:
        fields[key] = value


def str_list(value: Any, name: str) -> list[str]:
    """A list of strings from a string, a list, or a comma-joined form value."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, str) for i in items):
        raise CompatError(400, f"{name} must be a string or a list of strings")
    return [t.strip() for i in items for t in i.split(",") if t.strip()]
