"""Model profiles are data; one renderer builds every family's prompt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tolk_server.models.profiles import builtin_profiles, render, resolve_profile


def chatml(messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
    out = ""
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    out += "<|im_start|>assistant\n"
    if kwargs.get("enable_thinking") is False:
        out += "<think>\n\n</think>\n\n"
    return out


def test_every_family_ships() -> None:
    names = set(builtin_profiles())
    assert {"towerinstruct", "tower-plus", "eurollm", "hunyuan-mt", "seed-x",
            "translategemma", "qwen3", "demo"} <= names


def test_towerinstruct_prompt() -> None:
    p = builtin_profiles()["towerinstruct"]
    out = render(p, "Hello.", "en", "de", chatml)
    assert "Translate the following text from English into German.\nEnglish: Hello.\nGerman:" in out
    assert out.startswith("<|im_start|>user\n")


def test_tower_plus_and_eurollm_share_a_prompt() -> None:
    for name in ("tower-plus", "eurollm"):
        out = render(builtin_profiles()[name], "Hi", "en", "fi", chatml)
        assert "Translate the following English source text to Finnish:\nEnglish: Hi\nFinnish: " in out


def test_hunyuan_uses_chinese_variant_for_zh() -> None:
    p = builtin_profiles()["hunyuan-mt"]
    en = render(p, "Bonjour", "fr", "en", chatml)
    assert "Translate the following segment into English, without additional explanation.\n\nBonjour" in en
    zh = render(p, "Hello", "en", "zh", chatml)
    assert "把下面的文本翻译成中文，不要额外解释。\n\nHello" in zh


def test_seed_x_is_raw_completion_ending_in_target_tag() -> None:
    p = builtin_profiles()["seed-x"]
    out = render(p, "Good morning", "en", "fi")
    assert out.endswith("Good morning <fi>")


def test_translategemma_structured_content() -> None:
    seen: list[list[dict[str, Any]]] = []

    def capture(messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
        seen.append(messages)
        return "ok"

    render(builtin_profiles()["translategemma"], "Hei", "fi", "en", capture)
    (content,) = seen[0][0]["content"]
    assert content == {"type": "text", "source_lang_code": "fi", "target_lang_code": "en",
                       "text": "Hei"}


def test_qwen3_disables_thinking() -> None:
    out = render(builtin_profiles()["qwen3"], "Hi", "en", "fi", chatml)
    assert "<think>\n\n</think>" in out and out.startswith("<|im_start|>system")


def test_user_text_with_braces_is_not_a_template() -> None:
    p = builtin_profiles()["demo"]
    assert render(p, "{TGT} {text} {x}", "en", "fi") == "<2fi>{TGT} {text} {x}<sep>"


def test_chat_profile_needs_a_template() -> None:
    with pytest.raises(ValueError, match="chat template"):
        render(builtin_profiles()["qwen3"], "x", "en", "fi")


def test_resolve_by_name_match_and_unknown() -> None:
    assert resolve_profile("/models/Unbabel/TowerInstruct-7B-v0.2", None).name == "towerinstruct"
    assert resolve_profile("whatever", "seed-x").name == "seed-x"
    with pytest.raises(ValueError):
        resolve_profile("/nowhere/unknown-model", None)
    with pytest.raises(ValueError):
        resolve_profile("x", "no-such-profile")


def test_adding_a_family_needs_no_code(tmp_path: Any) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('name="mine"\nfamily="Mine"\ntemplate="completion"\n'
                 'prompt="{SRC}->{TGT}: {text}"\n[languages]\nen="English"\nsv="Swedish"\n')
    p = resolve_profile("x", str(f))
    assert render(p, "hi", "en", "sv") == "English->Swedish: hi"
