"""Process lifecycle: drain on SIGTERM, exit when the engine dies, renew stream leases,
watch a shared store while it is down.

`DrainingServer` is uvicorn's server with two changes: the first SIGTERM/SIGINT starts
a drain (refuse new work, let in-flight requests finish up to the drain timeout, then
close WebSockets with 1012) instead of closing connections at once; and once the engine is
ready, the start-up heap is frozen out of the cyclic garbage collector (`gc.freeze`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from types import FrameType

import uvicorn

from tolk_server.state import ServerState
from tolk_server.stores.records import LEASE_TTL_S

log = logging.getLogger("tolk")
SERVICE_RESTART = 1012
ENGINE_EXIT_GRACE_S = 0.5


async def drain(state: ServerState, timeout_s: float) -> None:
    state.draining = True
    log.info("draining: %d request(s) in flight", state.admission.inflight)
    deadline = time.monotonic() + timeout_s
    while state.admission.inflight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if state.admission.inflight:
        log.warning("drain timeout: %d request(s) still in flight", state.admission.inflight)
    # Requests still running get a terminal `shutting_down` frame before the 1012 close.
    await asyncio.gather(*(c.shut_down("the server is shutting down; retry")
                           for c in list(state.connections)), return_exceptions=True)


async def watch_engine(state: ServerState, period_s: float = 0.2) -> None:
    """Once the engine is up, notice its death: refuse work, then exit non-zero."""
    await state.engine_ready.wait()
    models = state.models
    dead: set[str] = set()
    while not models.all_dead:
        await asyncio.sleep(period_s)
        for m in models.default:  # one dead model of several: degraded, not fatal
            if m.engine.dead and m.name not in dead:
                dead.add(m.name)
                log.error("model %s: its engine died; its routes fall back", m.name)
    await asyncio.sleep(ENGINE_EXIT_GRACE_S)  # a group signal reaches the server too
    if state.draining:
        # The engine core got a stop signal too (e.g. Ctrl-C sends SIGINT to the whole
        # group) and finished its requests before exiting: a planned stop, not a crash.
        log.info("the engine stopped during the drain")
        return
    state.fatal_error = "the engine died"
    log.error("the engine died; failing in-flight requests and exiting")
    await asyncio.sleep(1.0)  # let the engine_error frames reach their clients
    exit_process(state)


async def renew_leases(state: ServerState, period_s: float = LEASE_TTL_S / 3) -> None:
    """Keep this process's stream leases alive in the usage store (a crashed process's
    expire), and add the characters counted while the store was away."""
    while True:
        await asyncio.sleep(period_s)
        try:
            state.admission.keys.renew()
        except Exception:  # never let the renewal loop die
            log.exception("renewing stream leases failed")


async def watch_store(state: ServerState, period_s: float = 1.0) -> None:
    """While a shared store is down, try it once a second in a thread, so that no request
    waits on it meanwhile (they fail fast) and the server notices at once when it is back."""
    health = state.store_health
    if not health.shared:
        return
    health.watched = True
    try:
        while True:
            await asyncio.sleep(period_s)
            if not health.up:
                await asyncio.to_thread(health.check)
    finally:
        health.watched = False


def exit_process(state: ServerState) -> None:
    if state.request_exit is not None:
        state.request_exit()
    else:  # no server object (e.g. under a test client): ask the process to stop
        os.kill(os.getpid(), signal.SIGTERM)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_timeout_s: float):
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None
        self._heap_frozen = False
        state.request_exit = self._exit_now

    def _exit_now(self) -> None:
        self.should_exit = True

    def request_drain(self) -> None:
        """Start the drain, as a first SIGTERM does (a no-op once it has started)."""
        if not (self._drain_requested or self.should_exit):
            self._drain_requested = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested or self.should_exit:  # a second signal: stop now
            self.force_exit = True
            self.should_exit = True
        else:
            self._drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        if not self._heap_frozen and self.state.engine_ready.is_set():
            # Modules, schemas, the engine's objects: long-lived. Frozen (O(1)), a full
            # collection, set off by a request that allocates much (a long HTML input
            # parsed by a worker), walks only what requests made: ~5 ms, not ~40-50 ms
            # with every thread, the event loop's too, stopped.
            gc.freeze()
            self._heap_frozen = True
        if self._drain_requested and self._drain_task is None:
            self._drain_task = asyncio.create_task(drain(self.state, self.drain_timeout_s))
        if self._drain_task is not None and self._drain_task.done():
            self.should_exit = True
        return await super().on_tick(counter)
