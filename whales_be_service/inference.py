"""A bounded worker pool: CPU-bound work never runs on the event loop, and never queues unboundedly.

At most `workers` jobs run and `queue_size` more wait; the next one is refused at once with a 503
and `Retry-After`, so a flood of uploads degrades into fast refusals instead of a growing backlog
(and `/health` keeps answering from the event loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from whales_be_service import metrics
from whales_be_service.errors import overloaded

T = TypeVar("T")


class InferencePool:
    """Runs callables on `workers` threads with at most `queue_size` waiting.

    Args:
        workers: threads doing inference (each may use several torch threads).
        queue_size: jobs allowed to wait for a free worker.
        retry_after_s: the Retry-After advertised when full.
    """

    def __init__(self, workers: int = 1, queue_size: int = 8, retry_after_s: int = 5):
        self.workers = workers
        self.capacity = workers + queue_size
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whales-infer")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def _acquire(self) -> None:
        with self._lock:
            if self._pending >= self.capacity:
                raise overloaded(self.retry_after_s)
            self._pending += 1
            metrics.set_queue_depth(self._pending)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1
            metrics.set_queue_depth(self._pending)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on a worker; raises the 503 `ServiceError` when the queue is full."""
        self._acquire()
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        # released when the job really ends, even if the awaiting request was cancelled meanwhile
        future.add_done_callback(lambda _f: self._release())
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
