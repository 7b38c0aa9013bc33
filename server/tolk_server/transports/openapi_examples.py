"""Request and answer examples shown in the OpenAPI schema (`/docs`)."""

from __future__ import annotations

from typing import Any

TRANSLATE_EXAMPLES: dict[str, Any] = {
    "json": {"summary": "JSON answer (the default)",
             "value": {"text": "Good morning!", "source": "en", "target": "fi"}},
    "stream": {"summary": "Server-Sent Events",
               "value": {"text": "Good morning!", "target": "fi", "stream": True}},
    "html": {"summary": "HTML: text nodes translated, markup kept",
             "value": {"text": "<p>Hello <b>world</b></p>", "target": "fi", "format": "html"}},
    "targets": {"summary": "Several targets",
                "value": {"text": "Thank you", "source": "en", "targets": ["fi", "en"]}},
}
COMPLETE_EXAMPLE: dict[str, Any] = {
    "type": "complete", "id": "srv-1", "translation": "Hyvää huomenta!", "source": "en",
    "target": "fi", "tokens": 6, "first_token_ms": 41.2, "latency_ms": 88.0,
    "finish_reason": "stop",
}
LT_TRANSLATE_EXAMPLES: dict[str, Any] = {
    "one": {"summary": "One text", "value": {"q": "Hello", "source": "en", "target": "fi"}},
    "list": {"summary": "A list, source detected",
             "value": {"q": ["Hello", "Goodbye"], "source": "auto", "target": "fi"}},
    "html": {"summary": "HTML", "value": {"q": "<p>Hello <b>world</b></p>", "source": "en",
                                          "target": "fi", "format": "html"}},
}
LT_TRANSLATE_ANSWER: dict[str, Any] = {
    "translatedText": ["Hei", "Näkemiin"],
    "detectedLanguage": [{"confidence": 90.0, "language": "en"}] * 2,
}
DEEPL_TRANSLATE_EXAMPLES: dict[str, Any] = {
    "json": {"summary": "JSON body",
             "value": {"text": ["Hello", "Goodbye"], "target_lang": "FI"}},
    "html": {"summary": "HTML with ignored tags",
             "value": {"text": ["<p>Hello <x>tolk</x></p>"], "source_lang": "EN",
                       "target_lang": "FI", "tag_handling": "html", "ignore_tags": ["x"]}},
}
DEEPL_TRANSLATE_ANSWER: dict[str, Any] = {
    "translations": [{"detected_source_language": "EN", "text": "Hei",
                      "billed_characters": 5}],
}
