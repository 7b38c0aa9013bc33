"""Model profiles (data, in TOML) and the one small renderer that turns a request into a prompt."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tolk_models import DEMO_DIR, PROFILE_DIR
from tolk_server.models.modes import Mode, Quality

# "remote": another tolk server (remote_engine); its "prompt" is the request as JSON.
TemplateKind = Literal["completion", "chat", "structured", "remote"]
# Renders chat messages to a prompt string (the tokenizer's chat template).
ChatTemplater = Callable[[list[dict[str, Any]], Mapping[str, Any]], str]

PROFILE_FILE = "tolk_profile.toml"


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    repetition_penalty: float = 1.0
    # Generate exactly max_tokens (benchmarks with dummy weights fix output lengths so).
    ignore_eos: bool = False


class PromptVariant(BaseModel):
    """An alternative prompt used when the source or target is one of `when`."""

    model_config = ConfigDict(extra="forbid")
    when: list[str]
    prompt: str
    languages: dict[str, str] = Field(default_factory=dict)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    family: str
    template: TemplateKind
    prompt: str = "{text}"
    system: str | None = None
    languages: dict[str, str]
    stop: list[str] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    variants: list[PromptVariant] = Field(default_factory=list)
    match: list[str] = Field(default_factory=list, description="Model-name substrings.")
    default_model: str | None = None
    supports_context: bool = False
    supports_glossary: bool = False
    glossary_prefix: str = "Use these translations for the following terms: {terms}.\n"
    context_prefix: str = "Context (do not translate): {context}\n"
    # Quality modes (tolk_server.models.modes): `[modes.quality]` etc.; built-ins fill the rest.
    modes: dict[Quality, Mode] = Field(default_factory=dict)

    def language_name(self, code: str) -> str:
        return self.languages[code]


def load_profile(path: Path) -> Profile:
    with path.open("rb") as fh:
        return Profile.model_validate(tomllib.load(fh))


def builtin_profiles() -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for path in sorted(PROFILE_DIR.glob("*.toml")):
        prof = load_profile(path)
        out[path.stem] = prof
    return out


def resolve_profile(model: str, profile: str | None) -> Profile:
    """Pick the profile: explicit name/path, the model dir's own file, or a name match."""
    if profile:
        as_path = Path(profile)
        if as_path.suffix == ".toml" and as_path.is_file():
            return load_profile(as_path)
        builtins = builtin_profiles()
        if profile not in builtins:
            raise ValueError(f"unknown profile {profile!r}; known: {sorted(builtins)}")
        return builtins[profile]
    own = Path(model) / PROFILE_FILE
    if own.is_file():
        return load_profile(own)
    lowered = model.lower()
    for prof in builtin_profiles().values():
        if any(m in lowered for m in prof.match):
            return prof
    raise ValueError(
        f"no profile for model {model!r}: pass --profile NAME or add {PROFILE_FILE} to it"
    )


@dataclass(frozen=True, slots=True)
class PriorTurn:
    """An earlier turn of the same session: source text and its translation."""

    source: str
    translation: str
    source_lang: str
    target_lang: str


def render(
    profile: Profile,
    text: str,
    source: str,
    target: str,
    chat: ChatTemplater | None = None,
    *,
    context: Sequence[PriorTurn] = (),
    glossary: Mapping[str, str] | None = None,
    note: str | None = None,
) -> str:
    """Build the exact prompt string the engine receives.

    `context` (earlier turns), `note` (surrounding text) and `glossary` (term → required
    translation) are used only when the profile supports them.
    """
    if profile.template == "remote":  # the peer renders its own prompt
        return json.dumps({"text": text, "source": source, "target": target,
                           "glossary": dict(glossary or {})}, ensure_ascii=False)
    context = context if profile.supports_context else ()
    prefix = ""
    if note and profile.supports_context:
        prefix = profile.context_prefix.replace("{context}", note)
    if glossary and profile.supports_glossary:
        terms = ", ".join(f'"{s}" → "{t}"' for s, t in glossary.items())
        prefix += profile.glossary_prefix.replace("{terms}", terms)
    if profile.template == "completion":
        history = "".join(
            _user_text(profile, t.source, t.source_lang, t.target_lang) + t.translation + "\n"
            for t in context
        )
        return history + prefix + _user_text(profile, text, source, target)
    if chat is None:
        raise ValueError(f"profile {profile.name!r} needs the tokenizer's chat template")
    messages: list[dict[str, Any]] = []
    if profile.system:
        messages.append({"role": "system", "content": _user_text(profile, profile.system,
                                                                 source, target, raw=True)})
    for t in context:
        messages.append({"role": "user", "content": _user_message(profile, t.source,
                                                                  t.source_lang, t.target_lang)})
        messages.append({"role": "assistant", "content": t.translation})
    user = _user_message(profile, text, source, target)
    if prefix and isinstance(user, str):
        user = prefix + user
    messages.append({"role": "user", "content": user})
    return chat(messages, profile.chat_template_kwargs)


def _user_message(profile: Profile, text: str, source: str, target: str) -> Any:
    if profile.template == "structured":  # the chat template reads codes from the content
        return [{"type": "text", "source_lang_code": source, "target_lang_code": target,
                 "text": text}]
    return _user_text(profile, text, source, target)


def _user_text(profile: Profile, text: str, source: str, target: str, raw: bool = False) -> str:
    template, names = (text if raw else profile.prompt), dict(profile.languages)
    for variant in profile.variants:
        if source in variant.when or target in variant.when:
            template = template if raw else variant.prompt
            names.update(variant.languages)
            break
    fields = {
        "text": "" if raw else text,
        "src": source,
        "tgt": target,
        "SRC": names.get(source, source),
        "TGT": names.get(target, target),
    }
    return _fill(template, fields)


def _fill(template: str, fields: Mapping[str, str]) -> str:
    # Plain replacement, not str.format: user text may hold braces.
    out = template
    for key in ("SRC", "TGT", "src", "tgt"):
        out = out.replace("{" + key + "}", fields[key])
    return out.replace("{text}", fields["text"])


def model_arg(value: str, overrides: dict[str, Any]) -> str:
    """`--model demo` (a profile name with a bundled or default model) or a path/HF id."""
    if os.path.exists(value):
        return value
    profiles = builtin_profiles()
    if value in profiles:
        overrides.setdefault("profile", value)
        if value == "demo":
            return str(DEMO_DIR)
        return profiles[value].default_model or value
    return value
