"""Each analyzer runs on a thread of its own, in call order, under a time limit.

An analyzer is plugin code: one that hangs (a blocking read, a loop that never ends) or runs
far slower than the audio must not hang the analysis (README: nothing hangs). Python cannot
stop a thread, so an analyzer past its limit is **abandoned**: the analysis stops feeding it,
reports ``{"error": "TimeoutError: ...", "plugin": ...}`` as its entry and goes on; its thread
(a daemon) ends when its call returns, or with the process. While the analysis runs, what an
analyzer thread prints goes to stderr (:class:`RoutedStdout`), never to stdout.

The limit is per analyzer and per analysis, on the time its calls take: by default
:data:`DEFAULT_BASE_SECONDS` plus the audio's duration (an analyzer slower than real time,
after a minute to start, is taken for stuck), or a fixed number of seconds from
``analyze(analyzer_timeout=...)``, ``--analyzer-timeout`` or ``INSTRUNET_ANALYZER_TIMEOUT``.

A side effect: the streaming analyzers work on the blocks while the classifier runs the
network on the next ones. Each analyzer's queue holds at most :data:`MAX_QUEUED` calls (a
decoded block is 20 s, 1.8 MB), so a slow analyzer holds the decoding back instead of piling
up memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._forksafe import ForkSafeLock
from .errors import InputError

__all__ = [
    "DEFAULT_BASE_SECONDS",
    "MAX_QUEUED",
    "TIMEOUT_ENV_VAR",
    "AnalyzerThread",
    "Limit",
    "RoutedStdout",
    "resolve_limit",
]

#: Seconds every analyzer may take on top of the audio's duration (the default limit).
DEFAULT_BASE_SECONDS = 60.0
#: Fixes every analyzer's limit in seconds (overridden by ``analyze(analyzer_timeout=...)``).
TIMEOUT_ENV_VAR = "INSTRUNET_ANALYZER_TIMEOUT"
#: Calls queued for one analyzer before the decoding waits for it.
MAX_QUEUED = 4

_END = object()
_local = threading.local()
_route_lock = ForkSafeLock()  # a new one in a forked child (a lock held at the fork)
_live = 0  # analyzer threads that may still print
#: Analyzers left behind in this process (their time limit passed): the command line ends
#: without waiting for threads they may have started (``_instrunet_cli``).
left_behind = 0


class Limit:
    """An analyzer's time limit: ``seconds`` fixed, or (``None``) the default rule."""

    def __init__(self, seconds: float | None = None) -> None:
        self.fixed = seconds

    def seconds(self, audio_seconds: float) -> float:
        if self.fixed is not None:
            return self.fixed
        # capped as a limit given is: a header announcing 1e14 s (a damaged Opus granule) made
        # the default overflow a timestamp in the analyzer's thread
        return min(DEFAULT_BASE_SECONDS + max(0.0, audio_seconds), MAX_LIMIT_SECONDS)

    def describe(self, audio_seconds: float) -> str:
        if self.fixed is not None:
            return f"{self.fixed:g} s"
        return f"{self.seconds(audio_seconds):.0f} s: {DEFAULT_BASE_SECONDS:.0f} s + {max(0.0, audio_seconds):.0f} s of audio"


#: Longest limit accepted (116 days; the command line's bound too): 1e10 overflowed a timestamp
#: inside the analyzer's thread, reported as the plugin's failure.
MAX_LIMIT_SECONDS = 1e7


def resolve_limit(seconds: float | Limit | None) -> Limit:
    """The limit for ``analyze(analyzer_timeout=seconds)``: ``seconds`` when given, else
    ``INSTRUNET_ANALYZER_TIMEOUT``, else the default rule.

    Raises
    ------
    InputError
        Not a positive, finite number of seconds.
    """
    if isinstance(seconds, Limit):  # resolved already
        return seconds
    what = "analyzer_timeout"
    if seconds is None:
        raw = os.environ.get(TIMEOUT_ENV_VAR, "").strip()
        if not raw:
            return Limit()
        what = TIMEOUT_ENV_VAR
        try:
            if "_" in raw or not raw.isascii():  # (float() takes 1_5 for 15: inputs.plain_float's rule)
                raise ValueError(raw)
            seconds = float(raw)
        except ValueError:
            raise InputError(f"{what}: expected seconds, got {raw!r}") from None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InputError(f"{what}: expected seconds, got {seconds!r}")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_LIMIT_SECONDS:
        raise InputError(
            f"{what}: expected a positive number of seconds, at most {MAX_LIMIT_SECONDS:g}, got {seconds!r}"
        )
    return Limit(float(seconds))


