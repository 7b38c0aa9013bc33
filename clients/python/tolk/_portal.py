"""A private event loop in a background thread, for the synchronous `Client`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._exceptions import ConnectionError

T = TypeVar("T")


class LoopThread:
    """Starts on first use; `stop()` cancels what is left and closes the loop."""

    def __init__(self, name: str = "tolk-client") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def started(self) -> bool:
        return self._loop is not None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:
                raise ConnectionError("the client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name,
                                          daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            if threading.current_thread() is self._thread:
                raise RuntimeError("a synchronous tolk.Client cannot be called from its own "
                                   "event loop thread (use AsyncClient in async code)")
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            loop = self.loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait; an interrupt of the waiting thread cancels it."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ConnectionError("the client was closed") from None
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("cannot close a tolk.Client from its own event loop thread")
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
