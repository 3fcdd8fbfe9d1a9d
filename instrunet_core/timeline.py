"""From per-window probabilities to a timeline on a time axis: where each instrument plays.

Pure numpy; no model or audio here. The windows (2.95 s, one every hop) are *evidence*; what
is reported lives on a time axis that does not depend on where the windows fall:

1. **Probability over time.** Each label's probability at time ``t`` is that of a window
   centred at ``t``, interpolated linearly between the windows' centres, on a grid of 512
   samples (23 ms, the level track's blocks). :attr:`Detection.smoothing` seconds of moving
   mean then give the *smoothed probability*, the number a label's threshold applies to.
2. **Presence.** A label is present where its smoothed probability reaches its threshold and,
   for an open-set model, "none of the labels" is not the answer there with a probability of
   at least :attr:`Detection.other_veto` (:func:`answers_other` on the smoothed curves: noise
   whose guitar curve also runs high is "other", not guitar); absences shorter than
   :attr:`Detection.min_duration` are bridged, then presences shorter than it dropped (so a
   range needs that much evidence, and a gap in the evidence that much to split one), unless
   the presence holds over the whole of a sound shorter than that (a one-shot sample: all the
   evidence there is). With :attr:`Detection.leading` set (a model's manifest ``secondary``),
   a label that is not among the ``leading`` most probable labels at a moment needs its
   threshold plus its :attr:`Detection.margins` there: in a mixture the few labels that lead
   are heard at their thresholds, the rest (what a network spills over from the parts that
   play) only when they are clearly there.
3. **Sound.** Silence (blocks below ``silence_db``) of :attr:`Detection.min_silence` seconds or
   more ends a range, and so do the start and end of the sound: each range is trimmed to the
   first and last sounding block it holds, so onsets and offsets next to silence are exact to
   23 ms.
4. **Ranges** are the runs of presence: ranges of one label never touch or overlap.

:func:`activity` does all of it for a whole recording (an :class:`Activity`);
:class:`Detector` does the same for a stream, deciding each moment once the evidence after it
has arrived, with the same function, so a host that streams (the Pedalboard ``Router``)
decides presence as :func:`instrunet_core.analyze` does. The windows are evidence, not the
answer: where a coarse hop leaves a label near its threshold, the classifier adds windows in
between (:func:`doubtful_spans`, :meth:`instrunet_core.Classifier.refine`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError


def answers_other(other: Any, best: Any, threshold: float) -> Any:
    """The open-set rule, for one value or elementwise for arrays: "none of the labels" wins
    where its probability ``other`` is at least ``threshold`` and above ``best``, the most
    probable label's. The overall answer, the timeline's "other" ranges and the text timeline
    all decide by it."""
    return (np.asarray(other) >= threshold) & (np.asarray(other) > np.asarray(best))


__all__ = [
    "answers_other",
    "DEFAULT_SMOOTHING",
    "DEFAULT_MIN_DURATION",
    "DEFAULT_MIN_SILENCE",
    "EVIDENCE_HOP",
    "REFINE_MARGIN",
    "OTHER_VETO",
    "Detection",
    "Segment",
    "Instrument",
    "Activity",
    "Detector",
    "mask_silent",
    "build_timeline",
    "activity",
    "detect_instruments",
    "doubtful_spans",
    "merge_ranges",
    "with_overrides",
    "format_time",
    "format_ranges",
]

#: Seconds of moving mean applied to each label's probability over time before its threshold.
DEFAULT_SMOOTHING = 1.5
#: Seconds a label's smoothed probability must stay at or above its threshold to count, and
#: below it to split a range.
DEFAULT_MIN_DURATION = 1.0
#: Seconds of silence that end a range whatever the probabilities say.
DEFAULT_MIN_SILENCE = 1.0
#: Most seconds between windows where a label's presence is in doubt: measured on the bundled
#: examples and two renders (tests/test_timeline_axis.py), windows about 0.5 s apart give the
#: same families whatever the leading silence and the hop; at 0.75 s (one window between each
#: two of the default hop's) two of the four pieces did not, nor at 1.5 or 3 s.
EVIDENCE_HOP = 0.5
#: A window whose probability is within this of a label's threshold leaves that label in doubt.
REFINE_MARGIN = 0.1
#: Smoothed probability of "none of the labels" from which, where it also beats every label, no
#: label is detected (:attr:`Detection.other_veto`). Chosen for ``family`` 2.1.0 on the dev
#: windows (training/reports/open/veto): the lowest level at which no dev set of instruments
#: (single clips, ensembles, either with other sound under them) loses more than 0.005 of its
#: family recall; it takes a family off 34 % of the open-set dev windows that showed one.
OTHER_VETO = 0.93


@dataclasses.dataclass(frozen=True)
class Detection:
    """How presence is decided on the time axis (all in seconds).

    Attributes
    ----------
    smoothing : float
        Moving mean of each label's probability over time (0: none).
    min_duration : float
        Shortest presence reported, and shortest absence that splits a range (0: none).
    min_silence : float
        Silence (below ``silence_db``) at least this long ends a range.
    silence_db : float
        Level of silence, dBFS, of each 512-sample block.
    other_veto : float
        Open-set models: where the smoothed probability of "none of the labels" reaches this
        (and its own threshold) and beats every label's, no label is detected (a probability;
        1 leaves the labels alone wherever "other" is below certainty).
    leading : int
        How many of the most probable labels at a moment need only their thresholds there; a
        label behind them needs its threshold plus its margin (``margins``). 0: every label
        needs only its threshold (no margins apply); so does a count of every label or more.
    margins : tuple of (label, float)
        Per label, how far above its threshold its smoothed probability must be where
        ``leading`` labels are more probable (a label left out: 0). A threshold overridden
        keeps its label's margin.
    """

    smoothing: float = DEFAULT_SMOOTHING
    min_duration: float = DEFAULT_MIN_DURATION
    min_silence: float = DEFAULT_MIN_SILENCE
    silence_db: float = -60.0
    other_veto: float = OTHER_VETO
    leading: int = 0
    margins: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("smoothing", "min_duration", "min_silence"):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
            if not ok or not (np.isfinite(float(v)) and 0.0 <= float(v) <= 600.0):
                raise InputError(f"{name} must be a number of seconds in [0, 600], got {v!r}")
            object.__setattr__(self, name, float(v))
        v = self.other_veto
        ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
        if not ok or not (np.isfinite(float(v)) and 0.0 <= float(v) <= 1.0):
            raise InputError(f"other_veto must be a probability in [0, 1], got {v!r}")
        object.__setattr__(self, "other_veto", float(v))
        k = self.leading
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) <= 1000:
            raise InputError(f"leading must be a count of labels (0: off), got {k!r}")
        object.__setattr__(self, "leading", int(k))
        pairs = self.margins.items() if isinstance(self.margins, Mapping) else self.margins
        margins = []
        for item in pairs:
            lab, m = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
            ok = not isinstance(m, bool) and isinstance(m, (int, float, np.integer, np.floating))
            if not isinstance(lab, str) or not ok or not (np.isfinite(float(m)) and 0.0 <= float(m) < 1.0):
                raise InputError(f"margins must map labels to numbers in [0, 1), got {item!r}")
            margins.append((lab, float(m)))
        object.__setattr__(self, "margins", tuple(margins))

    def margin(self, label: str) -> float:
        """How far above its threshold ``label`` must be where :attr:`leading` labels are more
        probable (0 when :attr:`leading` is 0 or the label has no margin)."""
        return dict(self.margins).get(label, 0.0) if self.leading else 0.0

    @property
    def horizon(self) -> float:
        """Seconds of evidence after a moment that can still change what is decided there."""
        return self.smoothing / 2 + 2 * self.min_duration + self.min_silence

    def to_dict(self) -> dict[str, Any]:
        """The settings as an analysis records them (``margins`` as a dict, empty where
        ``leading`` is 0: none applies)."""
        d: dict[str, Any] = dataclasses.asdict(self)
        d["margins"] = dict(self.margins) if self.leading else {}
        return d


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
        Share of the sounding time in which it is detected, in [0, 1].
    ranges : list of [start, end]
        Seconds where it is detected (never touching each other).
    intensity : float
        Mean, over the time it is detected, of its smoothed probability × the loudness there
        (RMS over the smoothing span relative to the loudest moment), in [0, 1].
    mean_probability : float
        Its mean probability over the recording: the loudness-weighted mean over the non-silent
        windows, the number the overall answer ranks (``Prediction.probabilities``).
    max_probability : float
        Its highest smoothed probability (the value its threshold is applied to).
    """

    label: str
    presence: float
    ranges: list[list[float]]
    intensity: float
    mean_probability: float
    max_probability: float

    @property
    def seconds(self) -> float:
        """Total seconds of its ranges."""
        return float(sum(b - a for a, b in self.ranges))

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
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputError(f"thresholds must be a dict {{label: threshold}}, got {type(overrides).__name__}")
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


