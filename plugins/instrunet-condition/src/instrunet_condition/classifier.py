"""The shipped condition classifier: a features-input ONNX artifact (a feature vector in, not
audio), verified before use and run through the core's one session function."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import ModelError
from instrunet_core.manifest import FEATURES_LAYOUT, Manifest, read_manifest
from instrunet_core.session import onnx_session
from instrunet_core.verify import verify_artifact

from .features import FEATURE_NAMES, feature_vector

__all__ = [
    "MODEL_NAME",
    "MODELS_DIR",
    "CLASSES",
    "DESCRIPTIONS",
    "ConditionModel",
    "load_condition_model",
    "assess",
]

MODEL_NAME = "condition"
MODELS_DIR = Path(__file__).resolve().parent / "models"
CLASSES = ("healthy", "moderately_aged", "broken_noisy")

#: What the verdict and each feature mean, for people (the web app shows them beside the
#: numbers): the features as :mod:`instrunet_condition.features` computes them, per chunk of up
#: to 4 s, averaged.
DESCRIPTIONS: dict[str, str] = {
    "condition": (
        "healthy, moderately aged or broken / noisy, from a small classifier on the features below, "
        "trained on clean notes and on copies degraded on purpose (detuning, damping, noise, buzz, "
        "clipping, dropouts); 'unknown' when there is too little sound to judge. Per instrument it is "
        "judged on the audio of that instrument's time ranges, which may hold other instruments too."
    ),
    "hnr_db": (
        "Harmonics-to-noise ratio in dB (Boersma's autocorrelation method, as Praat's): how much of "
        "the energy is periodic. Clean tones score high; noise, rattle and breath lower it."
    ),
    "spectral_flatness": (
        "Geometric over arithmetic mean of the power spectrum (0 to 1): near 0 for clear partials, "
        "towards 1 for noise."
    ),
    "decay_rate_db_per_s": "How fast the level falls after each note onset, in dB per second (median over notes).",
    "decay_variance": (
        "Variance of the short-time decay rate (over 0.25 s stretches), in (dB/s)^2: beating, "
        "rattles, dropouts and unsteady decay raise it."
    ),
    "crest_factor_db": "Peak over RMS level in dB; clipping and heavy compression lower it.",
    "clipping_ratio": "Share of samples stuck at the peak, beyond what a clean waveform has.",
    "zero_crossing_rate": "Share of samples where the waveform changes sign; noise and buzz raise it.",
    "spectral_centroid_hz": "The spectrum's centre of mass in Hz (brightness).",
    "hf_ratio": "Share of the power above 4 kHz.",
    "noise_floor_db": "The 10th percentile of the frame levels relative to the loudest frame, in dB.",
    "flatness_quiet": "Spectral flatness of the quietest quarter of the sounding frames (the noise between notes).",
    "envelope_modulation_db": "How much the level wobbles around its smoothed course while notes sustain, in dB.",
    "spectral_flux": "How much the spectrum's shape changes from frame to frame while notes sustain (onsets left out).",
    "partial_fluctuation_db": (
        "How much the strongest partials' levels wobble while notes sustain, in dB (beating partials "
        "of a detuned double, chorus)."
    ),
    "hum_db": "Power at 50 or 60 Hz and their 2nd/3rd harmonics over the power just around them, in dB: mains hum.",
}

#: Plain-words names of the features, for explanations.
_WORDS = {
    "hnr_db": "harmonics-to-noise ratio",
    "spectral_flatness": "spectral flatness",
    "decay_rate_db_per_s": "decay rate",
    "decay_variance": "decay variance",
    "crest_factor_db": "crest factor",
    "clipping_ratio": "clipping ratio",
    "zero_crossing_rate": "zero-crossing rate",
    "spectral_centroid_hz": "spectral centroid",
    "hf_ratio": "high-frequency share",
    "noise_floor_db": "noise floor",
    "flatness_quiet": "flatness of the quiet frames",
    "envelope_modulation_db": "envelope modulation",
    "spectral_flux": "spectral flux",
    "partial_fluctuation_db": "partial fluctuation",
    "hum_db": "mains hum",
}


class ConditionModel:
    """The condition model of one artifact folder ``condition/<version>/``.

    Parameters
    ----------
    path : path
        Folder holding ``manifest.json`` and the ONNX file.

    Raises
    ------
    ModelError
        Invalid manifest, not a features-input model, features that this extractor does not
        compute, or an ONNX file whose sha256 differs from the manifest.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: Manifest = read_manifest(self.path)
        m = self.manifest
        where = str(self.path / "manifest.json")
        if m.input.get("layout") != FEATURES_LAYOUT or m.features is None:
            raise ModelError(f"{where}: not a features-input model")
        if tuple(m.features["names"]) != FEATURE_NAMES:
            raise ModelError(
                f"{where}: model features {m.features['names']} differ from this extractor's "
                f"{list(FEATURE_NAMES)}"
            )
        if tuple(m.labels) != CLASSES:
            raise ModelError(f"{where}: labels {list(m.labels)}, expected {list(CLASSES)}")
        verify_artifact(self.path, references=False, manifest=m)  # the ONNX file is there, sha256 matches
        self._session = onnx_session(self.path / m.file)  # the CPU, one thread
        self._input = m.input["name"]
        ref = m.features.get("healthy_median") or {}
        self.healthy_median: dict[str, float] = {k: float(v) for k, v in ref.items()}
        self.name, self.version, self.sha256 = m.name, m.version, m.sha256

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of classifier inputs.

        Parameters
        ----------
        x : np.ndarray [shape=(n, n_features)]
            Rows of :func:`instrunet_condition.features.feature_vector`.

        Returns
        -------
        np.ndarray [shape=(n, 3), dtype=float32]
            Probabilities in :data:`CLASSES` order.
        """
        x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
        if x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} features per row, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        return np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float32)


def model_dirs() -> list[Path]:
    """Every shipped version folder of the condition model, oldest first."""
    return sorted(
        (p.parent for p in (MODELS_DIR / MODEL_NAME).glob("*/manifest.json")),
        key=lambda d: tuple(int(x) for x in d.name.split(".")),
    )


@functools.lru_cache(maxsize=4)
def load_condition_model(path: str | None = None) -> ConditionModel:
    """The newest shipped condition model (or the one at ``path``), loaded once per process."""
    if path is None:
        dirs = model_dirs()
        if not dirs:
            raise ModelError(f"{MODELS_DIR / MODEL_NAME}: no condition model is installed")
        path = str(dirs[-1])
    return ConditionModel(path)


def _explain(
    label: str, p: float, feats: Mapping[str, float], drops: Mapping[str, float], healthy: Mapping[str, float]
) -> str:
    """One sentence: the verdict and the two features whose replacement by the clean-note
    median lowers its probability most (occlusion; ``drops``)."""
    top = [k for k, v in sorted(drops.items(), key=lambda kv: -kv[1]) if v > 0.01][:2]
    if not top:
        return f"{label} (p={p:.2f}): no single feature drives the verdict; they agree together."

    def say(k: str) -> str:
        v, ref = feats[k], healthy.get(k)
        ref_s = f" (clean notes: {ref:.3g})" if ref is not None else ""
        return f"{_WORDS.get(k, k)} {v:.3g}{ref_s}"

    what = " and ".join(say(k) for k in top)
    return f"{label} (p={p:.2f}): the verdict rests most on {what}."


def assess(
    rows: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    *,
    predict: Callable[[np.ndarray], np.ndarray],
    healthy: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Verdict over several chunks of audio: weighted mean of their probabilities.

    Parameters
    ----------
    rows : sequence of dict
        Features of each chunk (:func:`condition_features`).
    weights : sequence of float
        Chunk durations (seconds).
    predict : callable
        ``(n, n_features) -> (n, 3)`` probabilities (the ONNX model, or Keras in training).
    healthy : dict, optional
        Median feature values of clean training notes: the features of a chunk are replaced
        one at a time by these to find what drove the verdict (occlusion).

    Returns
    -------
    dict
        ``label``, ``probabilities``, ``features`` (median over chunks), ``explanation``,
        ``chunks``; ``label == "unknown"`` (probabilities 0, features ``None``) when
        ``rows`` is empty.
    """
    if not rows:
        return {
            "label": "unknown",
            "probabilities": {c: 0.0 for c in CLASSES},
            "features": {k: None for k in FEATURE_NAMES},
            "explanation": "unknown: no audible stretch of at least 1 s to judge (silence or too little audio).",
            "chunks": 0,
        }
    x = np.stack([feature_vector(r) for r in rows])
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    probs = predict(x)
    mean = (probs * w[:, None]).sum(axis=0)
    mean = mean / mean.sum()
    k = int(np.argmax(mean))
    label = CLASSES[k]
    feats = {n: float(np.median([r[n] for r in rows])) for n in FEATURE_NAMES}
    drops: dict[str, float] = {}
    if healthy:
        occl = []
        for j, n in enumerate(FEATURE_NAMES):
            if n not in healthy:
                continue
            xo = x.copy()
            ref = dict(rows[0])
            ref[n] = healthy[n]
            xo[:, j] = feature_vector(ref)[j]
            occl.append((n, xo))
        if occl:
            po = predict(np.concatenate([o for _, o in occl]))
            po = po.reshape(len(occl), len(x), -1)
            for (n, _), pn in zip(occl, po, strict=True):
                drops[n] = float(mean[k] - (pn[:, k] * w).sum())
    return {
        "label": label,
        "probabilities": {c: float(mean[i]) for i, c in enumerate(CLASSES)},
        "features": feats,
        "explanation": _explain(label, float(mean[k]), feats, drops, healthy or {}),
        "chunks": int(len(rows)),
    }
