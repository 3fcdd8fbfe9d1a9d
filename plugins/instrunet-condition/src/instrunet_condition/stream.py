"""The streaming condition analyzer: fed the decoded blocks and the classified windows of the one
pass of :func:`instrunet_core.analyze`, in bounded memory.

What is judged is a **sample of the classifier's own windows** (2.949 s each, the length of the
training clips):

* a window is *judgeable* when it is not silent, holds at least :data:`MIN_SOUND_SECONDS` of
  sound (512-sample blocks within 40 dB of its loudest and above -60 dBFS), is not too quiet
  (those blocks' RMS at least :data:`QUIET_DBFS`) and is not too mixed (fewer than
  :data:`MIXED_LABELS` labels above their presence thresholds);
* the sample: every :attr:`ConditionStream.stride`-th judgeable window, the stride chosen from
  the duration the source announces so that a file gives about :data:`FILE_WINDOWS` windows
  (when the source does not say, the stride doubles each time that many have been taken, and
  each window is weighted by the stride it was taken at); and, so that every instrument is
  judged where it plays, the first :data:`LABEL_WINDOWS` judgeable windows of each label
  present, two windows apart (no overlap);
* features are computed for sampled windows only, from the audio kept since the oldest window
  not yet classified (at most :data:`MAX_BUFFER_SECONDS`, or the classifier's announced lag
  when longer), then that audio is dropped; they and
  the spectrogram network run on one thread of the analyzer's own while the pass goes on (what
  is sampled never depends on them; at most the sampled windows' audio waits for that thread).
  The network reads a whole window's model input from the features' own STFT (the same
  transform as the family classifier's front end), not from a second one.

After the pass, the whole-file verdict averages the sampled windows (weighted); an instrument's
verdict averages those of its windows (its time ranges, where it is present). "unknown" when
nothing judgeable was sampled, with the reason (silent, too short, too quiet, too mixed).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from instrunet_core.analysis import OTHER_LABEL
from instrunet_core.errors import InputError
from instrunet_core.features import SILENCE_DB, block_power, power_features
from instrunet_core.inputs import MAX_AMPLITUDE, check_sample_rate
from instrunet_core.timeline import merge_ranges

from .classifier import CLASSES, ConditionModel, assess, load_condition_model
from .features import _HOP, _N_FFT, FEATURE_NAMES, features_and_power

__all__ = [
    "ConditionStream",
    "not_judgeable",
    "FILE_WINDOWS",
    "LABEL_WINDOWS",
    "MIN_SOUND_SECONDS",
    "QUIET_DBFS",
    "MIXED_LABELS",
    "MAX_BUFFER_SECONDS",
    "source_band_hz",
    "unknown",
    "reason_of",
    "band_limited",
    "BAND_FEATURES",
]

#: Windows the whole-file sample aims at (20 windows x 2.9 s: a minute of audio).
FILE_WINDOWS = 20
#: Judgeable windows each label present gets at least, when it plays that long.
LABEL_WINDOWS = 3
#: Sound (seconds) a window needs to be judged: the training clips hold at least this much.
MIN_SOUND_SECONDS = 1.0
#: RMS of a window's sounding blocks below this (dBFS) is too quiet to judge: the recording's
#: own noise and quantisation would be taken for the instrument's.
QUIET_DBFS = -50.0
#: A window with this many labels above their thresholds is too mixed to judge (the training
#: mixtures hold at most three instruments).
MIXED_LABELS = 4
#: Most audio (seconds) kept waiting for its windows, unless the classifier says its windows
#: can arrive later than that (``context.lag_seconds``: a long hop or large batches), when that
#: lag is kept instead: bounded by the settings, never by the file's length.
MAX_BUFFER_SECONDS = 180.0
_BLOCK = 512
_REASONS = {
    "silent": "unknown: silence, nothing to judge.",
    "too_short": f"unknown: too little sound to judge (no window with {MIN_SOUND_SECONDS:g} s of sound).",
    "too_quiet": f"unknown: too quiet to judge (sound below {QUIET_DBFS:g} dBFS RMS).",
    "too_mixed": (
        f"unknown: too mixed to judge ({MIXED_LABELS} or more families above their thresholds at once in "
        "the windows with sound)."
    ),
    "not_sampled": "unknown: none of the windows sampled for the condition falls where it plays.",
    "lost": "unknown: the analysis fell behind and its windows' audio was dropped before it could be judged.",
}
#: Features measured above 4 kHz: a source whose own rate has no band there (below about
#: 8.4 kHz: a telephone recording at 8 kHz) cannot show them; the verdict takes their clean
#: medians instead of what the resampler leaves up there, and reports them as ``None``.
BAND_FEATURES = ("hf_ratio", "hf_flatness", "spectral_centroid_hz")
_BAND_HZ = 4000.0


def band_limited(source_rate: Any) -> bool:
    """Whether a source at ``source_rate`` Hz holds nothing above 4 kHz (its Nyquist frequency
    within 5 % of it or below); ``False`` when the rate is not known."""
    try:
        sr = float(source_rate)
    except (TypeError, ValueError):
        return False
    return math.isfinite(sr) and 0 < sr / 2 <= _BAND_HZ * 1.05


#: Share of a source's Nyquist frequency its resampled audio still holds (the resampler's
#: pass band; above it the audio fades to nothing).
_PASS_BAND = 0.9


def source_band_hz(source_rate: Any, sr: int) -> float | None:
    """Where a source at ``source_rate`` Hz, resampled to ``sr``, stops holding sound (``None``:
    the whole band to ``sr / 2``, the rate is not known, or the source is :func:`band_limited`,
    whose band features are imputed instead): the flatness features are measured below it
    (:func:`~instrunet_condition.features.condition_features`'s ``band_hz``)."""
    try:
        rate = float(source_rate)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(rate) or rate <= 0 or rate >= sr or band_limited(rate):
        return None  # (a source with no band above 4 kHz is judged as band_limited says)
    return _PASS_BAND * rate / 2.0


def _band_note(source_rate: Any) -> str:
    return (
        f"; the recording holds nothing above 4 kHz (its source rate is {float(source_rate) / 1000:g} kHz), so hiss and "
        "dulled highs cannot be judged"
    )


def judge_band_limited(out: dict[str, Any], source_rate: Any) -> dict[str, Any]:
    """A verdict of a band-limited source: its :data:`BAND_FEATURES` reported as ``None`` and
    the explanation saying what cannot be judged."""
    out["features"] = {k: (None if k in BAND_FEATURES else v) for k, v in out["features"].items()}
    out["reasons"] = [r for r in out["reasons"] if r["feature"] not in BAND_FEATURES]
    text = str(out["explanation"])
    out["explanation"] = (text[:-1] if text.endswith(".") else text) + _band_note(source_rate) + "."
    return out


def impute_band(rows: Any, reference: Any) -> list[dict[str, float]]:
    """``rows`` with each of :data:`BAND_FEATURES` at its clean median (what the model takes
    for a band it cannot hear: neither damage nor its absence)."""
    med = dict((reference or {}).get("healthy", {}).get("median", {}))
    return [{**r, **{k: float(med[k]) for k in BAND_FEATURES if k in med}} for r in rows]


#: What a verdict holds in the output contract (a file's and each instrument's).
_VERDICT_KEYS = (
    "label",
    "label_text",
    "reason",
    "reason_text",
    "probabilities",
    "features",
    "explanation",
    "reasons",
    "window_shares",
)
#: A verdict's label and reason as people read them (``label_text``, ``reason_text``): the
#: command line's summary, the app and the PDF write the same words.
LABEL_TEXT = {
    "healthy": "healthy",
    "moderately_aged": "moderately aged",
    "broken_noisy": "broken / noisy",
    "unknown": "unknown",
}
REASON_TEXT = {
    "silent": "silent: nothing to judge",
    "too_short": "too little sound to judge",
    "too_quiet": "too quiet to judge",
    "too_mixed": "too many instruments at once to judge",
    "not_sampled": "not judged: no window sampled where it plays",
    "lost": "not judged: the analysis fell behind",
}


def with_text(verdict: dict[str, Any]) -> dict[str, Any]:
    """``verdict`` with its ``label_text`` and ``reason_text`` (``None`` but for "unknown")."""
    label = verdict.get("label")
    verdict["label_text"] = LABEL_TEXT.get(str(label), str(label).replace("_", " "))
    reason = verdict.get("reason")
    verdict["reason_text"] = (
        None if reason is None else REASON_TEXT.get(str(reason), str(reason).replace("_", " "))
    )
    return verdict


#: How each reason reads in a count of the windows left out ("6 too mixed").
_COUNT_WORDS = {
    "silent": "silent",
    "too_short": "too short",
    "too_quiet": "too quiet",
    "too_mixed": "too mixed",
    "lost": "dropped",
}


def unknown(reason: str, skipped: Any = None) -> dict[str, Any]:
    """The verdict when nothing could be judged, and why (``silent``, ``too_short``,
    ``too_quiet``, ``too_mixed``, ``not_sampled``, ``lost``; anything else is an
    ``InputError``); with ``skipped`` (windows left out per reason), the explanation counts
    them: ``"(windows: 6 too mixed, 5 too quiet, 4 silent)"``."""
    if not isinstance(reason, str) or reason not in _REASONS:
        raise InputError(f"unknown: reason must be one of {sorted(_REASONS)}, got {reason!r}")
    text = _REASONS[reason]
    counts = sorted(
        ((int(n), k) for k, n in dict(skipped or {}).items() if n and k in _COUNT_WORDS), reverse=True
    )
    if len(counts) > 1:
        text = text[:-1] + " (windows: " + ", ".join(f"{n} {_COUNT_WORDS[k]}" for n, k in counts) + ")."
    return {
        "label": "unknown",
        "reason": reason,
        "probabilities": {c: 0.0 for c in CLASSES},
        "features": {k: None for k in FEATURE_NAMES},
        "explanation": text,
        "reasons": [],
        "window_shares": {c: 0.0 for c in CLASSES},  # no window judged: as the probabilities
        "chunks": 0,
        "seconds": 0.0,
    }


def reason_of(counts: Any) -> str:
    """Why nothing was judged, from the windows left out per reason: ``silent`` when every one
    was silent, else the most frequent of the others that occurred (``too_mixed`` before
    ``too_quiet``, ``too_short``, ``lost`` on a tie); ``silent`` when none was counted."""
    c = {k: int(v) for k, v in dict(counts or {}).items() if v}
    loud = {k: v for k, v in c.items() if k != "silent"}
    if not loud:
        return "silent"
    order = ("too_mixed", "too_quiet", "too_short", "lost")
    return max((k for k in order if k in loud), key=lambda k: loud[k])


def not_judgeable(y: np.ndarray, sr: int) -> str | None:
    """Why a window cannot be judged (``too_short``, ``too_quiet``, ``silent``), or ``None``;
    its sound is measured as the core measures levels (:func:`instrunet_core.features.block_power`).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        The window's audio, mono at ``sr``: finite numbers.
    sr : int

    Raises
    ------
    InputError
        Not a 1-D array of finite numbers, or an unusable rate (a NaN window was "too short").
    """
    sr = check_sample_rate(sr, what="not_judgeable")
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.floating):
        raise InputError(f"not_judgeable: expected mono float audio of shape (n,), got {y.dtype} {y.shape}")
    if not np.isfinite(y).all():  # (no bound on the values: resampling may overshoot the core's)
        raise InputError("not_judgeable: audio contains NaN or infinite samples")
    return _why_not_judged(y, sr)


