"""The one inference path: a push-style :class:`Classifier` — blocks in, windows out.

Everything that classifies audio goes through :class:`Classifier`:
:meth:`instrunet_core.Model.predict`, :func:`analyze`, the ``instrunet`` CLI and the host
adapters (Pedalboard, web app) built on the core.

How a block becomes windows
---------------------------
1. The block (``(n,)`` or ``(n, channels)``, int or float, any ``n >= 0``) is mixed to mono
   and resampled to the front end's rate (22,050 Hz) by one :class:`soxr.ResampleStream`
   per stream, so where the blocks are cut never changes the result.
2. Windows of ``window_seconds`` (2.949 s, 128 frames) start every ``hop_seconds``. The hop
   is **snapped to a whole number of STFT frames** (512 samples): the default 1.5 s becomes
   65 frames = 1.5093 s. Then adjacent windows lie on one frame grid and share their STFT
   frames: each frame's FFT and mel projection are computed once for the stream, not once
   per window (65 + 4 frames per window instead of 128 at the default hop).
3. The centred STFT of a window zero-pads its edges, so the two frames at each end of a
   window see padding rather than the neighbouring audio. These four edge frames are
   recomputed per window with the window's own padding, and the dB scaling is relative to
   each window's peak, so every window's features equal the per-window front end
   (:func:`instrunet_core.features.batch_features`) within float32 rounding (tested).
4. A window is emitted by the :meth:`~Classifier.process` call that completes it; all windows
   completed by one call form batches of at most ``batch_size``, which onnxruntime runs at
   most ``_RUN_WINDOWS`` (4) windows at a time.
   :meth:`~Classifier.flush` ends the stream: audio after the last full window gets one
   zero-padded window, and audio shorter than a window gets one padded window.

Memory is bounded: the classifier keeps one window of audio and of frames plus what the
current call brought; ``keep`` bounds the stored results of an endless stream.

Short and sparse input
----------------------
Windows below :data:`~instrunet_core.audio.SILENCE_DB` are silent and never vote; the others
vote with a weight equal to their loudness relative to the loudest window, so a window that
holds only the tail of a note hardly counts. Audio holding less than
:data:`~instrunet_core.analysis.LOW_EVIDENCE_SECONDS` of sound still gets an answer, marked
``low_evidence`` (in :class:`~instrunet_core.analysis.Prediction`, :class:`Analysis`, their
JSON and the CLI's output).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import soxr

from .analysis import SILENCE_LABEL, Analysis, AnalysisContext, Prediction, _run_analyzers, aggregate
from .audio import (
    SILENCE_DB,
    AudioSource,
    _channel_mean,
    _check_rate,
    as_float_audio,
    iter_blocks,
    rereadable_source,
    source_name,
)
from .errors import InputError
from .features import _AMIN, _power_mel
from .output import model_info
from .registry import Registry, get_registry
from .session import DEFAULT_BATCH_SIZE, ModelSession, ModelSpec, open_session
from .timeline import build_timeline, detect_instruments, mask_silent
from .validate import check_hop

__all__ = [
    "Classifier",
    "WindowResult",
    "analyze",
    "DEFAULT_HOP_SECONDS",
    "DEFAULT_SMOOTHING",
    "RESAMPLE_QUALITY",
    "MAX_CHANNELS",
    "default_workers",
]

#: Seconds between window starts unless a caller says otherwise (snapped to whole frames).
DEFAULT_HOP_SECONDS = 1.5
#: Moving-median length (windows) applied before presence thresholds.
DEFAULT_SMOOTHING = 3
#: soxr quality used for every resampling to the front end's rate.
RESAMPLE_QUALITY = "HQ"
#: Most channels a block may have (a wider block is almost surely ``(channels, n)``).
MAX_CHANNELS = 64
#: Native-rate seconds decoded per block by :func:`analyze`.
_DECODE_BLOCK_SECONDS = 20.0
#: Frames transformed at once (bounds the temporary FFT memory to a few MB).
_FRAME_CHUNK = 512
#: Most windows per onnxruntime run inside a batch. Per window, runs of 4 were the fastest
#: measured here for both packaged networks (``family-compact`` about a sixth faster than runs
#: of 16, ``family`` a few per cent): larger runs outgrow the core's cache.
_RUN_WINDOWS = 4
#: Samples per evidence block: the unit of ``sounding_seconds`` and of window levels.
_EV_BLOCK = 512
#: Most worker threads a Classifier starts by default (see :func:`default_workers`).
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Worker threads of a :class:`Classifier` pipeline unless a caller says otherwise: one
    fewer than the cores this process may use (its CPU affinity), because the calling thread
    computes batches too; at least 1 and at most :data:`MAX_DEFAULT_WORKERS`. Each thread runs
    onnxruntime with the model's own ``intra_op_threads`` (1 by default)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, n - 1))


@dataclasses.dataclass(frozen=True)
class WindowResult:
    """One analysed window.

    Attributes
    ----------
    index : int
        Position in the stream (0, 1, 2, ...).
    start, end : float
        Seconds from the start of the stream; ``end`` is clipped to the audio's end for the
        last, zero-padded window.
    probabilities : np.ndarray [shape=(n_labels,), dtype=float32]
        Model output (also for silent windows; they do not vote).
    rms_db : float
        RMS level of the window's real samples in dBFS (digital silence: -200).
    silent : bool
        ``rms_db`` below the silence level (-60 dBFS).
    label : str
        Most probable label, or ``"silence"`` for a silent window.
    n_samples : int
        Real (unpadded) samples at the front end's rate.
    """

    index: int
    start: float
    end: float
    probabilities: np.ndarray
    rms_db: float
    silent: bool
    label: str
    n_samples: int

    @property
    def confidence(self) -> float:
        """Probability of :attr:`label` (1.0 for silence)."""
        if self.silent:
            return 1.0
        return float(self.probabilities.max())


class _Tape:
    """A growable array along axis 0 addressed by absolute index (amortised O(1) appends).

    Holds items ``[base, base + n)``; :meth:`drop_before` forgets the oldest ones.
    """

    def __init__(self, row_shape: tuple[int, ...], base: int = 0, dtype: Any = np.float32) -> None:
        self._data = np.zeros((1024, *row_shape), dtype=dtype)
        self._off = 0  # index in _data of item `base`
        self.base = base
        self.n = 0

    @property
    def end(self) -> int:
        return self.base + self.n

    def append(self, x: np.ndarray) -> None:
        m = x.shape[0]
        if m == 0:
            return
        if self._off + self.n + m > self._data.shape[0]:
            cap = self._data.shape[0]
            if self.n + m <= cap // 2:
                # At most half full: move the kept items to the front of the same buffer (a fresh
                # buffer on every wrap cost page faults). They start past the half the new items
                # leave free (off > cap - n - m >= n), so the move never overlaps itself (which
                # would cost numpy a temporary copy).
                self._data[: self.n] = self._data[self._off : self._off + self.n]
            else:
                new = np.empty(
                    (max(2 * cap, 2 * (self.n + m)), *self._data.shape[1:]), dtype=self._data.dtype
                )
                new[: self.n] = self._data[self._off : self._off + self.n]
                self._data = new
            self._off = 0
        self._data[self._off + self.n : self._off + self.n + m] = x
        self.n += m

    def view(self, a: int, b: int) -> np.ndarray:
        """Items ``[a, b)``; past the end, zeros (only used once the stream has ended)."""
        if a < self.base:
            raise AssertionError(f"internal: item {a} was dropped (oldest kept {self.base})")
        if b <= self.end:
            return self._data[self._off + a - self.base : self._off + b - self.base]
        out = np.zeros((b - a, *self._data.shape[1:]), dtype=self._data.dtype)
        have = max(0, self.end - a)
        if have:
            out[:have] = self._data[self._off + a - self.base : self._off + self.n]
        return out

    def drop_before(self, a: int) -> None:
        k = min(max(0, a - self.base), self.n)
        self._off += k
        self.base += k
        self.n -= k

    def restart(self, base: int) -> None:
        """Forget every item; the next append is item ``base``."""
        self._off, self.base, self.n = 0, base, 0


#: ``view(a, b)``: items ``[a, b)`` of a stream (audio samples or dB mel frames) by absolute index.
_View = Callable[[int, int], np.ndarray]


def _snap_hop(hop: Any, hop_length: int, sample_rate: int) -> int:
    """Hop in seconds (checked by :func:`instrunet_core.validate.check_hop`) → whole STFT frames (at least 1)."""
    if hop is None:
        hop = DEFAULT_HOP_SECONDS
    h = check_hop(hop, sample_rate=sample_rate) / sample_rate
    frame_s = hop_length / sample_rate
    return max(1, int(round(h / frame_s)))


class Classifier:
    """Stateful, push-style classification of a stream: feed blocks, get windows.

    Parameters
    ----------
    model : Model, str, PathLike or None
        A loaded model, a registered model name, an artifact folder (or its
        ``manifest.json``), or ``None`` for the default model.
    hop : float, optional
        Seconds between window starts (default :data:`DEFAULT_HOP_SECONDS`), snapped to a
        whole number of STFT frames (see :attr:`hop_seconds`).
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's (used by :meth:`analysis`).
    smoothing : int
        Moving-median length in windows before thresholds (1 or 0 disables it).
    batch_size : int
        Most windows per batch: the windows whose features are computed together (from shared
        frames) and, in :meth:`classify`, one job of the worker threads. onnxruntime takes a
        batch at most 4 windows per run (the fastest per window measured here).
    keep : int, optional
        Keep only the last ``keep`` results (bounded memory for endless streams); all when
        omitted.
    pipeline : bool
        In :meth:`classify` (whole sources), hand each batch of windows (its STFT frames,
        features and onnxruntime run) to worker threads while the calling thread decodes the
        next blocks, so that all cores work (default True; results are identical either way).
        When every worker has a batch and one more is waiting, the calling thread computes the
        next batch itself instead of waiting. :meth:`process` always runs synchronously, and so
        does a source of one batch.
    workers : int, optional
        Worker threads of the pipeline, besides the calling thread; default
        :func:`default_workers` (one fewer than the usable cores, at least 1, at most 4).
    providers, threads, intra_op_threads, inter_op_threads, spinning, registry
        Passed to the model loader when ``model`` is not a loaded model.

    Examples
    --------
    >>> import numpy as np
    >>> from instrunet_core import Classifier
    >>> clf = Classifier()  # doctest: +SKIP
    >>> y = np.random.default_rng(0).standard_normal(5 * 44100).astype(np.float32) * 0.1
    >>> wins = [w for i in range(0, len(y), 4096) for w in clf.process(y[i:i + 4096], 44100)]  # doctest: +SKIP
    >>> wins += clf.flush()  # doctest: +SKIP
    >>> [(round(w.start, 2), w.label) for w in wins]  # doctest: +SKIP

    Notes
    -----
    A classifier holds the state of one stream: use one per stream (and per thread). The
    model it runs is stateless and may be shared by many classifiers and threads.
    """

    def __init__(
        self,
        model: ModelSpec = None,
        *,
        hop: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        smoothing: int = DEFAULT_SMOOTHING,
        batch_size: int = DEFAULT_BATCH_SIZE,
        keep: int | None = None,
        pipeline: bool = True,
        workers: int | None = None,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        spinning: bool = False,
        registry: Registry | None = None,
    ) -> None:
        self.model: ModelSession = open_session(
            model,
            providers=providers,
            threads=threads,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            spinning=spinning,
            registry=registry,
        )
        # A waveform-input artifact computes its features in the graph: windows go in as audio.
        self._waveform = self.model.input_kind == "waveform"
        fe = self.model.front_end
        self._fe = fe
        self._sr = fe.sample_rate
        self._H = fe.hop_length
        self._pad = fe.n_fft // 2
        self._win = fe.window_samples
        self._F = fe.frames
        self._hop_frames = _snap_hop(hop, fe.hop_length, fe.sample_rate)
        self._hop_n = self._hop_frames * self._H
        # Frames whose centred n_fft span leaves the window (they see its zero padding).
        self._left = [j for j in range(self._F) if j * self._H - self._pad < 0]
        self._right = [
            j
            for j in range(self._F)
            if j * self._H - self._pad + fe.n_fft > self._win and j not in self._left
        ]
        self._inner = (len(self._left), self._F - len(self._right))  # [lo, hi) shared frames
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, np.integer)) or smoothing < 0:
            raise InputError(f"smoothing must be an int >= 0 (windows), got {smoothing!r}")
        self.smoothing = int(smoothing)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if keep is not None and (
            isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1
        ):
            raise InputError(f"keep must be an int >= 1 or None, got {keep!r}")
        self.keep = None if keep is None else int(keep)
        self.pipeline = bool(pipeline)
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise InputError(f"workers must be an int >= 1, got {workers!r}")
        self._n_workers = int(workers)
        self._pipelined = False
        self._executor: ThreadPoolExecutor | None = None
        thr = self.model.thresholds
        for k, v in (thresholds or {}).items():
            if k not in thr:
                raise InputError(f"thresholds: unknown label {k!r} (labels: {list(self.model.labels)})")
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise InputError(f"thresholds[{k!r}] must be a number in (0, 1), got {v!r}") from None
            if not 0.0 < fv < 1.0:
                raise InputError(f"thresholds[{k!r}] must be in (0, 1), got {v!r}")
            thr[k] = fv
        self.thresholds: dict[str, float] = thr
        self.reset()

    # ------------------------------------------------------------------ properties
    @property
    def labels(self) -> tuple[str, ...]:
        """Output order of every probability vector."""
        return self.model.labels

    @property
    def workers(self) -> int:
        """Worker threads of the :meth:`classify` pipeline (the calling thread computes batches too)."""
        return self._n_workers

    @property
    def window_seconds(self) -> float:
        """Length of one analysis window (2.949 s for the shipped models)."""
        return self._win / self._sr

    @property
    def hop_seconds(self) -> float:
        """Seconds between window starts, after snapping to whole STFT frames."""
        return self._hop_n / self._sr

    @property
    def latency_seconds(self) -> float:
        """Audio between a window's first sample and the call that emits it: one window.

        Input at a rate other than 22,050 Hz adds the resampler's delay (a few ms).
        """
        return self.window_seconds

    @property
    def sample_rate(self) -> int | None:
        """Rate of the blocks fed so far (``None`` before the first block)."""
        return self._sr_in

    @property
    def duration(self) -> float:
        """Seconds of audio received so far (at the front end's rate, after resampling)."""
        return self._total / self._sr

    @property
    def sounding_seconds(self) -> float:
        """Seconds of audio above the silence level so far (in 512-sample blocks)."""
        return self._sounding / self._sr

    @property
    def finished(self) -> bool:
        """True after :meth:`flush` (until :meth:`reset`)."""
        return self._finished

    # ------------------------------------------------------------------ stream
    def reset(self) -> None:
        """Forget the stream: audio, frames, results and the input rate."""
        self._sr_in: int | None = None
        self._rs: Any = None
        # Audio at the front end's rate; indices < 0 are the centred STFT's left padding.
        self._audio = _Tape((), base=-self._pad)
        self._audio.append(np.zeros(self._pad, dtype=np.float32))
        self._total = 0
        self._frames = _Tape((self._fe.n_mels,), base=0)  # dB mel frames, shared by windows
        self._next_win = 0
        self._last_full_end = -1
        self._ev_pos = 0
        # Mean square of each 512-sample evidence block (block i: samples [512 i, 512 i + 512)).
        self._block_ms = _Tape((), base=0, dtype=np.float64)
        self._sounding = 0
        self._finished = False
        self._results: list[WindowResult] = []
        self._pending: collections.deque[tuple[Any, list[tuple[int, int]], np.ndarray]] = collections.deque()

    @property
    def results(self) -> list[WindowResult]:
        """Windows emitted since :meth:`reset` (the last ``keep`` of them when ``keep`` is set)."""
        return list(self._results)

    def process(self, block: np.ndarray, sample_rate: int) -> list[WindowResult]:
        """Feed the next block of the stream.

        Parameters
        ----------
        block : np.ndarray [shape=(n,) or (n, channels)]
            Samples (any int or float dtype; ints are scaled to [-1, 1]); any ``n >= 0``.
            Channels are mixed to mono.
        sample_rate : int
            Rate of ``block``; the same for every block of one stream.

        Returns
        -------
        list of WindowResult
            The windows this block completed, in order (often none).

        Raises
        ------
        InputError
            Bad block (shape, dtype, NaN), a rate change within a stream, or a block after
            :meth:`flush` without :meth:`reset`.
        """
        self._ingest(block, sample_rate)
        return self._emit(final=False)

    def _ingest(self, block: np.ndarray, sample_rate: int) -> None:
        """Validate, mix down, resample and store a block (no windows emitted)."""
        if self._finished:
            raise InputError("block: the stream was flushed; call reset() to start a new one")
        sr = _check_rate(sample_rate, "block")
        if self._sr_in is None:
            self._sr_in = sr
            if sr != self._sr:
                self._rs = soxr.ResampleStream(sr, self._sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        elif sr != self._sr_in:
            raise InputError(
                f"block: sample rate changed from {self._sr_in} to {sr} Hz within a stream; call reset() first"
            )
        y = as_float_audio(block, what="block")
        if y.ndim == 2:
            if y.shape[1] == 0:
                raise InputError(f"block: no channels (shape {y.shape}); expected (n,) or (n, channels)")
            if y.shape[1] > MAX_CHANNELS:
                raise InputError(
                    f"block: shape {y.shape} would be {y.shape[1]} channels (at most {MAX_CHANNELS}); blocks are "
                    "(n, channels): transpose (channels, n) audio such as Pedalboard's with block.T"
                )
            y = _channel_mean(y, 1) if y.shape[0] else np.zeros(0, dtype=np.float32)
        elif y.ndim != 1:
            raise InputError(f"block: expected shape (n,) or (n, channels), got {y.shape}")
        if self._rs is not None:
            y = self._rs.resample_chunk(y, last=False)
        self._push(y)

    def _n_ready(self) -> int:
        """Full windows that could be emitted now."""
        if self._total < self._win:
            return 0
        return max(0, (self._total - self._win) // self._hop_n + 1 - self._next_win)

    def flush(self) -> list[WindowResult]:
        """End the stream: emit the zero-padded last window (or the only one of short audio).

        Returns
        -------
        list of WindowResult
            Windows completed by the end of the stream (empty when nothing was fed or
            the audio ended exactly on a window).
        """
        if self._finished:
            return []
        if self._rs is not None:
            self._push(self._rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._finished = True
        out = self._emit(final=True)
        # The last partial evidence block.
        if self._ev_pos < self._total:
            seg = self._audio.view(self._ev_pos, self._total)
            if _ms_db(_mean_square(seg[None, :])[0]) >= SILENCE_DB:
                self._sounding += seg.shape[0]
            self._ev_pos = self._total
        return out

    def classify(self, audio: AudioSource, sample_rate: int | None = None) -> list[WindowResult]:
        """Reset, feed a whole source (file, file object or array) block by block, and flush.

        Returns
        -------
        list of WindowResult
            Every window of the source (also in :attr:`results`).

        Raises
        ------
        DecodeError, InputError
        """
        self.reset()
        self._pipelined = self.pipeline
        try:
            return self._classify(audio, sample_rate)
        finally:
            self._pipelined = False
            self._pending.clear()  # after an error: drop the batches still in flight

    def _classify(self, audio: AudioSource, sample_rate: int | None) -> list[WindowResult]:
        name = source_name(audio)
        if isinstance(audio, np.ndarray):
            sr = _check_rate(sample_rate, name)
            a = as_float_audio(audio, what=name)
            if a.ndim == 2 and a.shape[0] < a.shape[1]:
                a = a.T  # (channels, n) → (n, channels): the shorter axis is channels, as in to_mono
            if a.ndim not in (1, 2):
                raise InputError(
                    f"{name}: expected audio of shape (n,) or (n, channels), got shape {a.shape}"
                )
            if a.size == 0:
                raise InputError(f"{name}: audio is empty (0 samples)")
            step = max(1, int(_DECODE_BLOCK_SECONDS * sr))
            blocks: Any = (a[i : i + step] for i in range(0, a.shape[0], step))
        else:
            # Files: decoded (and resampled by one ResampleStream) block by block in audio.py.
            sr = self._sr
            blocks = iter_blocks(audio, sample_rate, target_sr=self._sr, block_seconds=_DECODE_BLOCK_SECONDS)
        # Offline, nobody waits for a window: run the model on full batches only (the
        # windows and their values are the same as block by block through process()).
        out: list[WindowResult] = []
        for block in blocks:
            self._ingest(block, sr)
            if self._n_ready() >= self.batch_size:
                out += self._emit(final=False, whole_batches=True)
        return out + self.flush()

    def prediction(self, *, top_k: int | None = None) -> Prediction:
        """Overall prediction of the windows so far (loudness-weighted, silent windows excluded)."""
        probs, rms, silent = self._arrays()
        return aggregate(self.labels, probs, rms, silent, sounding_seconds=self.sounding_seconds, top_k=top_k)

    def analysis(self, *, source: str = "stream") -> Analysis:
        """Timeline, detected instruments and overall prediction of the windows so far.

        Returns
        -------
        Analysis
            ``extras`` is empty (analyzer plugins run in :func:`analyze`, which has the file).
        """
        probs, rms, silent = self._arrays()
        res = self._results
        duration = self.duration
        times = np.array([[w.start, w.end] for w in res], dtype=np.float64).reshape(-1, 2)
        shown = mask_silent(probs, silent)
        m = self.model
        return Analysis(
            source=source,
            duration=duration,
            model=model_info(m),
            labels=m.labels,
            prediction=aggregate(m.labels, probs, rms, silent, sounding_seconds=self.sounding_seconds),
            timeline=build_timeline(times, probs, rms, silent, m.labels),
            instruments=detect_instruments(
                times, probs, rms, silent, m.labels, self.thresholds, smoothing=self.smoothing
            ),
            extras={},
            settings={
                "hop": self.hop_seconds,
                "window": self.window_seconds,
                "smoothing": self.smoothing,
                "thresholds": dict(self.thresholds),
                "silence_db": SILENCE_DB,
                "sample_rate": self._sr,
            },
            times=times,
            probabilities=shown,
            rms_db=rms,
            silent_windows=silent,
        )

    # ------------------------------------------------------------------ internals
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        res = self._results
        L = len(self.labels)
        probs = np.array([w.probabilities for w in res], dtype=np.float32).reshape(-1, L)
        rms = np.array([w.rms_db for w in res], dtype=np.float64)
        silent = np.array([w.silent for w in res], dtype=bool)
        return probs, rms, silent

    def _push(self, y: np.ndarray) -> None:
        if y.size == 0:
            return
        self._audio.append(y)
        self._total += y.shape[0]
        # Evidence: 512-sample blocks above the silence level.
        n_blocks = (self._total - self._ev_pos) // _EV_BLOCK
        if n_blocks:
            seg = self._audio.view(self._ev_pos, self._ev_pos + n_blocks * _EV_BLOCK).reshape(
                n_blocks, _EV_BLOCK
            )
            ms = _mean_square(seg)
            self._block_ms.append(ms)
            self._sounding += _EV_BLOCK * int(np.count_nonzero(_ms_db(ms) >= SILENCE_DB))
            self._ev_pos += n_blocks * _EV_BLOCK

    def _ready(self, final: bool) -> list[tuple[int, int]]:
        """(window index, real samples) of the windows that can be emitted now, at most one batch.

        Full windows as soon as their last sample is in; at the end of the stream, one
        zero-padded window for audio after the last full window (as the seed's framing did).
        """
        out: list[tuple[int, int]] = []
        k = self._next_win
        covered = self._last_full_end
        while len(out) < self.batch_size:
            s = k * self._hop_n
            if s + self._win <= self._total:
                out.append((k, self._win))
                covered = s + self._win
            else:
                if final and s < self._total and covered < self._total:
                    out.append((k, self._total - s))
                break
            k += 1
        return out

    def _emit(self, *, final: bool, whole_batches: bool = False) -> list[WindowResult]:
        """Run the model on the ready windows, ``batch_size`` at a time (``whole_batches``: full
        batches only, the rest waits for the next call)."""
        emitted: list[WindowResult] = []
        while True:
            ready = self._ready(final)
            if not ready or (whole_batches and len(ready) < self.batch_size):
                break
            for k, n in ready:
                s = k * self._hop_n
                # the padded last window covers the rest
                self._last_full_end = s + n if n == self._win else self._total
            rms = self._rms_db(ready)
            if self._pipelined and not final:
                # The whole batch (its STFT frames, features and the onnxruntime run) is a job on
                # a copy of its audio (each job computes the few frames it shares with the
                # previous batch again: about 6 % more FFTs, no shared state). It goes to the
                # worker threads while this thread decodes the next blocks; when every worker
                # has a job and one more is waiting, this thread runs the job itself instead of
                # waiting (``workers`` + 1 threads compute, none idles while there is work).
                job = self._batch_job(ready)
                self._done_with(ready)
                if sum(1 for f, _, _ in self._pending if not f.done()) > self._n_workers:
                    fut: Future[np.ndarray] = Future()
                    fut.set_result(job())
                else:
                    fut = self._worker().submit(job)
                self._pending.append((fut, ready, rms))
                # results go out in order; a few batches done by this thread may wait behind one
                # still on a worker (bounded: past it, this thread waits for the oldest)
                while self._pending and (
                    self._pending[0][0].done() or len(self._pending) > 2 * self._n_workers + 4
                ):
                    emitted += self._collect(*self._pending.popleft())
                continue
            probs = self._run_batch(ready, self._frames_view(ready), self._audio.view)
            self._done_with(ready)
            # At the end of the stream nothing is left to overlap with: the batches still in
            # flight are collected and the last ones run on this thread. A source that fits
            # in one batch (a clip through Model.predict) never starts the worker threads,
            # whose hand-offs cost more than the run itself on a busy machine.
            while self._pending:
                emitted += self._collect(*self._pending.popleft())
            emitted += self._results_of(ready, probs, rms)
        if final:
            while self._pending:
                emitted += self._collect(*self._pending.popleft())
        self._results.extend(emitted)
        if self.keep is not None and len(self._results) > self.keep:
            del self._results[: len(self._results) - self.keep]
        return emitted

    def _collect(self, fut: Any, ready: list[tuple[int, int]], rms: np.ndarray) -> list[WindowResult]:
        return self._results_of(ready, fut.result(), rms)

    def _results_of(
        self, ready: list[tuple[int, int]], probs: np.ndarray, rms: np.ndarray
    ) -> list[WindowResult]:
        out = []
        for (k, n), p, lv in zip(ready, probs, rms, strict=True):
            s = k * self._hop_n
            silent = bool(lv < SILENCE_DB)
            out.append(
                WindowResult(
                    index=k,
                    start=s / self._sr,
                    end=(s + n) / self._sr,
                    probabilities=p,
                    rms_db=float(lv),
                    silent=silent,
                    label=SILENCE_LABEL if silent else self.labels[int(np.argmax(p))],
                    n_samples=int(n),
                )
            )
        return out

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._n_workers, thread_name_prefix="instrunet-batch"
            )
        return self._executor

    def _batch_job(self, ready: list[tuple[int, int]]) -> Callable[[], np.ndarray]:
        """The work of one batch of full windows as a function of a copy of their audio (runs on
        a worker thread: it reads nothing that this thread changes)."""
        s0 = ready[0][0] * self._hop_n
        seg = self._audio.view(s0, ready[-1][0] * self._hop_n + self._win).copy()

        def audio_view(a: int, b: int) -> np.ndarray:
            return seg[a - s0 : b - s0]

        def job() -> np.ndarray:
            if self._waveform:
                return self._run_batch(ready, None, audio_view)
            first, last = self._frame_range(ready)
            frames = self._frames_db(first, last, audio_view)
            return self._run_batch(ready, lambda a, b: frames[a - first : b - first], audio_view)

        return job

    def _run_batch(
        self, ready: list[tuple[int, int]], frames_view: _View | None, audio_view: _View
    ) -> np.ndarray:
        """Model probabilities of the windows in ``ready``."""
        run = min(self.batch_size, _RUN_WINDOWS)
        if self._waveform:
            return self.model.predict_windows(self._windows(ready, audio_view), batch_size=run)
        assert frames_view is not None
        return self.model.predict_features(self._features(ready, frames_view, audio_view), batch_size=run)

    def _rms_db(self, ready: list[tuple[int, int]]) -> np.ndarray:
        """RMS level (dBFS) of the real samples of each window in ``ready``: from the evidence
        blocks' mean squares when the window is made of whole 512-sample blocks (the default
        front end's windows always are), else from its audio."""
        out = np.empty(len(ready), dtype=np.float64)
        for b, (k, n) in enumerate(ready):
            s = k * self._hop_n
            first, last = s // _EV_BLOCK, (s + n) // _EV_BLOCK  # whole blocks [first, last)
            whole = n > 0 and s % _EV_BLOCK == 0 and n % _EV_BLOCK == 0
            if whole and self._block_ms.base <= first and last <= self._block_ms.end:
                ms = float(np.mean(self._block_ms.view(first, last)))
            else:
                ms = float(_mean_square(self._audio.view(s, s + max(1, n))[None, :])[0])
            out[b] = _ms_db(ms)
        return out

    def _done_with(self, ready: list[tuple[int, int]]) -> None:
        """The windows in ``ready`` are computed (or their job holds what it needs): move on."""
        self._next_win = ready[-1][0] + 1
        self._forget()

    def _forget(self) -> None:
        """Drop audio, frames and evidence blocks that no later window needs."""
        s_next = self._next_win * self._hop_n
        self._block_ms.drop_before(s_next // _EV_BLOCK)
        if self._waveform:  # no stored frames: keep the audio of the next window on
            self._audio.drop_before(max(self._audio.base, min(s_next, self._ev_pos, self._audio.end)))
            return
        first_frame = self._next_win * self._hop_frames + self._inner[0]
        if self._frames.end < first_frame:  # hop longer than a window, or batches that made their own frames
            self._frames.restart(first_frame)
        else:
            self._frames.drop_before(first_frame)
        keep_from = min(s_next - self._pad, self._frames.end * self._H - self._pad, self._ev_pos)
        self._audio.drop_before(max(self._audio.base, min(keep_from, self._audio.end)))

    def _frames_db(self, f0: int, f1: int, audio_view: _View) -> np.ndarray:
        """dB mel of global frames ``[f0, f1)`` (frame ``f`` centred on sample ``f * hop_length``),
        transformed ``_FRAME_CHUNK`` frames at a time.

        Returns
        -------
        np.ndarray [shape=(f1 - f0, n_mels), dtype=float32]
        """
        fe = self._fe
        out = np.empty((max(0, f1 - f0), fe.n_mels), dtype=np.float32)
        for a in range(f0, f1, _FRAME_CHUNK):
            b = min(f1, a + _FRAME_CHUNK)
            seg = audio_view(a * self._H - self._pad, (b - 1) * self._H - self._pad + fe.n_fft)
            framed = np.lib.stride_tricks.sliding_window_view(seg, fe.n_fft)[:: self._H]
            out[a - f0 : b - f0] = _to_db(_power_mel(framed, fe)).T
        return out

    def _windows(self, ready: list[tuple[int, int]], audio_view: _View) -> np.ndarray:
        """Audio of the windows in ``ready``, zero-padded past the end of the stream.

        Returns
        -------
        np.ndarray [shape=(B, window_samples), dtype=float32]
        """
        W = np.zeros((len(ready), self._win), dtype=np.float32)
        for b, (k, n) in enumerate(ready):
            s = k * self._hop_n
            W[b, :n] = audio_view(s, s + n)
        return W

    def _frame_range(self, ready: list[tuple[int, int]]) -> tuple[int, int]:
        """Global frames ``[first, last)`` shared by the windows in ``ready`` (edge frames excluded)."""
        lo, hi = self._inner
        return ready[0][0] * self._hop_frames + lo, ready[-1][0] * self._hop_frames + hi

    def _frames_view(self, ready: list[tuple[int, int]]) -> _View:
        """The frames tape, after computing every frame these windows need that it lacks."""
        first, last = self._frame_range(ready)
        if self._frames.end < first:  # hop longer than a window: skip the unused frames
            self._frames.restart(first)
        self._frames.append(self._frames_db(self._frames.end, last, self._audio.view))
        return self._frames.view

    def _features(self, ready: list[tuple[int, int]], frames_view: _View, audio_view: _View) -> np.ndarray:
        """Model input of the windows in ``ready``, from their shared dB frames
        (``frames_view(a, b)``: global frames ``[a, b)``) and their audio (``audio_view``).

        Returns
        -------
        np.ndarray [shape=(B, n_mels, frames), dtype=float32]
        """
        fe = self._fe
        lo, hi = self._inner
        # 1. Edge frames: recomputed with the window's own zero padding.
        edges = self._left + self._right
        B = len(ready)
        X = np.empty((B, self._F, fe.n_mels), dtype=np.float32)
        edge_frames = np.zeros((B, len(edges), fe.n_fft), dtype=np.float32)
        for b, (k, _n) in enumerate(ready):
            s = k * self._hop_n
            g = k * self._hop_frames
            X[b, lo:hi] = frames_view(g + lo, g + hi)
            for e, j in enumerate(edges):
                a = s + j * self._H - self._pad
                a0, b0 = max(a, s), min(a + fe.n_fft, s + self._win)
                if b0 > a0:
                    edge_frames[b, e, a0 - a : b0 - a] = audio_view(a0, b0)
        if edges:
            X[:, edges] = _to_db(_power_mel(edge_frames, fe)).swapaxes(-1, -2)
        # 2. Per-window dB scaling, as the per-window front end does (in place: the same
        # operations in the same order, without a temporary per step).
        peak = X.max(axis=(1, 2), keepdims=True)
        X -= peak
        X += fe.top_db
        X /= fe.top_db
        np.clip(X, 0.0, 1.0, out=X)
        X[peak[:, 0, 0] <= _DB_FLOOR] = 0.0
        return np.ascontiguousarray(X.swapaxes(1, 2))


#: dB value of a frame with no energy (``10 log10(amin)``).
_DB_FLOOR = float(10.0 * np.log10(_AMIN))


def _to_db(mel: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(np.maximum(mel, _AMIN))).astype(np.float32, copy=False)


def _mean_square(blocks: np.ndarray) -> np.ndarray:
    """Mean square of each row of ``blocks`` [shape=(m, n)], in float64."""
    return np.mean(np.square(blocks, dtype=np.float64), axis=-1)


def _ms_db(ms: Any) -> Any:
    """Mean square → RMS level in dBFS (digital silence: -200)."""
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


def analyze(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    model: ModelSpec = None,
    hop: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    smoothing: int = DEFAULT_SMOOTHING,
    thresholds: Mapping[str, float] | None = None,
    registry: Registry | None = None,
    analyzers: bool = True,
    workers: int | None = None,
) -> Analysis:
    """Analyse a recording: which instruments play, when, and how strongly.

    Parameters
    ----------
    source : str, PathLike, binary file object, or np.ndarray [shape=(n,) or (n, channels)]
        Audio at any rate and channel count.
    sample_rate : int, optional
        Required when ``source`` is an array.
    model : Model, str, PathLike or None
        A loaded model, a registered model name, an artifact folder, or the default model.
    hop : float, optional
        Seconds between window starts (default 1.5, snapped to whole STFT frames: 1.5093 s).
    batch_size : int
        Most windows per model run.
    smoothing : int
        Moving-median length (windows) applied to each label's probability before
        thresholding; 1 disables it.
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's.
    registry : Registry, optional
        Where models and analyzers come from (default: :func:`instrunet_core.get_registry`).
    analyzers : bool
        Run registered analyzer plugins into ``extras``.
    workers : int, optional
        Worker threads analysing batches of windows side by side (see :class:`Classifier`).

    Returns
    -------
    Analysis

    Raises
    ------
    DecodeError, InputError, ModelError

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> a = instrunet_core.analyze(np.zeros(44100, np.float32), 44100)  # doctest: +SKIP
    >>> a.label, a.confidence, a.instruments  # doctest: +SKIP
    ('silence', 1.0, [])
    """
    if isinstance(source, np.ndarray) and sample_rate is None:
        raise InputError("array: sample_rate is required for array input")
    clf = Classifier(
        model,
        hop=hop,
        thresholds=thresholds,
        smoothing=smoothing,
        batch_size=batch_size,
        registry=registry,
        workers=workers,
    )
    src = rereadable_source(source)
    clf.classify(src, sample_rate)
    an = clf.analysis(source=os.fspath(source_name(source)))
    if analyzers:
        reg = registry or get_registry()
        if reg.analyzers:
            an.extras = _run_analyzers(
                reg, AnalysisContext(source=src, sample_rate_in=sample_rate, analysis=an)
            )
    return an
