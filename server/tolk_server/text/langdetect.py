"""Offline source-language detection (lingua), restricted to the model's languages."""

from __future__ import annotations

from typing import Any

DETECT_CHARS = 400  # enough to tell languages apart; keeps the event loop responsive


class LanguageDetector:
    def __init__(self, codes: list[str]) -> None:
        self.codes = sorted(set(codes))
        self._detector: Any = None
        self._by_lingua: dict[Any, str] = {}

    def load(self) -> None:
        """Build the detector (loads lingua's bundled models; call once at start-up)."""
        if self._detector is not None or len(self.codes) < 2:
            return
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        langs = []
        for code in self.codes:
            iso = getattr(IsoCode639_1, code.split("-")[0].split("_")[0].upper(), None)
            if iso is None:
                continue
            lang = Language.from_iso_code_639_1(iso)
            langs.append(lang)
            self._by_lingua.setdefault(lang, code)
        if len(langs) >= 2:
            self._detector = (
                LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models()
                .build()
            )
            self._detector.detect_language_of("warm up")

    def detect(self, text: str) -> str | None:
        """The most likely language code among the served ones, or None when unsure."""
        if len(self.codes) == 1:
            return self.codes[0]
        self.load()
        if self._detector is None:
            return None
        lang = self._detector.detect_language_of(text[:DETECT_CHARS])
        return None if lang is None else self._by_lingua.get(lang)

    def confidences(self, text: str) -> list[tuple[str, float]]:
        """(code, confidence 0–1) for the served languages, most likely first."""
        if len(self.codes) == 1:
            return [(self.codes[0], 1.0)]
        self.load()
        if self._detector is None:
            return []
        values = self._detector.compute_language_confidence_values(text[:DETECT_CHARS])
        return [(self._by_lingua[v.language], float(v.value)) for v in values
                if v.language in self._by_lingua]
