"""instrunet analyzer plugin: instrument condition (healthy / moderately aged / broken-noisy).

Installed, this distribution exposes the entry point ``condition`` in group ``instrunet``;
:func:`instrunet_core.analyze` then adds ``analysis.extras["condition"]``::

    {"label": "healthy" | "moderately_aged" | "broken_noisy" | "unknown",
     "probabilities": {"healthy": p, "moderately_aged": p, "broken_noisy": p},
     "features": {"hnr_db": ..., "spectral_flatness": ..., "decay_rate_db_per_s": ...,
                  "decay_variance": ..., ...},
     "instruments": {"<family>": {"label", "probabilities", "features", "explanation", "seconds"}},
     "model": {"name": "condition", "version": "1.0.0", "sha256": "..."},
     "explanation": "one sentence saying which features drove the verdict",
     "chunks": n, "seconds": s}

The audio (mono, 22,050 Hz) is cut into chunks of up to 4 s (the length of the notes the
classifier was trained on); chunks with less than 1 s of sound (23 ms blocks within 60 dB of
the file's peak) are skipped, the features of each chunk
(:mod:`instrunet_condition.features`) go through the ONNX classifier
(:mod:`instrunet_condition.classifier`, ``models/condition/<version>/``) and the
chunks' probabilities are averaged, weighted by duration. Each detected instrument is
judged the same way on the audio of its time ranges (which may hold other instruments too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from instrunet_core import hookimpl

from .classifier import CLASSES, DESCRIPTIONS, MODEL_NAME, ConditionModel, assess, load_condition_model
from .features import FEATURE_NAMES, SAMPLE_RATE, condition_features, feature_vector

__all__ = [
    "CLASSES",
    "DESCRIPTIONS",
    "FEATURE_NAMES",
    "CHUNK_SECONDS",
    "MIN_CHUNK_SECONDS",
    "chunk_features",
    "condition_of",
    "analyze_condition",
    "feature_vector",
    "load_condition_model",
    "instrunet_register_analyzers",
]

CHUNK_SECONDS = 4.0
MIN_CHUNK_SECONDS = 1.0
#: Chunks whose peak is more than 60 dB below the whole file's peak count as silence.
_REL_SILENCE = 1e-3


def _audible_seconds(c: np.ndarray, sr: int, floor: float) -> float:
    """Seconds of ``c`` in 23 ms blocks whose peak reaches ``floor``: a 0.4 s note in a 4 s
    chunk of silence is 0.4 s of evidence, too little to judge, not 4 s."""
    n = max(1, int(round(0.023 * sr)))
    m = c.size // n * n
    peaks = np.abs(c[:m]).reshape(-1, n).max(axis=1) if m else np.zeros(0)
    tail = float(np.max(np.abs(c[m:]))) >= floor if c.size > m else False
    return (int(np.count_nonzero(peaks >= floor)) * n + (c.size - m) * tail) / sr


def chunk_features(
    y: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    ranges: Sequence[tuple[float, float]] | None = None,
    ref_peak: float | None = None,
) -> tuple[list[dict[str, float]], list[float]]:
    """Features of the audible chunks (up to 4 s each) of ``y`` or of its time ranges.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio.
    sr : int
    ranges : sequence of (start, end) seconds, optional
        Only these stretches (each cut into its own chunks); default: the whole signal.
    ref_peak : float, optional
        Peak that "near silent" is relative to (default: the peak of ``y``).

    Returns
    -------
    rows : list of dict
        :func:`condition_features` of each kept chunk.
    seconds : list of float
        Each kept chunk's duration.
    """
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if ref_peak is None and y.size else float(ref_peak or 0.0)
    if ranges is None:
        ranges = [(0.0, y.size / sr)]
    rows: list[dict[str, float]] = []
    secs: list[float] = []
    n_chunk = int(CHUNK_SECONDS * sr)
    n_min = int(MIN_CHUNK_SECONDS * sr)
    for a, b in ranges:
        seg = y[max(0, int(round(a * sr))) : max(0, int(round(b * sr)))]
        bounds = list(range(0, seg.size, n_chunk))
        if len(bounds) > 1 and seg.size - bounds[-1] < n_min:
            bounds.pop()  # a short tail joins the chunk before it
        for i, s in enumerate(bounds):
            e = bounds[i + 1] if i + 1 < len(bounds) else seg.size
            c = seg[s:e]
            if c.size < n_min or _audible_seconds(c, sr, max(_REL_SILENCE * peak, 1e-4)) < MIN_CHUNK_SECONDS:
                continue
            f = condition_features(c, sr=sr)
            if f is not None:
                rows.append(f)
                secs.append(c.size / sr)
    return rows, secs


def condition_of(
    y: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    ranges: Sequence[tuple[float, float]] | None = None,
    classifier: ConditionModel | None = None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    ref_peak: float | None = None,
) -> dict[str, Any]:
    """Condition verdict of ``y`` (or of its time ``ranges``): see :func:`classifier.assess`.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr`` (22,050 Hz, as the training notes).
    sr : int
    ranges : sequence of (start, end) seconds, optional
    classifier : ConditionModel, optional
        Default: the newest shipped model.
    predict : callable, optional
        Replaces ``classifier.predict`` (training evaluates its Keras model this way).
    ref_peak : float, optional
        See :func:`chunk_features`.

    Returns
    -------
    dict
        ``label``, ``probabilities``, ``features``, ``explanation``, ``chunks``, ``seconds``.
    """
    clf = classifier if classifier is not None or predict is not None else load_condition_model()
    rows, secs = chunk_features(y, sr=sr, ranges=ranges, ref_peak=ref_peak)
    out = assess(
        rows,
        secs,
        predict=predict or clf.predict,  # type: ignore[union-attr]
        healthy=clf.healthy_median if clf is not None else None,
    )
    out["seconds"] = round(float(sum(secs)), 3)
    return out


def analyze_condition(context: Any) -> dict[str, Any]:
    """The ``condition`` analyzer: the whole file, then each detected instrument's time ranges.

    Parameters
    ----------
    context : instrunet_core.analysis.AnalysisContext

    Returns
    -------
    dict
        The output contract in the module docstring.
    """
    clf = load_condition_model()
    y = context.audio()
    sr = int(context.sample_rate)
    silent = bool(np.all(context.silent)) if len(context.silent) else True
    if silent:
        whole = condition_of(np.zeros(0, np.float32), sr=sr, classifier=clf)
    else:
        whole = condition_of(y, sr=sr, classifier=clf)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    per: dict[str, Any] = {}
    for inst in getattr(context, "instruments", []) or []:
        r = condition_of(y, sr=sr, ranges=[tuple(x) for x in inst.ranges], classifier=clf, ref_peak=peak)
        per[inst.label] = {k: r[k] for k in ("label", "probabilities", "features", "explanation", "seconds")}
    return {
        "label": whole["label"],
        "probabilities": whole["probabilities"],
        "features": whole["features"],
        "instruments": per,
        "model": {"name": clf.name, "version": clf.version, "sha256": clf.sha256},
        "explanation": whole["explanation"],
        "chunks": whole["chunks"],
        "seconds": whole["seconds"],
    }


@hookimpl
def instrunet_register_analyzers(register: Any) -> None:
    """Register the ``condition`` analyzer."""
    register(MODEL_NAME, analyze_condition)
