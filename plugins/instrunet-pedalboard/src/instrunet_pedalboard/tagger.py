"""Tagging pedalboard audio: :class:`Tagger` (called like a board) and :class:`StreamTagger` (live input)."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from instrunet_core.errors import InputError
from instrunet_core.inputs import (
    MAX_BLOCK_SAMPLES,
    block_to_mono,
    check_count,
    check_flag,
    check_sample_rate,
    check_seconds,
)

from ._core import Adapter, Layout

__all__ = ["Tagger", "StreamTagger", "LiveResult"]


class _Worker:
    """The classifier on a thread of its own: blocks queued by the caller, handled in order on
    that thread. One lock guards the classifier, so readers (``results``, ``analysis``) see it
    between blocks; an error is kept and raised again in the caller's thread.

    The thread holds its tagger only weakly (``handle`` is a bound method): a tagger dropped
    without :meth:`close` is collected, and its finalizer stops the thread (it used to live, with
    the tagger's model and buffers, as long as the process)."""

    def __init__(self, handle: Callable[[Any], None]) -> None:
        self._handle = weakref.WeakMethod(handle)  # type: ignore[arg-type]
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Re-entrant: an ``on_windows`` callback runs on the worker thread, inside the lock, and
        # may read ``results`` or ``analysis``.
        self.lock = threading.RLock()
        self.error: BaseException | None = None
        self._pending = 0
        self._backlog = 0.0  # seconds of audio queued and not yet handled
        self._count = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="instrunet-tagger", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        """Queue ``item``; while more than :data:`MAX_BACKLOG_SECONDS` of audio waits, the
        caller waits first (the queue was unbounded: fed faster than the model keeps up, a
        tagger grew by 140 MB over 40 minutes of audio, a pedalboard audit)."""
        seconds = _seconds_of(item)
        with self._count:
            self._count.wait_for(lambda: self._backlog + seconds <= MAX_BACKLOG_SECONDS or self._pending == 0)
            self._pending += 1
            self._backlog += seconds
        self._q.put(item)

    def wait(self) -> None:
        """Until every queued item is handled."""
        with self._count:
            self._count.wait_for(lambda: self._pending == 0)

    def close(self) -> None:
        self._q.put(_STOP)
        if threading.current_thread() is not self._thread:  # a finalizer may run on it
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            try:
                handle = self._handle()
                if handle is None:  # the tagger is gone: nothing will read what this computes
                    return
                # every queued block is classified, also after an error (a callback's): the
                # stream keeps all its audio, and the first error is raised in the caller's thread
                with self.lock:
                    handle(item)
                del handle  # not held while waiting for the next item
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                if self.error is None:
                    self.error = e
            finally:
                with self._count:
                    self._pending -= 1
                    self._backlog = max(0.0, self._backlog - _seconds_of(item))
                    self._count.notify_all()


#: Most seconds of audio a worker's queue holds: past it, the feeding call waits for the worker
#: (memory stays bounded when blocks come faster than the model keeps up; a live stream that
#: does so is overloaded either way, and waits instead of growing without end).
MAX_BACKLOG_SECONDS = 30.0


def _seconds_of(item: Any) -> float:
    """Seconds of audio in a queued block (0 for the end of the stream and the stop sign)."""
    if isinstance(item, tuple) and len(item) == 4 and item[0] is not None and item[1]:
        return float(len(item[0])) / float(item[1])
    return 0.0


_STOP = object()
#: A queued block: (frames, rate, when it was fed, seconds fed after it); ``None`` frames: the end.
_Block = tuple[Any, int, float, float]


class _Tagging(Adapter):
    """What :class:`Tagger` and :class:`StreamTagger` share: the audio fed so far, handing back
    the windows each block completes (and ``on_windows``), and the worker thread."""

    def __init__(
        self,
        model: Any = None,
        *,
        hop: float | None = None,
        thresholds: Any = None,
        keep: int | None = None,
        on_windows: Callable[[list[Any]], Any] | None = None,
        worker: bool = False,
        leading: int | None = None,
    ) -> None:
        check_flag(worker, name="worker", what=self._what)
        super().__init__(model, hop=hop, thresholds=thresholds, keep=keep, leading=leading)
        if on_windows is not None and not callable(on_windows):
            raise InputError(f"{self._what}: on_windows must be callable, got {type(on_windows).__name__}")
        self.on_windows = on_windows
        self._fed = 0
        # What the worker completed since the caller last took it, under a lock of its own: the
        # caller never waits for the classifier's lock, which the worker holds while it works.
        self._done: list[Any] = []
        self._done_lock = threading.Lock()
        self._worker: _Worker | None = _Worker(self._work) if worker else None
        if self._worker is not None:  # stops the thread if the tagger is dropped without close()
            weakref.finalize(self, self._worker.close)
        self._closed = False

    @property
    def worker(self) -> bool:
        """True when a worker thread runs the classifier (the caller never waits for inference)."""
        return self._worker is not None

    def reset(self) -> None:
        """Forget the stream: results, buffered audio, layout and sample rate."""
        with self._owner.feeding("reset"):
            self._check_open("reset")
            if self._worker is not None:
                self._worker.wait()
                self._raise_worker_error()
                with self._worker.lock, self._done_lock:
                    super().reset()
                    self._done = []
            else:
                super().reset()
            self._fed = 0

    def close(self) -> None:
        """Stop the worker thread (if any); the tagger cannot be fed after this.

        With a worker thread, feeding, finishing or resetting a closed tagger raises
        :class:`~instrunet_core.errors.InputError` (there is no thread left to do it); its
        ``results`` and ``analysis`` can still be read. Closing twice is fine.
        """
        if self._worker is not None and not self._closed:
            self._worker.wait()
            self._worker.close()
        self._closed = True

    def _check_open(self, call: str) -> None:
        if self._closed and self._worker is not None:
            raise InputError(
                f"{self._what}.{call}: the tagger is closed (its worker thread is stopped); "
                "create a new one for another stream"
            )

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _raise_worker_error(self) -> None:
        w = self._worker
        if w is not None and w.error is not None:
            e, w.error = w.error, None
            raise e

    def _wrap(self, wins: list[Any], stream_seconds: float, compute_seconds: float) -> list[Any]:
        """What the class hands back for windows (the windows themselves)."""
        return wins

    def _push(self, audio: Any, sample_rate: Any) -> list[Any]:
        """What this block completed; with a worker, what it completed since the last call."""
        self._check_open("feed" if self._what == "StreamTagger" else "process")
        t0 = time.perf_counter()
        got = self._accept(audio, sample_rate)
        if got is None:
            self._raise_worker_error()
            return self._take()
        a, kind, _, sr = got
        # mixed to mono here, in the caller's thread: a bad block (NaN, an unusable dtype) is
        # refused by this call, never by the worker on a later one, and is not counted as fed
        mono = block_to_mono(Layout.frames(a, kind), what=self._what)
        if self._worker is not None:
            self._fed += mono.shape[0]
            self._worker.put((np.array(mono, copy=True), sr, t0, self.seconds))
            # an earlier block's error (an on_windows callback's) is raised once this block is
            # queued: the block is taken all the same, so a host that goes on loses no audio
            self._raise_worker_error()
            return self._take()
        wins = list(self._clf.process(mono, sr))
        self._fed += mono.shape[0]
        out = self._wrap(wins, self.seconds, time.perf_counter() - t0) if wins else []
        self._hand_back(out)
        return out

    def _work(self, item: _Block) -> None:
        """On the worker thread: one queued block (or the end of the stream)."""
        frames, sr, t0, fed = item
        wins = list(self._clf.flush() if frames is None else self._clf.process(frames, sr))
        if wins:
            out = self._wrap(wins, fed, time.perf_counter() - t0)
            with self._done_lock:
                self._done.extend(out)
            self._hand_back(out)

    def _take(self) -> list[Any]:
        if self._worker is None or not self._done:
            return []
        with self._done_lock:
            out, self._done = self._done, []
        return out

    def _hand_back(self, out: list[Any]) -> None:
        if out and self.on_windows is not None:
            self.on_windows(out)

    def _finish(self) -> list[Any]:
        self._check_open("finish" if self._what == "StreamTagger" else "flush")
        if self._worker is not None:
            if self._fed and not self._finished:
                self._worker.put((None, 0, time.perf_counter(), self.seconds))
                self._worker.wait()
            self._finished = True
            self._raise_worker_error()
            return self._take()
        t0 = time.perf_counter()
        wins = list(self._clf.flush()) if self._fed and not self._finished else []
        self._finished = True
        out = self._wrap(wins, self.seconds, time.perf_counter() - t0) if wins else []
        self._hand_back(out)
        return out

    @property
    def results(self) -> list[Any]:
        """Every window so far (``instrunet_core.WindowResult``: start, end, probabilities, rms_db, silent, label)."""
        if self._worker is None:
            return super().results
        # With a worker only its lock guards the classifier (the caller never touches it): not
        # the feeding call's, which a caller waiting for the worker holds while an on_windows
        # callback on the worker thread reads.
        with self._worker.lock:
            return list(self._clf.results)

    @property
    def analysis(self) -> Any:
        """:class:`instrunet_core.Analysis` of the windows so far: prediction, timeline, instruments."""
        if self._worker is None:
            return super().analysis
        with self._worker.lock:
            return self._clf.analysis()

    @property
    def instruments(self) -> list[Any]:
        """Instruments detected so far (``analysis.instruments``), in the order of the overall answer."""
        return self.analysis.instruments

    @property
    def seconds(self) -> float:
        """Seconds of audio fed since the stream started."""
        return self._fed / self._sr if self._sr else 0.0


class Tagger(_Tagging):
    """Tag the audio passing through, like a board that changes nothing.

    Pedalboard cannot run Python code inside a chain (pedalboard issue #12), so a
    ``Tagger`` goes *after* one: ``tagger(board(audio, sr), sr)``. It returns its input
    unchanged (the same array object: same dtype, shape and bits) and records which
    instruments play. Block by block, with ``reset=False``, it keeps one window and one hop
    of audio (about 4.5 s) and one small result per hop (1.509 s), so memory stays bounded
    for hour-long streams.

    Parameters
    ----------
    model : Model, str or PathLike, optional
        A loaded ``instrunet_core.Model``, a registered model name, an artifact folder,
        or the default model.
    hop : float, optional
        Seconds between window starts (the core's default, 1.5 s, snapped to whole STFT
        frames: 1.509 s).
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's.
    leading : int, optional
        As for :func:`instrunet_core.analyze`: how many of the most probable labels at a moment
        need only their thresholds in :attr:`instruments` (default: the model's own; 0: every
        label at its threshold).
    keep : int, optional
        Keep only the last ``keep`` window results (for endless streams); all when omitted
        (one small result per hop: about 2,400 for an hour).
    on_windows : callable, optional
        Called with the list of windows (``instrunet_core.WindowResult``) each block completes,
        as soon as they are classified (on the worker thread when there is one).
    worker : bool
        Run the classifier on a worker thread: a call only checks the block and queues a copy of
        it, so an audio callback never waits for inference; windows arrive through
        ``on_windows`` and :attr:`results`. :meth:`flush` (and a call with ``reset=True``) waits
        for the worker; :meth:`close` stops it.

    Examples
    --------
    >>> from pedalboard import Pedalboard, Reverb  # doctest: +SKIP
    >>> tagger = Tagger()  # doctest: +SKIP
    >>> out = tagger(Pedalboard([Reverb()])(audio, 44100), 44100)  # doctest: +SKIP
    >>> [i.label for i in tagger.instruments]  # doctest: +SKIP
    """

    def __call__(
        self, audio: Any, sample_rate: float, buffer_size: int | None = None, reset: bool = True
    ) -> Any:
        """Record ``audio``'s windows and return ``audio`` itself.

        Parameters
        ----------
        audio : np.ndarray [shape=(samples,), (channels, samples) or (samples, channels)]
            Pedalboard's layouts; any int or float dtype.
        sample_rate : float
            Hz; constant within a stream.
        buffer_size : int, optional
            Accepted for pedalboard compatibility; unused.
        reset : bool
            ``True`` (pedalboard's default): ``audio`` is a whole piece; earlier state is
            dropped and its last, partial window is analysed too. ``False``: ``audio`` is
            the next block of a stream; call :meth:`flush` after the last one.

        Returns
        -------
        audio
            The input object, unchanged.
        """
        return self.process(audio, sample_rate, buffer_size=buffer_size, reset=reset)

    def process(
        self, audio: Any, sample_rate: float, buffer_size: int | None = None, reset: bool = True
    ) -> Any:
        """Same as calling the tagger (pedalboard's ``Plugin.process`` signature)."""
        with self._owner.feeding("process"):
            reset = check_flag(reset, name="reset", what=self._what)  # None was "stream on"
            if reset:
                self.reset()
            self._push(audio, sample_rate)
            if reset:
                self._finish()
            return audio

    def flush(self) -> list[Any]:
        """End the stream: analyse the last, partial window. Returns the windows it completed."""
        with self._owner.feeding("flush"):
            return self._finish()


@dataclasses.dataclass(frozen=True)
class LiveResult:
    """One window's prediction from :class:`StreamTagger`, with when it became available.

    Attributes
    ----------
    window : instrunet_core.WindowResult
        ``start``/``end`` seconds from the start of the stream, ``probabilities`` ``(L,)``,
        ``rms_db``, ``silent``, ``label``.
    stream_seconds : float
        Audio fed up to the end of the block that completed it.
    compute_seconds : float
        Wall time from that block's :meth:`StreamTagger.feed` call to the prediction: the call
        itself, or with a worker thread the block's wait in the queue and its processing.
    """

    window: Any
    stream_seconds: float
    compute_seconds: float

    @property
    def label(self) -> str:
        return str(self.window.label)

    @property
    def start(self) -> float:
        return float(self.window.start)

    @property
    def end(self) -> float:
        return float(self.window.end)

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray(self.window.probabilities)

    @property
    def latency(self) -> float:
        """Seconds from the end of the window's audio to its prediction: block buffering + compute.

        On a live stream (audio time runs with the clock) this is how late the label is
        relative to the newest sound it describes; the oldest sound in the window is
        ``window_seconds`` older still.
        """
        return max(0.0, self.stream_seconds - self.end) + self.compute_seconds


class StreamTagger(_Tagging):
    """Tag live input, e.g. from ``pedalboard.io.AudioStream``: feed blocks, get a prediction each hop.

    A window can only be classified once all of it has been heard, so a label describes
    the last ``window_seconds`` (2.949 s) and comes out every ``hop_seconds`` (1.509 s),
    plus the block's own buffering and the compute time (:attr:`LiveResult.latency`).

    With ``worker=True`` the classifier runs on a worker thread: :meth:`feed` checks the block,
    queues a copy and returns what the worker completed since the last call, so the audio
    callback never waits for inference (``benchmarks/live.py`` measures its calls).

    Parameters
    ----------
    model, hop, thresholds, keep, worker, leading
        As for :class:`Tagger`.
    on_windows : callable, optional
        Called with the list of :class:`LiveResult` as soon as a block's windows are
        classified (on the worker thread when there is one).

    Examples
    --------
    >>> from pedalboard.io import AudioStream  # doctest: +SKIP
    >>> tagger = StreamTagger()  # doctest: +SKIP
    >>> with AudioStream(AudioStream.default_input_device_name, None) as stream:  # doctest: +SKIP
    ...     for r in tagger.listen(stream, seconds=30):
    ...         print(f"{r.start:6.1f}s {r.label:8s} ({r.latency * 1000:.0f} ms late)")
    """

    _what = "StreamTagger"

    def feed(self, block: Any, sample_rate: float) -> list[LiveResult]:
        """Push the next block; returns the predictions it completed (often none, at most a few);
        with a worker thread, those completed since the last call.

        Parameters
        ----------
        block : np.ndarray [shape=(samples,), (channels, samples) or (samples, channels)]
        sample_rate : float

        Returns
        -------
        list of LiveResult
        """
        with self._owner.feeding("feed"):
            return list(self._push(block, sample_rate))

    def finish(self) -> list[LiveResult]:
        """End the stream: predict its last, partial window (waiting for the worker thread)."""
        with self._owner.feeding("finish"):
            return list(self._finish())

    def _wrap(self, wins: list[Any], stream_seconds: float, compute_seconds: float) -> list[Any]:
        return [LiveResult(w, stream_seconds, compute_seconds) for w in wins]

    def listen(
        self, source: Any, *, block_size: int | None = None, seconds: float | None = None
    ) -> Iterator[LiveResult]:
        """Read ``source`` block by block and yield each prediction as it comes.

        Parameters
        ----------
        source : pedalboard.io.AudioStream or pedalboard.io.AudioFile
            Anything with ``read(n) -> (channels, n)`` and ``sample_rate`` or ``samplerate``;
            an ``AudioFile`` stands in for a microphone (tests, recipes).
        block_size : int, optional
            Samples per read (default: a tenth of a second), at most
            :data:`~instrunet_core.inputs.MAX_BLOCK_SAMPLES`.
        seconds : float, optional
            Stop after this much audio, a finite number > 0 (a live stream otherwise runs until
            you break).

        Raises
        ------
        InputError
            A source without ``read`` or a usable rate, a bad ``block_size`` or ``seconds``, or
            a ``read()`` that returns something else than 1-D or 2-D audio (a list of numbers is
            fine).

        Yields
        ------
        LiveResult
        """
        what = f"{self._what}.listen"
        if not callable(getattr(source, "read", None)):
            raise InputError(
                f"{what}: source must have read(n) (an AudioStream or AudioFile), got {type(source).__name__}"
            )
        rate = getattr(source, "sample_rate", None)
        if rate is None:
            rate = getattr(source, "samplerate", None)
        sr = check_sample_rate(rate, what=f"{what}: source" if rate is not None else what)
        n = (
            max(1, sr // 10)
            if block_size is None
            else check_count(
                block_size, name="block_size", maximum=MAX_BLOCK_SAMPLES, what=what, unit="samples"
            )
        )
        limit = (
            None if seconds is None else int(round(check_seconds(seconds, name="seconds", what=what) * sr))
        )
        self.reset()
        read = 0
        while limit is None or read < limit:
            want = n if limit is None else min(n, limit - read)
            raw = source.read(want)
            try:
                block = np.asarray(raw)
            except (TypeError, ValueError) as e:
                raise InputError(
                    f"{what}: source.read() returned {type(raw).__name__}, not audio ({e})"
                ) from None
            if block.ndim not in (1, 2):
                raise InputError(
                    f"{what}: source.read() returned shape {block.shape}; expected (samples,) or (channels, samples)"
                )
            got = block.shape[-1] if block.ndim == 2 else block.shape[0]
            if got == 0:
                break
            if block.ndim == 2:  # read(n) gives (channels, n), even when n <= channels
                self._layout.assume("first", block.shape[0])
            read += got
            yield from self.feed(block, sr)
        yield from self.finish()
