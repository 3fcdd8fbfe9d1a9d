"""The one inference path: a push-style :class:`Classifier` — blocks in, windows out.

Everything that classifies audio goes through :class:`Classifier`:
:meth:`instrunet_core.Model.predict`, :func:`analyze`, the ``instrunet`` CLI and the host
adapters (Pedalboard, web app, Ray) built on the core.

This module orchestrates; the work is done by three others, one job each:

* :mod:`instrunet_core.inputs` checks each block, mixes it to mono and resamples it to the
  front end's rate (22,050 Hz) with one stream resampler per stream, so where the blocks are
  cut never changes the result;
* :class:`instrunet_core.features.WindowStream` cuts the stream into windows on a grid of STFT
  frames (the hop snapped to whole frames: the default 1.5 s becomes 65 frames = 1.5093 s),
  shares the frames between overlapping windows, computes each window's features and level;
* :class:`instrunet_core.scheduler.BatchPipeline` runs whole batches on worker threads while
  this thread decodes, in :meth:`Classifier.classify`.

A window is emitted by the :meth:`~Classifier.process` call that completes it, in batches of
at most ``batch_size`` (onnxruntime runs ``_RUN_WINDOWS``, 4, at a time); :meth:`~Classifier.flush`
ends the stream with one zero-padded window for the rest. Memory is bounded: one window of
audio and of frames plus the current call's; ``keep`` bounds an endless stream's results.

Short and sparse input
----------------------
Windows below :data:`~instrunet_core.features.SILENCE_DB` are silent and never vote; the others
vote with a weight equal to their loudness relative to the loudest window, so a window that
holds only the tail of a note hardly counts. Audio holding less than
:data:`~instrunet_core.analysis.LOW_EVIDENCE_SECONDS` of sound still gets an answer, marked
``low_evidence`` (in :class:`~instrunet_core.analysis.Prediction`, :class:`Analysis`, their
JSON and the CLI's output).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .analysis import (
    OTHER_LABEL,
    SILENCE_LABEL,
    Analysis,
    AnalysisContext,
    Embedding,
    Prediction,
    WindowResult,
    aggregate,
    embedding_of,
)
from .audio import AudioSource, _rewind, audio_info, iter_blocks, rereadable_source, source_name
from .errors import InputError, InstrunetError
from .features import DEFAULT_BATCH_SIZE, LEVEL_BLOCK, SILENCE_DB, Ready, WindowStream
from .hookspecs import BlockListener
from .inputs import block_to_mono, check_count, check_sample_rate, check_threads, resampler
from .model import Model, ModelOutputs, ModelSpec, open_model
from .output import model_info
from .registry import Registry, get_registry
from .scheduler import BatchPipeline, StreamOwner, default_workers
from .session import RuntimeOptions
from .timeline import (
    DEFAULT_MIN_DURATION,
    DEFAULT_SMOOTHING,
    EVIDENCE_HOP,
    Activity,
    Detection,
    activity,
    build_timeline,
    detect_instruments,
    doubtful_spans,
    mask_silent,
    with_overrides,
)

__all__ = ["Classifier", "analyze"]

#: Native-rate seconds decoded per block by :meth:`Classifier.classify`.
_DECODE_BLOCK_SECONDS = 20.0
#: Most windows per onnxruntime run inside a batch. Per window, runs of 4 were the fastest
#: measured here for both packaged networks (``family-compact`` about a sixth faster than runs
#: of 16, ``family`` a few per cent): larger runs outgrow the core's cache.
_RUN_WINDOWS = 4


class Classifier:
    """Stateful, push-style classification of a stream: feed blocks, get windows.

    Parameters
    ----------
    model : Model, str, PathLike or None
        A loaded model, a registered model name, an artifact folder (or its
        ``manifest.json``), or ``None`` for the default model.
    hop : float, optional
        Seconds between window starts (default
        :data:`~instrunet_core.features.DEFAULT_HOP_SECONDS`), snapped to a whole number of
        STFT frames (see :attr:`hop_seconds`).
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's (used by :meth:`analysis`).
    smoothing : float
        Seconds of moving mean applied to each label's probability over time before its
        threshold (0 disables it); see :mod:`instrunet_core.timeline`.
    min_duration : float
        Seconds a label must be present to be reported, and absent to split a range.
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
        :func:`~instrunet_core.scheduler.default_workers` (one fewer than the usable cores, at
        least 1, at most 4); at most :data:`~instrunet_core.inputs.MAX_THREADS` (256).
    options : RuntimeOptions, optional
        How onnxruntime runs the model when ``model`` is not a loaded :class:`Model`.
    registry : Registry, optional
        Where a model name is resolved (default: :func:`instrunet_core.get_registry`).
    embeddings : bool
        Keep each window's embedding (:attr:`WindowResult.embedding`, :meth:`embedding`);
        needs a model with an embedding output (:attr:`Model.embedding_dim`).

    Attributes
    ----------
    model : Model
    labels : tuple of str
        Output order of every probability vector.
    workers : int
        Worker threads of the :meth:`classify` pipeline (the calling thread computes batches too).
    window_seconds : float
        Length of one analysis window (2.949 s for the shipped models).
    hop_seconds : float
        Seconds between window starts, after snapping to whole STFT frames.
    latency_seconds : float
        Audio between a window's first sample and the call that emits it: one window (input at
        a rate other than 22,050 Hz adds the resampler's delay, a few ms).

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
    A classifier holds the state of one stream: use one per stream and per thread. One thread
    feeds it at a time (:meth:`process`, :meth:`flush`, :meth:`classify`, :meth:`reset`); a
    call from a second thread while the first is inside one raises
    :class:`~instrunet_core.errors.ConcurrentUseError` rather than mixing the two streams.
    Calls that follow each other may come from different threads, and any thread may read
    :attr:`results`, :meth:`prediction` and :meth:`analysis` (they wait for the feeding call in
    progress). The model it runs is stateless and may be shared by many classifiers and threads.
    """

    def __init__(
        self,
        model: ModelSpec = None,
        *,
        hop: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        smoothing: float = DEFAULT_SMOOTHING,
        min_duration: float = DEFAULT_MIN_DURATION,
        batch_size: int = DEFAULT_BATCH_SIZE,
        keep: int | None = None,
        pipeline: bool = True,
        workers: int | None = None,
        options: RuntimeOptions | None = None,
        registry: Registry | None = None,
        embeddings: bool = False,
    ) -> None:
        self._owner = StreamOwner("Classifier")
        self.model: Model = open_model(model, options=options, registry=registry)
        if embeddings and self.model.embedding_dim is None:
            raise InputError(f"{self.model.name} {self.model.version} has no embedding output")
        self.embeddings = bool(embeddings)
        # A waveform-input artifact computes its features in the graph: windows go in as audio.
        self._waveform = self.model.input_kind == "waveform"
        self._fe = self.model.front_end
        self._sr = self._fe.sample_rate
        self._stream = WindowStream(self._fe, hop, share_frames=not self._waveform)
        self.labels: tuple[str, ...] = self.model.labels
        self.window_seconds = self._fe.window_samples / self._sr
        self.latency_seconds = self.window_seconds
        self.hop_seconds = self._stream.hop_samples / self._sr
        self.detection = Detection(smoothing=smoothing, min_duration=min_duration, silence_db=SILENCE_DB)
        self.smoothing = self.detection.smoothing
        self.batch_size = check_count(batch_size, name="batch_size")
        self.keep = None if keep is None else check_count(keep, name="keep")
        self.pipeline = bool(pipeline)
        self.workers = default_workers() if workers is None else check_threads(workers, name="workers")
        self._pipe: BatchPipeline[ModelOutputs] = BatchPipeline(self.workers)
        self._pipelined = False
        self.thresholds: dict[str, float] = with_overrides(self.model.thresholds, thresholds)
        self.other_threshold = self.model.other_threshold
        self.reset()

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int | None:
        """Rate of the blocks fed so far (``None`` before the first block)."""
        return self._sr_in

    @property
    def duration(self) -> float:
        """Seconds of audio received so far (at the front end's rate, after resampling)."""
        return self._stream.total / self._sr

    @property
    def level_step(self) -> float:
        """Seconds per block of the level track (512 samples at the front end's rate: 23 ms)."""
        return LEVEL_BLOCK / self._sr

    def level_db(self, first: int = 0) -> np.ndarray:
        """The level track from block ``first``: each 512-sample block's RMS in dBFS (the last
        block, partial, once the stream is flushed); the time grid of :meth:`activity`.

        Returns
        -------
        np.ndarray [shape=(m,), dtype=float32]
        """
        return self._stream.level_db(first)

    @property
    def sounding_seconds(self) -> float:
        """Seconds of audio above the silence level so far (in 512-sample blocks)."""
        return self._stream.sounding_samples / self._sr

    @property
    def finished(self) -> bool:
        """True after :meth:`flush` (until :meth:`reset`)."""
        return self._finished

    @property
    def settings(self) -> dict[str, Any]:
        """``hop``, ``window``, ``smoothing``, ``thresholds``, ``other_threshold``, ``silence_db``,
        ``sample_rate`` (as :attr:`Analysis.settings` records them)."""
        return {
            "hop": self.hop_seconds,
            "window": self.window_seconds,
            **self.detection.to_dict(),
            "thresholds": dict(self.thresholds),
            "other_threshold": self.other_threshold,
            "silence_db": SILENCE_DB,
            "sample_rate": self._sr,
            "evidence_windows": len(self._evidence),
        }

    @property
    def results(self) -> list[WindowResult]:
        """Windows emitted since :meth:`reset` (the last ``keep`` of them when ``keep`` is set)."""
        with self._owner.reading():
            return list(self._results)

    # ------------------------------------------------------------------ stream
    def reset(self) -> None:
        """Forget the stream: audio, frames, results and the input rate."""
        with self._owner.feeding("reset"):
            self._reset()

    def _reset(self) -> None:
        self._sr_in: int | None = None
        self._rs: Any = None
        self._stream.reset()
        self._finished = False
        self._results: list[WindowResult] = []
        self._evidence: list[WindowResult] = []  # windows added by refine()
        self._level_from = 0  # first block of the level track kept
        self._pipe.clear()

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
        ConcurrentUseError
            Another thread is feeding this classifier.
        """
        with self._owner.feeding("process"):
            self._ingest(block, sample_rate)
            return self._emit(final=False)

    def _ingest(self, block: np.ndarray, sample_rate: int) -> None:
        """Check, mix down, resample and store a block (no windows emitted)."""
        if self._finished:
            raise InputError("block: the stream was flushed; call reset() to start a new one")
        sr = check_sample_rate(sample_rate, what="block")
        if self._sr_in is None:
            self._sr_in = sr
            self._rs = resampler(sr, self._sr)
        elif sr != self._sr_in:
            raise InputError(
                f"block: sample rate changed from {self._sr_in} to {sr} Hz within a stream; call reset() first"
            )
        y = block_to_mono(block)
        if self._rs is not None:
            y = self._rs.resample_chunk(y, last=False)
        self._stream.push(y)

    def flush(self) -> list[WindowResult]:
        """End the stream: emit the zero-padded last window (or the only one of short audio).

        Returns
        -------
        list of WindowResult
            Windows completed by the end of the stream (empty when nothing was fed or
            the audio ended exactly on a window).
        """
        with self._owner.feeding("flush"):
            if self._finished:
                return []
            if self._rs is not None:
                self._stream.push(self._rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self._finished = True
            out = self._emit(final=True)
            self._stream.finish()
            return out

    def classify(
        self, audio: AudioSource, sample_rate: int | None = None, *, listener: BlockListener | None = None
    ) -> list[WindowResult]:
        """Reset, feed a whole source (file, file object or array) block by block, and flush.

        Parameters
        ----------
        audio : str, PathLike, binary file object or np.ndarray
        sample_rate : int, optional
            Required for an array.
        listener : BlockListener, optional
            Fed in the same pass: ``listener.push(block, start)`` with every decoded block
            (mono float32 at :attr:`model`'s front-end rate; ``start``: its first sample's index)
            and ``listener.windows(results)`` with the windows as they are classified. This is
            how :func:`analyze` runs streaming analyzers without decoding the source again.

        Returns
        -------
        list of WindowResult
            Every window of the source (also in :attr:`results`).

        Raises
        ------
        DecodeError, InputError
        ConcurrentUseError
            Another thread is feeding this classifier.
        """
        with self._owner.feeding("classify"):
            return self._classify(audio, sample_rate, listener)

    def _classify(
        self, audio: AudioSource, sample_rate: int | None, listener: BlockListener | None
    ) -> list[WindowResult]:
        self._reset()
        self._pipelined = self.pipeline
        try:
            # Decoded, mixed and resampled by one stream resampler, block by block, in audio.py.
            blocks = iter_blocks(audio, sample_rate, target_sr=self._sr, block_seconds=_DECODE_BLOCK_SECONDS)
            if isinstance(audio, np.ndarray):
                self._sr_in = check_sample_rate(sample_rate, what=source_name(audio))
            else:
                self._sr_in = self._sr
            out: list[WindowResult] = []
            for block in blocks:
                start = self._stream.total
                self._stream.push(block)
                if listener is not None and block.size:
                    listener.push(block, start)
                # Offline, nobody waits for a window: run the model on full batches only (the
                # windows and their values are the same as block by block through process()).
                if self._stream.n_ready() >= self.batch_size:
                    new = self._emit(final=False, whole_batches=True)
                    if listener is not None and new:
                        listener.windows(new)
                    out += new
            last = self.flush()
            if listener is not None and last:
                listener.windows(last)
            return out + last
        finally:
            self._pipelined = False
            self._pipe.clear()  # after an error: drop the batches still in flight

    # ------------------------------------------------------------------ results
    def prediction(self, *, top_k: int | None = None) -> Prediction:
        """Overall prediction of the windows so far (loudness-weighted, silent windows excluded)."""
        with self._owner.reading():
            probs, rms, silent, other = self._arrays()
            return aggregate(
                self.labels,
                probs,
                rms,
                silent,
                sounding_seconds=self.sounding_seconds,
                top_k=top_k,
                other=other,
                other_threshold=self.other_threshold,
            )

    def embedding(self) -> Embedding:
        """The windows' embeddings so far and the recording's (their loudness-weighted mean,
        silent windows left out), L2-normalised; needs ``embeddings=True``."""
        if not self.embeddings:
            raise InputError("this Classifier was made without embeddings=True")
        with self._owner.reading():
            res = self._results
            _, rms, silent, _ = self._arrays()
            vectors = np.array([w.embedding for w in res], dtype=np.float32).reshape(len(res), -1)
            times = np.array([[w.start, w.end] for w in res], dtype=np.float64).reshape(-1, 2)
            return embedding_of(vectors, times, rms, silent, model=model_info(self.model))

    def analysis(self, *, source: str = "stream") -> Analysis:
        """Timeline, detected instruments and overall prediction of the windows so far.

        Returns
        -------
        Analysis
            ``extras`` is empty (analyzer plugins run in :func:`analyze`, which has the file).
        """
        with self._owner.reading():
            return self._analysis(source)

    def _analysis(self, source: str) -> Analysis:
        probs, rms, silent, other = self._arrays()
        times = np.array([[w.start, w.end] for w in self._results], dtype=np.float64).reshape(-1, 2)
        m = self.model
        prediction = aggregate(
            m.labels,
            probs,
            rms,
            silent,
            sounding_seconds=self.sounding_seconds,
            other=other,
            other_threshold=self.other_threshold,
        )
        act = self.activity()
        return Analysis(
            source=source,
            duration=self.duration,
            model=model_info(m),
            labels=m.labels,
            prediction=prediction,
            timeline=build_timeline(times, probs, rms, silent, m.labels, other=other),
            instruments=detect_instruments(act, prediction.probabilities),
            extras={},
            settings=self.settings,
            times=times,
            probabilities=mask_silent(probs, silent),
            rms_db=rms,
            silent_windows=silent,
            other=None if other is None else np.where(silent, 0.0, other).astype(np.float32),
            activity=act,
        )

    def activity(self) -> Activity:
        """The time axis of the stream so far (:func:`instrunet_core.timeline.activity`): each
        label's smoothed probability and presence every 23 ms, from the windows (and those
        :meth:`refine` added) and the level track."""
        with self._owner.reading():
            return self._activity()

    def _activity(self) -> Activity:
        wins = sorted([*self._results, *self._evidence], key=lambda w: (w.start + w.end) / 2)
        L = len(self.labels)
        step = LEVEL_BLOCK / self._sr
        first = self._level_from
        return activity(
            np.array([(w.start + w.end) / 2 for w in wins], dtype=np.float64),
            np.array([w.probabilities for w in wins], dtype=np.float32).reshape(len(wins), L),
            np.array([w.silent for w in wins], dtype=bool),
            self._stream.level_db(first),
            step=step,
            duration=self.duration,
            labels=self.labels,
            thresholds=self.thresholds,
            detection=self.detection,
            other=None if self.other_threshold is None else np.array([w.other for w in wins], np.float32),
            other_threshold=self.other_threshold,
            start=first * step,
            start_edge=first == 0,
        )

    def refine(self, audio: AudioSource, sample_rate: int | None = None) -> int:
        """Add windows where the hop's windows leave a label's presence in doubt.

        Where a non-silent window's probability is within
        :data:`~instrunet_core.timeline.REFINE_MARGIN` of the threshold of a label that is
        neither clearly present nor clearly absent, the stretch a hop on each side of it gets
        windows every :data:`~instrunet_core.timeline.EVIDENCE_HOP` seconds (0.5 s), read again
        from ``audio``: evidence for :meth:`activity` (presence, ranges), not timeline segments,
        and not counted in :meth:`prediction`. With a hop of 0.5 s or less there is nothing to add.

        Parameters
        ----------
        audio, sample_rate
            The source given to :meth:`classify` (read again).

        Returns
        -------
        int
            Windows added.

        Raises
        ------
        InputError
            The stream has not been classified to its end.
        """
        with self._owner.feeding("refine"):
            return self._refine(audio, sample_rate)

    def _refine(self, audio: AudioSource, sample_rate: int | None) -> int:
        if not self._finished:
            raise InputError(
                "refine: classify the whole source first (classify(), or process() then flush())"
            )
        stream = WindowStream(self._fe, EVIDENCE_HOP, share_frames=not self._waveform)
        if stream.hop_samples >= self._stream.hop_samples or not self._results:
            return 0
        probs, _, silent, other = self._arrays()
        centres = np.array([(w.start + w.end) / 2 for w in self._results], dtype=np.float64)
        spans = doubtful_spans(self.activity(), centres, probs, silent, spacing=self.hop_seconds, other=other)
        if not spans:
            return 0
        lo = np.array([a for a, _ in spans])
        hi = np.array([b for _, b in spans])
        have = {round(w.start * self._sr) for w in self._results}
        added: list[WindowResult] = []

        def take(final: bool) -> None:
            while ready := stream.ready(self.batch_size, final=final):
                sel = []
                for k, n in ready:
                    s = stream.start(k)
                    c = (s + n / 2) / self._sr
                    i = int(np.searchsorted(lo, c, side="right")) - 1
                    if s not in have and i >= 0 and c <= hi[i]:
                        sel.append((k, n))
                if sel:
                    rms = stream.levels(sel)
                    x = stream.windows(sel) if self._waveform else stream.features(sel)
                    added.extend(self._results_of([((sel, rms), self._run(x))], stream=stream))
                stream.advance(ready)

        if isinstance(audio, np.ndarray):
            sample_rate = check_sample_rate(sample_rate, what=source_name(audio))
        last = float(hi[-1]) + self.window_seconds
        _rewind(audio)  # a file object stands where classify() stopped reading it
        for block in iter_blocks(audio, sample_rate, target_sr=self._sr, block_seconds=_DECODE_BLOCK_SECONDS):
            stream.push(block)
            take(final=False)
            if stream.total / self._sr > last:
                break
        else:
            stream.finish()
            take(final=True)
        self._evidence = added
        return len(added)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Probabilities, levels, silence flags and (open-set models) "other" probabilities."""
        res = self._results
        probs = np.array([w.probabilities for w in res], dtype=np.float32).reshape(-1, len(self.labels))
        rms = np.array([w.rms_db for w in res], dtype=np.float64)
        silent = np.array([w.silent for w in res], dtype=bool)
        other = None if self.other_threshold is None else np.array([w.other for w in res], dtype=np.float32)
        return probs, rms, silent, other

    # ------------------------------------------------------------------ internals
    def _emit(self, *, final: bool, whole_batches: bool = False) -> list[WindowResult]:
        """Run the model on the ready windows, ``batch_size`` at a time (``whole_batches``: full
        batches only, the rest waits for the next call)."""
        stream = self._stream
        emitted: list[WindowResult] = []
        while True:
            ready = stream.ready(self.batch_size, final=final)
            if not ready or (whole_batches and len(ready) < self.batch_size):
                break
            rms = stream.levels(ready)
            if self._pipelined and not final:
                # The whole batch is one job on a copy of its audio, for a worker thread (or
                # this one, when every worker is busy) while this thread decodes the next blocks.
                job = self._batch_job(ready)
                stream.advance(ready)
                emitted += self._results_of(self._pipe.submit(job, (ready, rms)))
                continue
            x = stream.windows(ready) if self._waveform else stream.features(ready)
            stream.advance(ready)
            probs = self._run(x)
            # At the end of the stream nothing is left to overlap with: the batches still in
            # flight are collected and the last ones run on this thread. A source that fits
            # in one batch (a clip through Model.predict) never starts the worker threads,
            # whose hand-offs cost more than the run itself on a busy machine.
            emitted += self._results_of([*self._pipe.drain(), ((ready, rms), probs)])
        if final:
            emitted += self._results_of(self._pipe.drain())
        self._results.extend(emitted)
        if self.keep is not None and len(self._results) > self.keep:
            del self._results[: len(self._results) - self.keep]
            # the level track from the oldest window kept (bounded memory for endless streams)
            self._level_from = int(round(self._results[0].start * self._sr)) // LEVEL_BLOCK
            self._stream.forget_levels(self._level_from)
        return emitted

    def _batch_job(self, ready: Ready) -> Callable[[], ModelOutputs]:
        """Outputs of a batch of full windows, as a function to run on a worker thread."""
        model_input = self._stream.detached(ready)
        return lambda: self._run(model_input())

    def _run(self, x: np.ndarray) -> ModelOutputs:
        """Model outputs of a batch of model inputs (features or window audio)."""
        run = min(self.batch_size, _RUN_WINDOWS)
        if self._waveform:
            return self.model.outputs_windows(x, batch_size=run, embedding=self.embeddings)
        return self.model.outputs_features(x, batch_size=run, embedding=self.embeddings)

    def _results_of(
        self, batches: list[tuple[tuple[Ready, np.ndarray], ModelOutputs]], stream: WindowStream | None = None
    ) -> list[WindowResult]:
        """The windows of computed batches: ``((ready, levels), outputs)`` each."""
        out = []
        stream = stream or self._stream
        for (ready, rms), outs in batches:
            for j, ((k, n), lv) in enumerate(zip(ready, rms, strict=True)):
                s = stream.start(k)
                silent = bool(lv < SILENCE_DB)
                p = outs.probabilities[j]
                other = None if outs.other is None else float(outs.other[j])
                if silent:
                    label = SILENCE_LABEL
                elif other is not None and other >= (self.other_threshold or 0.5) and other > p.max():
                    label = OTHER_LABEL
                else:
                    label = self.labels[int(np.argmax(p))]
                out.append(
                    WindowResult(
                        index=k,
                        start=s / self._sr,
                        end=(s + n) / self._sr,
                        probabilities=p,
                        rms_db=float(lv),
                        silent=silent,
                        label=label,
                        n_samples=int(n),
                        other=other,
                        embedding=None if outs.embedding is None else outs.embedding[j],
                    )
                )
        return out


