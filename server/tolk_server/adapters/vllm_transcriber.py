"""Whisper served by vLLM, the GPU recogniser: besides `vllm_engine`, the one module importing vLLM.

Customer-supplied HF-format Whisper weights (`--asr-model PATH`) run in a second in-process
`AsyncLLM`, beside the translation engine, so phrases from all streams are batched on the
accelerator. Each phrase is one encoder-decoder request: the audio as multi-modal data for the
encoder, Whisper's task prompt for the decoder (as vLLM's own transcription API builds it).
With `source: "auto"` on a multilingual model, a first one-token request, restricted to the
language tokens, detects the language.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from contextlib import aclosing
from pathlib import Path
from typing import Any

from tolk_server.adapters.shield import call_shielded, stop_engine_processes
from tolk_server.adapters.vllm import (
    ENGINE_DRAIN_MARGIN_S,
    EngineLife,
    core_processes,
    cpu_kv_cache_space,
    has_cuda,
)
from tolk_server.audio.pcm import TARGET_RATE, Samples
from tolk_server.audio.transcriber import Transcript
from tolk_server.config import Settings

SOT, TRANSCRIBE, NO_TIMESTAMPS = "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"
MULTILINGUAL_VOCAB = 51865  # Whisper's English-only checkpoints have 51864 tokens


def is_multilingual(model_dir: Path) -> bool:
    """What the weights say: HF writes `is_multilingual`; else the vocabulary size tells."""
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        flag = json.loads(gen.read_text()).get("is_multilingual")
        if isinstance(flag, bool):
            return flag
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("vocab_size", 0)) >= MULTILINGUAL_VOCAB


def decoder_prompt(language: str | None, multilingual: bool) -> str:
    """Whisper's task prompt. English-only models take no language nor task token."""
    if not multilingual:
        return SOT + NO_TIMESTAMPS
    return f"{SOT}<|{language or 'en'}|>{TRANSCRIBE}{NO_TIMESTAMPS}"


def whisper_prompt(samples: Samples, decoder: str) -> dict[str, Any]:
    """An explicit encoder-decoder prompt: audio for the encoder, text for the decoder."""
    return {"encoder_prompt": {"prompt": "",
                               "multi_modal_data": {"audio": (samples, TARGET_RATE)}},
            "decoder_prompt": {"prompt": decoder}}


def engine_args(settings: Settings, model: str) -> dict[str, Any]:
    """`AsyncEngineArgs` keywords of the recogniser's engine (its own, small, share)."""
    config = json.loads((Path(model) / "config.json").read_text())
    audio_tokens = int(config.get("max_source_positions", 1500))  # one phrase, unchunked
    args: dict[str, Any] = {
        "model": model, "dtype": settings.dtype, "seed": settings.seed,
        "max_num_seqs": max(4, settings.asr_workers),
        "max_num_batched_tokens": max(4096, 2 * audio_tokens),
        "enforce_eager": (settings.enforce_eager if settings.enforce_eager is not None
                          else not has_cuda()),
        "disable_log_stats": True,
        "shutdown_timeout": math.ceil(settings.drain_timeout_s) + ENGINE_DRAIN_MARGIN_S,
        "limit_mm_per_prompt": {"audio": 1},
    }
    if has_cuda():
        args["gpu_memory_utilization"] = settings.asr_gpu_memory_utilization
    return args


class VllmWhisper(EngineLife):
    """The `AsyncTranscriber` on vLLM. `start` before use (the server's lifespan does it)."""

    def __init__(self, settings: Settings, model: str) -> None:
        if not (Path(model) / "config.json").is_file():
            raise FileNotFoundError(f"asr_model {model}: no config.json here; pass a directory "
                                    "of HF-format Whisper weights")
        self.settings = settings
        self.model = model
        self.name = f"vllm:{Path(model).name}"
        self.multilingual = is_multilingual(Path(model))
        self.languages: tuple[str, ...] = () if self.multilingual else ("en",)
        self._llm: Any = None
        self._langs: dict[int, str] = {}  # language token id -> code
        self._lang_ids: list[int] = []
        self._max_tokens = 0
        self._ids = itertools.count()
        self._dead = False
        self._stopped = False

    async def start(self) -> None:
        if self._llm is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**engine_args(self.settings, self.model))
        with cpu_kv_cache_space(self.settings.asr_kv_cache_gib):
            self._llm = await asyncio.to_thread(call_shielded, AsyncLLM.from_engine_args, args)
        tokenizer = self._llm.renderer.get_tokenizer()
        from vllm.model_executor.models.whisper import WhisperForConditionalGeneration

        ids = WhisperForConditionalGeneration.get_language_token_ids(tokenizer)
        codes = WhisperForConditionalGeneration.supported_languages
        self._langs = {i: c for i, c in zip(ids, codes, strict=True)
                       if i is not None and i != tokenizer.unk_token_id}
        self._lang_ids = list(self._langs)
        # Whisper's decoder window (max_target_positions) less the task prompt.
        self._max_tokens = int(self._llm.model_config.max_model_len) - 8

    async def transcribe(self, samples: Samples, language: str | None = None) -> Transcript:
        lang = None if language in (None, "auto") else language
        if not self.multilingual:
            lang = "en"
        elif lang is None:
            lang = await self._detect(samples)  # None: transcribed as English, not said so
        out = await self._run(whisper_prompt(samples, decoder_prompt(lang, self.multilingual)),
                              max_tokens=self._max_tokens)
        return Transcript(" ".join(str(out.text).split()), lang)

    async def _detect(self, samples: Samples) -> str | None:
        """The language token Whisper predicts right after <|startoftranscript|> (None: it
        predicted none of them)."""
        out = await self._run(whisper_prompt(samples, SOT), max_tokens=1,
                              allowed_token_ids=self._lang_ids)
        first = list(out.token_ids)[:1]
        return self._langs.get(int(first[0])) if first else None

    async def _run(self, prompt: dict[str, Any], **sampling: Any) -> Any:
        from vllm import SamplingParams
        from vllm.renderers.inputs.preprocess import parse_model_prompt
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        llm = self._llm
        if llm is None or self.dead:
            raise RuntimeError("the speech recognition engine is not running")
        params = SamplingParams(temperature=0.0, output_kind=RequestOutputKind.FINAL_ONLY,
                                **sampling)
        rid = f"asr-{next(self._ids)}"
        try:
            (engine_input,) = await llm.renderer.render_cmpl_async(
                [parse_model_prompt(llm.model_config, prompt)])
            last = None
            # Closed on cancel (a closed stream): vLLM then aborts the request.
            async with aclosing(llm.generate(engine_input, params, rid)) as outputs:
                async for out in outputs:
                    last = out
        except EngineDeadError:
            self._dead = True
            raise
        if last is None:
            raise RuntimeError("the speech recognition engine returned nothing")
        return last.outputs[0]

    def describe(self) -> dict[str, Any]:
        state = ("stopped" if self._stopped else "dead" if self.dead
                 else "ready" if self.ready else "loading")
        return {"backend": "vllm", "model": self.model, "state": state,
                "multilingual": self.multilingual}

    async def shutdown(self) -> None:
        self._stopped = True
        if self._llm is not None:
            stop_engine_processes(core_processes(self._llm))  # its own, not the translator's
            self._llm.shutdown()
            self._llm = None
