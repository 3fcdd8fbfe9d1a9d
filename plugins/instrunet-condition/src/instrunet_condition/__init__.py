"""instrunet analyzer plugin: instrument condition (healthy / moderately aged / broken-noisy).

Installed, this distribution exposes the entry point ``condition`` in group ``instrunet``;
:func:`instrunet_core.analyze` then adds ``analysis.extras["condition"]``::

    {"label": "healthy" | "moderately_aged" | "broken_noisy" | "unknown",
     "reason": None | "silent" | "too_short" | "too_quiet" | "too_mixed",
     "probabilities": {"healthy": p, "moderately_aged": p, "broken_noisy": p},
     "features": {"hnr_db": ..., "spectral_flatness": ..., ...},
     "explanation": "one sentence: the verdict and the features that drove it, with clean ranges",
     "reasons": [{"feature", "value", "clean_range", "outside_clean_range", "effect"}, ...],
                 # feature "spectrogram": the spectrogram network, value its p of the verdict
     "instruments": {"<family>": {"label", "reason", "probabilities", "features",
                                  "explanation", "reasons", "chunks", "seconds"}},
     "model": {"name": "condition", "version": "3.2.0", "sha256": "...",
               "spectrogram": {"name": "condition-spectrogram", "version": "1.2.0", "sha256": "..."}},
     "chunks": n, "seconds": s,
     "sampling": {"windows", "judged", "stride", "skipped": {...}, "buffer_seconds"}}

It is a streaming analyzer (:class:`~instrunet_condition.stream.ConditionStream`): it judges a
sample of the family classifier's own windows from the blocks decoded for the classifier, in
the same pass and in bounded memory (:mod:`instrunet_condition.stream` says how the sample is
drawn and when a window cannot be judged). The features of each sampled window
(:mod:`instrunet_condition.features`) go through the calibrated ONNX classifier
(:mod:`instrunet_condition.classifier`, ``models/condition/<version>/``); from 3.0.0 its
verdict is fused with a small CNN on the window's log-mel spectrogram
(``models/condition-spectrogram/<version>/``, named in the manifest's ``features.fusion``), and
the windows' probabilities are averaged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instrunet_core import hookimpl
from instrunet_core.features import DEFAULT_FRONT_END

from .classifier import (
    CLASSES,
    DESCRIPTIONS,
    MODEL_NAME,
    ConditionModel,
    assess,
    explain,
    load_condition_model,
)
from .features import FEATURE_NAMES, SAMPLE_RATE, condition_features, feature_vector
from .stream import ConditionStream, not_judgeable, unknown

__all__ = [
    "CLASSES",
    "CHUNK_SAMPLES",
    "DESCRIPTIONS",
    "FEATURE_NAMES",
    "ConditionModel",
    "ConditionStream",
    "assess",
    "condition_features",
    "condition_of",
    "explain",
    "feature_vector",
    "load_condition_model",
    "not_judgeable",
    "unknown",
    "instrunet_register_analyzers",
]

#: Samples of one judged window: one analysis window of the family classifier (2.949 s).
CHUNK_SAMPLES = DEFAULT_FRONT_END.window_samples


def condition_of(
    y: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    model: ConditionModel | None = None,
    predict: Any = None,
) -> dict[str, Any]:
    """Condition verdict of a mono array, every window judged (no classifier: nothing is "too mixed").

    For tests and training reports; analyses use the streaming analyzer. ``y`` is cut into
    windows of :data:`CHUNK_SAMPLES` (a last, shorter one kept when it can be judged); each
    judgeable window counts once.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr`` (22,050 Hz, as the training clips).
    sr : int
    model : ConditionModel, optional
        Default: the newest shipped model.
    predict : callable, optional
        Replaces ``model.predict`` (training evaluates its Keras model this way).

    Returns
    -------
    dict
        As a verdict in the output contract (``label``, ``reason``, ``probabilities``,
        ``features``, ``explanation``, ``reasons``, ``chunks``, ``seconds``).
    """
    m = model or load_condition_model()
    y = np.asarray(y, dtype=np.float32)
    rows, secs, why = [], [], []
    for a in range(0, max(1, y.shape[0]), CHUNK_SAMPLES):
        w = y[a : a + CHUNK_SAMPLES]
        r = not_judgeable(w, sr)
        f = condition_features(w, sr=sr) if r is None else None
        if f is None:
            why.append(r or "silent")
            continue
        rows.append(f)
        secs.append(w.shape[0] / sr)
    if not rows:
        order = ("too_quiet", "too_short", "silent")
        return unknown(next((k for k in order if k in why), "silent"))
    out = assess(rows, [1.0] * len(rows), predict=predict or m.predict, reference=m.reference)
    out["reason"] = None
    out["seconds"] = round(float(sum(secs)), 3)
    return out


def _condition_stream(context: Any) -> ConditionStream:
    return ConditionStream(context)


@hookimpl
def instrunet_register_analyzers(register: Any) -> None:
    """Register the ``condition`` analyzer (streaming)."""
    register(MODEL_NAME, stream=_condition_stream)
