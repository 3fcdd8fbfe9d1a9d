"""Result types of an analysis: the overall :class:`Prediction`, the :class:`Analysis`, and
what analyzer plugins receive (:class:`AnalysisContext`).

Pure results and their aggregation; the audio → windows → probabilities path that fills
them is :class:`instrunet_core.inference.Classifier` (and :func:`instrunet_core.analyze`,
built on it). Nothing here imports the inference layer, so data flows one way:
audio → inference → timeline/analysis → analyzers → writers.

Aggregation (:func:`aggregate`) weights each non-silent window by its loudness relative
to the loudest window (linear RMS ratio), so the near-silent windows around a short note
or at the end of a decaying one hardly vote; audio with less than
:data:`LOW_EVIDENCE_SECONDS` of sound is marked ``low_evidence``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .audio import load_audio, source_name
from .errors import InstrunetError, PluginError
from .inputs import check_count
from .labels import FAMILIES
from .output import ANALYSIS_SCHEMA, instrunet_version, jsonable
from .timeline import (
    DEFAULT_MIN_DURATION,
    DEFAULT_MIN_SILENCE,
    DEFAULT_SMOOTHING,
    OTHER_VETO,
    Activity,
    Instrument,
    Segment,
    answers_other,
)

__all__ = [
    "MEASURES",
    "measures_for",
    "Analysis",
    "AnalysisContext",
    "Embedding",
    "Prediction",
    "WindowResult",
    "aggregate",
    "embedding_of",
    "SILENCE_LABEL",
    "OTHER_LABEL",
    "LOW_EVIDENCE_SECONDS",
]

#: Label reported when every window is below the silence level.
SILENCE_LABEL = "silence"
#: Label reported (by a model with an open-set output) for sound that is none of the labels:
#: drums, synthesizers, speech, noise.
OTHER_LABEL = "other"

#: Audio with less sound than this (seconds above :data:`~instrunet_core.features.SILENCE_DB`,
#: counted in 512-sample blocks at 22,050 Hz) gets a result marked ``low_evidence``: the
#: first models were trained on notes of about 3 s held, and on the valid instruments
#: ``family`` 1.0.0 got fewer than half of the answers on less than 1 s of sound right,
#: against 0.63-0.79 above (``python -m benchmarks.short_notes``; docs/inference.md says what
#: the current default does).
LOW_EVIDENCE_SECONDS = 1.0


def _measures(
    one: str,
    many: str,
    none: str,
    none_of: str,
    *,
    window: float,
    smoothing: float,
    min_duration: float,
    min_silence: float,
    other_veto: float | None,
    leading: int | None,
    margins: Mapping[str, float] | None,
) -> dict[str, str]:
    """:data:`MEASURES` worded for ``one``/``many`` ("family", "families"; "label", "labels"),
    ``none`` the open-set answer's name ("none of the eight") and ``none_of`` what it is none of."""
    return {
        "probability": (
            f"What the model says about one window of {window:.2f} s: how likely each {one} plays in it, from 0 "
            f"to 1. {many.capitalize()} are judged each on its own, so several can be high at once."
        ),
        "mean probability": (
            f"A {one}'s probability averaged over the recording's windows, each window weighted by its "
            "loudness relative to the loudest (near-silent windows hardly count; silent ones not at all). "
            f"The overall answer is the {one} with the highest mean probability, and {many} are "
            "listed in this order."
        ),
        "smoothed probability": (
            f"A {one}'s probability over time: that of the window centred at each moment, averaged "
            f"over {smoothing:g} s (the smoothing). The timeline's colours show it."
        ),
        "threshold": (
            f"Per {one}, chosen when the model was trained: a {one} is detected where its smoothed "
            f"probability stays at or above its threshold for at least {min_duration:g} s (the minimum duration), "
            "or over the whole of a shorter sound. It applies to the smoothed probability, not to the "
            "mean probability." + _behind(one, many, leading, margins)
        ),
        "time ranges": (
            f"Where a {one} is detected, in m:ss. {min_silence:g} s or more of silence ends a range, and each "
            "range starts and ends with the sound it holds."
        ),
        "presence": (
            f"The share of the recording's sound (its silences of min_silence, {min_silence:g} s, or more left out: "
            "shorter pauses count as sound, so this is not a share of sounding_seconds) in which the "
            f"{one} is detected."
        ),
        "intensity": (
            f"How strongly and how loudly a {one} plays where it is detected: the mean of its smoothed "
            "probability times the loudness (RMS relative to the loudest moment), from 0 to 1."
        ),
        none: (
            f"Models with an open-set output also say how likely a sound is {none_of}; it is the answer "
            f"where it reaches its threshold and beats every {one}. Where it is the answer with a smoothed "
            + (
                f"probability at or above the model's veto level (its manifest's, else {OTHER_VETO:g}; an "
                f"analysis's settings give the level it used), no {one} is detected."
                if other_veto is None
                else f"probability of {other_veto:g} or more, no {one} is detected."
                + ("" if other_veto < 1 else f" (The veto is off here: {other_veto:g}.)")
            )
        ),
        "low evidence": "Less than 1 s of sound: the answer is a guess.",
        "confidence (JSON)": "The JSON's name for the overall label's mean probability (not another number).",
    }


