"""The DeepL API v2 (developers.deepl.com is the reference): /v2/translate, /v2/languages,
/v2/usage. Same keys, per-key limits, glossaries and models as tolk's own API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tolk.protocol import ProtocolError
from tolk_server.state import ServerState
from tolk_server.text.markup import MarkupMode
from tolk_server.transports.compat.common import (
    check_items,
    check_ready,
    deepl_principal,
    state_of,
    translate_all,
)
from tolk_server.transports.compat.deepl_glossaries import usable
from tolk_server.transports.compat.errors import CompatError, deepl_error, from_protocol
from tolk_server.transports.compat.forms import read_fields, str_list
from tolk_server.transports.compat.languages import deepl_code, deepl_languages, resolve
from tolk_server.transports.openapi_examples import DEEPL_TRANSLATE_ANSWER, DEEPL_TRANSLATE_EXAMPLES

router = APIRouter(prefix="/v2", tags=["DeepL-compatible"])

QUOTA_STATUS = 456  # DeepL: "Quota exceeded. The character limit has been reached."
UNLIMITED = 1_000_000_000_000  # what DeepL reports as the limit of an unlimited plan
FORMALITY = (None, "", "default", "more", "less", "prefer_more", "prefer_less")
# tolk serves one model per server: every model type maps onto it; the answer says which
# type DeepL would report for the request.
MODEL_TYPES = {"latency_optimized": "latency_optimized",
               "quality_optimized": "quality_optimized",
               "prefer_quality_optimized": "quality_optimized"}
_LISTS = frozenset({"text", "ignore_tags", "splitting_tags", "non_splitting_tags"})
_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}, "examples": DEEPL_TRANSLATE_EXAMPLES},
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
            "text": {"type": "array", "items": {"type": "string"}},
            "target_lang": {"type": "string"}, "source_lang": {"type": "string"}}}}}},
    "responses": {"200": {"description": "Translations",
                          "content": {"application/json": {"example": DEEPL_TRANSLATE_ANSWER}}},
                  "400": {"description": '`{"message": "..."}`'},
                  "403": {"description": "Invalid auth key"},
                  "413": {"description": "Too many texts or too large"},
                  "429": {"description": "Too many requests"},
                  "456": {"description": "The key's character quota is used up"}},
}


def _lang(st: ServerState, value: Any, name: str) -> str:
    found = resolve(value, st.pipeline.profile.languages) if isinstance(value, str) else None
    if found is None:
        raise CompatError(400, f"Value for '{name}' not supported.")
    return found


def _choice(fields: dict[str, Any], name: str, allowed: Any) -> Any:
    value = fields.get(name)
    if value not in allowed:
        raise CompatError(400, f"Value for '{name}' not supported.")
    return value


@router.post("/translate", openapi_extra=_DOC)
async def translate(request: Request) -> Response:
    """Translate texts (DeepL v2); JSON or form bodies (repeated `text`)."""
    st = state_of(request)
    try:
        fields = await read_fields(request, _LISTS)
        who = deepl_principal(st, request, fields)
        texts = fields.get("text")
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not isinstance(texts, list):
            raise CompatError(400, "Parameter 'text' not specified.")
        if not all(isinstance(t, str) for t in texts):
            raise CompatError(400, "Parameter 'text' must be a list of strings.")
        check_items(texts, "text", 413)
        if not fields.get("target_lang"):
            raise CompatError(400, "Parameter 'target_lang' not specified.")
        target = _lang(st, fields["target_lang"], "target_lang")
        source = (_lang(st, fields["source_lang"], "source_lang")
                  if fields.get("source_lang") else None)
        _choice(fields, "formality", FORMALITY)  # accepted; no served model has formality
        model_type = _choice(fields, "model_type", (None, *MODEL_TYPES))
        tags = _choice(fields, "tag_handling", (None, "", "html", "xml"))
        split = str(fields.get("split_sentences", "1")) != "0"
        # `preserve_formatting` is accepted as it is: tolk always keeps white space and case.
        mode = None
        if tags:
            lists = {k: tuple(str_list(fields.get(k), k))
                     for k in ("ignore_tags", "non_splitting_tags", "splitting_tags")}
            mode = MarkupMode(xml=tags == "xml", **lists)
        extra: dict[str, Any] = {"split": split}
        if isinstance(fields.get("context"), str) and fields["context"].strip():
            extra["context"] = fields["context"]  # for profiles that take context
        if fields.get("glossary_id"):
            gid = fields["glossary_id"]
            if not usable(st, str(gid), who):
                raise CompatError(400, "Invalid glossary_id: no such glossary")
            extra["glossary_id"] = gid
        check_ready(st)
        done = await translate_all(st, who, texts, source=source or "auto", target=target,
                                   owner=fields.get("auth_key"), mode=mode,
                                   quota_status=QUOTA_STATUS, **extra)
    except CompatError as exc:
        return deepl_error(exc)
    out = []
    for text, d in zip(texts, done, strict=True):
        item: dict[str, Any] = {
            "detected_source_language": deepl_code(d["source"] or source or ""),
            "text": d["translation"], "billed_characters": len(text)}
        if model_type:
            item["model_type_used"] = MODEL_TYPES[model_type]
        out.append(item)
    return JSONResponse({"translations": out})


@router.get("/languages", operation_id="deepl_languages")
@router.post("/languages", operation_id="deepl_languages_post")
async def languages(request: Request) -> Response:
    """Source or target languages (DeepL v2); `type` in the query or a form body."""
    st = state_of(request)
    try:
        fields = await read_fields(request)
        deepl_principal(st, request, fields)
        kind = fields.get("type") or "source"
        if kind not in ("source", "target"):
            raise CompatError(400, "Value for 'type' not supported.")
    except CompatError as exc:
        return deepl_error(exc)
    return JSONResponse(deepl_languages(st.pipeline.profile.languages, kind))


@router.get("/usage", operation_id="deepl_usage")
@router.post("/usage", operation_id="deepl_usage_post")
async def usage(request: Request) -> Response:
    """The key's characters today and its daily limit (DeepL v2)."""
    st = state_of(request)
    try:
        fields = await read_fields(request)
        who = deepl_principal(st, request, fields)
        try:  # every replica's count, from the usage store
            used = st.admission.keys.chars_today(who.key_id)
        except ProtocolError as exc:  # the store is away (policy `closed`)
            raise from_protocol(exc, quota_status=503) from None
    except CompatError as exc:
        return deepl_error(exc)
    return JSONResponse({"character_count": used,
                         "character_limit": who.limits.chars_per_day or UNLIMITED})
