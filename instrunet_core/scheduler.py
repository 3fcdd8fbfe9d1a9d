"""The batch scheduler: jobs on worker threads, results in order, the calling thread computing too.

:class:`~instrunet_core.inference.Classifier` hands each whole batch of windows (its STFT
frames, features and onnxruntime run, on a copy of its audio) to a :class:`BatchPipeline`
while the calling thread decodes the next blocks, so that every core works. Scheduling is a
job of its own, apart from the front end's DSP (:mod:`instrunet_core.features`) and the
classifier's orchestration: it knows nothing of audio, only of jobs and their order.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["BatchPipeline", "default_workers", "MAX_DEFAULT_WORKERS"]

#: Most worker threads a pipeline starts by default (see :func:`default_workers`).
MAX_DEFAULT_WORKERS = 4

T = TypeVar("T")


def default_workers() -> int:
    """Worker threads of a :class:`BatchPipeline` unless a caller says otherwise: one fewer than
    the cores this process may use (its CPU affinity), because the calling thread computes
    batches too; at least 1 and at most :data:`MAX_DEFAULT_WORKERS`. Each thread runs
    onnxruntime with the model's own ``intra_op_threads`` (1 by default)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, n - 1))


class BatchPipeline(Generic[T]):
    """Runs jobs on ``workers`` threads and hands their results back in submission order.

    When every worker has a job and one more is waiting, the calling thread runs the next job
    itself instead of waiting (``workers`` + 1 threads compute, none idles while there is
    work). Results go out in order: a few jobs done by the calling thread may wait behind one
    still on a worker, and past ``2 * workers + 4`` waiting jobs the caller waits for the
    oldest, so memory stays bounded.

    Each result comes back with the ``tag`` its job was submitted with. The threads start on
    the first job that goes to them.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[tuple[Future[T], Any]] = collections.deque()

    def submit(self, job: Callable[[], T], tag: Any) -> list[tuple[Any, T]]:
        """Start ``job``; returns the ``(tag, result)`` of the jobs finished in order so far.

        Raises
        ------
        Exception
            Whatever a job raised, when its result is collected (or at once when this thread ran it).
        """
        if sum(1 for f, _ in self._pending if not f.done()) > self.workers:
            fut: Future[T] = Future()
            fut.set_result(job())
        else:
            fut = self._pool().submit(job)
        self._pending.append((fut, tag))
        out = []
        while self._pending and (self._pending[0][0].done() or len(self._pending) > 2 * self.workers + 4):
            f, t = self._pending.popleft()
            out.append((t, f.result()))
        return out

    def drain(self) -> list[tuple[Any, T]]:
        """Wait for every job still in flight; their ``(tag, result)`` in order."""
        out = []
        while self._pending:
            f, t = self._pending.popleft()
            out.append((t, f.result()))
        return out

    def clear(self) -> None:
        """Forget the jobs in flight (after an error: their results are not wanted)."""
        self._pending.clear()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="instrunet-batch"
            )
        return self._executor
