"""The vLLM that `tolk serve --workers N` relies on (adapters/vllm_host.py): its version, the
names and signatures of vLLM's multi-API-server pieces, and the engine-core protocol facts
the restarts are built on. Fast: no engine starts; ZMQ sockets on loopback IPC only.

On another vLLM this fails loudly, naming what changed: re-read `run_multi_api_server`
(vllm/entrypoints/cli/serve.py) and adapters/vllm_host.py before moving the pin."""

from __future__ import annotations

import inspect
import uuid
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm")
zmq = pytest.importorskip("zmq")

from tolk_server.adapters.vllm_host import (  # noqa: E402
    VLLM_VERSION,
    _close_pending,
    installed_vllm,
    vllm_refusal,
)


def _params(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def test_the_pinned_vllm_is_installed() -> None:
    assert vllm.__version__ == VLLM_VERSION, (
        f"tolk serve --workers is pinned to vLLM {VLLM_VERSION}; found {vllm.__version__}")
    assert installed_vllm() == vllm.__version__
    assert vllm_refusal() is None


def test_another_vllm_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tolk serve --workers 2` on an unverified vLLM stops with the reason, before it starts."""
    from tolk_server.app import supervisor
    from tolk_server.config import Settings

    monkeypatch.setattr("tolk_server.adapters.vllm_host.installed_vllm", lambda: "0.26.0")
    why = supervisor.refusal(Settings(workers=2, store="sqlite:///x.db"))
    assert why is not None and "0.32.0" in why and "0.26.0" in why
    assert supervisor.refusal(Settings(workers=2, store="sqlite:///x.db", engine="echo")) is None
    remote = Settings(workers=2, store="sqlite:///x.db",
                      models=[{"name": "big", "url": "openai+http://127.0.0.1:9/v1"}])
    assert supervisor.refusal(remote) is None  # no local engine: each worker has its adapter
    local = Settings(workers=2, store="sqlite:///x.db", models=[{"name": "a", "path": "/m"}])
    assert "[[models]]" in (supervisor.refusal(local) or "")


def test_the_multi_api_server_pieces_tolk_calls() -> None:
    from vllm.config.parallel import ParallelConfig
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.network_utils import ZmqListener, make_zmq_listener, make_zmq_socket
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.utils import (
        CoreEngineLaunch,
        CoreEngineProcManager,
        EngineZmqListeners,
        bind_engine_zmq_listeners,
        launch_core_engines,
    )
    from vllm.v1.executor import Executor

    assert {"client_addresses", "client_count", "client_index",
            "disable_log_stats"} <= _params(AsyncLLM.from_vllm_config)
    assert {"vllm_config", "num_api_servers"} <= _params(bind_engine_zmq_listeners)
    assert list(inspect.signature(launch_core_engines).parameters) == [
        "vllm_config", "executor_class", "log_stats", "addresses"]
    assert {"inputs", "outputs"} <= set(EngineZmqListeners.__dataclass_fields__)
    assert callable(EngineZmqListeners.cleanup)
    assert isinstance(inspect.getattr_static(EngineZmqListeners, "addresses"), property)
    assert {"engine_manager", "coordinator", "addresses"} <= set(
        CoreEngineLaunch.__dataclass_fields__)
    assert "timeout" in _params(CoreEngineProcManager.shutdown)
    assert "processes" in inspect.getsource(CoreEngineProcManager.__init__)
    assert {"address", "socket"} <= set(ZmqListener.__dataclass_fields__)
    assert "listener" in _params(make_zmq_socket)
    assert {"path", "socket_type"} <= _params(make_zmq_listener)
    assert callable(Executor.get_class)
    # the client's rank and the number of clients, as `vllm serve` sets them
    for name in ("_api_process_count", "_api_process_rank"):
        assert name in AsyncEngineArgs.__dataclass_fields__
        assert name in ParallelConfig.__dataclass_fields__


def test_the_client_reads_the_addresses_tolk_hands_it() -> None:
    from vllm.v1.engine.core_client import MPClient

    src = inspect.getsource(MPClient.__init__)
    for key in ("input_address", "output_address", "input_listener", "output_listener",
                "stats_update_address"):
        assert f'"{key}"' in src, key


def test_the_engine_greets_each_client_once_and_signals_its_death() -> None:
    """Why a restarted worker takes a fresh slot: the READY greeting is sent once, at the
    engine's start, and the client waits for it; and the message `announce_dead` sends."""
    from vllm.v1.engine.core import EngineCoreProc
    from vllm.v1.engine.core_client import BackgroundResources, MPClient

    greet = inspect.getsource(EngineCoreProc.process_input_sockets)
    assert greet.count("input_socket.send(ready_payload)") == 1
    assert greet.index("input_socket.send(ready_payload)") < greet.index("while True:")
    assert "VLLM_ENGINE_READY_TIMEOUT_S" in inspect.getsource(MPClient.__init__)
    assert EngineCoreProc.ENGINE_CORE_DEAD == b"ENGINE_CORE_DEAD"
    assert "ENGINE_CORE_DEAD" in inspect.getsource(BackgroundResources.validate_alive)


def _pair(ctx: Any, base: Path) -> tuple[Any, Any, str]:
    from vllm.utils.network_utils import make_zmq_listener, make_zmq_socket

    path = f"ipc://{base}/{uuid.uuid4()}"
    listener = make_zmq_listener(path, zmq.ROUTER)
    listener.socket.setblocking(False)
    dealer = make_zmq_socket(ctx, path, zmq.DEALER, identity=b"\x00\x00", bind=False)
    return listener, dealer, path


def test_a_spare_slot_keeps_its_greeting_and_a_reused_one_gets_none(tmp_path: Path) -> None:
    """ZMQ as the engine core uses it: a greeting sent to a listener nobody has adopted yet
    waits in the sender's queue, through the supervisor's flushes, for the adopting client;
    a client that adopts a slot whose first client died gets no greeting."""
    from vllm.utils.network_utils import make_zmq_listener, make_zmq_socket

    with zmq.Context() as ctx:
        listener, dealer, path = _pair(ctx, tmp_path)
        dealer.send(b"READY")
        for _ in range(3):
            assert dealer.poll(300, zmq.POLLIN) == 0
            _close_pending(listener.socket)  # the supervisor's flush of an unused slot
        first = make_zmq_socket(ctx, path, zmq.ROUTER, bind=True, listener=listener.socket)
        assert first.poll(5000)
        assert first.recv_multipart() == [b"\x00\x00", b"READY"]
        first.close(linger=0)  # its worker dies
        Path(path.removeprefix("ipc://")).unlink()
        again = make_zmq_listener(path, zmq.ROUTER)
        second = make_zmq_socket(ctx, path, zmq.ROUTER, bind=True, listener=again.socket)
        assert second.poll(1500) == 0, "the engine greeted a reused slot"
        for s in (second, dealer):
            s.close(linger=0)
