"""Evidence windows: the source read again where the hop's windows leave a label in doubt.

A window every 1.5 s is enough to say which families play, but where a label's probability
hovers near its threshold, whether it is reported (and where its ranges start and end) would
depend on where the grid of windows happens to fall. :meth:`Classifier.refine
<instrunet_core.inference.Classifier.refine>` finds those stretches
(:func:`~instrunet_core.timeline.doubtful_spans`) and this module reads them again: windows in
between the classifier's own (:func:`evidence_phases`), so that no two windows are closer than
needed, computed from shared STFT frames on the classifier's worker threads, the rest of the
source past the last doubtful stretch never decoded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .analysis import WindowResult
from .audio import DECODE_BLOCK_SECONDS, AudioSource, _rewind, iter_blocks
from .features import Ready, WindowStream
from .model import ModelOutputs
from .scheduler import BatchPipeline, job_of
from .timeline import EVIDENCE_HOP, Activity, doubtful_spans
from .windowlog import WindowLog

__all__ = ["evidence_phases", "read_evidence"]


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


def read_evidence(
    audio: AudioSource,
    sample_rate: int | None,
    act: Activity,
    *,
    log: WindowLog,
    grid: WindowStream,
    waveform: bool,
    batch_size: int,
    run: Callable[[np.ndarray], ModelOutputs],
    pipe: BatchPipeline[ModelOutputs] | None = None,
) -> list[WindowResult]:
    """The evidence windows of a classified stream: windows in between its own
    (:func:`evidence_phases`) whose centre lies in a doubtful stretch
    (:func:`~instrunet_core.timeline.doubtful_spans`).

    Parameters
    ----------
    audio, sample_rate
        The source (read again from its start; a file object is rewound).
    act : Activity
        The stream's time axis from its own windows.
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
        In time order; empty when nothing is in doubt or the hop leaves no room between windows.
    """
    fe = grid.fe
    phases = evidence_phases(grid.hop_frames, frame_seconds=fe.hop_length / fe.sample_rate)
    if not phases or not log.windows:
        return []
    probs, _, silent, other = log.arrays()
    spans = doubtful_spans(
        act, log.centres(), probs, silent, spacing=grid.hop_samples / fe.sample_rate, other=other
    )
    if not spans:
        return []
    sr = fe.sample_rate
    stream = WindowStream(fe, grid.hop_samples / sr, share_frames=not waveform, phases=phases)
    lo = np.array([a for a, _ in spans])
    hi = np.array([b for _, b in spans])
    added: list[WindowResult] = []

    def wanted(ready: Ready) -> Ready:
        c = np.array([(stream.start(k) + n / 2) / sr for k, n in ready])
        i = np.searchsorted(lo, c, side="right") - 1
        keep = (i >= 0) & (c <= hi[np.maximum(i, 0)])
        return [w for w, ok in zip(ready, keep, strict=True) if ok]

    def take(final: bool) -> None:
        while ready := stream.ready(batch_size, final=final):
            sel = wanted(ready)
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

    last = float(hi[-1]) + fe.window_samples / sr
    _rewind(audio)  # a file object stands where the first pass stopped reading it
    try:
        for block in iter_blocks(audio, sample_rate, target_sr=sr, block_seconds=DECODE_BLOCK_SECONDS):
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
