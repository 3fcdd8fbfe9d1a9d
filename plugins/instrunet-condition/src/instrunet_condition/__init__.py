"""instrunet analyzer plugin: instrument condition (healthy / moderately aged / broken-noisy).

Installed, this distribution exposes the entry point ``condition`` in group ``instrunet``;
:func:`instrunet_core.analyze` then adds ``analysis.extras["condition"]``::

    {"label": "healthy" | "moderately_aged" | "broken_noisy" | "unknown",
     "label_text": "healthy" | "moderately aged" | "broken / noisy" | "unknown",
     "reason": None | "silent" | "too_short" | "too_quiet" | "too_mixed" | "not_sampled" | "lost",
     "reason_text": None | "too little sound to judge" | ...   # the reason in words
     "probabilities": {"healthy": p, "moderately_aged": p, "broken_noisy": p},
     "features": {"hnr_db": ..., "spectral_flatness": ..., ...},
     "explanation": "one sentence: the verdict and the features that drove it, with clean ranges",
     "reasons": [{"feature", "value", "clean_range", "outside_clean_range", "effect"}, ...],
                 # feature "spectrogram": the spectrogram network, value its p of the verdict;
                 # effect: the fall of the verdict's log-odds without that feature's value
     "window_shares": {"healthy": s, "moderately_aged": s, "broken_noisy": s},
                 # the share of the judged audio whose window on its own points to each class
     "instruments": {"<family>": {"label", "label_text", "reason", "reason_text", "probabilities", "features",
                                  "explanation", "reasons", "window_shares", "chunks", "seconds"}},
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
from instrunet_core.audio import load_audio
from instrunet_core.errors import InputError
from instrunet_core.features import DEFAULT_FRONT_END
from instrunet_core.inputs import check_audio_array, check_sample_rate, to_mono

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
from .stream import (
    BAND_FEATURES,
    ConditionStream,
    band_limited,
    impute_band,
    judge_band_limited,
    not_judgeable,
    reason_of,
    source_band_hz,
    unknown,
)

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
    """Condition verdict of an array, every window judged (no classifier: nothing is "too mixed").

    For tests and training reports; analyses use the streaming analyzer. ``y`` is checked and
    mixed to mono as the core does (:func:`instrunet_core.inputs.check_audio_array`,
    :func:`instrunet_core.inputs.to_mono`), then cut into windows of :data:`CHUNK_SAMPLES` (a
    last, shorter one kept when it can be judged); each judgeable window counts once.

    Audio at another rate is resampled to 22,050 Hz first, as :func:`instrunet_core.analyze`
    does (the features and the windows' length were read off the training clips' rate: a clean
    tone given at 44.1 kHz came out broken_noisy, and at 192 kHz every window was too short).
    With the default ``predict`` each window's features are fused with the spectrogram network
    as in ``analyze``; with a ``predict`` of the caller's the features alone decide, which can
    differ a lot from ``analyze`` (a 60 s 440 Hz sine: broken_noisy 0.76 on the features alone,
    healthy 0.93 fused). Unlike ``analyze``, no window gets its leading family as input and
    every window is judged, not a sample of them.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        Audio at ``sr``, int or float; for 2-D input the shorter axis is the channels, mixed
        down by their mean.
    sr : int
    model : ConditionModel, optional
        Default: the newest shipped model.
    predict : callable, optional
        Replaces ``model.predict`` on the features alone (training evaluates its Keras model
        this way).

    Returns
    -------
    dict
        As a verdict in the output contract (``label``, ``reason``, ``probabilities``,
        ``features``, ``explanation``, ``reasons``, ``chunks``, ``seconds``).

    Raises
    ------
    InputError
        Not a numpy array, a dtype other than int or float (strings, bool, complex), another
        rank, empty audio, too many channels, NaN or infinite samples or samples beyond
        :data:`instrunet_core.inputs.MAX_AMPLITUDE`, or an unusable sample rate.
    """
    what = "condition_of"
    sr = check_sample_rate(sr, what=what)
    source_rate = sr
    y = to_mono(check_audio_array(y, what=what), what=what)
    if sr != SAMPLE_RATE:  # windows, features and network at the training clips' rate, as analyze
        y, sr = load_audio(y, sr, target_sr=SAMPLE_RATE), SAMPLE_RATE
    if model is not None and not isinstance(model, ConditionModel):
        raise InputError(
            f"{what}: model must be a ConditionModel (load_condition_model()), got {type(model).__name__}"
        )
    if predict is not None and not callable(predict):
        raise InputError(
            f"{what}: predict must be callable (features -> probabilities), got {type(predict).__name__}"
        )
    m = model or load_condition_model()
    net = m.spectrogram if predict is None else None
    if net is not None and int(net.front_end.sample_rate) != sr:
        net = None
    band_hz = source_band_hz(source_rate, sr)
    rows, secs, spec = [], [], []
    why: dict[str, int] = {}
    whole: dict[str, int] = {}  # (a short remainder's reason counts only when no whole window has one)
    for a in range(0, max(1, y.shape[0]), CHUNK_SAMPLES):
        w = y[a : a + CHUNK_SAMPLES]
        r = not_judgeable(w, sr)
        f = condition_features(w, sr=sr, band_hz=band_hz) if r is None else None
        if f is None:
            r = r or "silent"
            why[r] = why.get(r, 0) + 1
            if w.shape[0] == CHUNK_SAMPLES:
                whole[r] = whole.get(r, 0) + 1
            continue
        rows.append(f)
        secs.append(w.shape[0] / sr)
        if net is not None:
            spec.append(np.asarray(net.predict_windows(w[None, :]), np.float32)[0])
    if not rows:
        counts = whole or why
        return unknown(reason_of(counts), counts)
    limited = band_limited(source_rate)
    out = assess(
        impute_band(rows, m.reference) if limited else rows,
        [1.0] * len(rows),
        predict=predict or m.predict,
        reference=m.reference,
        spectrogram=np.stack(spec) if spec else None,
        unmeasured=BAND_FEATURES if limited else (),
    )
    if limited:
        judge_band_limited(out, source_rate)
    out["reason"] = None
    out["seconds"] = round(float(sum(secs)), 3)
    return out


def _condition_stream(context: Any) -> ConditionStream:
    return ConditionStream(context)


@hookimpl
def instrunet_register_analyzers(register: Any) -> None:
    """Register the ``condition`` analyzer (streaming)."""
    register(MODEL_NAME, stream=_condition_stream)
