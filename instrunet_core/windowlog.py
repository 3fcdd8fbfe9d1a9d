"""The record of a stream's windows, and everything read off it.

A :class:`~instrunet_core.inference.Classifier` feeds audio in and runs the model; what the
model said is kept here, in a :class:`WindowLog`: each window's :class:`WindowResult` (the
label rule in one place, :meth:`WindowLog.results_of`), the evidence windows
:meth:`~instrunet_core.inference.Classifier.refine` adds, the ``keep`` bound of an endless
stream, and the summaries (the overall :class:`Prediction`, the :class:`Embedding`, the time
axis :class:`~instrunet_core.timeline.Activity`, the whole :class:`Analysis`). Feeding and
reading are two jobs: the classifier's threads and the DSP never touch the summaries, and the
summaries know nothing of how the windows were computed.

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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .analysis import (
    OTHER_LABEL,
    SILENCE_LABEL,
    Analysis,
    Embedding,
    Prediction,
    WindowResult,
    aggregate,
    embedding_of,
)
from .features import LEVEL_BLOCK, SILENCE_DB, Ready, WindowStream
from .model import ModelOutputs
from .timeline import (
    Activity,
    Detection,
    activity,
    answers_other,
    build_timeline,
    detect_instruments,
    mask_silent,
)

__all__ = ["WindowLog", "Batches"]

#: Computed batches: ``((ready, levels), outputs)`` each.
Batches = list[tuple[tuple[Ready, np.ndarray], ModelOutputs]]
#: Probabilities, levels, silence flags and "other" of the windows (:meth:`WindowLog.arrays`).
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


class WindowLog:
    """The windows of one stream (the last ``keep`` of them) and the evidence windows.

    Parameters
    ----------
    labels : tuple of str
        Output order of every probability vector.
    sample_rate : int
        The front end's rate (window starts are in its samples).
    other_threshold : float or None
        An open-set model's threshold on "none of the labels".
    keep : int, optional
        Keep only the last ``keep`` windows; all when omitted.
    """

    def __init__(
        self, labels: tuple[str, ...], *, sample_rate: int, other_threshold: float | None, keep: int | None
    ) -> None:
        self.labels = labels
        self.other_threshold = other_threshold
        self.keep = keep
        self._sr = sample_rate
        self.clear()

    def clear(self) -> None:
        """Forget every window."""
        self.windows: list[WindowResult] = []
        self.evidence: list[WindowResult] = []  # added by Classifier.refine, for the time axis only
        #: First block of the level track still needed (moves on when ``keep`` drops windows).
        self.level_from = 0

    def add(self, new: Sequence[WindowResult]) -> bool:
        """Append emitted windows; True when ``keep`` dropped old ones (:attr:`level_from` moved)."""
        self.windows.extend(new)
        if self.keep is None or len(self.windows) <= self.keep:
            return False
        del self.windows[: len(self.windows) - self.keep]
        self.level_from = int(round(self.windows[0].start * self._sr)) // LEVEL_BLOCK
        return True

    def results_of(self, stream: WindowStream, batches: Batches) -> list[WindowResult]:
        """The :class:`WindowResult` of each window of computed batches (windows of ``stream``)."""
        out = []
        for (ready, rms), outs in batches:
            # read-only: a window handed to the caller is a view of what prediction() and
            # analysis() aggregate (normalising it in place changed them)
            for arr in (outs.probabilities, outs.embedding):
                if arr is not None:
                    arr.setflags(write=False)
            for j, ((k, n), lv) in enumerate(zip(ready, rms, strict=True)):
                s = stream.start(k)
                silent = bool(lv < SILENCE_DB)
                p = outs.probabilities[j]
                other = None if outs.other is None else float(outs.other[j])
                out.append(
                    WindowResult(
                        index=k,
                        start=s / self._sr,
                        end=(s + n) / self._sr,
                        probabilities=p,
                        rms_db=float(lv),
                        silent=silent,
                        label=self._label(p, other, silent),
                        n_samples=int(n),
                        other=other,
                        embedding=None if outs.embedding is None else outs.embedding[j],
                    )
                )
        return out

    def _label(self, p: np.ndarray, other: float | None, silent: bool) -> str:
        if silent:
            return SILENCE_LABEL
        if other is not None and answers_other(other, p.max(), self.other_threshold or 0.5):
            return OTHER_LABEL
        return self.labels[int(np.argmax(p))]

    # ------------------------------------------------------------------ arrays
    def arrays(self) -> _Arrays:
        """Probabilities ``[T, L]``, levels, silence flags and (open-set models) "other"."""
        res = self.windows
        probs = np.array([w.probabilities for w in res], dtype=np.float32).reshape(-1, len(self.labels))
        rms = np.array([w.rms_db for w in res], dtype=np.float64)
        silent = np.array([w.silent for w in res], dtype=bool)
        other = None if self.other_threshold is None else np.array([w.other for w in res], dtype=np.float32)
        return probs, rms, silent, other

    def times(self) -> np.ndarray:
        """``[T, 2]`` start and end of each window (seconds)."""
        return np.array([[w.start, w.end] for w in self.windows], dtype=np.float64).reshape(-1, 2)

    def centres(self) -> np.ndarray:
        """Centre of each window (seconds)."""
        return self.times().mean(axis=1)

    # ------------------------------------------------------------------ summaries
    def prediction(self, *, sounding_seconds: float, top_k: int | None = None) -> Prediction:
        """Overall prediction (loudness-weighted, silent windows excluded)."""
        return self._aggregate(self.arrays(), sounding_seconds, top_k)

    def _aggregate(self, arrays: _Arrays, sounding_seconds: float, top_k: int | None) -> Prediction:
        probs, rms, silent, other = arrays
        return aggregate(
            self.labels,
            probs,
            rms,
            silent,
            sounding_seconds=sounding_seconds,
            top_k=top_k,
            other=other,
            other_threshold=self.other_threshold,
        )

    def embedding(self, model: dict[str, str], dim: int) -> Embedding:
        """The windows' embeddings and the recording's (needs windows made with embeddings; ``dim``:
        their size, for a stream with no window yet, whose vector is zero)."""
        res = self.windows
        _, rms, silent, _ = self.arrays()
        vectors = np.array([w.embedding for w in res], dtype=np.float32).reshape(len(res), dim)
        return embedding_of(vectors, self.times(), rms, silent, model=model)

    def activity(
        self,
        level_db: np.ndarray,
        *,
        duration: float,
        thresholds: Mapping[str, float],
        detection: Detection,
    ) -> Activity:
        """The time axis (:func:`instrunet_core.timeline.activity`) from the windows, the evidence
        windows and the level track from block :attr:`level_from` (``level_db``)."""
        wins = sorted([*self.windows, *self.evidence], key=lambda w: (w.start + w.end) / 2)
        step = LEVEL_BLOCK / self._sr
        first = self.level_from
        return activity(
            np.array([(w.start + w.end) / 2 for w in wins], dtype=np.float64),
            np.array([w.probabilities for w in wins], dtype=np.float32).reshape(len(wins), len(self.labels)),
            np.array([w.silent for w in wins], dtype=bool),
            level_db,
            step=step,
            duration=duration,
            labels=self.labels,
            thresholds=thresholds,
            detection=detection,
            other=None if self.other_threshold is None else np.array([w.other for w in wins], np.float32),
            other_threshold=self.other_threshold,
            start=first * step,
            start_edge=first == 0,
            # older windows dropped (keep=N): decided from where the kept ones are all the evidence
            settled_from=None
            if first == 0 or not wins
            else (wins[0].start + wins[0].end) / 2 + detection.smoothing / 2,
        )

    def analysis(
        self,
        act: Activity,
        *,
        source: str,
        duration: float,
        sounding_seconds: float,
        model: dict[str, str],
        settings: dict[str, Any],
    ) -> Analysis:
        """Timeline, detected instruments and overall prediction (``extras`` empty)."""
        arrays = self.arrays()
        probs, rms, silent, other = arrays
        prediction = self._aggregate(arrays, sounding_seconds, None)
        times = self.times()
        return Analysis(
            source=source,
            duration=duration,
            model=model,
            labels=self.labels,
            prediction=prediction,
            timeline=build_timeline(times, probs, rms, silent, self.labels, other=other),
            instruments=detect_instruments(act, prediction.probabilities),
            extras={},
            settings=settings,
            times=times,
            probabilities=mask_silent(probs, silent),
            rms_db=rms,
            silent_windows=silent,
            other=None if other is None else np.where(silent, 0.0, other).astype(np.float32),
            activity=act,
        )
