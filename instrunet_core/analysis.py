"""Whole-file analysis: windows → probabilities → timeline, instruments and extras.

:func:`analyze` streams the source in windows (bounded memory), runs the model in
batches, flags silent windows (RMS below -60 dBFS), and builds an :class:`Analysis`:
the overall prediction, a timeline of segments, the detected instruments, and the
``extras`` contributed by registered analyzer plugins.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import SILENCE_DB, AudioSource, load_audio, read_source_bytes, rms_db, source_name, stream_windows
from .errors import InputError
from .model import SILENCE_LABEL, Prediction
from .timeline import Instrument, Segment, build_timeline, detect_instruments

if TYPE_CHECKING:
    from .model import Model
    from .plugins import Registry

__all__ = ["Analysis", "AnalysisContext", "WindowResults", "analyze", "run_windows", "aggregate"]


@dataclasses.dataclass(frozen=True)
class WindowResults:
    """Per-window results of :func:`run_windows`.

    Attributes
    ----------
    times : np.ndarray [shape=(T, 2)]
        Start and end seconds of each window (end clipped to ``duration``).
    probabilities : np.ndarray [shape=(T, n_labels)]
        Raw model output (also for silent windows).
    rms_db : np.ndarray [shape=(T,)]
    silent : np.ndarray [shape=(T,), dtype=bool]
    duration : float
        Seconds of audio at the front end's rate.
    """

    times: np.ndarray
    probabilities: np.ndarray
    rms_db: np.ndarray
    silent: np.ndarray
    duration: float


def _hop_samples(hop: float, sr: int) -> int:
    try:
        h = float(hop)
    except (TypeError, ValueError):
        raise InputError(f"hop must be a number of seconds, got {hop!r}") from None
    if not math.isfinite(h) or h <= 0:
        raise InputError(f"hop must be > 0 seconds, got {hop!r}")
    return max(1, int(round(h * sr)))


def run_windows(
    model: Model,
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    hop: float = 1.5,
    window: float | None = None,
    batch_size: int = 16,
) -> WindowResults:
    """Stream ``source`` in windows and run ``model`` on every window.

    Returns
    -------
    WindowResults
    """
    fe = model.front_end
    sr = fe.sample_rate
    win = fe.window_samples
    if window is not None:
        try:
            w = float(window)
        except (TypeError, ValueError):
            raise InputError(f"window must be a number of seconds, got {window!r}") from None
        win = int(round(w * sr))
        if not math.isfinite(w) or win <= 0 or win > fe.window_samples:
            raise InputError(
                f"window must be in (0, {fe.window_seconds:.3f}] seconds for this model, got {window!r}"
            )
    hop_n = _hop_samples(hop, sr)
    starts, lengths, probs, levels = [], [], [], []
    total = 0
    for b in stream_windows(
        source, sample_rate, fe=fe, hop_samples=hop_n, window_samples=win, batch_size=batch_size
    ):
        probs.append(model.predict_windows(b.windows, batch_size=batch_size))
        lv = np.array([rms_db(w[: max(1, n)]) for w, n in zip(b.windows, b.lengths, strict=True)])
        levels.append(lv)
        starts.append(b.starts)
        lengths.append(b.lengths)
        total = max(total, int((b.starts + b.lengths).max()))
    st = np.concatenate(starts)
    duration = total / sr
    times = np.stack([st / sr, np.minimum((st + win) / sr, duration)], axis=1)
    level = np.concatenate(levels)
    return WindowResults(
        times=times,
        probabilities=np.concatenate(probs).astype(np.float32),
        rms_db=level,
        silent=level < SILENCE_DB,
        duration=duration,
    )


def aggregate(model: Model, probabilities: np.ndarray, silent: np.ndarray) -> Prediction:
    """Mean probabilities of the non-silent windows → :class:`Prediction` (``"silence"`` if none)."""
    silent = np.asarray(silent, dtype=bool)
    n = int(silent.shape[0])
    if n == 0 or silent.all():
        return Prediction(SILENCE_LABEL, 1.0, {lab: 0.0 for lab in model.labels}, n_windows=n, silent=True)
    mean = probabilities[~silent].mean(axis=0)
    i = int(np.argmax(mean))
    return Prediction(
        label=model.labels[i],
        confidence=float(mean[i]),
        probabilities={lab: float(mean[k]) for k, lab in enumerate(model.labels)},
        n_windows=n,
        silent=False,
    )


class AnalysisContext:
    """What an analyzer plugin receives.

    Attributes
    ----------
    source : str
        File name, or ``"array"``.
    sample_rate : int
        Rate of :meth:`audio` (22,050 Hz, the model's front-end rate).
    duration : float
    labels : tuple of str
    times : np.ndarray [shape=(T, 2)]
        Segment start/end seconds.
    probabilities : np.ndarray [shape=(T, n_labels)]
        Per-segment probabilities (0 for silent segments).
    rms_db : np.ndarray [shape=(T,)]
    silent : np.ndarray [shape=(T,), dtype=bool]
    model_name, model_version : str
    """

    def __init__(
        self,
        *,
        source: Any,
        sample_rate_in: int | None,
        model: Model,
        results: WindowResults,
    ) -> None:
        self._source = source
        self._sample_rate_in = sample_rate_in
        self._audio: np.ndarray | None = None
        self.source = source_name(source)
        self.sample_rate = model.front_end.sample_rate
        self.duration = results.duration
        self.labels = model.labels
        self.model_name = model.name
        self.model_version = model.version
        self.times = results.times
        self.probabilities = np.where(results.silent[:, None], 0.0, results.probabilities)
        self.rms_db = results.rms_db
        self.silent = results.silent

    def audio(self) -> np.ndarray:
        """Whole file as mono float32 at :attr:`sample_rate` (decoded once, then cached).

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


@dataclasses.dataclass
class Analysis:
    """Result of :func:`analyze`.

    Attributes
    ----------
    source : str
        Path, file object name, or ``"array"``.
    duration : float
        Seconds.
    model : dict
        ``{"name", "version", "task", "input", "provider"}``: ``input`` is the artifact's input
        kind (``"features"`` or ``"waveform"``), ``provider`` the onnxruntime execution
        provider that actually ran it (e.g. ``"CPUExecutionProvider"``).
    labels : tuple of str
    prediction : Prediction
        Overall: mean of the non-silent windows' probabilities, or ``"silence"``.
    timeline : list of Segment
    instruments : list of Instrument
        Detected instruments, strongest first (empty for silence).
    extras : dict
        ``{analyzer_name: dict}`` from analyzer plugins (``{"error": ...}`` if one failed).
    settings : dict
        ``hop``, ``window``, ``smoothing``, ``thresholds``, ``silence_db``.
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

    @property
    def label(self) -> str:
        return self.prediction.label

    @property
    def confidence(self) -> float:
        return self.prediction.confidence

    @property
    def probabilities(self) -> dict[str, float]:
        return self.prediction.probabilities

    @property
    def silent(self) -> bool:
        return self.prediction.silent

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain Python types only)."""
        return _jsonable(
            {
                "source": self.source,
                "duration": round(float(self.duration), 4),
                "model": dict(self.model),
                "labels": list(self.labels),
                "label": self.prediction.label,
                "confidence": float(self.prediction.confidence),
                "probabilities": {k: float(v) for k, v in self.prediction.probabilities.items()},
                "silent": bool(self.prediction.silent),
                "instruments": [i.to_dict() for i in self.instruments],
                "timeline": [s.to_dict() for s in self.timeline],
                "extras": self.extras,
                "settings": self.settings,
            }
        )


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def _run_analyzers(reg: Registry, ctx: AnalysisContext) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for name, func in reg.analyzers.items():
        try:
            out = func(ctx)
            if not isinstance(out, Mapping):
                raise TypeError(f"analyzer returned {type(out).__name__}, expected a dict")
            extras[name] = _jsonable(out)
        except Exception as e:  # noqa: BLE001 - a failing analyzer never breaks the analysis
            extras[name] = {"error": f"{type(e).__name__}: {e}"}
    return extras


def analyze(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    model: Model | str | None = None,
    window: float | None = None,
    hop: float = 1.5,
    batch_size: int = 16,
    smoothing: int = 3,
    thresholds: Mapping[str, float] | None = None,
    registry: Registry | None = None,
    analyzers: bool = True,
) -> Analysis:
    """Analyse a recording: which instruments play, when, and how strongly.

    Parameters
    ----------
    source : str, PathLike, binary file object, or np.ndarray [shape=(n,) or (n, channels)]
        Audio at any rate and channel count.
    sample_rate : int, optional
        Required when ``source`` is an array.
    model : Model or str, optional
        A loaded model, a registered model name, or the default model.
    window : float, optional
        Window length in seconds (default and maximum: the model's, 2.949 s).
    hop : float
        Seconds between window starts.
    batch_size : int
        Windows per model call.
    smoothing : int
        Moving-median length (windows) applied to each label's probability before
        thresholding; 1 disables it.
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's.
    registry : Registry, optional
        Where analyzers come from (default: :func:`instrunet_core.get_registry`).
    analyzers : bool
        Run registered analyzer plugins into ``extras``.

    Returns
    -------
    Analysis

    Raises
    ------
    DecodeError, InputError, ModelError

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> a = instrunet_core.analyze(np.zeros(44100, np.float32), 44100)  # doctest: +SKIP
    >>> a.label, a.confidence, a.instruments  # doctest: +SKIP
    ('silence', 1.0, [])
    """
    from .model import Model, load_model
    from .plugins import get_registry

    if isinstance(source, np.ndarray) and sample_rate is None:
        raise InputError("array: sample_rate is required for array input")
    if model is None or isinstance(model, str):
        m = load_model(model, registry=registry)
    elif isinstance(model, Model):
        m = model
    else:
        raise InputError(f"model must be a Model or a model name, got {type(model).__name__}")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, np.integer)) or smoothing < 0:
        raise InputError(f"smoothing must be an int >= 0 (windows), got {smoothing!r}")
    thr = m.thresholds
    if thresholds:
        for k, v in thresholds.items():
            if k not in thr:
                raise InputError(f"thresholds: unknown label {k!r} (labels: {list(m.labels)})")
            if not 0.0 < float(v) < 1.0:
                raise InputError(f"thresholds[{k!r}] must be in (0, 1), got {v!r}")
            thr[k] = float(v)
    src = read_source_bytes(source)
    res = run_windows(m, src, sample_rate, hop=hop, window=window, batch_size=batch_size)
    pred = aggregate(m, res.probabilities, res.silent)
    timeline = build_timeline(res.times, res.probabilities, res.rms_db, res.silent, m.labels)
    instruments = detect_instruments(
        res.times, res.probabilities, res.rms_db, res.silent, m.labels, thr, smoothing=int(smoothing)
    )
    extras: dict[str, Any] = {}
    if analyzers:
        reg = registry or get_registry()
        if reg.analyzers:
            ctx = AnalysisContext(source=src, sample_rate_in=sample_rate, model=m, results=res)
            extras = _run_analyzers(reg, ctx)
    name = source_name(source)
    return Analysis(
        source=os.fspath(name),
        duration=res.duration,
        model={"name": m.name, "version": m.version, "task": m.task, "input": m.input_kind,
               "provider": m.provider},
        labels=m.labels,
        prediction=pred,
        timeline=timeline,
        instruments=instruments,
        extras=extras,
        settings={
            "hop": float(hop),
            "window": float(window) if window is not None else m.front_end.window_seconds,
            "smoothing": int(smoothing),
            "thresholds": thr,
            "silence_db": SILENCE_DB,
            "sample_rate": m.front_end.sample_rate,
        },
    )
