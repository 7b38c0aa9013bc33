"""One explicit settings object: CLI flags > `TOLK_*` environment > TOML file > defaults."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tolk_server.models.routing import ModelSpec, RouteSpec
from tolk_server.stores.factory import check_url

# "echo" is the engine double (word-reversing echo, no model); "fake" is its old name.
EngineKind = Literal["vllm", "echo", "fake"]
AsrBackend = Literal["faster-whisper", "vllm", "off"]
# What a request is, for its engine priority: decided by the request, not by its transport.
RequestKind = Literal["translate", "live", "audio"]


class Priorities(BaseModel):
    """Engine priority by kind of request (lower runs first under priority scheduling).

    Conversation traffic (a plain request's first sentence, live updates, audio segments)
    goes before bulk work (the rest of a split input, a plain request over `bulk_chars`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    translate: int = 0  # a plain request (its first sentence, when split)
    live: int = 0  # a live request's hypotheses
    audio: int = 0  # an audio segment's translation, every sentence of it
    bulk: int = 1  # the rest of a split plain request; a long unsplit one
    bulk_chars: int = Field(1000, ge=1)

    def of(self, kind: RequestKind, chars: int, split: bool) -> tuple[int, int]:
        """(first sentence, the rest) for a request of this kind and length."""
        if kind != "translate":
            own = self.live if kind == "live" else self.audio
            return own, own
        if not split and chars > self.bulk_chars:
            return self.bulk, self.bulk
        return self.translate, self.bulk


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOLK_", extra="forbid", validate_default=True)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names besides loopback (DNS rebinding guard)."
    )
    log_level: str = "info"
    workers: int = Field(1, ge=1, le=64, description=(
        "Front-end processes on one engine (`tolk serve --workers N`, docs/scaling.md); "
        "more than one needs a shared store (sqlite or redis)."))
    worker_restarts: int = Field(8, ge=0, le=256, description=(
        "With workers > 1: how many times in all the supervisor restarts a crashed worker "
        "(each restart takes one spare engine-client slot)."))

    # Model and engine
    model: str | None = Field(None, description="Model directory, HF id, or profile name.")
    profile: str | None = Field(None, description="Prompt profile name or TOML path.")
    engine: EngineKind = "vllm"
    max_num_seqs: int = Field(64, ge=1, le=4096)
    max_model_len: int | None = Field(None, ge=32, description="Default: the model's own.")
    kv_cache_gib: int | None = Field(None, ge=1, description="KV cache size on CPU hosts (GiB).")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1)
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool | None = Field(
        None, description="No graph capture; default: on for CPU hosts (faster start)."
    )
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    load_format: str = "auto"
    seed: int = 0
    # Several models: `[[models]]` tables (or `--model NAME=PATH`) and `[[routes]]`.
    models: list[ModelSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    staged_submission: bool = Field(
        True, description="A split input's first sentence goes first; the rest follow its "
        "first output."
    )
    priority_scheduling: bool = Field(
        True, description="Schedule the engine by priority: live traffic before bulk work."
    )
    priorities: Priorities = Field(default_factory=Priorities)

    # Limits
    max_text_chars: int = Field(4000, ge=1)
    max_inflight_per_connection: int = Field(64, ge=1)
    max_inflight_total: int = Field(1024, ge=1)
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    max_markup_depth: int = Field(512, ge=1, description=(
        "HTML/XML input nesting more elements than this is refused (too_large); elements "
        "whose end tag HTML lets you leave out (p, li, td, ...) do not count."))
    markup_inline_chars: int = Field(8192, ge=0, description=(
        "Markup (and language detection) of an input longer than this is worked on by the "
        "markup workers, off the event loop; shorter ones inline."))
    markup_workers: int = Field(2, ge=1, description=(
        "Threads parsing big markup inputs and detecting their language (all requests)."))
    auth_timeout_s: float = Field(10.0, gt=0)
    send_queue_frames: int = Field(4096, ge=16)
    send_stall_s: float = Field(10.0, gt=0, description=(
        "A connection whose send queue has had no room, or whose socket write has not "
        "finished, for this long is closed (4001) and its requests are cancelled."))
    max_connections: int = Field(4096, ge=1)
    max_inflight_per_key: int = Field(256, ge=1)
    drain_timeout_s: float = Field(30.0, ge=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Any HTTP request body.")
    header_timeout_s: float = Field(10.0, gt=0, description="Request line and headers.")
    body_timeout_s: float = Field(30.0, gt=0, description="A whole HTTP request body.")
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    insecure_no_auth: bool = False
    public_metrics: bool = Field(False, description=(
        "With API keys configured, serve /metrics without a key (default: a key is needed)."))
    public_docs: bool = Field(False, description=(
        "With API keys configured, serve /docs and /openapi.json without a key "
        "(default: a key is needed)."))
    fake_token_delay_ms: float = Field(0.0, ge=0, description="Engine double only.")

    # Streaming features
    cache_entries: int = Field(4096, ge=0, description="Result cache size (0 turns it off).")
    session_max: int = Field(256, ge=1, description="Sessions kept per connection or key.")
    session_turns: int = Field(4, ge=0, description="Earlier turns sent as context.")
    session_ttl_s: float = Field(1800.0, gt=0)
    live_idle_s: float = Field(60.0, gt=0, description="A live request with no update expires.")
    live_force_prefix: bool = Field(True, description="Force the stable prefix on hypotheses.")
    live_hold_words: int = Field(1, ge=0, le=16, description="The newest hypothesis's last "
                                 "N words stay tentative (not committed) until final.")
    live_mask_words: int = Field(2, ge=0, le=16,
                                 description="Hide the last N tentative words (mask-k).")
    live_agree: int = Field(2, ge=2, le=8, description="LocalAgreement-n: N consecutive "
                            "hypotheses must agree before words become stable.")
    live_tentative_words: int = Field(1, ge=0, le=64, description="Show at most N tentative "
                                      "words, after the mask (0: no cap).")
    live_tentative: Literal["all", "extend", "none"] = Field(
        "all", description="When tentative text is shown: always, only when it extends the "
        "shown text, or never (stable text only).")
    key_file: Path = Field(
        default_factory=lambda: Path(os.environ.get("TOLK_HOME", "~/.tolk")).expanduser()
        / "keys.json"
    )
    glossary_file: Path = Field(
        default_factory=lambda: Path(os.environ.get("TOLK_HOME", "~/.tolk")).expanduser()
        / "glossaries.json"
    )
    # State stores (keys, quotas, glossaries, session context): docs/scaling.md
    store: str = Field("memory", description=(
        "Where shared state lives: memory (one process; keys and glossaries in key_file and "
        "glossary_file), sqlite:///PATH (the processes of one host) or redis://HOST:PORT/DB, "
        "rediss://… (several hosts)."))
    store_failure: Literal["closed", "open"] = Field("closed", description=(
        "When the store does not answer: closed refuses requests (503), open serves them on "
        "this process's own limits."))

    # Speech (audio streams on /v1/stream)
    asr_backend: AsrBackend = "faster-whisper"
    asr_model: str | None = Field(
        None, description="faster-whisper model dir (default: the bundled tiny.en), or HF "
        "Whisper weights with asr_backend=vllm.")
    asr_threads: int = Field(2, ge=1, description="CPU threads of the recogniser.")
    asr_gpu_memory_utilization: float = Field(
        0.10, gt=0, lt=1, description="asr_backend=vllm on a GPU: the recogniser's share of "
        "GPU memory, taken from gpu_memory_utilization's.")
    asr_kv_cache_gib: int = Field(1, ge=1, description="asr_backend=vllm on a CPU host: the "
                                  "recogniser's KV cache (GiB).")
    asr_workers: int = Field(1, ge=1, description="Phrases recognised at once (all streams).")
    audio_max_s: float = Field(4 * 3600.0, gt=0, description="Longest audio stream.")
    audio_idle_s: float = Field(10.0, gt=0, description="No audio nor audio_end: error.")
    audio_max_speed: float = Field(1.5, gt=0, description="Audio seconds per wall second.")
    audio_burst_s: float = Field(5.0, ge=0, description="Audio allowed ahead of real time.")
    max_audio_streams: int = Field(16, ge=1, description="Audio streams open at once "
                                   "(all connections and keys).")
    vad_silence_ms: int = Field(400, ge=32, description="A pause this long ends a phrase.")
    max_segment_s: float = Field(15.0, gt=1, description="Longest phrase.")

    @field_validator("api_keys", "allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        return check_url(v)

    @model_validator(mode="after")
    def _asr_weights(self) -> Settings:
        if self.asr_backend == "vllm" and not self.asr_model:
            raise ValueError("asr_backend=vllm needs asr_model: a directory of HF-format "
                             "Whisper weights (--asr-model PATH)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = settings_cls.model_config.get("toml_file") or os.environ.get("TOLK_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            path = Path(str(toml_path))
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {path}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build settings; `overrides` are CLI flags (None means "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not config_file:
        return Settings(**given)

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})

    return FileSettings(**given)
