"""`tolk serve --workers N`: N front-end processes on one engine (docs/scaling.md).

The supervisor binds the listening sockets (one per worker, SO_REUSEPORT on one port: the
kernel spreads new connections over them, and a connection stays with the worker that
accepted it, WebSocket, live and audio requests included), launches the engine core once
(`adapters/vllm_host.py`, vLLM's own multi-API-server mechanism) and spawns the workers
(`app/worker.py`). It is on no request's path.

- SIGTERM or SIGINT: every worker drains as a single server does; then the engine stops.
  A second signal stops the workers at once.
- A worker that dies is restarted, after a backoff, on a fresh engine-client slot while the
  engine serves the others; `worker_restarts` restarts in all. Its socket is closed at
  once, so that new connections go to the live workers meanwhile.
- The engine dies: every worker's requests end in `engine_error`, then all stop (exit 1).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from tolk_server.app.wiring import model_path
from tolk_server.app.worker import BOOT_ERROR, WorkerSpec, run_worker
from tolk_server.config import Settings
from tolk_server.ops.metrics import MULTIPROC_DIR_ENV, process_exited

log = logging.getLogger("tolk")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # by crashes in a row
STABLE_S = 60.0  # a worker that ran this long starts its backoff again
FLUSH_EVERY_S = 60.0
STOP_MARGIN_S = 10.0  # beyond the drain timeout, before a worker is killed
ENGINE_STOP_S = 10.0


def refusal(settings: Settings) -> str | None:
    """Why `--workers N` cannot run with these settings (None: it can)."""
    if settings.workers <= 1:
        return None
    scheme = urlsplit(settings.store).scheme or settings.store
    if scheme == "memory":
        return ("--workers N>1 needs a store that the workers share: every piece of state in "
                "`memory` (quotas, keys, glossaries, sessions) would be per worker. Use "
                "--store sqlite:///PATH (one host) or --store redis://HOST:PORT/DB "
                "(or TOLK_STORE).")
    if any(m.url is None for m in settings.models):
        return ("--workers N>1 shares one local engine (--model PATH): [[models]] entries with "
                "a `path` are not supported with it (remote ones, `url`, are)")
    if settings.asr_backend == "vllm":
        return "--workers N>1 does not support asr_backend=vllm (one Whisper engine each)"
    if shares_an_engine(settings):
        from tolk_server.adapters.vllm_host import vllm_refusal

        return vllm_refusal()
    return None


def shares_an_engine(settings: Settings) -> bool:
    """One local vLLM engine for every worker; else (the engine double, or only remote
    models: another tolk server, an OpenAI-compatible vLLM deployment) each worker has its
    own adapter."""
    return settings.engine == "vllm" and not settings.models


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, SO_REUSEPORT, as `vllm serve` binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait here while a worker starts
    sock.set_inheritable(False)
    return sock


@dataclass
class Worker:
    index: int
    sock: socket.socket | None = None
    proc: BaseProcess | None = None
    slot: int | None = None  # its engine-client slot
    started: float = 0.0
    crashes: int = 0  # in a row
    restart_at: float | None = None
    gone: bool = False  # no restarts left


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.drain: Event = self.ctx.Event()
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.restarts_left = settings.worker_restarts
        self.host: Any = None  # adapters.vllm_host.EngineHost (None: the engine double)
        self.port = settings.port
        self.signals = 0
        self.boot_failed = False  # a worker could not build its app: restarts would not help
        self.metrics_dir = tempfile.mkdtemp(prefix="tolk-metrics-")  # mode 0700

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        os.environ[MULTIPROC_DIR_ENV] = self.metrics_dir  # before any worker or engine
        try:
            self._start()
            return self._watch()
        except Exception as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._stop_all()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.drain.set()
        if self.signals > 1:  # "stop now": a second signal to each worker does that
            for w in self.workers:
                if w.proc is not None and w.proc.pid is not None and w.proc.is_alive():
                    os.kill(w.proc.pid, signal.SIGTERM)

    def _start(self) -> None:
        s = self.settings
        for w in self.workers:
            w.sock = listening_socket(s.host, self.port)
            self.port = w.sock.getsockname()[1]  # port 0: the others bind the one it got
        if shares_an_engine(s):
            from tolk_server.adapters.vllm_host import EngineHost

            self.host = EngineHost(s, model_path(s), s.workers + s.worker_restarts)
            self.host.start()
        if self.drain.is_set():  # stopped while the engine was starting
            return
        for w in self.workers:
            self._spawn(w)
        log.info("%d workers on http%s://%s:%d", s.workers,
                 "s" if s.ssl_certfile else "", s.host, self.port)

    def _spawn(self, w: Worker) -> None:
        slot = None
        if self.host is not None:
            slot = self.host.take_slot()
            assert slot is not None, "no engine-client slot left"
            w.slot = slot.index
        if w.sock is None:
            w.sock = listening_socket(self.settings.host, self.port)
        spec = WorkerSpec(w.index, self.settings.model_dump(), w.sock, slot, self.drain,
                          os.getpid())
        w.proc = self.ctx.Process(target=run_worker, args=(spec,), name=f"TolkWorker_{w.index}")
        w.proc.start()
        w.started, w.restart_at = time.monotonic(), None
        log.info("worker %d: pid %s, engine-client slot %s", w.index, w.proc.pid, w.slot)

    def _watch(self) -> int:
        """Until a signal (drain: 0) or the engine's death (1); restart workers meanwhile."""
        flushed = time.monotonic()
        while not self.drain.is_set():
            host = self.host
            if host is not None and (host.error is not None or (host.ready.is_set()
                                                                 and host.dead)):
                return self._engine_lost()
            self._reap()
            if self.boot_failed:
                return self._stop_workers("a worker could not start (its error is above)")
            self._restart_due()
            if all(w.gone for w in self.workers):
                log.error("no worker left (no restarts left): stopping")
                return 1
            if host is not None and time.monotonic() - flushed > FLUSH_EVERY_S:
                host.flush()
                flushed = time.monotonic()
            procs = [w.proc.sentinel for w in self.workers if w.proc is not None]
            wait(procs, timeout=0.2)
        return self._drain_all()

    def _reap(self) -> None:
        for w in self.workers:
            if w.proc is None or w.proc.exitcode is None:
                continue
            code, pid = w.proc.exitcode, w.proc.pid
            self._forget(w)
            if code == BOOT_ERROR:
                self.boot_failed = True
                continue
            ran = time.monotonic() - w.started
            w.crashes = 1 if ran >= STABLE_S else w.crashes + 1
            if self.restarts_left <= 0:
                w.gone = True
                log.error("worker %d (pid %s) exited with %s; no restarts left", w.index,
                          pid, code)
                continue
            delay = BACKOFF_S[min(w.crashes, len(BACKOFF_S)) - 1]
            w.restart_at = time.monotonic() + delay
            log.warning("worker %d (pid %s) exited with %s; restarting in %.1f s", w.index,
                        pid, code, delay)

    def _forget(self, w: Worker) -> None:
        """A worker has exited: its live metrics, its socket and its slot go."""
        if w.proc is not None and w.proc.pid is not None:
            process_exited(w.proc.pid)
        w.proc = None
        if w.sock is not None:
            w.sock.close()  # connections hashed to it now go to the live workers
            w.sock = None
        if self.host is not None and w.slot is not None:
            self.host.retire(w.slot)
            w.slot = None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.restart_at is not None and w.restart_at <= now and not self.drain.is_set():
                self.restarts_left -= 1
                self._spawn(w)

    def _engine_lost(self) -> int:
        host = self.host
        log.error("the engine %s", f"failed to start: {host.error}" if host.error is not None
                  else "died; failing in-flight requests and stopping")
        if host.error is not None:  # the workers wait for its greeting: stop them
            return self._stop_workers("no engine")
        host.announce_dead()  # each worker's requests end in engine_error, then it exits
        self._join(time.monotonic() + 10.0)
        return 1

    def _stop_workers(self, why: str) -> int:
        log.error("%s: stopping", why)
        self.drain.set()
        self._join(time.monotonic() + 10.0)
        return 1

    def _drain_all(self) -> int:
        log.info("draining %d workers", sum(w.proc is not None for w in self.workers))
        self.drain.set()
        self._join(time.monotonic() + self.settings.drain_timeout_s + STOP_MARGIN_S)
        return 0

    def _join(self, deadline: float) -> None:
        """Wait for the workers to exit until `deadline`, then kill the rest."""
        for w in self.workers:
            if w.proc is not None:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.exitcode is None:
                    log.warning("worker %d did not stop in time: killing it", w.index)
                    w.proc.kill()
                    w.proc.join(5.0)
                self._forget(w)

    def _stop_all(self) -> None:
        self._join(time.monotonic() + 2.0)  # normally none left by now
        if self.host is not None:
            self.host.stop(ENGINE_STOP_S)
        for w in self.workers:
            if w.sock is not None:
                w.sock.close()


def serve_workers(settings: Settings) -> int:
    """Run the supervisor until it is stopped; its exit status."""
    return Supervisor(settings).run()
