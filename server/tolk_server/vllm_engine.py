"""The vLLM adapter: the only module that imports vLLM.

One in-process `AsyncLLM` with continuous batching; outputs stream as DELTA.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

from .config import Settings
from .engine import Delta, EngineError, EngineInfo, GenerationParams, RequestRejected
from .engine_shield import call_shielded, stop_engine_processes

ENGINE_DRAIN_MARGIN_S = 5  # the engine core outlasts the server's own drain


def has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def engine_args_dict(settings: Settings, model: str) -> dict[str, Any]:
    """The engine settings, as `AsyncEngineArgs` keywords (also shown by `tolk info`)."""
    args: dict[str, Any] = {
        "model": model,
        "max_num_seqs": settings.max_num_seqs,
        "max_model_len": settings.max_model_len,
        "dtype": settings.dtype,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "enforce_eager": (
            settings.enforce_eager if settings.enforce_eager is not None else not has_cuda()
        ),
        "tensor_parallel_size": settings.tensor_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "load_format": settings.load_format,
        "seed": settings.seed,
        "disable_log_stats": True,
        # A stop signal that reaches the engine core (tolk's SIGINT after its drain; a
        # Ctrl-C in a terminal, sent to the whole group) lets in-flight requests finish.
        "shutdown_timeout": math.ceil(settings.drain_timeout_s) + ENGINE_DRAIN_MARGIN_S,
    }
    if has_cuda():
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return args


class VllmEngine:
    def __init__(self, settings: Settings, model: str) -> None:
        self.settings = settings
        self.model = model
        self.info = EngineInfo(name="vllm", model=model, version="?")
        self._llm: Any = None
        self._tokenizer: Any = None
        self._dead = False

    async def start(self) -> None:
        if not has_cuda():
            kv = self.settings.kv_cache_gib or 2
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv))
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = engine_args_dict(self.settings, self.model)
        self.info = EngineInfo(name="vllm", model=self.model, version=vllm.__version__,
                               settings=kwargs)
        args = AsyncEngineArgs(**kwargs)
        # Engine start takes tens of seconds; keep the event loop (and /health) responsive.
        # Started with SIGTERM blocked: a group SIGTERM must not stop it mid-drain.
        self._llm = await asyncio.to_thread(call_shielded, AsyncLLM.from_engine_args, args)

    async def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        llm = self._llm
        if llm is None or self._dead:
            raise EngineError("engine is not running")
        sampling = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            repetition_penalty=params.repetition_penalty,
            stop=list(params.stop) or None,
            ignore_eos=params.ignore_eos,
            seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        try:
            (engine_input,) = await llm.renderer.render_cmpl_async([{"prompt": prompt}])
            async with aclosing(llm.generate(engine_input, sampling, request_id)) as outputs:
                async for out in outputs:
                    comp = out.outputs[0]
                    yield Delta(comp.text, len(comp.token_ids), comp.finish_reason)
        except (VLLMClientError, ValueError) as exc:  # validation of this request only
            text = str(exc)
            too_long = "context length" in text or "maximum model length" in text
            raise RequestRejected("too_large" if too_long else "bad_request", text) from exc
        except EngineDeadError as exc:
            self._dead = True
            raise EngineError(f"engine died: {exc}") from exc
        except EngineGenerateError as exc:
            raise EngineError(f"generation failed: {exc.__cause__ or exc}") from exc

    def running(self) -> int:
        return 0 if self._llm is None else int(self._llm.get_num_unfinished_requests())

    @property
    def ready(self) -> bool:
        return self._llm is not None and not self.dead

    @property
    def dead(self) -> bool:
        if self._llm is not None and bool(self._llm.errored):
            self._dead = True
        return self._dead

    def chat_template(self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> str:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **kwargs
        )
        return str(text)

    async def shutdown(self) -> None:
        if self._llm is not None:
            stop_engine_processes()
            self._llm.shutdown()
            self._llm = None
