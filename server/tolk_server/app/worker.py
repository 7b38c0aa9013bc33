"""One worker process of `tolk serve --workers N` (started by `app/supervisor.py`).

A worker is today's server (the same app, drain and limits) on the listening socket the
supervisor bound for it, with an engine-core client of the supervisor's engine
(`EngineSlot`) or, with the engine double, an echo engine of its own. Its answers carry
`x-tolk-worker: INDEX` (every HTTP response and WebSocket handshake: one of uvicorn's
default headers, so it costs nothing per frame).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

import uvicorn

from tolk_server.adapters.vllm import EngineSlot, VllmEngine
from tolk_server.app.lifecycle import DrainingServer
from tolk_server.app.wiring import create_app, model_path
from tolk_server.config import Settings
from tolk_server.engine.interface import Engine
from tolk_server.state import ServerState
from tolk_server.transports.uvicorn_bounds import uvicorn_config

WORKER_HEADER = "x-tolk-worker"
BOOT_ERROR = 3  # the app could not be built (a configuration error): not worth a restart
GAUGE_EVERY_TICKS = 5  # uvicorn ticks every 0.1 s: the engine's request count twice a second


@dataclass
class WorkerSpec:
    """What a worker gets from the supervisor (pickled into a spawned process)."""

    index: int  # 0..N-1, kept across restarts
    settings: dict[str, Any]  # Settings as keywords (a config file's class is not picklable)
    sock: socket.socket  # its listening socket (SO_REUSEPORT), bound by the supervisor
    slot: EngineSlot | None  # its engine-core client slot (None: the engine double)
    drain: Event  # set by the supervisor: drain, then exit
    supervisor: int  # the supervisor's pid: a worker whose supervisor is gone drains


class WorkerServer(DrainingServer):
    """The drain starts on the supervisor's request too (not a signal: a group SIGTERM may
    reach this process as well, and a second signal means "stop now")."""

    def __init__(self, config: uvicorn.Config, state: ServerState, spec: WorkerSpec,
                 engine: Engine | None) -> None:
        super().__init__(config, state, state.settings.drain_timeout_s)
        self.spec = spec
        self.engine = engine

    async def on_tick(self, counter: int) -> bool:
        if self.spec.drain.is_set() or os.getppid() != self.spec.supervisor:
            self.request_drain()
        if counter % GAUGE_EVERY_TICKS == 0:  # each worker reports its own share
            models = self.state.models.default
            self.state.metrics.engine_running.set(sum(m.engine.running() for m in models))
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.engine is not None:  # the client only: the supervisor stops the engine
            await self.engine.shutdown()


def run_worker(spec: WorkerSpec) -> None:
    """The spawned process's entry point."""
    settings = Settings(**spec.settings)
    logging.basicConfig(level=settings.log_level.upper(),
                        format=f"%(levelname)s %(name)s[w{spec.index}]: %(message)s")
    engine = None
    try:
        if spec.slot is not None:
            engine = VllmEngine(settings, model_path(settings), slot=spec.slot)
        app = create_app(settings, engine=engine)
    except Exception:
        logging.getLogger("tolk").exception("worker %d: the app could not be built", spec.index)
        sys.exit(BOOT_ERROR)
    state: ServerState = app.state.tolk
    state.metrics.worker_up.labels(str(spec.index)).set(1)
    config = uvicorn_config(app, settings, headers=[(WORKER_HEADER, str(spec.index))])
    server = WorkerServer(config, state, spec, engine)
    server.run(sockets=[spec.sock])
    if state.fatal_error:
        print(f"tolk worker {spec.index}: exiting after a fatal error: {state.fatal_error}",
              file=sys.stderr)
        sys.exit(1)