class RoutedStdout:
    """``sys.stdout`` while analyzer threads live: their writes go to stderr, every other
    thread's to the stream it wraps (``contextlib.redirect_stdout`` swaps the stream for every
    thread at once, and nested across threads it can leave it swapped)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def _target(self) -> Any:
        if _live == 0 and sys.stdout is self:
            # Left installed after the last analyzer thread ended: a host that swapped stdout
            # while an analysis ran (redirect_stdout in another thread) restored this object
            # afterwards. It steps aside at its first use.
            with _route_lock:
                if _live == 0 and sys.stdout is self:
                    sys.stdout = self.wrapped
        if getattr(_local, "analyzer", False):
            err = sys.stderr
            return err if err is not None and err is not self else _Discard()
        return self.wrapped if self.wrapped is not None else _Discard()

    def write(self, s: str) -> int:
        return int(self._target().write(s) or 0)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


class _Discard:
    def write(self, s: str) -> int:
        return len(s)

    def writelines(self, lines: Any) -> None:
        pass

    def flush(self) -> None:
        pass


def _enter_routing() -> None:
    global _live
    with _route_lock:
        _live += 1
        if not isinstance(sys.stdout, RoutedStdout):
            sys.stdout = RoutedStdout(sys.stdout)


def _leave_routing() -> None:
    global _live
    with _route_lock:
        _live -= 1
        if _live == 0 and isinstance(sys.stdout, RoutedStdout):
            sys.stdout = sys.stdout.wrapped


@contextlib.contextmanager
def prints_to_stderr() -> Iterator[None]:
    """While the block runs, what this thread prints (``sys.stdout``) goes to stderr; other
    threads' prints are untouched (:class:`RoutedStdout`), and nesting or concurrent blocks in
    several threads leave ``sys.stdout`` as it was once the last one ends."""
    was = getattr(_local, "analyzer", False)
    _enter_routing()
    _local.analyzer = True
    try:
        yield
    finally:
        _local.analyzer = was
        _leave_routing()


class AnalyzerThread:
    """One analyzer's thread for one analysis: :meth:`submit` queues calls, run in order;
    :meth:`result` waits for the last one's return value. Once a call raises, the later ones are
    skipped and :meth:`result` re-raises; once the calls' time passes the limit, the thread is
    abandoned and :meth:`result` raises ``TimeoutError``."""

    def __init__(self, name: str, limit: Limit) -> None:
        self.name = name
        self.limit = limit
        self.error: BaseException | None = None
        self.abandoned = False
        self._timeout: TimeoutError | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_QUEUED)
        self._lock = threading.Lock()
        self._busy = 0.0  # seconds spent in finished calls
        self._since: float | None = None  # start of the call running now
        self._value: Any = None
        self._done = threading.Event()
        self._closed = False
        _enter_routing()
        self._thread = threading.Thread(target=self._run, name=f"instrunet analyzer {name}", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            _leave_routing()
            raise

    # ---------------------------------------------------------------- the analyzer's side
    def _run(self) -> None:
        _local.analyzer = True
        try:
            while True:
                fn = self._queue.get()
                if fn is _END:
                    return
                if self.error is not None or self.abandoned:
                    continue
                with self._lock:
                    self._since = time.perf_counter()
                try:
                    self._value = fn()
                except KeyboardInterrupt:
                    # Python delivers Ctrl-C to the main thread only: raised here it is the
                    # analyzer's own doing, its failure, not the user stopping the analysis
                    self.error = RuntimeError("the analyzer raised KeyboardInterrupt on its own thread")
                except BaseException as e:  # noqa: BLE001 - the analyzer's failure is its result
                    self.error = e
                finally:
                    with self._lock:
                        self._busy += time.perf_counter() - (self._since or 0.0)
                        self._since = None
        finally:
            self._done.set()
            _leave_routing()

    # ---------------------------------------------------------------- the analysis' side
    def spent(self) -> float:
        """Seconds its calls have taken so far (the running one included)."""
        with self._lock:
            s = self._busy
            if self._since is not None:
                s += time.perf_counter() - self._since
            return s

    def live(self) -> bool:
        """Neither failed nor abandoned: still worth feeding."""
        return self.error is None and not self.abandoned

    def submit(self, fn: Callable[[], Any], audio_seconds: float) -> None:
        """Queue ``fn`` (waits while the queue is full, abandoning the analyzer once its calls
        pass the limit for ``audio_seconds`` of audio)."""
        if not self.live():
            return
        self._put(fn, audio_seconds)

    def result(self, audio_seconds: float) -> Any:
        """Wait for every queued call; the last one's return value.

        Raises
        ------
        TimeoutError
            The calls passed the limit (the analyzer is abandoned).
        BaseException
            What a call raised.
        """
        if not self._closed:
            if self.live():
                self._put(_END, audio_seconds)  # may abandon it
                self._closed = True
            else:
                self.close()
        while self.live() and not self._done.is_set():
            remaining = self.limit.seconds(audio_seconds) - self.spent()
            if remaining <= 0:
                self._abandon(audio_seconds)
                break
            self._done.wait(timeout=max(remaining, 0.005))
        if self._timeout is not None:
            raise self._timeout
        if self.error is not None:
            raise self.error
        return self._value

    def close(self) -> None:
        """Let the thread end (an analysis that stops early: an error, an interrupt)."""
        if not self._closed:
            self._shut()

    def wait_ended(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True when it has (an abandoned
        one is not waited for)."""
        return self.abandoned or self._done.wait(timeout)

    def _shut(self) -> None:
        """Drop the queued calls and queue the end (the running call, if any, finishes first)."""
        self._closed = True
        self._drain()
        try:
            self._queue.put_nowait(_END)
        except queue.Full:  # pragma: no cover - just drained; only the thread takes items
            pass

    def _put(self, item: Any, audio_seconds: float) -> None:
        while True:
            remaining = self.limit.seconds(audio_seconds) - self.spent()
            if remaining <= 0:
                self._abandon(audio_seconds)
                return
            try:
                self._queue.put(item, timeout=max(remaining, 0.005))
                return
            except queue.Full:
                continue  # the limit is checked again above

    def _abandon(self, audio_seconds: float) -> None:
        global left_behind
        left_behind += 1
        self.abandoned = True
        self._timeout = TimeoutError(
            f"ran longer than its time limit ({self.limit.describe(audio_seconds)}; "
            f"--analyzer-timeout or {TIMEOUT_ENV_VAR} sets it); left behind, its result dropped"
        )
        self._shut()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