def count_word(n: int) -> str:
    """A count as people read it in a sentence: "one" to "ten", else the digits."""
    words = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n - 1] if 1 <= n <= len(words) else str(n)


def _behind(one: str, many: str, leading: int | None, margins: Mapping[str, float] | None) -> str:
    """The threshold's words for the :attr:`~instrunet_core.timeline.Detection.leading` rule: as a
    rule (``leading`` None: no analysis to say it for), for an analysis's settings, or nothing."""
    if leading is None:
        return (
            f" A model may hold the {many} behind the most probable ones at a moment to a margin above "
            f"their thresholds there (the default: behind the two most probable; an analysis's settings "
            "give its leading count and margins)."
        )
    top = max((float(v) for v in (margins or {}).values()), default=0.0)
    if leading <= 0 or top <= 0:
        return ""
    ahead = "another" if leading == 1 else f"{count_word(leading)} others"
    return (
        f" Where {ahead} {'is' if leading == 1 else 'are'} more probable at a moment, a {one} needs its "
        f"threshold plus its margin there (up to {top:g}; in a mixture, what the model spills over "
        "from the parts that play)."
    )


def measures_for(labels: Sequence[str], settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """:data:`MEASURES` as they read for a model with ``labels`` and an analysis made with
    ``settings`` (:attr:`Analysis.settings`: its window, smoothing, minimum duration and silence,
    and "other" veto; the defaults where it gives none, and for the veto, which each model sets
    for itself, the rule instead of a level): "family" and "none of the eight" for the
    eight families, "label" and "none of the labels" for any other model (a custom model's
    ``drums`` label was called "none of the eight families" in the PDF's glossary, and an
    analysis with another veto was said to have the default's)."""
    st = dict(settings or {})
    families = tuple(labels) == FAMILIES
    return _measures(
        "family" if families else "label",
        "families" if families else "labels",
        "none of the eight" if families else "none of the labels",
        "none of the eight families (drums, synthesizers, speech, noise)"
        if families
        else "none of the model's labels",
        window=float(st.get("window", 2.95)),
        smoothing=float(st.get("smoothing", DEFAULT_SMOOTHING)),
        min_duration=float(st.get("min_duration", DEFAULT_MIN_DURATION)),
        min_silence=float(st.get("min_silence", DEFAULT_MIN_SILENCE)),
        other_veto=None if st.get("other_veto") is None else float(st["other_veto"]),
        # a count of every label or more leaves no label behind: no margin applies
        leading=None if settings is None else (k if (k := int(st.get("leading", 0))) < len(labels) else 0),
        margins=dict(st.get("margins") or {}),
    )


#: The one definition of each number instrunet reports, for people: the CLI's, the app's and
#: the PDF's words come from here (each shown once, with this meaning), as they read for the
#: eight families at the default settings (the "other" veto as a rule: its level is each model's,
#: :attr:`~instrunet_core.model.Model.other_veto`); :func:`measures_for` words them for an analysis.
MEASURES: dict[str, str] = measures_for(FAMILIES)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Overall prediction for one piece of audio.

    Attributes
    ----------
    label : str
        Most probable label; ``"other"`` when a model with an open-set output finds the sound
        is none of its labels (:attr:`other` reaches the model's threshold and beats every
        label); ``"silence"`` when all windows are silent.
    confidence : float
        The mean probability of ``label`` (see :data:`MEASURES`; 1.0 for silence). The JSON
        keeps the key ``confidence``; every text people read says "mean probability".
    probabilities : dict[str, float]
        Loudness-weighted mean probability per label over the non-silent windows
        (all 0 for silence).
    n_windows : int
        Windows analysed.
    silent : bool
        True when every window was silent.
    low_evidence : bool
        True when the audio holds less than :data:`LOW_EVIDENCE_SECONDS` of sound: the
        answer is a guess on too little audio (and so is ``"silence"`` on no audio).
    sounding_seconds : float
        Seconds of audio above the silence level.
    top : tuple of (str, float)
        The ``top_k`` most probable of the model's labels with their probabilities, best first
        (all labels unless ``top_k`` was given; empty for silence). "Other" is not a label: when
        ``label`` is ``"other"`` (an open-set model's answer), ``top[0]`` is still a family, the
        likeliest of them (white noise: ``label`` "other", ``top[0]`` guitar 0.97), so read the
        answer from ``label``.
    other : float or None
        Loudness-weighted mean probability that the sound is none of the labels (models with
        an open-set output; ``None`` otherwise).
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    n_windows: int = 0
    silent: bool = False
    low_evidence: bool = False
    sounding_seconds: float = 0.0
    top: tuple[tuple[str, float], ...] = ()
    other: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "label": self.label,
            "confidence": float(self.confidence),
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "n_windows": int(self.n_windows),
            "silent": bool(self.silent),
            "low_evidence": bool(self.low_evidence),
            "sounding_seconds": round(float(self.sounding_seconds), 4),
            "top": [[k, float(v)] for k, v in self.top],
        }
        if self.other is not None:
            d["other"] = float(self.other)
        return d


@dataclasses.dataclass(frozen=True, eq=False)  # (arrays inside: compared by identity; compare to_dict())
class WindowResult:
    """One analysed window.

    Attributes
    ----------
    index : int
        Position in the stream (0, 1, 2, ...).
    start, end : float
        Seconds from the start of the stream; ``end`` is clipped to the audio's end for a window
        that reaches past it (the last one, aligned to the end, by less than an STFT hop; the
        only window of audio shorter than a window).
    probabilities : np.ndarray [shape=(n_labels,), dtype=float32]
        Model output (also for silent windows; they do not vote).
    rms_db : float
        RMS level of the window's real samples in dBFS (digital silence: -200).
    silent : bool
        ``rms_db`` below :data:`~instrunet_core.features.SILENCE_DB`.
    label : str
        Most probable label, ``"other"`` (open-set models: none of the labels) or
        ``"silence"`` for a silent window.
    n_samples : int
        Real (unpadded) samples at the front end's rate.
    other : float or None
        Probability that the window's sound is none of the labels (open-set models).
    embedding : np.ndarray [shape=(dim,), dtype=float32] or None
        The network's embedding of the window (kept when the classifier was made with
        ``embeddings=True``).
    """

    index: int
    start: float
    end: float
    probabilities: np.ndarray
    rms_db: float
    silent: bool
    label: str
    n_samples: int
    other: float | None = None
    embedding: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        """Probability of :attr:`label` (1.0 for silence)."""
        if self.silent:
            return 1.0
        if self.label == OTHER_LABEL and self.other is not None:
            return float(self.other)
        return float(self.probabilities.max())


def window_weights(rms_db: np.ndarray, silent: np.ndarray) -> np.ndarray:
    """Aggregation weight of each window: linear RMS relative to the loudest window, 0 if silent.

    Parameters
    ----------
    rms_db : np.ndarray [shape=(T,)]
    silent : np.ndarray [shape=(T,), dtype=bool]

    Returns
    -------
    np.ndarray [shape=(T,), dtype=float64]
        In [0, 1]; the loudest window weighs 1, a window 20 dB quieter 0.1.
    """
    level = np.asarray(rms_db, dtype=np.float64)
    silent = np.asarray(silent, dtype=bool)
    if level.size == 0 or silent.all():
        return np.zeros(level.shape, dtype=np.float64)
    top = level[~silent].max()
    return np.where(silent, 0.0, np.power(10.0, (level - top) / 20.0))


def aggregate(
    labels: tuple[str, ...],
    probabilities: np.ndarray,
    rms_db: np.ndarray,
    silent: np.ndarray,
    *,
    sounding_seconds: float,
    top_k: int | None = None,
    other: np.ndarray | None = None,
    other_threshold: float | None = None,
) -> Prediction:
    """Loudness-weighted mean of the non-silent windows → :class:`Prediction`.

    Parameters
    ----------
    labels : tuple of str
    probabilities : np.ndarray [shape=(T, n_labels)]
    rms_db : np.ndarray [shape=(T,)]
    silent : np.ndarray [shape=(T,), dtype=bool]
    sounding_seconds : float
        Seconds above the silence level (sets ``low_evidence``).
    top_k : int, optional
        Labels kept in :attr:`Prediction.top` (all when omitted): a positive int
        (:func:`~instrunet_core.inputs.check_count`; ``True``, 0 and 2.5 are an ``InputError``).
    other : np.ndarray [shape=(T,)], optional
        Open-set probabilities; with ``other_threshold``, the answer is ``"other"`` when their
        weighted mean reaches the threshold and beats every label's.

    Returns
    -------
    Prediction
        ``"silence"`` when every window is silent (or there are none).
    """
    if top_k is not None:
        check_count(top_k, name="top_k")
    silent = np.asarray(silent, dtype=bool)
    n = int(silent.shape[0])
    low = bool(sounding_seconds < LOW_EVIDENCE_SECONDS)
    if n == 0 or silent.all():
        return Prediction(
            SILENCE_LABEL,
            1.0,
            {lab: 0.0 for lab in labels},
            n_windows=n,
            silent=True,
            low_evidence=low,
            sounding_seconds=float(sounding_seconds),
            # an open-set model's outputs keep their shape: nothing sounds, so nothing is "other"
            other=0.0 if other is not None or other_threshold is not None else None,
        )
    w = window_weights(rms_db, silent)
    mean = (np.asarray(probabilities, dtype=np.float64) * w[:, None]).sum(axis=0) / w.sum()
    order = np.argsort(-mean, kind="stable")
    k = len(labels) if top_k is None else min(top_k, len(labels))
    i = int(order[0])
    other_mean = None if other is None else float((np.asarray(other, np.float64) * w).sum() / w.sum())
    none = (
        other_mean is not None
        and other_threshold is not None
        and bool(answers_other(other_mean, mean[i], other_threshold))
    )
    return Prediction(
        label=OTHER_LABEL if none else labels[i],
        confidence=float(other_mean) if none and other_mean is not None else float(mean[i]),
        probabilities={lab: float(mean[j]) for j, lab in enumerate(labels)},
        n_windows=n,
        silent=False,
        low_evidence=low,
        sounding_seconds=float(sounding_seconds),
        top=tuple((labels[int(j)], float(mean[j])) for j in order[:k]),
        other=other_mean,
    )


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (no copy): what the core hands to plugins.

    Writing into it raises ``ValueError: assignment destination is read-only``.
    """
    v = a.view()
    v.setflags(write=False)
    return v


def _frozen_mapping(m: Mapping[str, float] | None) -> Mapping[str, float]:
    """A read-only copy of ``m`` (``{}`` for ``None``)."""
    return types.MappingProxyType(dict(m or {}))


class AnalysisContext:
    """What an analyzer plugin receives (see :func:`instrunet_core.hookspecs.instrunet_register_analyzers`).

    Made before decoding, so that a streaming analyzer knows what is coming, and completed with
    the timeline after the pass (:meth:`complete`).

    It is read-only, because every analyzer of an analysis gets the same one: setting an
    attribute raises :class:`~instrunet_core.errors.PluginError`, the arrays cannot be written,
    :attr:`thresholds` is a read-only mapping and :attr:`instruments` a fresh copy on each access,
    so an analyzer cannot change what the core or the other analyzers see.

    Attributes
    ----------
    source : str
        File name, or ``"array"``.
    sample_rate : int
        Rate of the blocks a streaming analyzer is fed and of :meth:`audio` (22,050 Hz, the
        model's front-end rate).
    labels : tuple of str
    thresholds : Mapping[str, float]
        The presence thresholds the timeline uses (read-only).
    hop_seconds, window_seconds : float
        Seconds between window starts, and one window's length.
    expected_duration : float or None
        Seconds of audio the source says it holds, before decoding (``None`` when it does not
        say); after the pass, :attr:`duration` is what was decoded.
    source_sample_rate : int or None
        The source's own rate before resampling (its header's, or the array's): what band it
        can hold (an 8 kHz recording has nothing above 4 kHz, whatever :attr:`sample_rate` is);
        ``None`` when not known.
    lag_seconds : float or None
        The most seconds of audio by which a window reaches a streaming analyzer's ``windows``
        after the block that completes it was pushed (the classifier's batches and pipeline:
        :attr:`~instrunet_core.Classifier.lag_seconds`); audio kept for windows must be kept at
        least this long. ``None`` outside :func:`~instrunet_core.analyze`.
    model_name, model_version : str
    duration : float
        Seconds decoded (0 before the pass).
    times : np.ndarray [shape=(T, 2)]
        Window start/end seconds (this and the arrays below are read-only).
    probabilities : np.ndarray [shape=(T, n_labels)]
        Per-window probabilities (0 for silent windows).
    rms_db : np.ndarray [shape=(T,)]
    silent : np.ndarray [shape=(T,), dtype=bool]
    """

    def __init__(
        self,
        *,
        source: Any,
        sample_rate_in: int | None,
        analysis: Analysis | None = None,
        labels: tuple[str, ...] = (),
        model: dict[str, str] | None = None,
        settings: dict[str, Any] | None = None,
        expected_duration: float | None = None,
        source_sample_rate: int | None = None,
        lag_seconds: float | None = None,
    ) -> None:
        self._source = source
        self._sample_rate_in = sample_rate_in
        self._audio: np.ndarray | None = None
        self.source = source_name(source)
        settings = dict(settings or {})
        self.sample_rate = int(settings.get("sample_rate", 22050))
        self._locked = False
        self.labels = tuple(labels)
        self.thresholds: Mapping[str, float] = _frozen_mapping(settings.get("thresholds"))
        self.hop_seconds = float(settings.get("hop", 0.0))
        self.window_seconds = float(settings.get("window", 0.0))
        self.expected_duration = expected_duration
        self.source_sample_rate = None if source_sample_rate is None else int(source_sample_rate)
        self.lag_seconds = None if lag_seconds is None else float(lag_seconds)
        self.model_name = (model or {}).get("name", "")
        self.model_version = (model or {}).get("version", "")
        self.duration = 0.0
        self.times = read_only(np.zeros((0, 2)))
        self.probabilities = read_only(np.zeros((0, len(self.labels)), np.float32))
        self.rms_db = read_only(np.zeros(0))
        self.silent = read_only(np.zeros(0, bool))
        self._instruments: tuple[Instrument, ...] = ()
        self._locked = True
        if analysis is not None:
            self.complete(analysis)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and getattr(self, "_locked", False):
            raise PluginError(
                f"the analysis context is read-only: cannot set {name!r} (every analyzer shares it; "
                "copy what you want to change)"
            )
        object.__setattr__(self, name, value)

    @property
    def instruments(self) -> list[Instrument]:
        """The detected instruments (with their time ranges), as in :attr:`Analysis.instruments`:
        a fresh copy on each access, so changing it changes nothing else."""
        return [dataclasses.replace(i, ranges=[list(r) for r in i.ranges]) for i in self._instruments]

    def complete(self, analysis: Analysis) -> None:
        """Take the results of the pass: timeline arrays, detected instruments, settings."""
        self._locked = False
        try:
            self._complete(analysis)
        finally:
            self._locked = True

    def _complete(self, analysis: Analysis) -> None:
        s = analysis.settings
        self.sample_rate = int(s["sample_rate"])
        self.thresholds = _frozen_mapping(s.get("thresholds"))
        self.hop_seconds = float(s.get("hop", self.hop_seconds))
        self.window_seconds = float(s.get("window", self.window_seconds))
        self.duration = analysis.duration
        self.labels = analysis.labels
        self.model_name = analysis.model["name"]
        self.model_version = analysis.model["version"]
        self.times = read_only(analysis.times)
        self.probabilities = read_only(analysis.probabilities)
        self.rms_db = read_only(analysis.rms_db)
        self.silent = read_only(analysis.silent_windows)
        self._instruments = tuple(analysis.instruments)

    def audio(self) -> np.ndarray:
        """Whole file as mono float32 at :attr:`sample_rate` (decoded again on first call, then
        cached: memory grows with the file; streaming analyzers never need it).

        Returns
        -------
        np.ndarray [shape=(n,), dtype=float32]
        """
        if self._audio is None:
            if hasattr(self._source, "seek"):
                self._source.seek(0)
            self._audio = load_audio(self._source, self._sample_rate_in, target_sr=self.sample_rate)
            self._audio.setflags(write=False)
        return self._audio

    def segment_audio(self, i: int) -> np.ndarray:
        """Audio of timeline segment ``i`` (mono float32 at :attr:`sample_rate`)."""
        a, b = self.times[i]
        y = self.audio()
        return y[int(round(a * self.sample_rate)) : int(round(b * self.sample_rate))]


@dataclasses.dataclass(eq=False, repr=False)  # (arrays inside: compared by identity; compare to_dict())
class Analysis:
    """Result of :func:`instrunet_core.analyze` and :meth:`Classifier.analysis`.

    Attributes
    ----------
    source : str
        Path, file object name, ``"array"`` or ``"stream"``.
    duration : float
        Seconds.
    model : dict
        ``{"name", "version", "sha256", "task", "input", "provider"}``
        (:func:`instrunet_core.output.model_info`): ``input`` is the artifact's input kind
        (``"logmel"`` or ``"waveform"``), ``provider`` the onnxruntime execution provider that
        actually ran it (e.g. ``"CPUExecutionProvider"``).
    labels : tuple of str
        Column order of :attr:`probabilities`.
    prediction : Prediction
        Overall: loudness-weighted mean of the non-silent windows, or ``"silence"``.
        The overall per-label dict is ``prediction.probabilities``.
    timeline : list of Segment
        One per window (the same numbers as the arrays below, as objects).
    instruments : list of Instrument
        Detected instruments, in the order of the overall answer (highest mean probability
        first; empty for silence).
    extras : dict
        ``{analyzer_name: dict}`` from analyzer plugins (``{"error": ...}`` if one failed).
    settings : dict
        ``hop`` (seconds, snapped to whole frames), ``window``, ``smoothing``, ``min_duration``
        and ``min_silence`` (seconds), ``thresholds``, ``other_threshold``, ``silence_db``,
        ``sample_rate``, ``evidence_windows`` (windows :meth:`Classifier.refine` added).
    times : np.ndarray [shape=(T, 2), dtype=float64]
        Start and end seconds of each window (end clipped to ``duration``).
    probabilities : np.ndarray [shape=(T, n_labels), dtype=float32]
        Each window's probabilities (rows of silent windows are 0).
    rms_db : np.ndarray [shape=(T,), dtype=float64]
        Each window's RMS level in dBFS.
    silent_windows : np.ndarray [shape=(T,), dtype=bool]
        Windows below the silence level.
    other : np.ndarray [shape=(T,), dtype=float32] or None
        Each window's probability of sound that is none of the labels (open-set models; 0
        for silent windows; ``None`` for models without that output).
    embedding : Embedding or None
        The recording's and the windows' embeddings (``analyze(..., embeddings=True)``).
    activity : Activity or None
        The time axis: each label's smoothed probability and presence every 23 ms, the level
        track and the sound (:func:`instrunet_core.timeline.activity`); the ranges of
        :attr:`instruments` and :meth:`other_ranges` are its runs, and the plots draw it.
    damage : str or None
        Why decoding ended before the file's end (a FLAC cut short, a damaged MP3): the
        analysis covers what decoded (:attr:`Classifier.damage <instrunet_core.Classifier>`);
        ``None`` when the source decoded whole.
    """

    source: str
    duration: float
    model: dict[str, str]
    labels: tuple[str, ...]
    prediction: Prediction
    timeline: list[Segment]
    instruments: list[Instrument]
    extras: dict[str, Any]
    settings: dict[str, Any]
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))
    probabilities: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    rms_db: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    silent_windows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    other: np.ndarray | None = None
    embedding: Embedding | None = None
    activity: Activity | None = None
    damage: str | None = None

    def __repr__(self) -> str:
        """A summary (the full timeline of an hour is a megabyte of text): source, duration,
        model, answer, the instruments, how many windows and segments, the extras' names."""
        model = f"{self.model.get('name')} {self.model.get('version')}"
        return (
            f"{type(self).__name__}(source={self.source!r}, duration={self.duration:.2f}, model={model!r}, "
            f"label={self.label!r}, confidence={self.confidence:.3f}, "
            f"instruments={[i.label for i in self.instruments]!r}, windows={len(self.times)}, "
            f"segments={len(self.timeline)}, extras={sorted(self.extras)!r})"
        )

    def other_ranges(self) -> list[list[float]]:
        """Seconds where the sound is none of the labels: where the smoothed open-set probability
        reaches the model's threshold and beats every label's, decided on the time axis as the
        instruments' ranges are; empty for a closed-set model."""
        if self.activity is None or self.activity.other_active is None:
            return []
        return self.activity.ranges(OTHER_LABEL)

    @property
    def label(self) -> str:
        return self.prediction.label

    @property
    def confidence(self) -> float:
        return self.prediction.confidence

    @property
    def silent(self) -> bool:
        """True when every window is silent."""
        return self.prediction.silent

    @property
    def low_evidence(self) -> bool:
        """True when the audio holds too little sound for a trustworthy answer."""
        return self.prediction.low_evidence

    def to_dataframe(self) -> Any:
        """Per-window table: ``start``, ``end``, ``rms_db``, ``silent`` and one column per label.

        Returns
        -------
        pandas.DataFrame [shape=(T, 4 + n_labels), or (T, 5 + n_labels) with an ``other`` column for open-set models]

        Raises
        ------
        InstrunetError
            pandas is not installed (it is optional: ``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise InstrunetError(
                "Analysis.to_dataframe needs pandas, which is not installed (pip install pandas)"
            ) from None
        cols: dict[str, Any] = {
            "start": self.times[:, 0],
            "end": self.times[:, 1],
            "rms_db": self.rms_db,
            "silent": self.silent_windows,
        }
        for j, lab in enumerate(self.labels):
            cols[lab] = self.probabilities[:, j]
        if self.other is not None:
            cols[OTHER_LABEL] = self.other
        return pd.DataFrame(cols)

    def to_dict(self, *, embedding_windows: bool = True) -> dict[str, Any]:
        """JSON-ready dict (plain Python types only): an ``instrunet.analysis/3`` document
        (``instrunet_core/schema/analysis.json``); ``other`` is present for open-set models.
        ``embedding_windows=False`` leaves the embedding's per-window rows out (the JSON writer
        writes them one at a time: as Python lists they took about 80 MB per hour of audio)."""
        other = None
        if self.prediction.other is not None:
            other = {
                "probability": float(self.prediction.other),
                "threshold": self.settings.get("other_threshold"),
                "ranges": [[round(a, 4), round(b, 4)] for a, b in self.other_ranges()],
            }
        return jsonable(
            {
                "schema": ANALYSIS_SCHEMA,
                "instrunet_version": instrunet_version(),
                "source": self.source,
                "duration": round(float(self.duration), 4),
                "model": dict(self.model),
                "labels": list(self.labels),
                "label": self.prediction.label,
                "confidence": float(self.prediction.confidence),
                "probabilities": {k: float(v) for k, v in self.prediction.probabilities.items()},
                "silent": bool(self.prediction.silent),
                "low_evidence": bool(self.prediction.low_evidence),
                "sounding_seconds": round(float(self.prediction.sounding_seconds), 4),
                "instruments": [i.to_dict() for i in self.instruments],
                **({"other": other} if other is not None else {}),
                **(
                    {"embedding": self.embedding.to_dict(windows=embedding_windows)}
                    if self.embedding is not None
                    else {}
                ),
                **({"damage": self.damage} if self.damage is not None else {}),
                "timeline": [s.to_dict() for s in self.timeline],
                "extras": self.extras,
                "settings": self.settings,
            }
        )


@dataclasses.dataclass(eq=False)  # (arrays inside: compared by identity)
class Embedding:
    """Embeddings of a recording: one vector per window and one for the whole (L2-normalised,
    so that the dot product of two vectors is their cosine similarity).

    Attributes
    ----------
    vector : np.ndarray [shape=(dim,), dtype=float32]
        The recording's: the loudness-weighted mean of its non-silent windows' embeddings
        (all zeros when every window is silent), normalised.
    windows : np.ndarray [shape=(T, dim), dtype=float32]
        Each window's, normalised.
    times : np.ndarray [shape=(T, 2), dtype=float64]
    silent : np.ndarray [shape=(T,), dtype=bool]
    model : dict
        ``{name, version, sha256, ...}`` (:func:`instrunet_core.output.model_info`).
    hop : float or None
        Seconds between the windows' starts (snapped to whole STFT frames): vectors made with
        another hop differ a little, so a library holds one hop's.
    """

    vector: np.ndarray
    windows: np.ndarray
    times: np.ndarray
    silent: np.ndarray
    model: dict[str, str]
    hop: float | None = None

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def __repr__(self) -> str:  # (the vectors of an hour are megabytes of text)
        hop = "None" if self.hop is None else f"{self.hop:.4g}"
        return (
            f"Embedding(dim={self.dim}, windows={len(self.windows)}, silent={int(np.sum(self.silent))}, "
            f"hop={hop}, model={self.model.get('name')} {self.model.get('version')})"
        )

    def to_dict(self, *, windows: bool = True) -> dict[str, Any]:
        """JSON-ready dict; each value is the shortest decimal that reads back as the same
        float32 (``0.019561032``, not ``0.019561031833291054``: about half the text)."""
        d: dict[str, Any] = {"model": dict(self.model), "dim": self.dim, "vector": _short_floats(self.vector)}
        if self.hop is not None:
            d["hop"] = round(float(self.hop), 6)
        if windows:
            d["windows"] = list(self.window_rows())
        return jsonable(d)

    def window_rows(self) -> Iterator[dict[str, Any]]:
        """The rows of ``to_dict()["windows"]``, made one at a time (a long recording's are
        written so, never held as one nested list of Python floats)."""
        for i, ((a, b), silent) in enumerate(zip(self.times, self.silent, strict=True)):
            yield jsonable(
                {
                    "start": round(float(a), 4),
                    "end": round(float(b), 4),
                    "silent": bool(silent),
                    "vector": _short_floats(self.windows[i]),
                }
            )


def embedding_json_chunks(
    head: Mapping[str, Any], emb: Embedding, tail: Mapping[str, Any], *, windows: bool
) -> Iterator[str]:
    """The JSON object ``{**head, **emb.to_dict(windows=windows), **tail}`` as text, in pieces
    (the same characters as ``json.dumps`` of that dict): each window's row is formatted on
    its own, so a long recording's windows are never held as one nested list of Python floats
    and one string (a 6-hour file's took 1.2 GB).
    """
    import json

    whole = emb.to_dict(windows=False)
    first = json.dumps(jsonable({**head, **whole}))
    if not windows:
        yield first[:-1] + ("" if not tail else ", " + json.dumps(jsonable(dict(tail)))[1:-1]) + "}"
        return
    yield first[:-1] + ', "windows": ['
    for i, row in enumerate(emb.window_rows()):
        yield (", " if i else "") + json.dumps(row)  # (NaN -> null, as before)
    yield "]" + ("" if not tail else ", " + json.dumps(jsonable(dict(tail)))[1:-1]) + "}"


def _short_floats(x: np.ndarray) -> Any:
    """float32 values as Python floats (nested lists) whose ``repr`` is the shortest decimal that
    reads back as the same float32 (numpy's float32 to text is that decimal)."""
    a = np.asarray(x, np.float32)
    if not a.size:
        return a.tolist()
    # The text is read back by Python's float(), not numpy's str -> float64 cast: that cast
    # drops an exception a signal handler raises while it runs (Ctrl-C and SIGTERM during
    # `embed --windows` were ignored, exit 0: an interruption audit).
    flat = np.fromiter(map(float, a.astype(str).ravel().tolist()), np.float64, count=a.size)
    return flat.reshape(a.shape).tolist()


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def embedding_of(
    vectors: np.ndarray, times: np.ndarray, rms_db: np.ndarray, silent: np.ndarray, *, model: dict[str, str]
) -> Embedding:
    """:class:`Embedding` from the windows' raw embeddings ``vectors [T, dim]``."""
    vectors = np.asarray(vectors, np.float32)
    w = window_weights(rms_db, silent)
    whole = (vectors * w[:, None]).sum(axis=0) if w.sum() > 0 else np.zeros(vectors.shape[1], np.float32)
    return Embedding(_unit(whole), _unit(vectors), np.asarray(times), np.asarray(silent, bool), model)
