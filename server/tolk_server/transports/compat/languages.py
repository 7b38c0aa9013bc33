"""Language codes of the compatible APIs, mapped onto the served profile's languages."""

from __future__ import annotations

from collections.abc import Mapping

# Regional targets DeepL clients send, by base language.
DEEPL_VARIANTS: dict[str, tuple[str, ...]] = {
    "en": ("EN-GB", "EN-US"), "pt": ("PT-BR", "PT-PT"), "zh": ("ZH-HANS", "ZH-HANT"),
    "es": ("ES-419",),
}


def resolve(code: str, served: Mapping[str, str]) -> str | None:
    """The served code for `code` (any case, `-` or `_`, regional variant or not), or None."""
    wanted = code.strip().replace("_", "-").lower()
    if not wanted:
        return None
    by_lower = {c.replace("_", "-").lower(): c for c in served}
    if wanted in by_lower:
        return by_lower[wanted]
    return by_lower.get(wanted.split("-")[0])


def deepl_code(code: str) -> str:
    """DeepL's spelling of a served code: upper case, base language only."""
    return code.replace("_", "-").split("-")[0].upper()


def deepl_languages(served: Mapping[str, str], kind: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for code in sorted(served):
        base = deepl_code(code)
        if kind == "target":
            out.append({"language": base, "name": served[code], "supports_formality": False})
            for variant in DEEPL_VARIANTS.get(base.lower(), ()):
                out.append({"language": variant, "name": f"{served[code]} ({variant[3:]})",
                            "supports_formality": False})
        else:
            out.append({"language": base, "name": served[code]})
    return out


def libretranslate_languages(served: Mapping[str, str]) -> list[dict[str, object]]:
    codes = sorted(served)
    return [{"code": c, "name": served[c], "targets": [t for t in codes if t != c]}
            for c in codes]