def _why_not_judged(y: np.ndarray, sr: int) -> str | None:
    """:func:`not_judgeable` of a window the stream took from the core's checked blocks (not
    checked again on the analysis' path)."""
    m = y.shape[0] // _BLOCK
    if m * _BLOCK < MIN_SOUND_SECONDS * sr:
        return "too_short"
    # Measured as the core measures window levels (each block about its own straight line),
    # so DC and slow ramps are no sound here either.
    ms = block_power(y[: m * _BLOCK].reshape(m, _BLOCK))
    db = 10.0 * np.log10(ms + 1e-20)
    if float(db.max()) < SILENCE_DB:
        return "silent"
    sounding = db >= max(SILENCE_DB, float(db.max()) - 40.0)
    if sounding.sum() * _BLOCK < MIN_SOUND_SECONDS * sr:
        return "too_short"
    if 10.0 * np.log10(float(ms[sounding].mean()) + 1e-20) < QUIET_DBFS:
        return "too_quiet"
    return None


class _Window:
    __slots__ = ("index", "start", "end", "weight", "present", "leading", "features", "spectrogram")

    def __init__(
        self,
        index: int,
        start: float,
        end: float,
        weight: float,
        present: tuple[str, ...],
        leading: str | None,
    ) -> None:
        self.index, self.start, self.end, self.weight = index, start, end, weight
        self.present, self.leading = present, leading
        self.features: dict[str, float] | None = None
        self.spectrogram: np.ndarray | None = None  # a fused model's network probabilities


