"""Evidence windows: more windows where the hop's windows leave a label in doubt.

A window every 1.5 s is enough to say which families play, but where a label's probability
hovers near its threshold, whether it is reported (and where its ranges start and end) would
depend on where the grid of windows happens to fall. :meth:`Classifier.refine
<instrunet_core.inference.Classifier.refine>` finds those stretches
(:func:`~instrunet_core.timeline.doubtful_spans`) and this module reads them again: windows in
between the classifier's own (:func:`evidence_phases`), so that no two windows are closer than
needed, on the classifier's worker threads. They are made from what the first reading kept
(:class:`EvidenceStore`, :func:`read_kept`: its shared STFT frames, each evidence window's edge
frames, the block powers) when it kept them, else from the source decoded again
(:func:`read_evidence`: shared STFT frames, the rest of the source past the last doubtful
stretch never decoded). Both give the same windows and values.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence

import numpy as np

from .analysis import WindowResult
from .audio import DECODE_BLOCK_SECONDS, AudioSource, _rewind, iter_blocks
from .features import _EV_BLOCK, Ready, WindowStream, _ms_db, _pooled_power
from .inputs import SampleRate
from .model import ModelOutputs
from .scheduler import BatchPipeline, job_of
from .timeline import EVIDENCE_HOP, Activity, doubtful_spans
from .windowlog import WindowLog

__all__ = [
    "EVIDENCE_STORE_MAX_BYTES",
    "EvidenceStore",
    "doubtful",
    "evidence_phases",
    "read_evidence",
    "read_kept",
]

#: Most bytes an :class:`EvidenceStore` holds (dB mel frames, edge frames, block powers): about
#: 20 minutes of audio at the default front end. Past it the store is dropped, and
#: :meth:`~instrunet_core.inference.Classifier.refine` reads the source again as without one.
EVIDENCE_STORE_MAX_BYTES = 32 * 2**20
_CHUNK = 4096  # frames per chunk of an EvidenceStore


def evidence_phases(
    hop_frames: int, spacing: float = EVIDENCE_HOP, *, frame_seconds: float
) -> tuple[int, ...]:
    """Where evidence windows start within each hop (STFT frames from the hop's start), so that
    with the hop's own window they lie about ``spacing`` seconds apart.

    ``round(hop / spacing) - 1`` windows between each two of the hop's, evenly spaced: at the
    default hop (65 frames, 1.509 s) and spacing (0.5 s), 2 (frames 22 and 43: 0.51, 0.49 and
    0.51 s apart); none for a hop of 0.5 s or less.

    Returns
    -------
    tuple of int
        Ascending, each in ``(0, hop_frames)``; empty when nothing is to be added.
    """
    n = max(0, int(round(hop_frames * frame_seconds / spacing)) - 1)
    return tuple(sorted({round(i * hop_frames / (n + 1)) for i in range(1, n + 1)} - {0, hop_frames}))


class EvidenceStore:
    """What :func:`read_evidence` would compute from a second reading of the source, kept from
    the first: every dB mel frame the classifier's windows share, the edge frames of every
    evidence window (each with the window's own zero padding, computed from the audio while the
    stream still holds it), the power of every 512-sample evidence block, and the last, partial
    block's. :func:`read_kept` makes the evidence windows' features and levels from them without
    decoding, resampling or transforming anything again: the same windows, the same values
    (within float32 rounding, as between any two batchings of the stream).

    The stream fills it (:attr:`WindowStream.keeper <instrunet_core.features.WindowStream>`):
    frames from whichever thread computed them, the rest from the feeding thread. It is bounded
    by ``max_bytes``: past that it drops everything it holds (:attr:`ok` becomes False, with the
    :attr:`reason`), and so it does when audio it needs left the stream before it took it (a hop
    longer than a window); refine then reads the source again.

    Parameters
    ----------
    stream : WindowStream
        The first reading's stream (its front end and hop).
    phases : sequence of int
        The evidence windows' phases (:func:`evidence_phases`).
    max_bytes : int
        Most bytes held (default :data:`EVIDENCE_STORE_MAX_BYTES`).
    """

    def __init__(self, stream: WindowStream, phases: Sequence[int], *, max_bytes: int | None = None) -> None:
        fe = stream.fe
        #: The evidence windows' grid (only its window arithmetic is used: it holds no audio).
        self.grid = WindowStream(fe, stream.hop_samples / fe.sample_rate, phases=phases)
        self.max_bytes = int(EVIDENCE_STORE_MAX_BYTES if max_bytes is None else max_bytes)
        self._n_mels = fe.n_mels
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget everything (a new stream). Frames of the old stream that a worker thread
        still delivers are ignored (:attr:`generation`)."""
        with self._lock:
            #: Which stream the store holds: :meth:`put_frames` ignores frames of an earlier one.
            self.generation = getattr(self, "generation", -1) + 1
            self._chunks: dict[int, np.ndarray] = {}
            self._filled: dict[int, np.ndarray] = {}
            self._nbytes = 0
            #: False once the store was dropped (:attr:`reason` says why).
            self.ok = True
            self.reason = ""
        self._edges: dict[int, np.ndarray] = {}
        self._left_next = 0  # the first evidence window whose left edge frames are still due
        self._right_next = 0  # ... whose right edge frames are still due
        self._blocks: list[np.ndarray] = []
        self._tail: float | None = None
        self._windows: Ready | None = None
        #: Samples in the stream once its input has ended (:meth:`end`), else ``None``.
        self.total: int | None = None

    def nbytes_for(self, seconds: float) -> int:
        """Bytes the store of ``seconds`` of audio holds at most: its frames (in whole chunks),
        each evidence window's edge frames and the block powers."""
        g = self.grid
        fe = g.fe
        frames = int(seconds * fe.sample_rate / fe.hop_length) + fe.frames
        windows = frames * len(g.phases) // g.hop_frames + len(g.phases)
        chunks = frames // _CHUNK + 2
        return chunks * _CHUNK * fe.n_mels * 4 + windows * len(g.edge_frames) * fe.n_mels * 4 + frames * 8

    # ------------------------------------------------------------------ filling
    def _drop(self, reason: str) -> None:
        with self._lock:
            if self.ok:
                self.ok, self.reason = False, reason
            self._chunks, self._filled = {}, {}
        self._edges, self._blocks = {}, []

    def _grow(self, nbytes: int) -> bool:
        """Count ``nbytes`` more (under the lock); False, with everything dropped, past the bound."""
        self._nbytes += nbytes
        if self._nbytes <= self.max_bytes:
            return True
        self.ok, self.reason = False, f"more than {self.max_bytes} bytes to keep"
        self._chunks, self._filled = {}, {}
        return False

    def put_frames(self, first: int, frames: np.ndarray, generation: int | None = None) -> None:
        """dB mel frames ``[first, first + len(frames))`` (any thread) of the stream of
        ``generation`` (default: the current one; frames of an earlier stream are ignored)."""
        f1 = first + frames.shape[0]
        if f1 <= first:
            return
        with self._lock:
            if not self.ok or (generation is not None and generation != self.generation):
                return
            for c in range(first // _CHUNK, (f1 - 1) // _CHUNK + 1):
                chunk = self._chunks.get(c)
                if chunk is None:
                    if not self._grow(_CHUNK * self._n_mels * 4):
                        return
                    chunk = self._chunks[c] = np.empty((_CHUNK, self._n_mels), dtype=np.float32)
                    self._filled[c] = np.zeros(_CHUNK, dtype=bool)
                a, b = max(first, c * _CHUNK), min(f1, (c + 1) * _CHUNK)
                chunk[a - c * _CHUNK : b - c * _CHUNK] = frames[a - first : b - first]
                self._filled[c][a - c * _CHUNK : b - c * _CHUNK] = True

    def add_blocks(self, ms: np.ndarray) -> None:
        """The next evidence blocks' powers (the feeding thread)."""
        if self.ok:
            with self._lock:
                grown = self._grow(ms.nbytes)
            if grown:
                self._blocks.append(np.array(ms, dtype=np.float64))
            else:
                self._drop(self.reason)

    def add_tail(self, ms: float) -> None:
        """The power of the last, partial evidence block (the stream has ended)."""
        self._tail = float(ms)

    def collect(self, stream: WindowStream, *, drop_before: int) -> None:
        """Take the edge frames whose audio the stream holds now, before it forgets the samples
        before ``drop_before`` (the feeding thread, from :meth:`WindowStream.advance`)."""
        if not self.ok:
            self._edges, self._blocks = {}, []
            return
        self._take_edges(stream, final=False)
        g = self.grid
        lost = [
            k
            for k, side in ((self._left_next, g.left_edge_frames), (self._right_next, g.right_edge_frames))
            if side and g.edge_region(k, side[0])[0] < drop_before
        ]
        if lost:
            self._drop(f"the audio of evidence window {lost[0]} left the stream before its edges were taken")

    def end(self, stream: WindowStream) -> None:
        """The input has ended (before the stream's last windows are taken): take the edge frames
        of the remaining evidence windows (zero-padded past the end) and the frames past the
        classifier's last window that the evidence windows need."""
        self.total = stream.total
        if not self.ok:
            return
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        wins = self.windows()
        if not wins:
            return
        self._take_edges(stream, final=True)
        if not self.ok:
            return
        lo, hi = self.grid.inner_frames
        need = max(self.grid.start_frame(k) + hi for k, _ in wins)
        have = stream.start_frame(stream.next_window) + lo
        if need > have:
            if have * self.grid.fe.hop_length - self.grid.fe.n_fft // 2 < stream.held_from:
                self._drop("the audio past the classifier's last window left the stream")
                return
            self.put_frames(have, stream.frames_db(have, need))

    def _take_edges(self, stream: WindowStream, *, final: bool) -> None:
        """Edge frames of the evidence windows whose audio is in: each side (the left edge frames,
        then the right) as soon as the samples it reads are; at the end, all that remain."""
        g = self.grid
        for side, attr in ((g.left_edge_frames, "_left_next"), (g.right_edge_frames, "_right_next")):
            if not side:
                continue
            k = getattr(self, attr)
            if final:
                due = [(j, n) for j, n in self.windows() if j >= k]
            else:
                due = []
                while max(g.edge_region(k, j)[1] for j in side) <= stream.total:
                    due.append((k, g.fe.window_samples))
                    k += 1
            if not due:
                continue
            if g.edge_region(due[0][0], side[0])[0] < stream.held_from:
                self._drop(
                    f"the audio of evidence window {due[0][0]} left the stream before its edges were taken"
                )
                return
            db = g.edge_db(due, stream.samples, side)
            n = len(g.edge_frames)
            fresh = sum(1 for j, _ in due if j not in self._edges)
            with self._lock:
                grown = self._grow(fresh * n * self._n_mels * 4)
            if not grown:
                self._drop(self.reason)
                return
            at = slice(0, len(side)) if side == g.left_edge_frames else slice(n - len(side), n)
            for (j, _), rows in zip(due, db, strict=True):
                self._edges.setdefault(j, np.empty((n, self._n_mels), dtype=np.float32))[at] = rows
            setattr(self, attr, due[-1][0] + 1)

    # ------------------------------------------------------------------ reading
    def windows(self) -> Ready:
        """Every evidence window of the ended stream, as a second reading's ``ready`` gives them
        (the same walk over the grid: the full ones, and for a stream shorter than a window one
        zero-padded window; :func:`~instrunet_core.features.end_window_frame`)."""
        if self.total is None:
            raise AssertionError("internal: the stream has not ended")
        if self._windows is not None:
            return self._windows
        self._windows = self.grid._walk(0, -1, self.total, math.inf, final=True)
        return self._windows

    def complete(self, wanted: Ready) -> bool:
        """Whether the store holds everything the windows ``wanted`` need."""
        if not self.ok or self.total is None:
            return False
        lo, hi = self.grid.inner_frames
        with self._lock:
            for k, _ in wanted:
                if k not in self._edges:
                    return False
                f0 = self.grid.start_frame(k) + lo
                f1 = f0 + hi - lo
                for c in range(f0 // _CHUNK, (f1 - 1) // _CHUNK + 1):
                    filled = self._filled.get(c)
                    a, b = max(f0, c * _CHUNK), min(f1, (c + 1) * _CHUNK)
                    if filled is None or not filled[a - c * _CHUNK : b - c * _CHUNK].all():
                        return False
        return True

    def _frames(self, a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, self._n_mels), dtype=np.float32)
        for c in range(a // _CHUNK, (b - 1) // _CHUNK + 1):
            x, y = max(a, c * _CHUNK), min(b, (c + 1) * _CHUNK)
            out[x - a : y - a] = self._chunks[c][x - c * _CHUNK : y - c * _CHUNK]
        return out

    def features(self, ready: Ready) -> np.ndarray:
        """Model input of the evidence windows in ``ready`` (any thread, once :meth:`complete`)."""
        edges = np.stack([self._edges[k] for k, _ in ready])
        return self.grid.assemble(ready, self._frames, edges)

    def levels(self, ready: Ready) -> np.ndarray:
        """Level (dBFS) of each evidence window in ``ready``, as :meth:`WindowStream.levels`
        measures it: the mean of its blocks' powers (the last, partial block weighted by its
        samples)."""
        ms = self._blocks[0] if len(self._blocks) == 1 else np.concatenate([np.zeros(0), *self._blocks])
        out = np.empty(len(ready), dtype=np.float64)
        for i, (k, n) in enumerate(ready):
            first = self.grid.start(k) // _EV_BLOCK
            whole, rest = divmod(n, _EV_BLOCK)
            blocks = ms[first : first + whole]
            # as the stream measures it: whole blocks by their mean, else as _segment_power does
            p = float(np.mean(blocks)) if rest == 0 else _pooled_power(blocks, self._tail or 0.0, rest)
            out[i] = _ms_db(p)
        return out


def read_evidence(
    audio: AudioSource,
    sample_rate: SampleRate | None,
    spans: np.ndarray,
    *,
    log: WindowLog,
    grid: WindowStream,
    waveform: bool,
    batch_size: int,
    run: Callable[[np.ndarray], ModelOutputs],
    pipe: BatchPipeline[ModelOutputs] | None = None,
    start: int = 0,
) -> list[WindowResult]:
    """The evidence windows of a classified stream: windows in between its own
    (:func:`evidence_phases`) whose centre lies in a doubtful stretch
    (:func:`~instrunet_core.timeline.doubtful_spans`).

    Parameters
    ----------
    audio, sample_rate
        The source (read again from its start; a file object is rewound).
    spans : np.ndarray [shape=(m, 2)]
        The doubtful stretches (seconds, merged, in order: :func:`doubtful`).
    log : WindowLog
        The stream's windows; turns outputs into
        :class:`~instrunet_core.analysis.WindowResult` (the label rule).
    grid : WindowStream
        The stream's windowing (its front end and hop).
    waveform : bool
        The model takes window audio rather than features.
    batch_size : int
        Most windows per batch.
    run : callable
        Model outputs of a batch of model inputs.
    pipe : BatchPipeline, optional
        Worker threads for whole batches (the calling thread decodes meanwhile); synchronous
        without.

    Returns
    -------
    list of WindowResult
        In time order; empty when nothing is in doubt.
    """
    fe = grid.fe
    if not len(spans):
        return []
    sr = fe.sample_rate
    stream = WindowStream(fe, grid.hop_samples / sr, share_frames=not waveform, phases=grid_phases(grid))
    added: list[WindowResult] = []

    def take(final: bool) -> None:
        while ready := stream.ready(batch_size, final=final):
            sel = _wanted(stream, ready, spans)
            if sel:
                rms = stream.levels(sel)
                full = all(n == fe.window_samples for _, n in sel)
                if pipe is not None and full:
                    done = pipe.submit(job_of(stream.detached(sel), run), (sel, rms))
                    added.extend(log.results_of(stream, done))
                else:
                    x = stream.windows(sel) if waveform else stream.features(sel)
                    added.extend(log.results_of(stream, [((sel, rms), run(x))]))
            stream.advance(ready)

    last = float(spans[-1, 1]) + fe.window_samples / sr
    _rewind(audio, start)  # a file object stands where the first pass stopped reading it
    try:
        # a file that stops decoding ends here as in the first pass (which said so)
        damage: list[str] = []
        for block in iter_blocks(
            audio, sample_rate, target_sr=sr, block_seconds=DECODE_BLOCK_SECONDS, damage=damage
        ):
            stream.push(block)
            take(final=False)
            if stream.total / sr > last:
                break
        else:
            stream.finish()
            take(final=True)
        if pipe is not None:
            added.extend(log.results_of(stream, pipe.drain()))
    finally:
        if pipe is not None:
            pipe.clear()
    return sorted(added, key=lambda w: w.start)


def grid_phases(grid: WindowStream) -> tuple[int, ...]:
    """The evidence phases (:func:`evidence_phases`) of a stream's grid."""
    fe = grid.fe
    return evidence_phases(grid.hop_frames, frame_seconds=fe.hop_length / fe.sample_rate)


def doubtful(act: Activity, log: WindowLog, grid: WindowStream) -> np.ndarray:
    """The stretches of a classified stream that evidence windows read again (seconds, merged,
    in order; :func:`~instrunet_core.timeline.doubtful_spans`): none when nothing is in doubt or
    the hop leaves no room between windows.

    Returns
    -------
    np.ndarray [shape=(m, 2), dtype=float64]
    """
    if not log.windows or not grid_phases(grid):
        return np.zeros((0, 2))
    probs, _, silent, other = log.arrays()
    spans = doubtful_spans(
        act, log.centres(), probs, silent, spacing=grid.hop_samples / grid.fe.sample_rate, other=other
    )
    return np.array(spans, dtype=np.float64).reshape(-1, 2)


def _wanted(grid: WindowStream, ready: Ready, spans: np.ndarray) -> Ready:
    """The windows of ``ready`` (windows of ``grid``) whose centre lies in a doubtful stretch."""
    if not ready:
        return []
    sr = grid.fe.sample_rate
    c = np.array([(grid.start(k) + n / 2) / sr for k, n in ready])
    i = np.searchsorted(spans[:, 0], c, side="right") - 1
    keep = (i >= 0) & (c <= spans[np.maximum(i, 0), 1])
    return [w for w, ok in zip(ready, keep, strict=True) if ok]


def read_kept(
    store: EvidenceStore,
    spans: np.ndarray,
    *,
    log: WindowLog,
    batch_size: int,
    run: Callable[[np.ndarray], ModelOutputs],
    pipe: BatchPipeline[ModelOutputs] | None = None,
) -> list[WindowResult] | None:
    """The windows :func:`read_evidence` would add, made from an :class:`EvidenceStore` of the
    first reading instead of the source: ``None`` when the store lacks what they need (it was
    dropped), and the source must be read again.

    Parameters are those of :func:`read_evidence` (but the source and the grid: the store's);
    the wanted windows run ``batch_size`` at a time, on the worker threads when ``pipe`` is given.
    """
    if not len(spans):
        return []
    if store.total is None:
        return None
    ev = store.grid
    sel = _wanted(ev, store.windows(), spans)
    if not store.complete(sel):
        return None
    added: list[WindowResult] = []
    try:
        for i in range(0, len(sel), batch_size):
            batch = sel[i : i + batch_size]
            rms = store.levels(batch)
            if pipe is not None:
                job = job_of(functools.partial(store.features, batch), run)
                added.extend(log.results_of(ev, pipe.submit(job, (batch, rms))))
            else:
                added.extend(log.results_of(ev, [((batch, rms), run(store.features(batch)))]))
        if pipe is not None:
            added.extend(log.results_of(ev, pipe.drain()))
    finally:
        if pipe is not None:
            pipe.clear()
    return sorted(added, key=lambda w: w.start)