def analyze(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    model: ModelSpec = None,
    hop: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    smoothing: float = DEFAULT_SMOOTHING,
    min_duration: float = DEFAULT_MIN_DURATION,
    thresholds: Mapping[str, float] | None = None,
    registry: Registry | None = None,
    analyzers: bool | Sequence[str] = True,
    workers: int | None = None,
    embeddings: bool = False,
    refine: bool = True,
    progress: Callable[[str, float], Any] | None = None,
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
    smoothing : float
        Seconds of moving mean applied to each label's probability over time before its
        threshold (0 disables it).
    min_duration : float
        Seconds a label must be present to be reported, and absent to split a range.
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's.
    registry : Registry, optional
        Where models and analyzers come from (default: :func:`instrunet_core.get_registry`).
    analyzers : bool or sequence of str
        Run the registered analyzer plugins into ``extras``: all (``True``), none (``False``)
        or those named.
    workers : int, optional
        Worker threads analysing batches of windows side by side (see :class:`Classifier`).
    embeddings : bool
        Also compute the embeddings (:attr:`Analysis.embedding`; the model needs an embedding
        output).
    refine : bool
        Read the source again where the hop's windows leave a label's presence in doubt, for
        windows every 0.5 s there (:meth:`Classifier.refine`), so that what is detected does not
        depend on the hop.
    progress : callable, optional
        ``progress(step, fraction)`` as each step after reading the source starts:
        ``("refine", 0.0)``, then ``("analyzer NAME", i / n)`` before each analyzer.

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
        min_duration=min_duration,
        batch_size=batch_size,
        registry=registry,
        workers=workers,
        embeddings=embeddings,
    )
    reg = registry or get_registry()
    names = _analyzer_names(reg, analyzers)
    src = rereadable_source(source)
    context = None
    feed = None
    if names:
        # Streaming analyzers are fed the blocks and windows of this one pass; whole-file ones
        # run after it.
        context = AnalysisContext(
            source=src,
            sample_rate_in=sample_rate,
            labels=clf.labels,
            model=model_info(clf.model),
            settings=clf.settings,
            expected_duration=_expected_duration(src, sample_rate),
        )
        feed = reg.open_streams(context, names=names)
    clf.classify(src, sample_rate, listener=feed if feed else None)
    if refine:
        if progress is not None:
            progress("refine", 0.0)
        clf.refine(src, sample_rate)
    an = clf.analysis(source=os.fspath(source_name(source)))
    if embeddings:
        an.embedding = clf.embedding()
    if context is not None:
        context.complete(an)
        for i, name in enumerate(names):
            if progress is not None:
                progress(f"analyzer {name}", i / len(names))
            an.extras.update(reg.run_analyzers(context, feed, names=[name]))
    return an


def _expected_duration(source: AudioSource, sample_rate: int | None) -> float | None:
    """Seconds the source says it holds, read from its header (``None`` when it cannot say)."""
    try:
        d = audio_info(source, sample_rate).duration
    except (InstrunetError, OSError, ValueError):
        return None  # decoding reports the problem
    return float(d) if d > 0 else None


def _analyzer_names(reg: Registry, analyzers: bool | Sequence[str]) -> list[str]:
    """The registered analyzers to run: all, none, or those named (each must be registered)."""
    if analyzers is True:
        return list(reg.analyzers)
    if analyzers is False or analyzers is None:
        return []
    if isinstance(analyzers, str):
        raise InputError(f"analyzers: give a list of names, not the string {analyzers!r}")
    names = [str(n) for n in analyzers]
    unknown = [n for n in names if n not in reg.analyzers]
    if unknown:
        raise InputError(
            f"analyzers: unknown {', '.join(map(repr, unknown))} (registered: {', '.join(reg.analyzers) or 'none'})"
        )
    return list(dict.fromkeys(names))
