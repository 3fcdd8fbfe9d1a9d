"""The batch scheduler: jobs on worker threads, results in order, the calling thread computing too.

:class:`~instrunet_core.inference.Classifier` hands each whole batch of windows (its STFT
frames, features and onnxruntime run, on a copy of its audio) to a :class:`BatchPipeline`
while the calling thread decodes the next blocks, so that every core works. Scheduling is a
job of its own, apart from the front end's DSP (:mod:`instrunet_core.features`) and the
classifier's orchestration: it knows nothing of audio, only of jobs and their order.

It also holds the one thread-ownership rule of a stream (:class:`StreamOwner`): a
:class:`~instrunet_core.inference.Classifier` (and each host adapter around one) is fed by one
thread at a time, and any thread may read its results.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

from .errors import ConcurrentUseError

__all__ = ["BatchPipeline", "StreamOwner", "default_workers", "job_of", "MAX_DEFAULT_WORKERS"]

#: Most worker threads a pipeline starts by default (see :func:`default_workers`).
MAX_DEFAULT_WORKERS = 4

T = TypeVar("T")
U = TypeVar("U")


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


def job_of(make_input: Callable[[], U], run: Callable[[U], T]) -> Callable[[], T]:
    """A job for a worker thread: make its input (e.g. a batch's features from a copy of its
    audio), then run on it (e.g. the model)."""
    return lambda: run(make_input())


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
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a process forked from the one that started the threads: the executor and the jobs
        in flight are the parent's (a fork copies no thread), so a job queued to them would wait
        for ever; this process starts its own."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._executor = None
            self._pending.clear()

    def submit(self, job: Callable[[], T], tag: Any) -> list[tuple[Any, T]]:
        """Start ``job``; returns the ``(tag, result)`` of the jobs finished in order so far.

        Raises
        ------
        Exception
            Whatever a job raised, when its result is collected (or at once when this thread ran it).
        """
        self._after_fork()
        if sum(1 for f, _ in self._pending if not f.done()) > self.workers:
            fut: Future[T] = Future()
            fut.set_result(job())
        else:
            try:
                fut = self._pool().submit(job)
            except RuntimeError:
                # no new work for threads: the interpreter is shutting down (a host's last job on
                # a non-daemon thread or in an atexit handler: CPython shuts executors down first)
                # or the pipeline was closed; the calling thread does the job
                fut = Future()
                fut.set_result(job())
        self._pending.append((fut, tag))
        out = []
        while self._pending and (self._pending[0][0].done() or len(self._pending) > 2 * self.workers + 4):
            f, t = self._pending.popleft()
            out.append((t, f.result()))
        return out

    def drain(self) -> list[tuple[Any, T]]:
        """Wait for every job still in flight; their ``(tag, result)`` in order."""
        self._after_fork()
        out = []
        while self._pending:
            f, t = self._pending.popleft()
            out.append((t, f.result()))
        return out

    def clear(self) -> None:
        """Forget the jobs in flight (after an error: their results are not wanted)."""
        self._pending.clear()

    def close(self) -> None:
        """Let the worker threads end (the jobs in flight are forgotten; call :meth:`drain`
        first to keep them); a later job starts new ones."""
        self._pending.clear()
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="instrunet-batch"
            )
        return self._executor


class StreamOwner:
    """The thread-ownership rule of one stream: one thread feeds it at a time; any thread reads.

    A stream's state (its audio, frames, resampler and results) changes with every block, so two
    threads feeding one stream at once would interleave their audio: onnxruntime and numpy are
    safe, but the answer would be wrong (or soxr's state corrupted). Rather than make one of
    them wait for the other's stream to end, the second is refused at once
    (:class:`~instrunet_core.errors.ConcurrentUseError`): its caller has a design error to fix,
    one stream object per thread. Calls that follow each other from different threads (a thread
    pool, an executor) are fine; a feeding thread may re-enter (``classify`` calls ``flush``).

    Reading (:meth:`reading`) waits for the feeding call in progress, so a result is read whole:
    a UI thread may show a live stream's results while the audio thread feeds it.

    Parameters
    ----------
    what : str
        The object named in the error, e.g. ``"Classifier"``.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._feed = threading.RLock()
        self._state = threading.RLock()
        self._holder: str | None = None
        self._pid = os.getpid()
        self._torn: str | None = None  # the thread that was feeding when the process forked

    def _after_fork(self, call: str) -> None:
        """In a process forked from the one that made this owner: the parent's locks, copied in
        whatever state its threads held them, are replaced (a reader waited for ever on a lock
        held by a thread the child does not have: a host audit). A stream that a thread was
        feeding at the fork is half updated here: every call but ``reset`` is refused."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._feed = threading.RLock()
            self._state = threading.RLock()
            if self._holder is not None:
                self._torn, self._holder = self._holder, None
        if self._torn is not None and call not in ("reset", "close"):
            raise ConcurrentUseError(
                f"{self.what}.{call}: this {self.what} was being fed by thread {self._torn!r} when "
                f"the process forked, so its stream is incomplete in this process; reset() it or "
                f"make a new one"
            )

    @contextlib.contextmanager
    def feeding(self, call: str) -> Iterator[None]:
        """The body feeds (or resets) the stream; raises at once when another thread is feeding it.

        Raises
        ------
        ConcurrentUseError
            Naming the call, both threads and the rule; or, in a forked process, the stream was
            being fed when the process forked (only ``reset`` is taken then).
        """
        self._after_fork(call)
        if not self._feed.acquire(blocking=False):
            holder = self._holder or "another thread"
            raise ConcurrentUseError(
                f"{self.what}.{call}: called by thread {threading.current_thread().name!r} while "
                f"thread {holder!r} is feeding the same {self.what}; a {self.what} holds the state "
                f"of one stream, so use one per thread (the model may be shared)"
            )
        try:
            with self._state, np.errstate(all="ignore"):
                outer, self._holder = self._holder, threading.current_thread().name
                try:
                    yield
                    if call == "reset":
                        self._torn = None
                finally:
                    self._holder = outer
        finally:
            self._feed.release()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """The body reads the stream's results: waits for the feeding call in progress.

        Feeding and reading run under ``np.errstate(all="ignore")``: the front end's and the
        timeline's arithmetic floors what underflows or divides by zero itself, and a host that
        set ``np.seterr(all="raise")`` got a bare ``FloatingPointError`` from a decaying note's
        tail (a host audit); the host's setting is back once the call returns."""
        self._after_fork("results")
        with self._state, np.errstate(all="ignore"):
            yield