def format_time(seconds: float, *, decimals: int | None = None) -> str:
    """Seconds as musicians read them: ``m:ss`` (``h:mm:ss`` from an hour on).

    Parameters
    ----------
    seconds : float
    decimals : int, optional
        Digits after the seconds' point; default 0 for a whole second, else 1.

    Examples
    --------
    >>> format_time(65), format_time(7.25), format_time(3725.0, decimals=2)
    ('1:05', '0:07.2', '1:02:05.00')
    """
    x = max(0.0, float(seconds))
    if decimals is None:
        decimals = 0 if abs(x - round(x)) < 1e-9 else 1
    q = round(x, decimals)
    h, rest = divmod(q, 3600.0)
    m, sec = divmod(rest, 60.0)
    width = 2 + (decimals + 1 if decimals else 0)
    s = f"{sec:0{width}.{decimals}f}"
    return f"{int(h)}:{int(m):02d}:{s}" if h else f"{int(m)}:{s}"


def range_decimals(start: float, end: float, decimals: int = 1) -> int:
    """Digits after the seconds' point that show a range's two ends apart: ``decimals``, or
    more (at most 3) for a range shorter than they show (0.05 s is not ``0:00.0-0:00.0``)."""
    d = decimals
    while d < 3 and end > start and format_time(start, decimals=d) == format_time(end, decimals=d):
        d += 1
    return d