class ConditionStream:
    """One analysis's condition state (a :class:`instrunet_core.hookspecs.StreamAnalyzer`).

    Parameters
    ----------
    context : instrunet_core.analysis.AnalysisContext
        Before the pass: sample rate, labels, thresholds, hop, expected duration.
    model : ConditionModel, optional
        Default: the newest shipped model.
    """

    def __init__(self, context: Any, model: ConditionModel | None = None) -> None:
        self.model = model or load_condition_model()
        self.sr = int(context.sample_rate)
        self.labels = tuple(context.labels)
        thr = dict(context.thresholds or {})
        self._thr = np.array([thr.get(lab, np.inf) for lab in self.labels], dtype=np.float64)
        hop = float(context.hop_seconds or 1.5)
        self._hop_samples = max(1, int(round(hop * self.sr)))
        lag = getattr(context, "lag_seconds", None)
        #: Seconds of audio kept at most for the windows still to come.
        self.buffer_limit = max(MAX_BUFFER_SECONDS, float(lag) + 10.0 if lag else 0.0)
        expected = context.expected_duration
        #: The source's own rate (``None``: not known) and whether it has no band above 4 kHz.
        self.source_rate = getattr(context, "source_sample_rate", None)
        self.band_limited = band_limited(self.source_rate)
        self._band_hz = source_band_hz(self.source_rate, self.sr)
        #: Judgeable windows between two whole-file samples.
        self.stride = max(2, math.floor(expected / hop / FILE_WINDOWS)) if expected else 2
        self._doubling = not expected
        self._judgeable = 0
        self._file_taken = 0
        self._label_taken: dict[str, int] = {}
        self._label_last: dict[str, int] = {}
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self._kept = 0
        self.windows_seen = 0
        self._longest = 0  # the longest window seen (samples): a model's may be too short to judge
        self.skipped: dict[str, int] = {
            "silent": 0,
            "too_short": 0,
            "too_quiet": 0,
            "too_mixed": 0,
            "lost": 0,
        }
        self._label_skips: dict[str, dict[str, int]] = {}
        self._sampled: list[_Window] = []
        # Sampled windows are judged on one thread of the analyzer's own while the pass goes on
        # (their features and network do not change what is sampled); finish() waits for them.
        self._pool: ThreadPoolExecutor | None = None
        self._judging: list[tuple[_Window, Future[tuple[dict[str, float] | None, np.ndarray | None]]]] = []
        self.peak_buffer_seconds = 0.0
        # A fused model's spectrogram network, used when it reads windows at this rate.
        net = getattr(self.model, "spectrogram", None)
        self._net = net if net is not None and int(net.front_end.sample_rate) == self.sr else None
        # ... fed from the features' own STFT when the network's front end takes the same one
        fe: Any = getattr(self._net, "front_end", None)
        same = (
            fe is not None
            and getattr(self._net, "input_kind", None) == "logmel"
            and (fe.n_fft, fe.hop_length) == (_N_FFT, _HOP)
        )
        #: Samples of a whole window whose network input comes from the features' STFT (0: never).
        self._net_window = int(fe.window_samples) if same else 0

    # ------------------------------------------------------------------ the pass
    def push(self, block: np.ndarray, start: int) -> None:
        self._blocks.append((int(start), np.array(block, dtype=np.float32)))
        self._kept += block.shape[0]
        while self._kept > self.buffer_limit * self.sr and len(self._blocks) > 1:
            _, old = self._blocks.popleft()
            self._kept -= old.shape[0]
        self.peak_buffer_seconds = max(self.peak_buffer_seconds, self._kept / self.sr)

    def windows(self, results: Any) -> None:
        for w in results:
            self._consider(w)
        if results:
            # from the last window's start on: the stream's final window, aligned to its end,
            # starts up to a hop before the next window of the grid would
            self._drop_before(int(results[-1].index) * self._hop_samples)

    def _audio(self, a: int, b: int) -> np.ndarray | None:
        """Samples [a, b) from the kept blocks (``None`` when they were dropped)."""
        if not self._blocks or self._blocks[0][0] > a:
            return None
        parts = []
        for s, blk in self._blocks:
            e = s + blk.shape[0]
            if e <= a:
                continue
            if s >= b:
                break
            parts.append(blk[max(0, a - s) : min(blk.shape[0], b - s)])
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _drop_before(self, a: int) -> None:
        """Forget the blocks that end before sample ``a`` (no window still to come needs them:
        windows start ``hop`` apart and arrive in order, the last one at most a hop earlier)."""
        while self._blocks and self._blocks[0][0] + self._blocks[0][1].shape[0] <= a:
            _, old = self._blocks.popleft()
            self._kept -= old.shape[0]

    def _consider(self, w: Any) -> None:
        self.windows_seen += 1
        self._longest = max(self._longest, int(w.n_samples))
        if w.silent or w.rms_db < SILENCE_DB:
            # silent by the window's level; "silent" here means no 23 ms block above -60 dBFS
            # (condition_of's test): a quiet note whose peaks pass it is too short or too quiet
            a = int(round(w.start * self.sr))
            y = self._audio(a, a + int(w.n_samples))
            reason = "silent" if y is None else (_why_not_judged(y, self.sr) or "too_quiet")
            self._skip(reason, ())
            return
        p = np.asarray(w.probabilities, dtype=np.float64)
        present = (
            tuple(self.labels[i] for i in np.flatnonzero(p >= self._thr)) if p.size == self._thr.size else ()
        )
        if len(present) >= MIXED_LABELS:
            self._skip("too_mixed", present)
            return
        a = int(round(w.start * self.sr))
        y = self._audio(a, a + int(w.n_samples))
        if y is None:
            self._skip("lost", present)
            return
        why = _why_not_judged(y, self.sr)
        if why is not None:
            self._skip(why, present)
            return
        # The sample: the whole-file stride, then each present label's first windows.
        j = self._judgeable
        self._judgeable += 1
        take = j % self.stride == 0
        weight = float(self.stride)
        for lab in present:
            if self._label_taken.get(lab, 0) < LABEL_WINDOWS and w.index - self._label_last.get(lab, -9) >= 2:
                take = True
        if not take:
            return
        if j % self.stride == 0:
            self._file_taken += 1
            if self._doubling and self._file_taken >= FILE_WINDOWS and self._file_taken % FILE_WINDOWS == 0:
                self.stride *= 2
        else:
            weight = 1.0  # a label's extra window stands for itself
        for lab in present:
            self._label_taken[lab] = self._label_taken.get(lab, 0) + 1
            self._label_last[lab] = w.index
        # The family input: the window's leading family, none when an open-set classifier says
        # the sound is none of its labels (the model was trained with blanked families too).
        leading = (
            self.labels[int(np.argmax(p))] if p.size == len(self.labels) and w.label != OTHER_LABEL else None
        )
        win = _Window(int(w.index), float(w.start), float(w.end), weight, present, leading)
        # The core checked its input against MAX_AMPLITUDE; resampling can overshoot it a little
        # (9e9 became 1.18e10), which the features would refuse: clip back to the core's limit.
        np.clip(y, -MAX_AMPLITUDE, MAX_AMPLITUDE, out=y)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="instrunet-condition")
        try:
            fut = self._pool.submit(self._judge, y)
        except RuntimeError:  # the interpreter is shutting down: no new threads; judged here
            fut = Future()
            fut.set_result(self._judge(y))
        self._judging.append((win, fut))

    def _judge(self, y: np.ndarray) -> tuple[dict[str, float] | None, np.ndarray | None]:
        """A sampled window's features and network probabilities (on the analyzer's thread)."""
        # (no BLAS thread limit: the features' products never reach BLAS's threads, see
        # features._dot, and the core's mel products run on the calling thread)
        feats, power = features_and_power(y, sr=self.sr, band_hz=self._band_hz)
        if feats is None or self._net is None:
            return feats, None
        if power is not None and y.shape[0] == self._net_window:
            # a whole window: the features' STFT is the network's (its model input within
            # float32 rounding of predict_windows'), so it is not taken twice
            x = power_features(power, fe=self._net.front_end)
            return feats, self._net.predict_features(x[None])[0]
        return feats, self._net.predict_windows(y[None, :])[0]

    @property
    def sampled(self) -> list[_Window]:
        """The sampled windows judged so far, in order (waits for those still being judged)."""
        try:
            for win, fut in self._judging:
                win.features, win.spectrogram = fut.result()
                if win.features is not None:
                    self._sampled.append(win)
        finally:
            self._judging = []
        return self._sampled

    def close(self) -> None:
        """Stop the analyzer's thread (:meth:`finish` does; an abandoned stream's thread ends when
        the stream is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _skip(self, why: str, present: tuple[str, ...]) -> None:
        self.skipped[why] += 1
        for lab in present:
            d = self._label_skips.setdefault(lab, {})
            d[why] = d.get(why, 0) + 1

    # ------------------------------------------------------------------ after the pass
    def _verdict(self, wins: list[_Window], *, family: str | None = None) -> dict[str, Any]:
        """Whole file (``family`` None: each window's leading family, windows weighted by what
        they stand for) or one instrument (its family, every window once)."""
        kept = [w for w in wins if w.features is not None]
        rows = [w.features for w in kept if w.features is not None]
        weights = [1.0 if family else w.weight for w in kept]
        fams = [family or w.leading for w in kept]
        nets = [w.spectrogram for w in kept if w.spectrogram is not None]  # every one, with a network
        spec = np.stack(nets) if self._net is not None else None
        out = assess(
            impute_band(rows, self.model.reference) if self.band_limited else rows,
            weights,
            families=fams,
            predict=self.model.predict,
            reference=self.model.reference,
            spectrogram=spec,
            unmeasured=BAND_FEATURES if self.band_limited else (),
        )
        if self.band_limited:
            judge_band_limited(out, self.source_rate)
        out["reason"] = None
        # seconds of audio judged: the windows overlap (every 1.5 s, 2.95 s long), each second once
        out["seconds"] = round(sum(b - a for a, b in merge_ranges([(w.start, w.end) for w in kept])), 3)
        return out

    def _why_not(self) -> str:
        return reason_of(self.skipped)

    def _said(self, verdict: dict[str, Any]) -> dict[str, Any]:
        """``verdict``, its "too little sound" said as what it is when the model's windows are
        themselves shorter than the sound a verdict needs (a model reading windows of about 1 s,
        as YAMNet-like models do: twenty seconds of steady sound were "too little sound")."""
        whole_blocks = self._longest // _BLOCK * _BLOCK
        if verdict.get("reason") == "too_short" and 0 < whole_blocks < MIN_SOUND_SECONDS * self.sr:
            verdict["explanation"] = (
                f"unknown: the model's windows ({self._longest / self.sr:.3f} s) are shorter than the "
                f"{MIN_SOUND_SECONDS:g} s of sound a verdict needs: the condition is judged only with "
                "models of longer windows."
            )
        return verdict

    def finish(self, context: Any) -> dict[str, Any]:
        """The output contract of :mod:`instrunet_condition`."""
        try:
            sampled = self.sampled
        finally:
            self.close()
        m = self.model
        whole = self._said(
            with_text(self._verdict(sampled) if sampled else unknown(self._why_not(), self.skipped))
        )
        lost = self.skipped["lost"]
        if sampled and lost:
            # the verdict stands on the windows that kept their audio: say that others did not
            text = str(whole["explanation"])
            whole["explanation"] = (
                (text[:-1] if text.endswith(".") else text)
                + f"; {lost} of {self.windows_seen} windows were not judged (the analysis fell behind "
                "and their audio was dropped)."
            )
        per: dict[str, Any] = {}
        for inst in getattr(context, "instruments", None) or []:
            ranges = [tuple(r) for r in inst.ranges]

            def inside(w: _Window, ranges: list[tuple[float, float]] = ranges) -> bool:
                # the window shares at least MIN_SOUND_SECONDS with the instrument's ranges
                return sum(max(0.0, min(w.end, b) - max(w.start, a)) for a, b in ranges) >= MIN_SOUND_SECONDS

            # where it plays is where its ranges say (the timeline's, as the user reads them), not
            # only the windows whose own probability passed its threshold: a family detected from
            # the evidence windows between them was "too short" there, and depended on the hop
            mine = [w for w in sampled if inside(w)]
            v = (
                self._verdict(mine, family=inst.label)
                if mine
                else unknown(self._instrument_reason(inst.label, ranges), self._label_skips.get(inst.label))
            )
            v = self._said(with_text(v))
            per[inst.label] = {k: v[k] for k in (*_VERDICT_KEYS, "chunks", "seconds") if k in v}
        return {
            **{k: whole[k] for k in _VERDICT_KEYS if k in whole},
            "instruments": per,
            "model": {"name": m.name, "version": m.version, "sha256": m.sha256, **self._network()},
            "chunks": whole["chunks"],
            "seconds": whole["seconds"],
            "sampling": {
                "windows": self.windows_seen,
                "judged": len(sampled),
                "stride": self.stride,
                "skipped": dict(self.skipped),
                "buffer_seconds": round(self.peak_buffer_seconds, 2),
            },
        }

    def _network(self) -> dict[str, Any]:
        """``{"spectrogram": {name, version, sha256}}`` of a fused model's network, when it was used."""
        net = self._net
        if net is None:
            return {}
        return {"spectrogram": {"name": net.name, "version": net.version, "sha256": net.manifest.sha256}}

    def _instrument_reason(self, label: str, ranges: list[tuple[float, float]]) -> str:
        """Why an instrument got no judged window: what kept most of its windows out; else
        ``too_short`` when it plays less than a window needs, ``not_sampled`` when it plays
        longer but no sampled window falls where it does."""
        skips = self._label_skips.get(label, {})
        if any(skips.values()):
            return reason_of(skips)
        played = sum(b - a for a, b in ranges)
        return "too_short" if played < MIN_SOUND_SECONDS else "not_sampled"
