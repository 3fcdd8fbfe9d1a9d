"""The shipped condition classifier: a features-input ONNX artifact (a feature vector in, not
audio), verified before use and run through the core's one session function."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import InputError, ModelError
from instrunet_core.manifest import FEATURES_LAYOUT, Manifest, read_manifest
from instrunet_core.verify import verified_session

from .features import FEATURE_NAMES, INPUT_NAMES, feature_vector

__all__ = [
    "MODEL_NAME",
    "MODELS_DIR",
    "CLASSES",
    "DESCRIPTIONS",
    "ConditionModel",
    "load_condition_model",
    "assess",
    "explain",
    "SPECTROGRAM",
    "fused_probabilities",
]

MODEL_NAME = "condition"
MODELS_DIR = Path(__file__).resolve().parent / "models"
CLASSES = ("healthy", "moderately_aged", "broken_noisy")
#: The name the explanations give the spectrogram network's share of a verdict.
SPECTROGRAM = "spectrogram"

#: What the verdict and each feature mean, for people (the web app shows them beside the
#: numbers): the features as :mod:`instrunet_condition.features` computes them on each judged
#: 2.9 s window, their weighted median over the windows.
DESCRIPTIONS: dict[str, str] = {
    "condition": (
        "healthy, moderately aged or broken / noisy, from a small classifier on the features below "
        "fused with a small network on the window's spectrogram, both trained on clean notes and "
        "phrases (SoundFont renders and real recorded instruments) and on "
        "copies aged or broken on purpose (tape wow and flutter, dulled highs, detuned strings, worn "
        "hammers, leaking pads, hum, hiss; buzz, clipping, noise, dropouts). Judged on a sample of the "
        "classifier's windows, each 2.9 s; 'unknown' when the sound is too short, too quiet or too "
        "mixed to judge. Per instrument it is judged on the windows where that instrument plays, "
        "which may hold other instruments too."
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
    "wow_cents": "Slow pitch wobble (0.7-4 Hz) of the strongest partials, RMS in cents: tape or turntable wow.",
    "flutter_cents": "Fast pitch wobble (8-20 Hz) of the strongest partials, RMS in cents: tape flutter.",
    "hf_flatness": "Spectral flatness of the 4-10 kHz band (0 to 1): hiss above dulled highs, breath of a leaking pad.",
    "attack_flatness": "Spectral flatness at the note onsets (0 to 1): the noisy thump of worn hammers, rattling parts.",
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
    "wow_cents": "wow",
    "flutter_cents": "flutter",
    "hf_flatness": "flatness above 4 kHz",
    "attack_flatness": "flatness at the onsets",
}


class ConditionModel:
    """The condition model of one artifact folder ``condition/<version>/``.

    Parameters
    ----------
    path : path
        Folder holding ``manifest.json`` and the ONNX file.

    Attributes
    ----------
    reference : dict
        From the manifest: ``{"healthy": {"median": {...}, "low": {...}, "high": {...}},
        "moderately_aged": {"median": {...}}, "broken_noisy": {"median": {...}}}`` — per feature,
        the median over the training clips of each class and, for clean clips, the 5th and 95th
        percentiles (the clean reference range the explanations quote).

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
        if tuple(m.features["names"]) != INPUT_NAMES:
            raise ModelError(
                f"{where}: model inputs {m.features['names']} differ from this extractor's "
                f"{list(INPUT_NAMES)}"
            )
        if tuple(m.labels) != CLASSES:
            raise ModelError(f"{where}: labels {list(m.labels)}, expected {list(CLASSES)}")
        # the ONNX file read once, its sha256 checked and the session built from those bytes (the CPU,
        # one thread)
        self._session = verified_session(self.path, m)
        self._input = m.input["name"]
        ref = m.features.get("reference") or {}
        self.reference: dict[str, dict[str, dict[str, float]]] = {
            c: {k: {n: float(v) for n, v in d.items()} for k, d in r.items()} for c, r in ref.items()
        }
        self.name, self.version, self.sha256 = m.name, m.version, m.sha256
        #: The spectrogram network fused with the features (``None``: the features alone).
        self.spectrogram: Any = None
        self._fusion: tuple[float, float, np.ndarray] | None = None
        if m.features.get("fusion") is not None:
            self._load_fusion(m.features["fusion"], where)

    def _load_fusion(self, f: Any, where: str) -> None:
        """``features.fusion``: ``{"spectrogram": {"name", "version", "sha256"}, "weight",
        "temperature", "offsets"}`` — a log-mel artifact in the same models folder as this one
        (``<models>/<name>/<version>/``), verified, and how its probabilities combine with the
        features' (:meth:`predict`)."""
        from instrunet_core import load_model

        try:
            net = f["spectrogram"]
            folder = self.path.parent.parent / str(net["name"]) / str(net["version"])  # beside this one
            weight, temperature = float(f["weight"]), float(f["temperature"])
            offsets = np.asarray(f["offsets"], np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{where}: features.fusion is malformed ({e!r})") from None
        if not (0.0 <= weight <= 1.0 and temperature > 0 and offsets.shape == (len(CLASSES),)):
            raise ModelError(f"{where}: features.fusion needs weight in [0, 1], temperature > 0, 3 offsets")
        if not (folder / "manifest.json").is_file():
            raise ModelError(f"{where}: features.fusion names {folder}, which holds no artifact")
        spec = load_model(str(folder))  # verified: manifest, sha256 of the ONNX file
        if spec.manifest.sha256 != net.get("sha256") or tuple(spec.labels) != CLASSES:
            raise ModelError(
                f"{where}: features.fusion names {folder} with sha256 {net.get('sha256')!r} and labels "
                f"{list(CLASSES)}; that artifact has {spec.manifest.sha256!r} and {list(spec.labels)}"
            )
        self.spectrogram = spec
        self._fusion = (weight, temperature, offsets)

    def spectrogram_probabilities(self, windows: np.ndarray) -> np.ndarray | None:
        """The spectrogram network's class probabilities for analysis windows of mono audio at
        the front end's rate (``(n, samples)``), or ``None`` when this model has none."""
        if self.spectrogram is None:
            return None
        return np.asarray(self.spectrogram.predict_windows(np.atleast_2d(windows)), np.float32)

    def predict(self, x: np.ndarray, spectrogram: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of classifier inputs.

        Parameters
        ----------
        x : np.ndarray [shape=(n, n_inputs)]
            Rows of :func:`instrunet_condition.features.feature_vector`.
        spectrogram : np.ndarray [shape=(n, 3)], optional
            The spectrogram network's probabilities for the same windows
            (:meth:`spectrogram_probabilities`). With them, a fused model's verdict is
            ``softmax((a log p_features + (1 - a) log p_spectrogram) / T + c)`` (``a``, ``T``,
            ``c`` from the manifest); without them, the features' alone.

        Returns
        -------
        np.ndarray [shape=(n, 3), dtype=float32]
            Probabilities in :data:`CLASSES` order.
        """
        x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
        if x.shape[1] != len(INPUT_NAMES):
            raise ValueError(f"expected {len(INPUT_NAMES)} inputs per row, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        p = np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float32)
        if spectrogram is None or self._fusion is None:
            return p
        spectrogram = np.atleast_2d(np.asarray(spectrogram, np.float64))
        if spectrogram.shape != p.shape:
            raise ValueError(f"spectrogram probabilities {spectrogram.shape} for {p.shape[0]} rows")
        return fused_probabilities(p, spectrogram, *self._fusion).astype(np.float32)


def fused_probabilities(
    p_features: np.ndarray, p_network: np.ndarray, weight: float, temperature: float, offsets: Any
) -> np.ndarray:
    """``softmax((weight log p_features + (1 - weight) log p_network) / temperature + offsets)``,
    row by row: how a fused condition model combines its two classifiers (training scores its
    candidates with the same function)."""
    z = weight * np.log(np.maximum(p_features, 1e-9)) + (1 - weight) * np.log(np.maximum(p_network, 1e-9))
    z = z / temperature + np.asarray(offsets, np.float64)
    q = np.exp(z - z.max(axis=1, keepdims=True))
    return q / q.sum(axis=1, keepdims=True)


def model_dirs() -> list[Path]:
    """Every shipped version folder of the condition model, oldest first."""
    return sorted(
        (p.parent for p in (MODELS_DIR / MODEL_NAME).glob("*/manifest.json")),
        key=lambda d: tuple(int(x) for x in d.name.split(".")),
    )


@functools.lru_cache(maxsize=4)
def load_condition_model(path: str | None = None) -> ConditionModel:
    """The newest shipped condition model (or the one at ``path``), loaded once per process."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load_condition_model: path must be a folder path, got {type(path).__name__}")
    if path is None:
        dirs = model_dirs()
        if not dirs:
            raise ModelError(f"{MODELS_DIR / MODEL_NAME}: no condition model is installed")
        path = str(dirs[-1])
    return ConditionModel(path)


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(v)
    c = np.cumsum(w[order])
    return float(v[order][int(np.searchsorted(c, 0.5 * c[-1]))])


#: Units of the features, for explanations.
_UNITS = {
    "hnr_db": " dB",
    "decay_rate_db_per_s": " dB/s",
    "decay_variance": " (dB/s)²",
    "crest_factor_db": " dB",
    "spectral_centroid_hz": " Hz",
    "noise_floor_db": " dB",
    "envelope_modulation_db": " dB",
    "partial_fluctuation_db": " dB",
    "hum_db": " dB",
    "wow_cents": " cents",
    "flutter_cents": " cents",
}


def _say(name: str, value: float, lo: float | None, hi: float | None) -> str:
    u = _UNITS.get(name, "")
    rng = f" (clean: {lo:.3g} to {hi:.3g}{u})" if lo is not None and hi is not None else ""
    return f"{_WORDS.get(name, name)} {value:.3g}{u}{rng}"


#: Least effect (fall of the verdict's log-odds when a feature alone takes its reference value)
#: of a feature the explanation cites.
MIN_EFFECT = 0.04
#: Below this probability a verdict is a close call, and the explanation says so with the runner-up.
CLOSE_CALL = 0.6
#: Share of the judged audio whose windows, each on its own, point to another class than the
#: verdict from which the explanation says that the windows disagree.
DISAGREE_SHARE = 0.25


def explain(
    label: str,
    p: float,
    feats: Mapping[str, float],
    effects: Mapping[str, float],
    reference: Mapping[str, Mapping[str, Mapping[str, float]]],
    spectrogram: Mapping[str, float] | None = None,
    *,
    probabilities: Mapping[str, float] | None = None,
    window_shares: Mapping[str, float] | None = None,
    unmeasured: Sequence[str] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """The verdict in one sentence and the features behind it.

    Parameters
    ----------
    label : str
    p : float
        Probability of ``label``.
    feats : dict
        The judged stretch's feature values (weighted median over its windows).
    effects : dict
        Per feature, how much the log-odds of ``label`` fall when that feature alone takes its
        reference value (occlusion; see :func:`assess`): the features that drove the verdict
        have the largest effects (log-odds: a verdict at p = 0.999 still shows what drives it).
    reference : dict
        :attr:`ConditionModel.reference`.
    spectrogram : dict, optional
        The spectrogram network's probabilities (weighted mean over the windows) of a fused
        model; ``effects[SPECTROGRAM]`` is then its share of the verdict, and it is cited like a
        feature whose value is its probability of ``label`` (no clean range).
    probabilities : dict, optional
        Every class's probability: a verdict below :data:`CLOSE_CALL` is said to be a close
        call, with the runner-up.
    window_shares : dict, optional
        Per class, the share of the judged audio whose window on its own points to it: from
        :data:`DISAGREE_SHARE` pointing elsewhere, the sentence says the windows disagree.
    unmeasured : sequence of str
        Features that could not be measured (a band-limited source's band features, given their
        clean medians): never cited, never "outweighed".

    Returns
    -------
    sentence : str
    reasons : list of dict
        ``{"feature", "value", "clean_range": [lo, hi], "outside_clean_range", "effect"}`` of the
        features cited, strongest first.

    Notes
    -----
    An aged or broken verdict rests on the features outside the clean range **on the damaged
    side** (the side of the verdict's class median, from the clean median), and on the
    spectrogram network; a feature inside the clean range, or outside it on the clean side, is
    never cited as evidence of damage. A healthy verdict cites clean values, and names the
    features outside the clean range (the farthest first) as outweighed.
    """
    clean = reference.get("healthy", {})
    lo_d, hi_d = clean.get("low", {}), clean.get("high", {})
    c_med, v_med = clean.get("median", {}), reference.get(label, {}).get("median", {})
    net = dict(spectrogram or {})

    def outside(k: str) -> bool:
        return k in lo_d and k in hi_d and k in feats and not (lo_d[k] <= feats[k] <= hi_d[k])

    def beyond(k: str) -> float:
        """How far outside the clean range, in range widths (0 inside)."""
        if not outside(k):
            return 0.0
        lo, hi, v = lo_d[k], hi_d[k], feats[k]
        width = max(hi - lo, 1e-12)
        return (lo - v) / width if v < lo else (v - hi) / width

    def toward(k: str, med: Mapping[str, float]) -> bool | None:
        """Whether ``k``, outside its clean range, lies on the side of a class whose median is
        ``med`` (``None``: that median does not tell a side)."""
        if k in med and k in c_med and med[k] != c_med[k]:
            return bool(feats[k] > hi_d[k] if med[k] > c_med[k] else feats[k] < lo_d[k])
        return None

    def damaged_side(k: str) -> bool:
        if k == SPECTROGRAM:
            return True
        if not outside(k):
            return False
        side = toward(k, v_med)
        return True if side is None else side  # no class median to tell the side: outside is damage

    def value(k: str) -> float:
        return float(net.get(label, 0.0)) if k == SPECTROGRAM else float(feats[k])

    def say(k: str) -> str:
        if k == SPECTROGRAM:
            return f"the spectrogram network ({label.replace('_', ' ')} p={net.get(label, 0.0):.2f})"
        return _say(k, feats[k], lo_d.get(k), hi_d.get(k))

    def reason(k: str) -> dict[str, Any]:
        return {
            "feature": k,
            "value": value(k),
            "clean_range": [lo_d.get(k), hi_d.get(k)],
            "outside_clean_range": outside(k),
            "effect": round(float(effects.get(k, 0.0)), 4),
        }

    words = _CLASS_WORDS.get(label, label)
    head = f"{words} (p={p:.2f}"
    probs = dict(probabilities or {})
    rivals = sorted(((q, c) for c, q in probs.items() if c != label), reverse=True)
    if p < CLOSE_CALL and rivals:
        head += f"; a close call, {_CLASS_WORDS.get(rivals[0][1], rivals[0][1])} p={rivals[0][0]:.2f}"
    head += ")"
    skip = set(unmeasured)
    ranked = [
        k for k, v in sorted(effects.items(), key=lambda kv: -kv[1]) if v > MIN_EFFECT and k not in skip
    ]
    if label == "healthy":
        # What keeps it healthy: clean values whose replacement by a damaged clip's typical value
        # would lower p(healthy) most. A feature outside the clean range is never cited as a reason
        # for "healthy"; it is named as outweighed instead, the farthest first.
        keep = [k for k in ranked if k != SPECTROGRAM and not outside(k)][:2]
        odd = sorted((k for k in FEATURE_NAMES if outside(k) and k not in skip), key=lambda k: -beyond(k))
        # "no sign of damage" only where nothing says otherwise: not on a close call, not when a
        # quarter of the windows point elsewhere, not with a feature outside its clean range on
        # the damaged side (a wow twice the clean maximum is a sign, however outweighed)
        shares = dict(window_shares or {})

        damaged = [reference.get(cls, {}).get("median", {}) for cls in ("moderately_aged", "broken_noisy")]
        calm = (
            p >= CLOSE_CALL
            and not any(toward(k, med) for k in odd for med in damaged)
            and not (shares and 1.0 - float(shares.get(label, 0.0)) >= DISAGREE_SHARE)
        )
        if keep:
            text = (
                f"{head}: {'no sign of damage; ' if calm else ''}"
                + " and ".join(say(k) for k in keep)
                + (" look" if len(keep) > 1 else " looks")
                + " as clean recordings do"
            )
        else:
            text = f"{head}: no single feature stands out; together they look as clean recordings do"
        if odd:
            text += "; outside the clean range but outweighed: " + ", ".join(say(k) for k in odd[:3])
            if len(odd) > 3:
                text += f" and {len(odd) - 3} more"
        cited = keep + odd[:3]
    else:
        cited = [k for k in ranked if damaged_side(k)][:3]
        if cited:
            text = f"{head}: the verdict rests most on " + " and ".join(say(k) for k in cited)
        else:
            text = (
                f"{head}: no feature is outside its clean range on the damaged side; the verdict rests on "
                "their combination, none of them damaged on its own"
            )
    return text + _disagreement(label, window_shares) + ".", [reason(k) for k in cited]


_CLASS_WORDS = {"healthy": "healthy", "moderately_aged": "moderately aged", "broken_noisy": "broken / noisy"}


def _disagreement(label: str, shares: Mapping[str, float] | None) -> str:
    """``"; the judged windows disagree: 52 % look healthy, 48 % broken / noisy (the condition
    may change over the recording)"``, or ``""`` when they mostly agree with the verdict."""
    if not shares or 1.0 - float(shares.get(label, 0.0)) < DISAGREE_SHARE:
        return ""
    parts = [
        f"{q:.0%} {_CLASS_WORDS.get(c, c)}"
        for c, q in sorted(shares.items(), key=lambda cq: -cq[1])
        if q >= 0.05
    ]
    return (
        "; the judged windows disagree: "
        + ", ".join(parts)
        + " (the condition may change over the recording)"
    )


def assess(
    rows: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    *,
    families: Sequence[str | None] | None = None,
    predict: Callable[..., np.ndarray],
    reference: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    spectrogram: np.ndarray | None = None,
    unmeasured: Sequence[str] = (),
) -> dict[str, Any]:
    """Verdict over several windows of audio: the weighted mean of their probabilities.

    Parameters
    ----------
    rows : sequence of dict
        Features of each window (:func:`condition_features`); at least one.
    weights : sequence of float
        Each window's weight (how much of the stretch it stands for): one per row, finite and
        at least 0, not all 0.
    families : sequence of str or None, optional
        The family leading each window (the classifier's input beside the features); default none.
    predict : callable
        ``(n, n_features) -> (n, 3)`` probabilities (the ONNX model, or Keras in training); with
        ``spectrogram``, ``predict(x, spectrogram)`` (:meth:`ConditionModel.predict`).
    reference : dict, optional
        :attr:`ConditionModel.reference`. For the explanation each feature in turn takes a
        reference value in every window (occlusion): the clean median for an aged or broken
        verdict, the runner-up class's median for a healthy one; how far the verdict's log-odds
        fall says how much that feature drove it.
    spectrogram : np.ndarray [shape=(n, 3)], optional
        A fused model's spectrogram network probabilities of each window; its share of the
        verdict (the fall when the features alone decide) is the effect of :data:`SPECTROGRAM`.
    unmeasured : sequence of str
        Features the rows hold stand-in values for (:func:`explain` never cites them).

    Returns
    -------
    dict
        ``label``, ``probabilities``, ``features`` (weighted median over the windows),
        ``explanation``, ``reasons``, ``window_shares`` (per class, the share of the judged audio
        whose window on its own points to it), ``chunks``.

    Raises
    ------
    InputError
        No rows, or weights that are not one finite number >= 0 per row with a positive sum
        (all-zero weights would make every probability NaN), ``families`` of another length,
        features that are not finite, or ``predict`` giving anything but finite probabilities
        of the right shape (a NaN verdict used to come out "healthy", the arg-max of NaN).
    """
    if len(rows) == 0:
        raise InputError("assess: no windows to judge (rows is empty)")
    try:
        w = np.asarray(weights, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"assess: weights must be numbers, got {weights!r}") from None
    if w.shape != (len(rows),):
        raise InputError(f"assess: {len(rows)} rows need {len(rows)} weights, got shape {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise InputError(f"assess: weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    w = w / w.sum()
    fams = list(families) if families is not None else [None] * len(rows)
    if len(fams) != len(rows):
        raise InputError(f"assess: {len(rows)} rows need {len(rows)} families, got {len(fams)}")
    x = np.stack([feature_vector(r, f) for r, f in zip(rows, fams, strict=True)])
    if not np.isfinite(x).all():
        bad = sorted({n for r in rows for n in FEATURE_NAMES if not np.isfinite(float(r[n]))})
        raise InputError(f"assess: features that are not finite numbers: {bad or 'the family input'}")
    spec = None if spectrogram is None else np.asarray(spectrogram, np.float32)

    def run(rows_x: np.ndarray, reps: int = 1, *, fused: bool = True) -> np.ndarray:
        got = predict(rows_x, np.tile(spec, (reps, 1))) if spec is not None and fused else predict(rows_x)
        p = np.asarray(got, np.float64)
        if p.shape != (len(rows_x), len(CLASSES)):
            raise InputError(f"assess: predict must give shape {(len(rows_x), len(CLASSES))}, got {p.shape}")
        if not (np.isfinite(p).all() and (p >= 0).all()):
            raise InputError("assess: predict gave probabilities that are NaN, infinite or negative")
        return p

    probs = run(x)
    # each window on its own: which class it points to (the share of the judged audio)
    shares = {c: float(w[np.argmax(probs, axis=1) == i].sum()) for i, c in enumerate(CLASSES)}
    mean = (probs * w[:, None]).sum(axis=0)
    if not mean.sum() > 0:
        raise InputError("assess: predict gave every window probability 0 for every class")
    mean = mean / mean.sum()
    k = int(np.argmax(mean))
    label = CLASSES[k]
    feats = {n: _weighted_median(np.array([r[n] for r in rows]), w) for n in FEATURE_NAMES}
    effects: dict[str, float] = {}
    ref = reference or {}
    other = CLASSES[int(np.argsort(mean)[-2])] if label == "healthy" else "healthy"
    target = ref.get(other, {}).get("median", {})
    occl = []
    for j, n in enumerate(FEATURE_NAMES):
        if n in target:
            xo = x.copy()
            xo[:, j] = feature_vector({**rows[0], n: target[n]})[j]  # j < len(FEATURE_NAMES)
            occl.append((n, xo))
    if occl:
        po = run(np.concatenate([o for _, o in occl]), len(occl)).reshape(len(occl), len(x), -1)
        for (n, _), pn in zip(occl, po, strict=True):
            effects[n] = _logit(mean[k]) - _logit((pn[:, k] * w).sum() / (pn * w[:, None]).sum())
    net = None
    if spec is not None:
        alone = run(x, fused=False)  # the features alone
        effects[SPECTROGRAM] = _logit(mean[k]) - _logit((alone[:, k] * w).sum() / (alone * w[:, None]).sum())
        net = {c: float((spec[:, i] * w).sum()) for i, c in enumerate(CLASSES)}
    probabilities = {c: float(mean[i]) for i, c in enumerate(CLASSES)}
    text, reasons = explain(
        label,
        float(mean[k]),
        feats,
        effects,
        ref,
        net,
        probabilities=probabilities,
        window_shares=shares,
        unmeasured=unmeasured,
    )
    return {
        "label": label,
        "probabilities": {c: float(mean[i]) for i, c in enumerate(CLASSES)},
        "features": feats,
        "explanation": text,
        "reasons": reasons,
        "window_shares": shares,
        "chunks": int(len(rows)),
    }


def _logit(q: float) -> float:
    q = min(max(float(q), 1e-6), 1.0 - 1e-6)
    return float(np.log(q / (1.0 - q)))
