"""Shield vLLM's engine processes from a SIGTERM sent to the whole group.

systemd's default `KillMode=control-group` signals every process of the unit, and
`kill -- -PGID` every process of the group. vLLM's engine core and its workers stop on
SIGTERM at once, so every request in flight would end in `engine_error` while the server
itself drains. So the engine is started from a thread that blocks SIGTERM: the blocked
mask is inherited across fork and exec (vLLM spawns its processes), and a SIGTERM for
the group stays pending in the engine's processes. They stay in the server's process
group, so a SIGKILL to the group still takes them down.

The server stops the engine after its drain with SIGINT, which vLLM's engine core
handles like SIGTERM (a graceful stop; its workers follow through their death pipes).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import TypeVar

T = TypeVar("T")
SHIELDED = frozenset({signal.SIGTERM})


def call_shielded(fn: Callable[..., T], *args: object) -> T:
    """Call `fn` with SIGTERM blocked in this thread (run it in a worker thread)."""
    # Starting multiprocessing's resource tracker unblocks SIGTERM in the calling
    # thread: start it first, unshielded (it ignores SIGTERM by itself).
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SHIELDED)
    try:
        return fn(*args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def engine_core_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("EngineCore")]


def stop_engine_processes(
        procs: list[multiprocessing.process.BaseProcess] | None = None) -> None:
    """Ask the engine core processes (default: all of them) to stop; SIGTERM would stay
    pending there."""
    for proc in engine_core_processes() if procs is None else procs:
        if proc.pid is not None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

# vLLM gives its engine processes this long between SIGTERM and SIGKILL on shutdown
# (vllm/v1/utils.py `shutdown`); part of the stop budget in docs/operations.md.
ENGINE_TEARDOWN_S = 5.0
