"""`tolk bench load --url URL`: the load generator against a tolk server that is already
running (no engine is started here, so no baselines)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .clients import TolkSse, WsPool, http_url
from .runner import Progress
from .servers import busy_processes, machine_info, raise_fd_limit
from .suite import Plan, build_points
from .targets import target_doc, with_clients


class _NoRender:
    """Prompts are rendered by the server itself; the load path needs only the text."""

    profile = None

    @staticmethod
    def render(text: str, source: str, target: str) -> str:
        return ""


def server_info(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(http_url(url) + "/v1/languages", timeout=5) as resp:
            langs: Any = json.loads(resp.read())
    except (OSError, ValueError):
        langs = None
    return {"url": url, "languages": langs}


def run_load(url: str, plan: Plan, data: Path, transports: list[str],
             progress_enabled: bool = True) -> dict[str, Any]:
    raise_fd_limit()
    t0 = time.perf_counter()
    warm, points = build_points(_NoRender(), plan, data)  # type: ignore[arg-type]
    doc: dict[str, Any] = {
        "schema": 1, "tool": "tolk bench load",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "busy_at_start": busy_processes(exclude={os.getpid()}),
        "setup": {"server": server_info(url)}, "plan": plan.to_json(), "data": str(data),
        "targets": {},
    }

    async def ws(c: int) -> WsPool:
        return await WsPool.open(url, max(1, -(-c // plan.streams_per_conn)))

    async def sse(c: int) -> TolkSse:
        return TolkSse(url, c)

    with Progress(enabled=progress_enabled) as prog:
        for t in transports:
            name = {"ws": "tolk-ws", "sse": "tolk-sse"}[t.strip()]
            make: Any = ws if name == "tolk-ws" else sse
            results = asyncio.run(with_clients(make, warm, points, name, prog))
            doc["targets"][name] = target_doc(results, 0.0)
    doc["ratios"] = []
    doc["wall_s"] = time.perf_counter() - t0
    return doc
