"""CPU-heavy work of a request, off the event loop: markup parsing and language detection.

Work on an input up to `markup_inline_chars` long runs inline: the fast path, with no thread
hop and no suspension point. A longer input's runs on a small pool of threads
(`markup_workers`), owned by the pipeline and shut down with it (`close`); the pool is
started on first use. The pool is bounded in threads, and what waits for it is bounded by
admission: a request gets here only once admitted, holding its slots and its key's stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Offload:
    def __init__(self, inline_chars: int, workers: int) -> None:
        self.inline_chars = inline_chars
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def inline(self, size: int) -> bool:
        """Whether work on an input of `size` characters runs on the event loop."""
        return size <= self.inline_chars

    async def run(self, size: int, work: Callable[[], T]) -> T:
        """`work()`, for an input of `size` characters: inline, or on a worker thread."""
        if self.inline(size):
            return work()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tolk-markup")
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        """Stop the workers: queued work is dropped, running work ends on its own."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
