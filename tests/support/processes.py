"""The vLLM engine-core processes under a `tolk serve` process."""

from __future__ import annotations

import psutil


def engine_core_pids(server_pid: int) -> list[int]:
    """Engine-core pids under the server, oldest first (several models start in order)."""
    out = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            name = " ".join(child.cmdline()) + child.name()
        except psutil.Error:
            continue
        if "EngineCore" in name or "VLLM::Engine" in name:
            out.append(child)
    return [p.pid for p in sorted(out, key=lambda p: (p.create_time(), p.pid))]
