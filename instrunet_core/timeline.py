"""Turning per-window probabilities into a timeline and detected instruments.

Pure numpy; no model or audio here. Given window times, probabilities, RMS levels and
the silence flags, :func:`build_timeline` makes :class:`Segment` objects and
:func:`detect_instruments` applies smoothing (a moving median over windows) and the
per-label thresholds to find where each instrument plays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_SMOOTHING",
    "Segment",
    "Instrument",
    "mask_silent",
    "moving_median",
    "build_timeline",
    "detect_instruments",
    "merge_ranges",
    "with_overrides",
]

#: Moving-median length (windows) applied before presence thresholds, unless a caller says otherwise.
DEFAULT_SMOOTHING = 3


@dataclasses.dataclass(frozen=True)
class Segment:
    """One analysis window.

    Attributes
    ----------
    start, end : float
        Seconds (``end`` clipped to the audio's duration).
    probabilities : dict[str, float]
        Model output for the window (all 0 when ``silent``).
    rms_db : float
        RMS level in dB re. full scale of the window's real samples.
    silent : bool
        ``rms_db`` below :data:`~instrunet_core.features.SILENCE_DB`.
    other : float or None
        Probability that the window's sound is none of the labels (open-set models; 0 when
        ``silent``; ``None`` for models without that output).
    """

    start: float
    end: float
    probabilities: dict[str, float]
    rms_db: float
    silent: bool
    other: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "start": round(float(self.start), 4),
            "end": round(float(self.end), 4),
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "rms_db": round(float(self.rms_db), 2),
            "silent": bool(self.silent),
        }
        if self.other is not None:
            d["other"] = float(self.other)
        return d


@dataclasses.dataclass(frozen=True)
class Instrument:
    """A detected instrument.

    Attributes
    ----------
    label : str
    presence : float
        Fraction of non-silent windows in which it is detected, in [0, 1].
    ranges : list of [start, end]
        Time ranges (seconds) where it is detected, merged.
    intensity : float
        Mean over detected windows of probability × loudness, loudness being the
        window's linear RMS relative to the loudest window (in [0, 1]).
    mean_probability, max_probability : float
        Over non-silent windows (unsmoothed).
    """

    label: str
    presence: float
    ranges: list[list[float]]
    intensity: float
    mean_probability: float
    max_probability: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "presence": round(float(self.presence), 4),
            "ranges": [[round(float(a), 4), round(float(b), 4)] for a, b in self.ranges],
            "intensity": float(self.intensity),
            "mean_probability": float(self.mean_probability),
            "max_probability": float(self.max_probability),
        }


def mask_silent(probabilities: np.ndarray, silent: np.ndarray) -> np.ndarray:
    """Probabilities with the rows of silent windows set to 0 (silent windows never vote).

    Parameters
    ----------
    probabilities : np.ndarray [shape=(T, n_labels)]
    silent : np.ndarray [shape=(T,), dtype=bool]

    Returns
    -------
    np.ndarray [shape=(T, n_labels), dtype=float32]
    """
    return np.where(np.asarray(silent, dtype=bool)[:, None], np.float32(0.0), probabilities).astype(
        np.float32
    )


def moving_median(p: np.ndarray, size: int) -> np.ndarray:
    """Centred moving median along axis 0 (edges use the available neighbours).

    Parameters
    ----------
    p : np.ndarray [shape=(T, ...)]
    size : int
        Window length in items; ``<= 1`` returns ``p`` unchanged.

    Returns
    -------
    np.ndarray [shape=(T, ...)]
    """
    p = np.asarray(p, dtype=np.float32)
    size = int(size)
    if size < 0:
        raise InputError(f"smoothing must be >= 0 windows, got {size}")
    if size <= 1 or p.shape[0] <= 1:
        return p.copy()
    before = (size - 1) // 2
    after = size - 1 - before
    out = np.empty_like(p)
    for t in range(p.shape[0]):
        out[t] = np.median(p[max(0, t - before) : t + after + 1], axis=0)
    return out


def merge_ranges(ranges: Sequence[tuple[float, float]], gap: float = 1e-6) -> list[list[float]]:
    """Merge overlapping or touching ``(start, end)`` ranges (sorted by start)."""
    out: list[list[float]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([float(a), float(b)])
    return out


def build_timeline(
    times: np.ndarray,
    probabilities: np.ndarray,
    rms_db: np.ndarray,
    silent: np.ndarray,
    labels: Sequence[str],
    *,
    other: np.ndarray | None = None,
) -> list[Segment]:
    """One :class:`Segment` per window.

    Parameters
    ----------
    times : np.ndarray [shape=(T, 2)]
        Start and end seconds.
    probabilities : np.ndarray [shape=(T, n_labels)]
    rms_db, silent : np.ndarray [shape=(T,)]
    labels : sequence of str
    other : np.ndarray [shape=(T,)], optional
        Open-set probabilities ("none of the labels").
    """
    segs = []
    for t in range(times.shape[0]):
        probs = np.zeros(len(labels)) if silent[t] else probabilities[t]
        segs.append(
            Segment(
                start=float(times[t, 0]),
                end=float(times[t, 1]),
                probabilities={lab: float(probs[i]) for i, lab in enumerate(labels)},
                rms_db=float(rms_db[t]),
                silent=bool(silent[t]),
                other=None if other is None else (0.0 if silent[t] else float(other[t])),
            )
        )
    return segs


def with_overrides(thresholds: Mapping[str, float], overrides: Mapping[str, Any] | None) -> dict[str, float]:
    """Per-label presence thresholds: ``thresholds`` (one per label, the model's) with a caller's
    ``overrides``, each a number in (0, 1) for a known label.

    Raises
    ------
    InputError
        An unknown label, or a value that is not a number in (0, 1).
    """
    out = dict(thresholds)
    for k, v in (overrides or {}).items():
        if k not in out:
            raise InputError(f"thresholds: unknown label {k!r} (labels: {list(out)})")
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise InputError(f"thresholds[{k!r}] must be a number in (0, 1), got {v!r}") from None
        if not 0.0 < fv < 1.0:
            raise InputError(f"thresholds[{k!r}] must be in (0, 1), got {v!r}")
        out[k] = fv
    return out


def detect_instruments(
    times: np.ndarray,
    probabilities: np.ndarray,
    rms_db: np.ndarray,
    silent: np.ndarray,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    *,
    smoothing: int = DEFAULT_SMOOTHING,
) -> list[Instrument]:
    """Instruments whose smoothed probability reaches their threshold in a non-silent window.

    ``thresholds`` has one per label (:attr:`instrunet_core.Model.thresholds`, with a caller's
    overrides). Probabilities of silent windows count as 0; smoothing is a moving median over
    ``smoothing`` windows. Returned sorted by intensity, strongest first.

    Returns
    -------
    list of Instrument
    """
    silent = np.asarray(silent, dtype=bool)
    if times.shape[0] == 0 or np.all(silent):
        return []
    p = mask_silent(probabilities, silent)
    ps = moving_median(p, smoothing)
    lin = np.power(10.0, np.asarray(rms_db, dtype=np.float64) / 20.0)
    lin = np.where(silent, 0.0, lin)
    loud = lin / lin.max() if lin.max() > 0 else lin
    active_n = int((~silent).sum())
    out = []
    for i, lab in enumerate(labels):
        thr = float(thresholds[lab])
        act = (ps[:, i] >= thr) & ~silent
        if not act.any():
            continue
        idx = np.flatnonzero(act)
        ranges = merge_ranges([(float(times[t, 0]), float(times[t, 1])) for t in idx])
        raw = p[~silent, i]
        out.append(
            Instrument(
                label=lab,
                presence=float(act.sum() / active_n),
                ranges=ranges,
                intensity=float(np.mean(ps[idx, i] * loud[idx])),
                mean_probability=float(raw.mean()),
                max_probability=float(raw.max()),
            )
        )
    out.sort(key=lambda x: -x.intensity)
    return out