def format_ranges(ranges: Sequence[Sequence[float]], *, decimals: int = 1) -> str:
    """``[[0, 4.5], [69, 72]]`` → ``"0:00.0-0:04.5, 1:09.0-1:12.0"`` (every range; ``"-"`` for
    none; a range too short for ``decimals`` gets more: ``0:00.00-0:00.05``)."""
    parts = []
    for a, b in ranges:
        d = range_decimals(a, b, decimals)
        parts.append(f"{format_time(a, decimals=d)}-{format_time(b, decimals=d)}")
    return ", ".join(parts) or "-"


# ---------------------------------------------------------------------------- the time axis
def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in a 1-D mask."""
    d = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _moving_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving mean over ``n`` rows along axis 0 (edges: the rows there are)."""
    if n <= 1 or x.shape[0] <= 1:
        return x.astype(np.float64)
    c = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0, dtype=np.float64)])
    i = np.arange(x.shape[0])
    lo = np.maximum(0, i - n // 2)
    hi = np.minimum(x.shape[0], i + n - n // 2)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (c[hi] - c[lo]) / (hi - lo).reshape(shape)


def _points(seconds: float, step: float) -> int:
    return int(round(seconds / step))


def _settle(active: np.ndarray, n_min: int, *, start_edge: bool, end_edge: bool) -> np.ndarray:
    """Bridge gaps shorter than ``n_min`` between presences, then drop presences shorter than it.

    A gap or presence touching an end of the array that is not the end of the stream
    (``start_edge``/``end_edge`` False) is left alone: what lies beyond is unknown.
    """
    a = active.copy()
    n = a.shape[0]
    if n_min <= 1:
        return a
    for s, e in zip(*_runs(~a), strict=True):
        if s > 0 and e < n and e - s < n_min:
            a[s:e] = True
    for s, e in zip(*_runs(a), strict=True):
        touches = (s == 0 and not start_edge) or (e == n and not end_edge)
        if e - s < n_min and not touches:
            a[s:e] = False
    return a


def _sounding(
    level_db: np.ndarray, n_silence: int, silence_db: float, *, start_edge: bool, end_edge: bool
) -> np.ndarray:
    """Blocks that belong to the sound: all but silences of ``n_silence`` blocks or more and the
    silence before the first and after the last sounding block."""
    quiet = np.asarray(level_db) < silence_db
    out = ~quiet
    n = quiet.shape[0]
    for s, e in zip(*_runs(quiet), strict=True):
        edge = (s == 0 and start_edge) or (e == n and end_edge)
        if not edge and e - s < max(1, n_silence):
            out[s:e] = True  # a pause inside the sound
    return out


def _trim(active: np.ndarray, loud: np.ndarray, *, start_edge: bool, end_edge: bool) -> np.ndarray:
    """Each run shrunk to its first and last loud block (removed if it holds none)."""
    out = np.zeros_like(active)
    n = active.shape[0]
    for s, e in zip(*_runs(active), strict=True):
        idx = np.flatnonzero(loud[s:e])
        if idx.size == 0:
            if (s == 0 and not start_edge) or (e == n and not end_edge):
                out[s:e] = True  # undecided: kept until the stream shows more
            continue
        a = s + int(idx[0]) if (s > 0 or start_edge) else s
        b = s + int(idx[-1]) + 1 if (e < n or end_edge) else e
        out[a:b] = True
    return out


@dataclasses.dataclass(eq=False)  # (arrays inside: compared by identity)
class Activity:
    """Each label's probability and presence on a time grid (the time axis of a recording).

    Attributes
    ----------
    step : float
        Seconds per grid point (512 samples at 22,050 Hz: 0.0232 s); point ``j`` covers
        ``[j * step, (j + 1) * step)`` (the last one ends at ``duration``).
    duration : float
    labels : tuple of str
    start : float
        Seconds of the first point (0 for a whole recording).
    probability : np.ndarray [shape=(n, n_labels), dtype=float32]
        Smoothed probability: what each label's threshold applies to.
    active : np.ndarray [shape=(n, n_labels), dtype=bool]
        Where each label is detected.
    sounding : np.ndarray [shape=(n,), dtype=bool]
        The sound: every block but silences of ``min_silence`` or more and the silence before
        the first and after the last sounding block.
    level_db : np.ndarray [shape=(n,), dtype=float32]
        Each block's RMS level, dBFS.
    thresholds : dict[str, float]
    detection : Detection
    other, other_active : np.ndarray [shape=(n,)] or None
        Smoothed probability of "none of the labels", and where it is the answer (open-set models).
    other_threshold : float or None
    """

    step: float
    duration: float
    labels: tuple[str, ...]
    probability: np.ndarray
    active: np.ndarray
    sounding: np.ndarray
    level_db: np.ndarray
    thresholds: dict[str, float]
    detection: Detection
    start: float = 0.0
    other: np.ndarray | None = None
    other_active: np.ndarray | None = None
    other_threshold: float | None = None

    @property
    def n(self) -> int:
        return int(self.sounding.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Start of each grid point, seconds [shape=(n,)]."""
        return self.start + np.arange(self.n) * self.step

    @property
    def edges(self) -> np.ndarray:
        """Boundaries of the grid points, seconds [shape=(n + 1,)] (the last one is ``duration``)."""
        e = self.start + np.arange(self.n + 1) * self.step
        if self.n:
            e[-1] = max(e[-2], min(e[-1], self.duration))
        return e

    def _ranges(self, mask: np.ndarray) -> list[list[float]]:
        e = self.edges
        return [[float(e[s]), float(e[t])] for s, t in zip(*_runs(mask), strict=True)]

    def ranges(self, label: str) -> list[list[float]]:
        """Seconds where ``label`` is detected (``"other"``: none of the labels, open-set models)."""
        if label == "other" and label not in self.labels:
            return [] if self.other_active is None else self._ranges(self.other_active)
        return self._ranges(self.active[:, self._column(label, "ranges")])

    def _column(self, label: str, what: str) -> int:
        if label not in self.labels:  # (tuple.index said "x not in tuple")
            raise InputError(f"{what}: unknown label {label!r} (labels: {', '.join(self.labels)})")
        return self.labels.index(label)

    @property
    def sounding_seconds(self) -> float:
        return float(self.sounding.sum() * self.step)

    def clears(self, label: str, threshold: float | None = None) -> np.ndarray:
        """Where ``label``'s smoothed probability clears what it needs there: its threshold
        (``threshold``, else its own), plus its :attr:`Detection.margins` where
        :attr:`Detection.leading` labels are more probable; before the veto and the duration
        rules (what :meth:`presence_at` then decides on).

        Returns
        -------
        np.ndarray [shape=(n,), dtype=bool]
        """
        j = self._column(label, "clears")
        t = self.thresholds[label] if threshold is None else float(threshold)
        margin = self.detection.margin(label)
        leads = _leads(self.probability, self.detection.leading) if margin else None
        return _clears(self.probability, j, t, margin, leads)

    def presence_at(self, label: str, threshold: float) -> np.ndarray:
        """Where ``label`` would be detected at another ``threshold``: the same steps on the
        same smoothed probability, for the activity of a whole recording (what choosing a
        threshold on real pieces needs without analysing them again).

        Returns
        -------
        np.ndarray [shape=(n,), dtype=bool]
        """
        hit = self.clears(label, threshold)
        if self.other is not None and self.other_threshold is not None:
            answered = _other_answers(self.probability, self.other, self.other_threshold)
            hit &= ~_vetoed(answered, self.other, self.detection, self.sounding)
        return _decide(
            hit, self.detection, self.step, self.sounding, self.level_db, start_edge=True, end_edge=True
        )


def activity(
    centres: np.ndarray,
    probabilities: np.ndarray,
    silent: np.ndarray,
    level_db: np.ndarray,
    *,
    step: float,
    duration: float,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    detection: Detection | None = None,
    other: np.ndarray | None = None,
    other_threshold: float | None = None,
    start: float = 0.0,
    start_edge: bool = True,
    end_edge: bool = True,
    settled_from: float | None = None,
) -> Activity:
    """The time axis of a recording (or of a stretch of a stream): see the module's steps.

    Parameters
    ----------
    centres : np.ndarray [shape=(T,)]
        Centre (seconds) of each window, increasing; a window that reaches past the end is
        centred on its real samples.
    probabilities : np.ndarray [shape=(T, n_labels)]
    silent : np.ndarray [shape=(T,), dtype=bool]
        Windows below the silence level (their probabilities count as 0).
    level_db : np.ndarray [shape=(n,)]
        The level track: RMS of each block of ``step`` seconds, dBFS, from ``start``.
    step, duration : float
        Seconds per block; seconds of audio (the end of the last block).
    labels, thresholds
        Column order of ``probabilities``; a threshold per label.
    detection : Detection, optional
    other : np.ndarray [shape=(T,)], optional
        Open-set probabilities, with ``other_threshold``.
    start : float
        Seconds of the first block (a stretch of a stream).
    start_edge, end_edge : bool
        Whether the track starts (ends) where the audio does; ``False`` for a stretch cut out of
        a stream, whose first and last :attr:`Detection.horizon` seconds are then not final.
    settled_from : float, optional
        Seconds from which the windows given are all the evidence there is (a stream whose
        older windows were dropped: the first kept window's centre plus half the smoothing):
        the probabilities are smoothed from ``start``, and the axis returned begins there,
        decided as if the audio began there (nothing the dropped windows alone could confirm is
        reported). Before it, the first window's value was held back over the
        dropped ones' place, and a family the whole stream does not hear there was reported
        from the cut (a pedalboard audit).

    Returns
    -------
    Activity
    """
    det = detection or Detection()
    labels = tuple(labels)
    level = np.asarray(level_db, dtype=np.float32)
    n = level.shape[0]
    L = len(labels)
    c = np.asarray(centres, dtype=np.float64).reshape(-1)
    silent = np.asarray(silent, dtype=bool).reshape(-1)
    P = mask_silent(np.asarray(probabilities, dtype=np.float32).reshape(c.shape[0], L), silent)
    t = start + (np.arange(n) + 0.5) * step
    k = max(1, _points(det.smoothing, step))
    prob = np.zeros((n, L), np.float32)
    if c.shape[0] and n:
        # One label at a time: a two-hour track's float64 temporaries stay a few MB, not ~90 MB.
        for j in range(L):
            prob[:, j] = _moving_mean(np.interp(t, c, P[:, j])[:, None], k)[:, 0]
    o_full = None
    if other is not None and c.shape[0] and n:
        o = np.where(silent, 0.0, np.asarray(other, dtype=np.float64).reshape(-1))
        o_full = _moving_mean(np.interp(t, c, o)[:, None], k)[:, 0].astype(np.float32)
    cut = 0 if settled_from is None else min(n, max(0, int(np.ceil((settled_from - start) / step - 1e-9))))
    if cut:
        # decided from where the evidence is whole; the smoothing above saw the earlier points
        level, prob, t = level[cut:], prob[cut:], t[cut:]
        o_full = None if o_full is None else o_full[cut:]
        start += cut * step
        n -= cut
        # decided as if the audio began here: a presence shorter than min_duration at the cut is
        # not reported (the dropped windows cannot confirm it), a gap there is not bridged
        start_edge = True
    sounding = _sounding(
        level, _points(det.min_silence, step), det.silence_db, start_edge=start_edge, end_edge=end_edge
    )

    def decide(hit: np.ndarray) -> np.ndarray:
        return _decide(hit, det, step, sounding, level, start_edge=start_edge, end_edge=end_edge)

    thr = np.array([float(thresholds[lab]) for lab in labels], dtype=np.float32)
    o_prob = o_active = None
    vetoed = np.zeros(n, dtype=bool)  # sounding points where "none of the labels" is the answer
    if o_full is not None and n:
        o_prob = o_full
        if other_threshold is not None:
            answered = _other_answers(prob, o_prob, other_threshold)
            o_active = decide(answered)
            vetoed = _vetoed(answered, o_prob, det, sounding)
    active = np.zeros((n, L), dtype=bool)
    leads = _leads(prob, det.leading) if any(det.margin(lab) for lab in labels) else None
    for j in range(L):
        active[:, j] = decide(_clears(prob, j, float(thr[j]), det.margin(labels[j]), leads) & ~vetoed)
    return Activity(
        step=float(step),
        duration=float(duration),
        labels=labels,
        probability=prob,
        active=active,
        sounding=sounding,
        level_db=level,
        thresholds={lab: float(x) for lab, x in zip(labels, thr, strict=True)},
        detection=det,
        start=float(start),
        other=o_prob,
        other_active=o_active,
        other_threshold=other_threshold,
    )


def _clears(
    prob: np.ndarray, j: int, threshold: float, margin: float, leads: np.ndarray | None
) -> np.ndarray:
    """Where column ``j`` of ``prob`` reaches ``threshold``, and ``threshold + margin`` where it is
    not among the leading labels (``leads``, :func:`_leads`; needed when ``margin`` is not 0)."""
    curve = prob[:, j]
    hit = curve >= np.float32(threshold)
    if margin:
        assert leads is not None
        hit &= leads[:, j] | (curve >= np.float32(threshold + margin))
    return hit


def _leads(prob: np.ndarray, leading: int) -> np.ndarray:
    """Where each label is among the ``leading`` most probable at a point (ties lead together):
    bool [shape=prob.shape]."""
    n, L = prob.shape
    out = np.ones((n, L), dtype=bool)
    if leading <= 0 or leading >= L:
        return out
    for a in range(0, n, _LEAD_ROWS):  # a partitioned copy of a chunk at a time, not of hours
        part = prob[a : a + _LEAD_ROWS]
        kth = np.partition(part, L - leading, axis=1)[:, L - leading]
        np.greater_equal(part, kth[:, None], out=out[a : a + _LEAD_ROWS])
    return out


_LEAD_ROWS = 1 << 16


def _other_answers(prob: np.ndarray, other: np.ndarray, threshold: float) -> np.ndarray:
    """Grid points where "none of the labels" is the answer (:func:`answers_other` on the
    smoothed curves)."""
    best = prob.max(axis=1) if prob.shape[1] else np.zeros(prob.shape[0], np.float32)
    return np.asarray(answers_other(other, best, threshold), dtype=bool)


def _vetoed(answered: np.ndarray, other: np.ndarray, det: Detection, sounding: np.ndarray) -> np.ndarray:
    """Grid points where no label holds its threshold, however high its own curve: "other" is
    the answer there (``answered``), reaches :attr:`Detection.other_veto` and sounds. A label's
    gap there shorter than :attr:`Detection.min_duration` is bridged as any other, so "other"
    must win that long to cut a label's range."""
    return answered & (other >= det.other_veto) & sounding


def _decide(
    hit: np.ndarray,
    det: Detection,
    step: float,
    sounding: np.ndarray,
    level_db: np.ndarray,
    *,
    start_edge: bool,
    end_edge: bool,
) -> np.ndarray:
    """Presence from where a curve holds its threshold: short gaps bridged and short presences
    dropped, only while sounding, trimmed to the loud blocks. A sound shorter than
    ``min_duration`` (a run of sounding blocks, silence or the recording's ends around it) is
    decided on its own points: it counts when the curve holds over all of it (it has no longer
    evidence to give: a one-shot sample), and not otherwise, whatever the silence around it
    says (bridging would count a click that "other" answers because the curve holds in the
    silence on both sides). Inside a longer sound, a presence that sounds for less than
    ``min_duration`` once trimmed is dropped: the silence around the sound, where a curve
    carried out of it holds, counted towards the minimum before the trim (noise at 2-8 s was
    "guitar" for 0.7 s at each of its ends)."""
    edges = {"start_edge": start_edge, "end_edge": end_edge}
    n_min = _points(det.min_duration, step)
    settled = _settle(hit, n_min, **edges)
    n = hit.shape[0]
    runs = _runs(sounding)
    for s, e in zip(*runs, strict=True):
        final = (s > 0 or start_edge) and (e < n or end_edge)  # its length is known
        if final and e - s < n_min:
            settled[s:e] = bool(hit[s:e].all())
    out = _trim(settled & sounding, np.asarray(level_db) >= det.silence_db, **edges)
    for a, b in zip(*_runs(out), strict=True):
        if b - a >= n_min or (a == 0 and not start_edge) or (b == n and not end_edge):
            continue  # long enough, or its length is not known yet
        k = int(np.searchsorted(runs[0], a, side="right")) - 1  # the sound it lies in
        if k >= 0 and runs[1][k] - runs[0][k] >= n_min:
            out[a:b] = False
    return out


def detect_instruments(act: Activity, mean_probabilities: Mapping[str, float]) -> list[Instrument]:
    """The detected instruments of an :class:`Activity`, ranked by mean probability (the order of
    the overall answer: the first is the overall label whenever that label is detected).

    Parameters
    ----------
    act : Activity
    mean_probabilities : dict[str, float]
        Each label's mean probability over the recording (``Prediction.probabilities``).

    Returns
    -------
    list of Instrument
    """
    if act.n == 0:
        return []
    det = act.detection
    power = np.power(10.0, act.level_db.astype(np.float64) / 10.0)
    power_s = _moving_mean(power[:, None], max(1, _points(det.smoothing, act.step)))[:, 0]
    top = power_s[act.sounding].max() if act.sounding.any() else power_s.max()
    loud = np.sqrt(power_s / top) if top > 0 else np.zeros_like(power_s)
    sounding = max(act.sounding_seconds, act.step)
    out = []
    for j, lab in enumerate(act.labels):
        on = act.active[:, j]
        if not on.any():
            continue
        p = act.probability[on, j].astype(np.float64)
        out.append(
            Instrument(
                label=lab,
                presence=float(min(1.0, on.sum() * act.step / sounding)),
                ranges=act.ranges(lab),
                intensity=float(np.mean(p * np.minimum(loud[on], 1.0))),
                mean_probability=float(mean_probabilities.get(lab, 0.0)),
                max_probability=float(p.max()),
            )
        )
    out.sort(key=lambda x: (-x.mean_probability, act.labels.index(x.label)))
    return out


def doubtful_spans(
    act: Activity,
    centres: np.ndarray,
    probabilities: np.ndarray,
    silent: np.ndarray,
    *,
    spacing: float,
    other: np.ndarray | None = None,
    margin: float = REFINE_MARGIN,
) -> list[list[float]]:
    """Stretches where more windows would settle what is detected, ``spacing`` seconds on each
    side of a non-silent window that

    * lies within ``margin`` of the threshold of a label (or of its threshold plus its
      :attr:`Detection.margins`, where it applies) that is neither clearly detected (its
      smoothed probability at least ``margin`` above the threshold for ``min_duration``) nor
      clearly absent (never within ``margin`` below it), or
    * falls on the other side of a label's threshold than the window before or after it: the
      label starts or stops (or the windows disagree) somewhere between them, or
    * has a label with a margin among the leading labels where the window before or after it
      does not (or the other way round), near the thresholds that decide it there.

    Returns
    -------
    list of [start, end]
        Seconds, merged.
    """
    det = act.detection
    cols = [(act.probability[:, j], act.thresholds[lab]) for j, lab in enumerate(act.labels)]
    P = [np.asarray(probabilities, np.float64)[:, j] for j in range(len(act.labels))]
    for j, lab in enumerate(act.labels):  # a label behind the leading ones: its higher threshold
        if det.margin(lab):
            cols.append((act.probability[:, j], act.thresholds[lab] + det.margin(lab)))
            P.append(P[j])
    if other is not None and act.other is not None and act.other_threshold is not None:
        cols.append((act.other, act.other_threshold))
        P.append(np.asarray(other, np.float64))
    c = np.asarray(centres, np.float64)
    silent = np.asarray(silent, bool)
    near = np.zeros(c.shape[0], dtype=bool)
    n_min = max(1, _points(det.min_duration, act.step))
    for (curve, thr), p in zip(cols, P, strict=True):
        clear_on = any(e - s >= n_min for s, e in zip(*_runs(curve >= thr + margin), strict=True))
        clear_off = curve.size == 0 or float(curve.max()) < thr - margin
        if not (clear_on or clear_off):
            near |= np.abs(p - thr) < margin
        up = (p >= thr) & ~silent
        change = up[1:] != up[:-1]
        near[1:] |= change
        near[:-1] |= change
    L = len(act.labels)
    if det.leading and c.shape[0] > 1 and any(det.margin(lab) for lab in act.labels):
        # where a label with a margin moves into or out of the leading ones between two windows
        # while its threshold plus margin would decide it: which of its thresholds applies changes
        pw = np.column_stack(P[:L])
        leads = _leads(pw, det.leading)
        for j, lab in enumerate(act.labels):
            lo, m = act.thresholds[lab], det.margin(lab)
            if not m:
                continue
            band = (pw[:, j] >= lo - margin) & (pw[:, j] < lo + m + margin)
            change = (leads[1:, j] != leads[:-1, j]) & (band[1:] | band[:-1])
            near[1:] |= change
            near[:-1] |= change
    near &= ~silent
    return merge_ranges([(float(x) - spacing, float(x) + spacing) for x in c[near]])


# ---------------------------------------------------------------------------- streaming
class Detector:
    """:func:`activity` over a stream: windows and levels in, each moment decided once the
    evidence after it (:attr:`Detection.horizon` seconds past it, and the window centred there)
    has arrived, with the same function on a sliding stretch, so a stream is decided as the
    whole recording would be (the Pedalboard ``Router`` routes with it).

    Parameters
    ----------
    labels, thresholds, detection, other_threshold
        As for :func:`activity`.
    step : float
        Seconds per level block.
    spacing : float
        Most seconds between window centres (the hop).

    Notes
    -----
    Memory is bounded: the detector keeps the windows and levels of about two horizons.
    """

    def __init__(
        self,
        labels: Sequence[str],
        thresholds: Mapping[str, float],
        *,
        step: float,
        spacing: float,
        detection: Detection | None = None,
        other_threshold: float | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.thresholds = dict(thresholds)
        self.detection = detection or Detection()
        self.step = float(step)
        self.spacing = float(spacing)
        self.other_threshold = other_threshold
        self.reset()

    def reset(self) -> None:
        self._centres: list[float] = []
        self._probs: list[np.ndarray] = []
        self._silent: list[bool] = []
        self._other: list[float] = []
        self._level = np.zeros(0, np.float32)
        self._level_base = 0  # block index of _level[0]
        self._duration = 0.0
        #: Grid points decided so far.
        self.decided = 0
        #: Centre and end (seconds) of the newest window.
        self.last_centre = 0.0
        self.last_end = 0.0

    def add_window(
        self,
        centre: float,
        probabilities: np.ndarray,
        silent: bool,
        other: float | None = None,
        *,
        end: float | None = None,
    ) -> None:
        """One window's evidence (in the order of the stream); ``end``: where its audio ends."""
        self.last_centre = float(centre)
        self.last_end = float(centre if end is None else end)
        self._centres.append(float(centre))
        self._probs.append(np.asarray(probabilities, np.float32))
        self._silent.append(bool(silent))
        self._other.append(0.0 if other is None else float(other))

    def add_levels(self, level_db: np.ndarray, duration: float) -> None:
        """Blocks of the level track that follow the ones given so far; ``duration``: seconds of
        audio so far."""
        self._level = np.concatenate([self._level, np.asarray(level_db, np.float32)])
        self._duration = float(duration)

    @property
    def blocks(self) -> int:
        """Blocks of the level track received so far."""
        return self._level_base + self._level.shape[0]

    def update(self, *, final: bool = False) -> tuple[int, Activity] | None:
        """Decide what the evidence allows.

        Returns
        -------
        (first, Activity) or None
            The grid points newly decided, from point ``first``: an :class:`Activity` over
            them; ``None`` when nothing more can be decided yet. ``final``: the stream has
            ended, everything is decided.
        """
        end = self.blocks
        if final:
            settled = end
        else:
            horizon = self.detection.horizon + self.step
            by_windows = (self._centres[-1] - horizon) if self._centres else 0.0
            by_levels = end * self.step - horizon
            settled = max(0, min(end, int(np.floor(min(by_windows, by_levels) / self.step))))
        if settled <= self.decided:
            return None
        first = self.decided
        b0, act = self._stretch(final=final)
        out = _slice(act, first - b0, settled - b0)
        self.decided = settled
        drop = max(0, self.decided - self._back() - self._level_base)
        if drop:
            self._level = self._level[drop:]
            self._level_base += drop
        return first, out

    def peek(self) -> Activity | None:
        """What the evidence so far says, up to its end, as if the stream ended now (nothing is
        decided): live hosts act on its last moments, which later evidence may change."""
        if not self._centres or self.blocks <= self._level_base:
            return None
        return self._stretch(final=True)[1]

    def _back(self) -> int:
        return _points(self.detection.horizon + self.spacing, self.step) + 2

    def _stretch(self, *, final: bool) -> tuple[int, Activity]:
        """:func:`activity` over the kept stretch: its first block and the result."""
        end = self.blocks
        b0 = max(self._level_base, self.decided - self._back())
        t0 = b0 * self.step
        c = np.array(self._centres, np.float64)
        # the windows that bracket the stretch's first point, and all after them
        old = int(np.searchsorted(c, t0 - self.spacing)) - 1
        if old > 0:
            c = c[old:]
            del self._centres[:old], self._probs[:old], self._silent[:old], self._other[:old]
        probs = np.array(self._probs, np.float32).reshape(len(self._probs), len(self.labels))
        act = activity(
            c,
            probs,
            np.array(self._silent, bool),
            self._level[b0 - self._level_base :],
            step=self.step,
            duration=self._duration if final else end * self.step,
            labels=self.labels,
            thresholds=self.thresholds,
            detection=self.detection,
            other=np.array(self._other, np.float32) if self.other_threshold is not None else None,
            other_threshold=self.other_threshold,
            start=t0,
            start_edge=b0 == 0,
            end_edge=final,
        )
        return b0, act


def _slice(act: Activity, a: int, b: int) -> Activity:
    return dataclasses.replace(
        act,
        start=act.start + a * act.step,
        probability=act.probability[a:b],
        active=act.active[a:b],
        sounding=act.sounding[a:b],
        level_db=act.level_db[a:b],
        other=None if act.other is None else act.other[a:b],
        other_active=None if act.other_active is None else act.other_active[a:b],
    )
