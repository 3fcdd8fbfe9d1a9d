"""The one inference path: a push-style :class:`Classifier` — blocks in, windows out.

Everything that classifies audio goes through :class:`Classifier`:
:meth:`instrunet_core.Model.predict`, :func:`~instrunet_core.analyze`, the ``instrunet`` CLI
and the host adapters (Pedalboard, web app, Ray) built on the core.

The classifier feeds a stream and runs the model; the rest is done by one module each:

* :mod:`instrunet_core.inputs` checks each block, mixes it to mono and resamples it (one
  stream resampler per stream: where the blocks are cut never changes the result), and
  :mod:`instrunet_core.audio` decodes a whole source into such blocks;
* :class:`instrunet_core.features.WindowStream` cuts the stream into windows on a grid of STFT
  frames (the hop snapped to whole frames: the default 1.5 s becomes 65 frames = 1.5093 s),
  shares the frames between overlapping windows, computes each window's features and level;
* :class:`instrunet_core.scheduler.BatchPipeline` runs whole batches on worker threads while
  this thread decodes, in :meth:`Classifier.classify` and :meth:`Classifier.refine`;
* :class:`~instrunet_core.windowlog.WindowLog` keeps the windows and what is read off them;
  :mod:`instrunet_core.refine` reads doubtful stretches again.

A window is emitted by the :meth:`~Classifier.process` call that completes it, in batches of
at most ``batch_size``; :meth:`~Classifier.flush` ends the stream with one window for the
rest, aligned to the end (:func:`~instrunet_core.features.end_window_frame`). Memory is
bounded: one window and one hop of audio and of frames plus the current call's
(``classify(keep_evidence=True)`` adds what :meth:`~Classifier.refine` will need, at most
:data:`~instrunet_core.refine.EVIDENCE_STORE_MAX_BYTES`); ``keep`` bounds an endless stream's
results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .analysis import Analysis, Embedding, Prediction, WindowResult
from .audio import DECODE_BLOCK_SECONDS, AudioSource, _position, iter_blocks, source_name
from .errors import InputError, warn
from .features import DEFAULT_BATCH_SIZE, LEVEL_BLOCK, SILENCE_DB, WindowStream
from .hookspecs import BlockListener
from .inputs import (
    SampleRate,
    block_to_mono,
    check_count,
    check_flag,
    check_sample_rate,
    check_threads,
    resampler,
)
from .model import Model, ModelOutputs, ModelSpec, open_model
from .output import model_info
from .refine import EvidenceStore, doubtful, grid_phases, read_evidence, read_kept
from .registry import Registry
from .scheduler import BatchPipeline, StreamOwner, default_workers, job_of
from .session import RuntimeOptions
from .timeline import (
    DEFAULT_MIN_DURATION,
    DEFAULT_SMOOTHING,
    Activity,
    with_overrides,
)
from .windowlog import WindowLog

__all__ = ["Classifier"]


#: Channels a stream's first block may have more of than samples (7.1 audio fed one sample at a
#: time); beyond, such a block is taken for a ``(channels, n)`` slip (:meth:`Classifier.process`).
FEW_CHANNELS = 8


#: Seconds of audio between two windows (a hop longer than a window) beyond which a
#: :class:`Classifier` warns that sound there is not classified.
UNREAD_GAP_SECONDS = 0.1


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
        Seconds a label must be present to be reported (or over all of a shorter sound), and
        absent to split a range.
    other_veto : float, optional
        Open-set models: where "none of the labels" is the answer with at least this smoothed
        probability, no label is detected (:attr:`~instrunet_core.timeline.Detection.other_veto`;
        1 turns it off). Default: the model's own (:attr:`Model.other_veto`).
    leading : int, optional
        How many of the most probable labels at a moment need only their thresholds there; a
        label behind them needs its threshold plus the model's margin for it
        (:attr:`~instrunet_core.timeline.Detection.leading`). Default: the model's own
        (:attr:`Model.leading`); 0: every label at its threshold alone.
    batch_size : int
        Most windows per batch: the windows whose features are computed together (from shared
        frames) and, in :meth:`classify`, one job of the worker threads. onnxruntime takes a
        batch at most 4 windows per run (the fastest per window measured here).
    keep : int, optional
        Keep only the last ``keep`` results (bounded memory for endless streams); all when
        omitted.
    pipeline : bool
        In :meth:`classify` and :meth:`refine`, run each batch of windows (its STFT frames,
        features and onnxruntime run) on a :class:`~instrunet_core.scheduler.BatchPipeline`
        while the calling thread decodes (default True; the same results either way, within
        float32 rounding).
        :meth:`process` always runs synchronously, and so does a source of one batch.
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
        Audio between a window's first sample and the call that emits it: one window. Input at a
        rate other than 22,050 Hz adds what the resampler holds back, which varies from window
        to window up to :func:`~instrunet_core.inputs.resampler_holdback` (42 ms at
        44.1 kHz, 38 ms at 48 kHz, 0.12 s at 8 kHz, about a second at 1 kHz).
    damage : str or None
        After :meth:`classify`: why the file's decoding ended before its end (a FLAC cut
        short, a damaged MP3: the message also given as a ``RuntimeWarning``), the results
        covering what decoded; ``None`` when it decoded whole.

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
        other_veto: float | None = None,
        leading: int | None = None,
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
        self.embeddings = check_flag(embeddings, name="embeddings", what="Classifier")
        if self.embeddings and self.model.embedding_dim is None:
            raise InputError(f"{self.model.name} {self.model.version} has no embedding output")
        # A waveform-input artifact computes its features in the graph: windows go in as audio.
        self._waveform = self.model.input_kind == "waveform"
        self._fe = self.model.front_end
        self._sr = self._fe.sample_rate
        self._stream = WindowStream(self._fe, hop, share_frames=not self._waveform)
        self.labels: tuple[str, ...] = self.model.labels
        self.window_seconds = self.latency_seconds = self._fe.window_samples / self._sr
        self.hop_seconds = self._stream.hop_samples / self._sr
        if self._stream.hop_samples - self._fe.window_samples > UNREAD_GAP_SECONDS * self._sr:
            # (a few STFT frames between windows, as at --hop 3, are said in the docs, not each time)
            gap = 1.0 - self._fe.window_samples / self._stream.hop_samples
            warn(
                f"hop {self.hop_seconds:.4g} s is longer than a window ({self.window_seconds:.4g} s): "
                f"{gap:.0%} of the audio lies between windows and is not classified (a sound there "
                "is missed; only the end is always read)"
            )
        self.detection = self.model.detection(
            smoothing=smoothing, min_duration=min_duration, other_veto=other_veto, leading=leading
        )
        self.batch_size = check_count(batch_size, name="batch_size")
        self.pipeline = check_flag(pipeline, name="pipeline", what="Classifier")
        self.workers = default_workers() if workers is None else check_threads(workers, name="workers")
        self._pipe: BatchPipeline[ModelOutputs] = BatchPipeline(self.workers)
        self.thresholds: dict[str, float] = with_overrides(self.model.thresholds, thresholds)
        keep = None if keep is None else check_count(keep, name="keep")
        other = self.model.other_threshold
        self._log = WindowLog(self.labels, sample_rate=self._sr, other_threshold=other, keep=keep)
        self.reset()

    # ------------------------------------------------------------------ properties
    @property
    def keep(self) -> int | None:
        """Most results kept (``None``: all)."""
        return self._log.keep

    @property
    def other_threshold(self) -> float | None:
        """An open-set model's threshold on "none of the labels" (``None``: a closed-set model)."""
        return self._log.other_threshold

    @property
    def sample_rate(self) -> int | None:
        """Rate of the blocks fed so far (``None`` before the first block)."""
        return self._sr_in

    def __repr__(self) -> str:
        state = "finished" if self._finished else "streaming"
        return (
            f"<Classifier: {self.model.name} {self.model.version}, hop {self.hop_seconds:.4g} s, "
            f"{len(self._log.windows)} windows, {self.duration:.2f} s fed, {state}>"
        )

    def __reduce__(self) -> Any:
        # a stream's state (threads, locks, buffers) does not travel; say so, not "cannot pickle
        # '_thread.RLock' object"
        raise InputError(
            "a Classifier holds one stream's state and cannot be pickled or copied: send the Model "
            "(it pickles by path) and make a Classifier where it runs"
        )

    def __copy__(self) -> Any:
        self.__reduce__()  # (copy.copy shared every buffer of the stream with the original)

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
        with self._owner.reading():  # (a reader thread raced the feeding call's trimming)
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
            "evidence_windows": len(self._log.evidence),
        }

    @property
    def results(self) -> list[WindowResult]:
        """Windows emitted since :meth:`reset` (the last ``keep`` of them when ``keep`` is set)."""
        with self._owner.reading():
            return list(self._log.windows)

    # ------------------------------------------------------------------ stream
    def reset(self) -> None:
        """Forget the stream: audio, frames, results, the input rate and what
        ``classify(keep_evidence=True)`` kept (a stream fed through :meth:`process` keeps nothing)."""
        with self._owner.feeding("reset"):
            self._stream.keeper = None
            self._reset()

    def close(self) -> None:
        """Free what the classifier holds between streams: its worker threads end (a later
        stream starts new ones) and the stream is forgotten, as :meth:`reset` does (its audio
        buffers, sized for a 20 s decoded block, are let go). A finished classifier kept alive
        held its idle threads and their scratch buffers, about 20 MB with four workers.
        ``with Classifier(...) as clf:`` closes it at the block's end."""
        with self._owner.feeding("close"):
            self._stream.keeper = None
            self._reset()
            self._pipe.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reset(self) -> None:
        self.damage: str | None = None
        self._sr_in: int | None = None
        self._source_start: tuple[int, int] | None = None
        self._channels_in: int | None = None
        self._rs: Any = None
        self._stream.reset()
        self._finished = False
        self._log.clear()
        self._pipe.clear()

    def process(self, block: np.ndarray, sample_rate: SampleRate) -> list[WindowResult]:
        """Feed the next block of the stream.

        Parameters
        ----------
        block : np.ndarray [shape=(n,) or (n, channels)]
            Samples (any int or float dtype; ints are scaled to [-1, 1]); any ``n >= 0``.
            Channels are mixed to mono. A first block of more than :data:`FEW_CHANNELS` channels
            must hold at least as many samples as channels: a ``(channels, n)`` block
            (Pedalboard's layout) of a few dozen samples would otherwise pass as ``n`` channels
            (a stereo stream may still start with a block of one sample).
        sample_rate : int
            Rate of ``block``; the same for every block of one stream (an empty block is
            checked for a valid rate only: it neither sets nor changes the stream's).

        Returns
        -------
        list of WindowResult
            The windows this block completed, in order (often none).

        Raises
        ------
        InputError
            Bad block (shape, dtype, NaN), a first block with more channels than samples, a
            rate or channel-count change within a stream (empty blocks excepted), or a block
            after :meth:`flush` without :meth:`reset`.
        ConcurrentUseError
            Another thread is feeding this classifier.
        """
        with self._owner.feeding("process"):
            if self._finished:
                raise InputError("block: the stream was flushed; call reset() to start a new one")
            sr = check_sample_rate(sample_rate, what="block")
            y = block_to_mono(block)  # before the rate is kept: a refused first block sets nothing
            if not y.shape[0]:  # nothing fed: neither sets nor changes the stream's rate or channels
                return []
            if self._sr_in is not None and sr != self._sr_in:
                raise InputError(
                    f"block: sample rate changed from {self._sr_in} to {sr} Hz within a stream; call reset() first"
                )
            channels = 1 if block.ndim == 1 else block.shape[1]
            if self._channels_in is None and channels > max(block.shape[0], FEW_CHANNELS):
                raise InputError(
                    f"block: the stream's first block has more channels than samples (shape {block.shape}): "
                    "blocks are (n, channels); transpose (channels, n) audio such as Pedalboard's with "
                    f"block.T (a first block of more than {FEW_CHANNELS} channels must hold at least as "
                    "many samples as channels)"
                )
            if self._channels_in not in (None, channels):
                raise InputError(
                    f"block: channel count changed from {self._channels_in} to {channels} within a stream "
                    "(blocks are (n,) or (n, channels)); call reset() first"
                )
            if self._sr_in is None:
                self._sr_in = sr
                self._rs = resampler(sr, self._sr)
            self._channels_in = channels
            self._stream.push(y if self._rs is None else self._rs.resample_chunk(y, last=False))
            return self._emit(final=False)

    def flush(self) -> list[WindowResult]:
        """End the stream: emit the last window, aligned to the end (or the only, zero-padded
        one of audio shorter than a window).

        Returns
        -------
        list of WindowResult
            Windows completed by the end of the stream (empty when nothing was fed or
            the audio ended exactly on a window).

        Raises
        ------
        InputError
            What was fed resampled to no sample at all (2 samples at 96 kHz).
        """
        with self._owner.feeding("flush"):
            if self._finished:
                return []
            if self._rs is not None:
                self._stream.push(self._rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            if self._sr_in is not None and self._stream.total == 0:
                # a few samples at a high rate resample to nothing: too short to hear, not a
                # stream without windows (a whole array is refused alike; a pedalboard audit)
                self._finished = True
                raise InputError(
                    f"stream: too short to analyse: resampled from {self._sr_in} Hz to {self._sr} Hz "
                    "it leaves no sample (less than one sample period)"
                )
            if self._stream.keeper is not None:
                self._stream.keeper.end(self._stream)
            self._finished = True
            out = self._emit(final=True)
            self._stream.finish()
            return out

    def classify(
        self,
        audio: AudioSource,
        sample_rate: SampleRate | None = None,
        *,
        listener: BlockListener | None = None,
        keep_evidence: bool = False,
    ) -> list[WindowResult]:
        """Reset, feed a whole source (file, file object or array) block by block, and flush.

        Parameters
        ----------
        audio : str, PathLike, binary file object or np.ndarray
        sample_rate : int, optional
            Required for an array; with a file, its header's rate or nothing (``InputError``).
        listener : BlockListener, optional
            Fed in the same pass: ``listener.push(block, start)`` with every decoded block
            (mono float32 at :attr:`model`'s front-end rate; ``start``: its first sample's index)
            and ``listener.windows(results)`` with the windows as they are classified. This is
            how :func:`analyze` runs streaming analyzers without decoding the source again.
        keep_evidence : bool
            Keep what :meth:`refine` needs from this reading (an
            :class:`~instrunet_core.refine.EvidenceStore`: the shared STFT frames and the like,
            at most :data:`~instrunet_core.refine.EVIDENCE_STORE_MAX_BYTES`, about 20 minutes of
            audio), so that it does not decode, resample and transform the source again; a
            longer source is read again as without it.

        Returns
        -------
        list of WindowResult
            Every window of the source (also in :attr:`results`).

        Warns
        -----
        RuntimeWarning
            A file stopped decoding before its end (a FLAC cut short: ``<file>: decoding
            failed after N frames (...); what decoded is used``), or ended well before the
            length its header announces (a damaged MP3): the results cover what decoded, and
            :attr:`damage` holds the message.

        Raises
        ------
        DecodeError, InputError
            Nothing of the source decodes, or it cannot be opened or used.
        ConcurrentUseError
            Another thread is feeding this classifier.
        """
        with self._owner.feeding("classify"):
            self._stream.keeper = self._evidence_store() if keep_evidence else None
            self._reset()
            # where a file object's audio starts (read from its position): refine reads it again there
            self._source_start = (id(audio), _position(audio)) if hasattr(audio, "read") else None
            done = False
            damage: list[str] = []
            try:
                blocks = iter_blocks(
                    audio, sample_rate, target_sr=self._sr, block_seconds=DECODE_BLOCK_SECONDS, damage=damage
                )
                array = isinstance(audio, np.ndarray)
                self._sr_in = check_sample_rate(sample_rate, what=source_name(audio)) if array else self._sr
                out: list[WindowResult] = []
                for block in blocks:
                    start = self._stream.total
                    self._stream.push(block)
                    if listener is not None and block.size:
                        listener.push(block, start)
                    # Offline, nobody waits for a window: run the model on full batches only (the
                    # windows and their values are the same as block by block through process()).
                    if self._stream.n_ready() >= self.batch_size:
                        new = self._emit(final=False, whole_batches=True, pipelined=self.pipeline)
                        if listener is not None and new:
                            listener.windows(new)
                        out += new
                last = self.flush()
                if listener is not None and last:
                    listener.windows(last)
                done = True
                if damage:
                    self.damage = damage[0]
                    warn(self.damage)
                return out + last
            finally:
                self._pipe.clear()  # after an error: drop the batches still in flight
                if not done and self._stream.keeper is not None:
                    self._stream.keeper.clear()  # ... and what was kept of the reading

    @property
    def lag_seconds(self) -> float:
        """The most seconds of audio by which :meth:`classify` hands a listener a window after
        the block that completes it: windows wait for a whole batch (``batch_size`` hops),
        batches for the pipeline (at most ``2 * workers + 5`` in flight), and a decoded block
        holds :data:`~instrunet_core.audio.DECODE_BLOCK_SECONDS`. A streaming analyzer that
        keeps audio for its windows keeps at least this much (``context.lag_seconds``)."""
        in_flight = 2 * self.workers + 6 if self.pipeline else 1
        return self.hop_seconds * self.batch_size * in_flight + 2 * DECODE_BLOCK_SECONDS + self.window_seconds

    # ------------------------------------------------------------------ results
    def prediction(self, *, top_k: int | None = None) -> Prediction:
        """Overall prediction of the windows so far (loudness-weighted, silent windows excluded)."""
        with self._owner.reading():
            return self._log.prediction(sounding_seconds=self.sounding_seconds, top_k=top_k)

    def embedding(self) -> Embedding:
        """The windows' embeddings so far and the recording's (their loudness-weighted mean,
        silent windows left out), L2-normalised; needs ``embeddings=True``."""
        if not self.embeddings:
            raise InputError("this Classifier was made without embeddings=True")
        with self._owner.reading():
            emb = self._log.embedding(
                model_info(self.model, embedding=True), int(self.model.embedding_dim or 0)
            )
            emb.hop = self.hop_seconds
            return emb

    def analysis(self, *, source: str = "stream") -> Analysis:
        """Timeline, detected instruments and overall prediction of the windows so far.

        The ranges are decided from the hop's windows (and those :meth:`refine` added):
        :func:`~instrunet_core.analyze` refines before it decides, so without :meth:`refine` a
        range can start or end a little elsewhere than ``analyze``'s on the same audio.

        Returns
        -------
        Analysis
            ``extras`` is empty (analyzer plugins run in :func:`~instrunet_core.analyze`, which
            has the file).
        """
        with self._owner.reading():
            an = self._log.analysis(
                self._activity(),
                source=source,
                duration=self.duration,
                sounding_seconds=self.sounding_seconds,
                model=model_info(self.model),
                settings=self.settings,
            )
            an.damage = self.damage
            return an

    def activity(self) -> Activity:
        """The time axis of the stream so far (:func:`instrunet_core.timeline.activity`): each
        label's smoothed probability and presence every 23 ms, from the windows (and those
        :meth:`refine` added) and the level track."""
        with self._owner.reading():
            return self._activity()

    def _activity(self) -> Activity:
        return self._log.activity(
            self._stream.level_db(self._log.level_from),
            duration=self.duration,
            thresholds=self.thresholds,
            detection=self.detection,
        )

    def refine(self, audio: AudioSource, sample_rate: SampleRate | None = None) -> int:
        """Add evidence windows where the hop's windows leave a label's presence in doubt.

        The stretches where a label's probability lies near its threshold, or a label starts or
        stops, are read again (:mod:`instrunet_core.refine`: from what :meth:`classify` kept, or
        from ``audio``) with windows in between the hop's, about :data:`~instrunet_core.timeline.EVIDENCE_HOP` (0.5 s) apart:
        evidence for :meth:`activity` (presence, ranges), not timeline segments, and not counted
        in :meth:`prediction`. With a hop of 0.75 s or less there is nothing to add.

        Parameters
        ----------
        audio, sample_rate
            The source given to :meth:`classify`: read again, unless ``classify(...,
            keep_evidence=True)`` kept what refine needs (then it is not read at all).

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
            if not self._finished:
                raise InputError(
                    "refine: classify the whole source first (classify(), or process() then flush())"
                )
            if isinstance(audio, np.ndarray):
                sample_rate = check_sample_rate(sample_rate, what=source_name(audio))
            self._log.evidence = []  # doubt is judged on the hop's own windows
            spans = doubtful(self._activity(), self._log, self._stream)
            pipe = self._pipe if self.pipeline else None
            store = self._stream.keeper
            kept = None
            if store is not None:
                kept = read_kept(
                    store, spans, log=self._log, batch_size=self.batch_size, run=self._run, pipe=pipe
                )
            self._log.evidence = (
                kept
                if kept is not None
                else read_evidence(
                    audio,
                    sample_rate,
                    spans,
                    log=self._log,
                    grid=self._stream,
                    waveform=self._waveform,
                    batch_size=self.batch_size,
                    run=self._run,
                    pipe=pipe,
                    start=self._source_start[1]
                    if self._source_start is not None and self._source_start[0] == id(audio)
                    else 0,
                )
            )
            return len(self._log.evidence)

    def keeps_evidence(self, seconds: float) -> bool:
        """Whether ``classify(keep_evidence=True)`` of a source of ``seconds`` keeps what
        :meth:`refine` needs (within :data:`~instrunet_core.refine.EVIDENCE_STORE_MAX_BYTES`;
        never for a waveform-input model or a hop that leaves nothing to refine)."""
        store = self._evidence_store()
        return store is not None and store.nbytes_for(seconds) <= store.max_bytes

    # ------------------------------------------------------------------ internals
    def _evidence_store(self) -> EvidenceStore | None:
        """The stream's evidence store (the one it had, or a new one); ``None`` where
        :meth:`refine` has nothing to add, the model takes audio, or the hop leaves frames between
        windows that no window of the first reading computes."""
        grid = self._stream
        lo, hi = grid.inner_frames
        phases = grid_phases(grid)
        if self._waveform or not phases or grid.hop_frames > hi - lo:
            return None
        kept = grid.keeper
        return kept if isinstance(kept, EvidenceStore) else EvidenceStore(grid, phases)

    def _emit(
        self, *, final: bool, whole_batches: bool = False, pipelined: bool = False
    ) -> list[WindowResult]:
        """Run the model on the ready windows, ``batch_size`` at a time (``whole_batches``: full
        batches only, the rest waits for the next call; ``pipelined``: on the worker threads)."""
        stream = self._stream
        emitted: list[WindowResult] = []
        while True:
            ready = stream.ready(self.batch_size, final=final)
            if not ready or (whole_batches and len(ready) < self.batch_size):
                break
            rms = stream.levels(ready)
            if pipelined and not final:
                # The whole batch is one job on a copy of its audio, for a worker thread (or
                # this one, when every worker is busy) while this thread decodes the next blocks.
                job = job_of(stream.detached(ready), self._run)
                stream.advance(ready)
                emitted += self._log.results_of(stream, self._pipe.submit(job, (ready, rms)))
                continue
            x = stream.windows(ready) if self._waveform else stream.features(ready)
            stream.advance(ready)
            probs = self._run(x)
            # At the end of the stream nothing is left to overlap with: the batches still in
            # flight are collected and the last ones run on this thread. A source that fits
            # in one batch (a clip through Model.predict) never starts the worker threads,
            # whose hand-offs cost more than the run itself on a busy machine.
            emitted += self._log.results_of(stream, [*self._pipe.drain(), ((ready, rms), probs)])
        if final:
            emitted += self._log.results_of(stream, self._pipe.drain())
        if self._log.add(emitted):
            # the level track from the oldest window kept (bounded memory for endless streams)
            self._stream.forget_levels(self._log.level_from)
        return emitted

    def _run(self, x: np.ndarray) -> ModelOutputs:
        """Model outputs of a batch of model inputs (features or window audio)."""
        return self.model.outputs(x, embedding=self.embeddings)
