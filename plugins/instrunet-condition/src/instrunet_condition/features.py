"""Condition features of a stretch of mono audio (numpy only).

Every feature is computed here, by the one implementation that the corpus builder
(:mod:`training.condition.data`) and the analyzer both use. A stretch is typically one
analysis window of the family classifier (2.949 s at 22,050 Hz); everything is
level-independent (the stretch is peak-normalised first). One centred Hann STFT (2048
points, hop 512, float32) serves every spectral feature:

* ``hnr_db`` — harmonics-to-noise ratio by Boersma's (1993) autocorrelation method, the
  algorithm of Praat's *To Harmonicity (ac)* (minimum pitch 75 Hz, silence threshold 0.1,
  4.5 periods per window): Gaussian-windowed frames with the local mean removed, the
  autocorrelation divided by the window's own autocorrelation, the strongest peak between 2
  samples and one longest period (parabolic interpolation, values above 1 reflected as
  ``1/r``), ``HNR = 10 log10(r / (1 - r))``; silent frames are unvoiced; the mean over voiced
  frames, as Praat's *Get mean*. Praat steps 10 ms (:func:`hnr` does too, and
  ``tests/test_condition.py`` checks it against Praat itself); the condition features step
  :data:`HNR_STEP` (80 ms: the mean of an eighth of the frames).
* ``spectral_flatness`` — Wiener entropy (geometric over arithmetic mean of the power
  spectrum), averaged over frames within 50 dB of the loudest frame;
* ``decay_rate_db_per_s`` — after each onset (a 6 dB rise within 50 ms), the negative
  slope of a straight line fitted to the dB envelope from its peak down to 40 dB below it;
  median over notes (positive = decays);
* ``decay_variance`` — the variance, pooled over notes and time, of the 0.25 s local decay
  rates, in (dB/s)^2: beating, rattles, dropouts and unsteady decay raise it;
* ``crest_factor_db``, ``clipping_ratio`` (samples within 0.1 % of the peak, in excess of
  a clean waveform's one or two), ``zero_crossing_rate``, ``spectral_centroid_hz``,
  ``hf_ratio`` (share of the power above 4 kHz), ``noise_floor_db`` (10th percentile of
  the frame level relative to the loudest frame), ``flatness_quiet`` (spectral flatness
  of the quietest quarter of the non-silent frames);
* ``envelope_modulation_db`` — standard deviation of the dB envelope around its 0.3 s
  moving average, over frames within 30 dB of the loudest (the *sustained* frames): beating,
  tremolo, rattles, dropouts;
* ``spectral_flux`` — mean cosine distance between successive magnitude spectra of the
  sustained frames, onsets (a rise of 3 dB or more) left out: chorus, detuning, noise;
* ``partial_fluctuation_db`` — how much the 6 strongest bins of the sustained frames wobble
  around their 0.6 s moving average, in dB: beating partials of a detuned unison, chorus;
* ``hum_db`` — power within 0.5 Hz of 50 or 60 Hz and their 2nd/3rd harmonics over the
  power 1-6 Hz around them (one Hann FFT of the whole stretch): mains hum;
* ``wow_cents``, ``flutter_cents`` — the frequency of the 3 strongest partials followed
  frame by frame (parabolic interpolation of the log spectrum), in cents around each
  partial's median, averaged over the partials (weighted by their power); the RMS of that
  common pitch deviation in the 0.7-4 Hz band (tape *wow*) and the 8-20 Hz band (*flutter*).
  A player's vibrato (4.5-7.5 Hz) lies between the two bands;
* ``hf_flatness`` — spectral flatness of the 4-10 kHz band over the frames where that band
  holds sound: hiss above dulled highs, breath of a leaking pad;
* ``attack_flatness`` — spectral flatness of the two frames at each onset (the loudest
  frame when there is none), mean over onsets: the thump and noise of a worn hammer or a
  rattling part at the attack.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Mapping

import numpy as np

from instrunet_core.features import SAMPLE_RATE, irfft_into, rfft_into, scratch
from instrunet_core.inputs import check_float_samples, check_sample_rate
from instrunet_core.labels import FAMILIES

__all__ = [
    "SAMPLE_RATE",
    "FEATURE_NAMES",
    "FAMILY_INPUTS",
    "INPUT_NAMES",
    "MIN_SECONDS",
    "HNR_STEP",
    "hnr_frames",
    "hnr",
    "condition_features",
    "features_and_power",
    "feature_vector",
]

#: The classifier's input order (see :func:`feature_vector`).
FEATURE_NAMES = (
    "hnr_db",
    "spectral_flatness",
    "decay_rate_db_per_s",
    "decay_variance",
    "crest_factor_db",
    "clipping_ratio",
    "zero_crossing_rate",
    "spectral_centroid_hz",
    "hf_ratio",
    "noise_floor_db",
    "flatness_quiet",
    "envelope_modulation_db",
    "spectral_flux",
    "partial_fluctuation_db",
    "hum_db",
    "wow_cents",
    "flutter_cents",
    "hf_flatness",
    "attack_flatness",
)
#: The classifier's other inputs: the family that leads the window, one-hot (all 0 when the family
#: classifier names none of the eight), so that it weighs a feature against what is normal for
#: the instrument (breath in a flute, beating in a string section, a piano's hammer noise).
FAMILY_INPUTS = tuple(f"family_{f}" for f in FAMILIES)
#: Everything the classifier takes, in order.
INPUT_NAMES = FEATURE_NAMES + FAMILY_INPUTS
#: Shortest stretch (seconds) that features are computed for.
MIN_SECONDS = 0.25
#: Seconds between the HNR frames of :func:`condition_features` (Praat's own default is 0.01).
HNR_STEP = 0.08
_N_FFT = 2048
_HOP = 512
_EPS = 1e-12
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(np.float32)


def _check(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono, finite, floating-point audio as float32 (the core's input rules: ``InputError``,
    a ``ValueError``)."""
    check_sample_rate(sr, what="condition features")
    return check_float_samples(y, what="condition features", dtype=np.float32)


@functools.lru_cache(maxsize=64)
def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes the FFT computes fastest)."""
    best = 1 << int(np.ceil(np.log2(max(n, 1))))
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def hnr_frames(
    y: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    time_step: float = 0.01,
    min_pitch: float = 75.0,
    silence_threshold: float = 0.1,
    periods_per_window: float = 4.5,
) -> np.ndarray:
    """Per-frame harmonics-to-noise ratio (Boersma 1993; Praat's *To Harmonicity (ac)*).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio.
    sr : int
        Sample rate (Hz).
    time_step : float
        Seconds between frame centres.
    min_pitch : float
        Lowest pitch searched (Hz); sets the longest lag and the window length.
    silence_threshold : float
        Frames whose local peak is below this fraction of the global peak lean unvoiced.
    periods_per_window : float
        Window length in periods of ``min_pitch`` (doubled for the Gaussian window, as Praat).

    Returns
    -------
    np.ndarray [shape=(n_frames,)]
        HNR in dB per frame; ``nan`` for unvoiced or silent frames. Empty when ``y`` is
        shorter than one window.
    """
    check_sample_rate(sr, what="condition features")
    x = check_float_samples(y, what="condition features", dtype=np.float64)
    dx = 1.0 / sr
    n_win = int(np.floor(2.0 * periods_per_window / min_pitch / dx))  # Gaussian: twice the periods
    half = n_win // 2 - 1
    if half < 2:
        raise ValueError(f"analysis window too short at sr={sr}")
    n_win = 2 * half
    if x.size < n_win:
        return np.zeros(0)
    n_frames = int(np.floor((x.size * dx - n_win * dx) / time_step)) + 1
    t_mid = 0.5 * (x.size - 1) * dx  # frames centred on the sound
    t1 = t_mid - 0.5 * (n_frames - 1) * time_step
    centres = np.round((t1 + time_step * np.arange(n_frames)) / dx).astype(int)
    starts = np.clip(centres - half, 0, x.size - n_win)

    idx = np.arange(n_win)
    mid = 0.5 * (n_win + 1)
    g = (np.exp(-48.0 * ((idx + 1) - mid) ** 2 / (n_win + 1) ** 2) - np.exp(-12.0)) / (1.0 - np.exp(-12.0))
    global_peak = float(np.max(np.abs(x - x.mean()))) if x.size else 0.0
    n_period = int(round(1.0 / (min_pitch * dx)))
    half_period = n_period // 2 + 1
    min_lag = 2
    max_lag = min(int(np.floor(n_win / (2.0 * periods_per_window))) + 2, n_win - 2)
    # Lags up to max_lag + 1 are exact (not wrapped) when the FFT holds the window plus them.
    n_fft = _fast_len(n_win + max_lag + 2)
    wr = np.fft.irfft(np.abs(np.fft.rfft(g, n_fft)) ** 2, n_fft)[: max_lag + 2]
    wr = wr / wr[0]

    frames = scratch("condition.hnr_frames", (n_frames, n_fft), np.float64)
    frames[:, n_win:] = 0.0
    np.take(x, starts[:, None] + idx[None, :], out=frames[:, :n_win])
    # local mean over one longest period around the centre, as Praat
    lo, hi = max(0, half - half_period), min(n_win, half + half_period + 1)
    fw = frames[:, :n_win]
    fw -= fw[:, lo:hi].mean(axis=1, keepdims=True)
    local_peak = np.abs(fw[:, lo:hi]).max(axis=1)
    fw *= g[None, :]
    # (into reused buffers on numpy 2; numpy 1.x has no `out` for its FFTs: new arrays there)
    spec = rfft_into(frames, scratch("condition.hnr_spec", (n_frames, n_fft // 2 + 1), np.complex128), axis=1)
    np.multiply(spec, spec.conj(), out=spec)
    ac = irfft_into(spec, scratch("condition.hnr_ac", (n_frames, n_fft), np.float64), n=n_fft, axis=1)
    ac = ac[:, : max_lag + 2].copy()
    r0 = ac[:, 0:1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ac / np.where(r0 > 0, r0, 1.0) / wr[None, :]
    # local maxima in [min_lag, max_lag]
    c = r[:, min_lag : max_lag + 1]
    left = r[:, min_lag - 1 : max_lag]
    right = r[:, min_lag + 1 : max_lag + 2]
    is_peak = (c > 0) & (c >= left) & (c >= right)
    dr = 0.5 * (right - left)
    d2r = 2.0 * c - left - right
    with np.errstate(invalid="ignore", divide="ignore"):
        strength = np.where(d2r > 0, c + 0.5 * dr * dr / np.where(d2r > 0, d2r, 1.0), c)
    strength = np.where(strength > 1.0, 1.0 / np.maximum(strength, 1.0), strength)
    strength = np.where(is_peak, strength, -np.inf)
    best = strength.max(axis=1) if strength.shape[1] else np.full(n_frames, -np.inf)

    intensity = np.minimum(local_peak / global_peak, 1.0) if global_peak > 0 else np.zeros(n_frames)
    unvoiced_strength = np.maximum(0.0, 2.0 - intensity / silence_threshold)
    voiced = (best > unvoiced_strength) & (r0[:, 0] > 0) & np.isfinite(best)
    out = np.full(n_frames, np.nan)
    rv = best[voiced]
    with np.errstate(divide="ignore"):
        hv = np.where(rv <= 1e-15, -150.0, np.where(rv > 1 - 1e-15, 150.0, 10.0 * np.log10(rv / (1.0 - rv))))
    out[voiced] = hv
    return out


def hnr(y: np.ndarray, *, sr: int = SAMPLE_RATE, **kwargs: float) -> float:
    """Mean HNR (dB) over voiced frames (Praat's *Get mean*); ``nan`` when none is voiced.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    **kwargs
        Passed to :func:`hnr_frames` (``time_step`` 0.01 s by default, as Praat).

    Returns
    -------
    float
    """
    h = hnr_frames(y, sr=sr, **kwargs)
    h = h[np.isfinite(h)]
    return float(h.mean()) if h.size else float("nan")


#: The longest Hann window kept for later calls (one analysis window: 65,024 samples, 254 KB).
_HANN_KEPT = 65536


def _hann(n: int) -> np.ndarray:
    """A float32 Hann window of ``n`` samples, read-only. A few of at most one analysis window
    are kept (:func:`_hann_kept`): most stretches the analyzer judges are one window long, but a
    clip shorter than a window and a file's last window (aligned to its end) come in any length,
    and a dict of every length met grew without bound in a long-running host; a longer stretch
    (``condition_features`` of a whole clip) gets a window of its own."""
    return _hann_kept(n) if n <= _HANN_KEPT else _new_hann(n)


def _new_hann(n: int) -> np.ndarray:
    w = np.hanning(n).astype(np.float32)
    w.flags.writeable = False
    return w


_hann_kept = functools.lru_cache(maxsize=4)(_new_hann)


def _stft_power(x: np.ndarray) -> np.ndarray:
    """Power spectrogram [shape=(frames, 1 + n_fft/2), float32] of a centred Hann STFT.

    Frames are windowed into a float64 buffer and transformed in place of a reused output
    (numpy's float64 transform measured faster here than its float32 one)."""
    pad = np.pad(x, _N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(pad, _N_FFT)[::_HOP]
    m, n_bins = frames.shape[0], _N_FFT // 2 + 1
    wide = scratch("condition.wide", (m, _N_FFT), np.float64)
    np.multiply(frames, _WINDOW, out=wide)
    spec = rfft_into(wide, scratch("condition.spec", (m, n_bins), np.complex128), axis=1)
    sq = scratch("condition.sq", (m, 2 * n_bins), np.float64)
    np.square(spec.view(np.float64), out=sq)
    pairs = sq.reshape(m, n_bins, 2)
    power = np.empty((m, n_bins), np.float32)
    np.add(pairs[..., 0], pairs[..., 1], out=power, casting="same_kind")
    return power


def _flatness(logp: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Spectral flatness of each row: exp(mean log power) / mean power (``logp``: log of the floored power)."""
    return np.exp(logp.mean(axis=1, dtype=np.float64)) / np.maximum(
        power.mean(axis=1, dtype=np.float64), 1e-10
    )


def _moving_average(a: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of odd length ``k`` along axis 0, edges padded with the edge value."""
    h = k // 2
    p = np.concatenate([np.repeat(a[:1], h, axis=0), a, np.repeat(a[-1:], h, axis=0)], axis=0)
    c = np.cumsum(np.concatenate([np.zeros_like(p[:1]), p], axis=0), axis=0, dtype=np.float64)
    return (c[k:] - c[:-k]) / k


def _onsets(env_db: np.ndarray, fps: float) -> list[int]:
    """Frames where the envelope rises by more than 6 dB within 50 ms (at least 0.3 s apart);
    the first frame always starts a note."""
    lag = max(1, int(round(0.05 * fps)))
    rise = env_db[lag:] - env_db[:-lag]
    gap = int(round(0.3 * fps))
    out: list[int] = [0]
    for i in np.flatnonzero(rise > 6.0) + lag:
        if i - out[-1] >= gap:
            out.append(int(i))
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a vector ``b`` without BLAS: numpy's own einsum loops (``np.einsum`` without
    ``optimize`` never calls BLAS). A BLAS product of this size runs on BLAS's threads, whose
    number is process-wide: the analyzer would have to limit the host's threads while it runs
    (or fight onnxruntime's threads for the cores). Same sums, on the calling thread."""
    return np.einsum("...j,j->...", a, b)


def _slopes(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Least-squares slopes of the rows of ``e`` [shape=(m, n)] against ``t`` [shape=(n,)]."""
    tc = t - t.mean()
    return _dot(e - e.mean(axis=-1, keepdims=True), tc) / float(_dot(tc, tc))


def _decay(env_db: np.ndarray, fps: float, active: np.ndarray, onsets: list[int]) -> tuple[float, float]:
    """(median decay rate over notes in dB/s, variance of the 0.25 s decay rates in (dB/s)^2)."""
    bounds = [*onsets, env_db.size]
    rates: list[float] = []
    local: list[np.ndarray] = []
    seg = max(3, int(round(0.25 * fps)))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        e = env_db[a:b]
        if e.size < 4:
            continue
        p = int(np.argmax(e))
        tail = e[p:]
        keep = active[a + p : b] & (tail > tail[0] - 40.0)
        tail = tail[: int(np.flatnonzero(keep)[-1]) + 1] if keep.any() else tail[:0]
        if tail.size < 4:
            continue
        t = np.arange(tail.size) / fps
        rates.append(-float(_slopes(t, tail[None, :])[0]))
        m = tail.size // seg
        if m:
            local.append(-_slopes(t[:seg], tail[: m * seg].reshape(m, seg)))
    rate = float(statistics.median(rates)) if rates else 0.0
    loc = np.concatenate(local) if local else np.zeros(0)
    var = float(np.var(loc)) if loc.size >= 2 else 0.0
    return rate, var


def _hum_db(x: np.ndarray, sr: int) -> float:
    """Mains hum: power within 0.5 Hz of 50 or 60 Hz and their 2nd/3rd harmonics over the
    median power 1-6 Hz around them (whole-stretch Hann FFT), dB, the larger of the two."""
    n_fft = _fast_len(x.size)
    spec = np.fft.rfft(x * _hann(x.size), n_fft)
    top = int(np.ceil(190.0 * n_fft / sr)) + 1  # only the bins up to 3 x 60 Hz + 6 Hz are read
    p = spec.real[:top] ** 2 + spec.imag[:top] ** 2
    f = np.arange(top) * (sr / n_fft)
    best = -30.0
    for f0 in (50.0, 60.0):
        num = den = 0.0
        for k in (1, 2, 3):
            d = np.abs(f - k * f0)
            band, ctx = d <= 0.5, (d <= 6.0) & (d > 1.0)
            if not band.any() or not ctx.any():
                continue
            num += float(p[band].mean())
            den += float(np.median(p[ctx]))
        if den > 0:
            best = max(best, 10.0 * np.log10(num / den + 1e-3))
    return best


def _detrend(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` less its least-squares straight line over ``t`` (at least 2 distinct ``t``)."""
    tc = t - t.mean()
    vc = v - v.mean()
    return vc - tc * (float(_dot(tc, vc)) / float(_dot(tc, tc)))


def _pitch_wobble(
    logp: np.ndarray, power: np.ndarray, sus: np.ndarray, fps: float, sr: int
) -> tuple[float, float]:
    """(wow, flutter): RMS pitch deviation in cents of the 3 strongest partials' common
    frequency track, in the 0.7-4 Hz and 8-20 Hz bands (see the module docstring).

    A partial is followed while it stays the local maximum within 2 bins of its place in the
    sustained frames' mean spectrum; the track is cut where it jumps by more than 25 cents
    from one frame to the next (a new note), and each piece of at least 8 frames is centred
    on its own mean and trend, so note changes do not count as wow."""
    n = power.shape[0]
    if sus.sum() < 8:
        return 0.0, 0.0
    mean = power[sus].mean(axis=0)
    bin_hz = sr / _N_FFT
    lo, hi = int(100.0 / bin_hz), int(4000.0 / bin_hz)
    m = mean[lo:hi]
    is_peak = (m[1:-1] > m[:-2]) & (m[1:-1] >= m[2:])
    cand = np.flatnonzero(is_peak) + 1 + lo
    if cand.size == 0:
        return 0.0, 0.0
    picks: list[int] = []
    for b in cand[np.argsort(mean[cand])[::-1]]:
        if all(abs(int(b) - q) > 3 for q in picks):
            picks.append(int(b))
        if len(picks) == 3:
            break
    rows = np.arange(n)
    dev = np.zeros(n)
    wsum = np.zeros(n)
    for b in picks:
        seg = logp[:, b - 2 : b + 3]
        j = np.argmax(seg, axis=1)
        jj = np.clip(j, 1, 3)
        a, c0, c = seg[rows, jj - 1], seg[rows, jj], seg[rows, jj + 1]
        den = a - 2 * c0 + c
        with np.errstate(invalid="ignore", divide="ignore"):
            off = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
        cents = 1200.0 * np.log2((b - 2 + jj + np.clip(off, -0.5, 0.5)) / b)
        ok = sus & (j > 0) & (j < 4)
        ok[1:] &= ~(np.abs(np.diff(cents)) > 25.0)  # a jump: a new note starts a new piece
        # the pieces: the runs of frames where the partial is followed
        edges = np.flatnonzero(np.diff(ok, prepend=False, append=False))
        track = np.zeros(n)
        for a0, a1 in zip(edges[::2], edges[1::2], strict=True):
            if a1 - a0 < 8:
                continue
            idx = np.arange(a0, a1)
            track[idx] = _detrend(idx, cents[idx])
            w = float(mean[b])
            dev[idx] += w * track[idx]
            wsum[idx] += w
    if not wsum.any():
        return 0.0, 0.0
    dev = np.where(wsum > 0, dev / np.where(wsum > 0, wsum, 1.0), 0.0)
    spec = np.abs(np.fft.rfft(dev)) ** 2
    f = np.fft.rfftfreq(n, 1.0 / fps)
    # RMS over the frames that carry a track (Parseval, one-sided spectrum)
    scale = 2.0 / (n * max(1, int(np.count_nonzero(wsum))))

    def band(lo_hz: float, hi_hz: float) -> float:
        return float(np.sqrt(scale * spec[(f >= lo_hz) & (f <= hi_hz)].sum()))

    return band(0.7, 4.0), band(8.0, 20.0)


def condition_features(
    y: np.ndarray, *, sr: int = SAMPLE_RATE, band_hz: float | None = None
) -> dict[str, float] | None:
    """All condition features of one stretch of mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio (any level; features are level-independent).
    sr : int
        Sample rate; 22,050 Hz is what the classifier was trained on.
    band_hz : float, optional
        Where the recording's own band ends, when below ``sr / 2`` (audio resampled up from a
        16 kHz source holds nothing above about 7.6 kHz): the flatness features are measured
        below it only. Over the empty bins above it, the geometric mean of every frame fell to
        the floor, and noise as loud as the music looked as tonal as a clean note (white noise
        at 16 kHz was "healthy").

    Returns
    -------
    dict or None
        ``{name: float}`` for every name in :data:`FEATURE_NAMES` (all finite), or
        ``None`` when the audio is shorter than :data:`MIN_SECONDS` or digitally silent
        (peak below -80 dBFS).

    Raises
    ------
    ValueError
        Not mono, not floating point, NaN/inf samples, or a bad rate.
    """
    return features_and_power(y, sr=sr, band_hz=band_hz)[0]


def features_and_power(
    y: np.ndarray, *, sr: int = SAMPLE_RATE, band_hz: float | None = None
) -> tuple[dict[str, float], np.ndarray] | tuple[None, None]:
    """:func:`condition_features` and the power spectrogram they were computed from.

    The power is the stretch's own ([shape=(frames, 1025)], float32: the centred periodic-Hann
    STFT at 2048 points, hop 512, the same transform as the family classifier's front end at
    22,050 Hz), so that the analyzer's spectrogram network reads the window without transforming
    it again: :func:`instrunet_core.features.power_features` of a whole window's power is its
    model input (the same as :func:`~instrunet_core.features.window_features`, within float32
    rounding).

    Returns
    -------
    (dict, np.ndarray) or (None, None)
        ``(None, None)`` where :func:`condition_features` gives ``None``.

    Raises
    ------
    ValueError
        As :func:`condition_features`.
    """
    x = _check(y, sr)
    if x.size < MIN_SECONDS * sr:
        return None, None
    peak = float(np.max(np.abs(x)))
    if peak < 1e-4:
        return None, None
    x = x * np.float32(1.0 / peak)
    power = _stft_power(x)
    logp = np.log(np.maximum(power, np.float32(1e-10)))
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / sr)
    top_hz = sr / 2.0 if band_hz is None else min(float(band_hz), sr / 2.0)
    inband = freqs <= top_hz  # the bins the recording's own band covers
    whole_band = bool(inband.all())
    flat_all = (
        _flatness(logp, power)
        if whole_band
        else _flatness(np.ascontiguousarray(logp[:, inband]), np.ascontiguousarray(power[:, inband]))
    )
    frame_db = 10.0 * np.log10(np.maximum(power.sum(axis=1, dtype=np.float64), _EPS))
    active = frame_db > frame_db.max() - 50.0
    pa = power[active]
    flat = flat_all[active]
    tot = pa.sum(axis=1, dtype=np.float64) + _EPS
    centroid = float(np.mean(_dot(pa, freqs.astype(np.float32)) / tot))
    hf = float(pa[:, freqs >= 4000.0].sum(dtype=np.float64) / tot.sum())
    quiet = np.argsort(frame_db[active])[: max(1, int(active.sum()) // 4)]
    fps = sr / _HOP
    onsets = _onsets(frame_db, fps)
    rate, var = _decay(frame_db, fps, active, onsets)
    h = hnr(x, sr=sr, time_step=HNR_STEP) if x.size >= int(0.125 * sr) else float("nan")
    x64 = x.astype(np.float64)
    rms = float(np.sqrt(np.mean(x64 * x64)))
    # a clean waveform has ~1 sample at its peak; a clipped one has runs of them
    clip = max(0.0, float(np.mean(np.abs(x) >= 0.999)) - 2.0 / x.size)
    sign = np.signbit(x)
    zc = float(np.count_nonzero(sign[1:] != sign[:-1]) / max(1, x.size - 1))
    # sustained part: frames within 30 dB of the loudest
    sus = frame_db > frame_db.max() - 30.0
    k = max(3, int(round(0.3 * fps)) | 1)
    trend = _moving_average(frame_db, k)
    mod = float(np.std((frame_db - trend)[sus])) if sus.sum() >= 3 else 0.0
    # cosine distance of successive magnitude spectra: sum sqrt(p_t p_t-1) / sqrt(P_t P_t-1)
    both = sus[1:] & sus[:-1] & (np.diff(frame_db) < 3.0)  # not across onsets
    flux = 0.0
    if both.any():
        i = np.flatnonzero(both)
        mag = np.sqrt(power)
        num = np.einsum("ij,ij->i", mag[i + 1], mag[i], dtype=np.float64)
        p_row = power.sum(axis=1, dtype=np.float64)
        flux = float(np.mean(1.0 - num / (np.sqrt(p_row[i + 1] * p_row[i]) + _EPS)))
    # partials: the 6 strongest bins of the sustained part; how much their level wobbles
    # around a 0.6 s moving average (beating of a detuned unison, chorus)
    part = 0.0
    k6 = max(3, int(round(0.6 * fps)) | 1)
    if sus.sum() >= k6 + 2:
        ps = power[sus]
        top = np.argsort(ps.mean(axis=0))[-6:]
        traj = 10.0 * np.log10(ps[:, top].astype(np.float64) + float(ps.max()) * 1e-6)
        part = float(np.mean(np.std(traj - _moving_average(traj, k6), axis=0)))
    wow, flutter = _pitch_wobble(logp, power, sus, fps, sr)
    # the 4-10 kHz band where it holds sound (within 60 dB of its loudest frame)
    band = (freqs >= 4000.0) & (freqs <= min(10000.0, top_hz))
    band_db = 10.0 * np.log10(power[:, band].sum(axis=1, dtype=np.float64) + _EPS)
    band_on = active & (band_db > band_db.max() - 60.0)
    hf_flat = (  # 1.0 where the band holds no sound, or the rate has no such band (below 8 kHz)
        float(_flatness(logp[band_on][:, band], power[band_on][:, band]).mean())
        if band.any() and band_on.any()
        else 1.0
    )
    at = [i for i in onsets if active[i]] or [int(np.argmax(frame_db))]
    at_rows = sorted({j for i in at for j in (i, i + 1) if j < power.shape[0]})
    attack = float(flat_all[at_rows].mean())
    feats = {
        "hnr_db": h if np.isfinite(h) else -10.0,
        "spectral_flatness": float(flat.mean()),
        "decay_rate_db_per_s": rate,
        "decay_variance": var,
        "crest_factor_db": 20.0 * np.log10(1.0 / max(rms, _EPS)),
        "clipping_ratio": clip,
        "zero_crossing_rate": zc,
        "spectral_centroid_hz": centroid,
        "hf_ratio": hf,
        "noise_floor_db": float(np.percentile(frame_db[active], 10) - frame_db.max()),
        "flatness_quiet": float(flat[quiet].mean()),
        "envelope_modulation_db": mod,
        "spectral_flux": flux,
        "partial_fluctuation_db": part,
        "hum_db": _hum_db(x, sr),
        "wow_cents": wow,
        "flutter_cents": flutter,
        "hf_flatness": hf_flat,
        "attack_flatness": attack,
    }
    power *= np.float32(peak * peak)  # back to the stretch's own level (the features are done with it)
    return {k: float(v) for k, v in feats.items()}, power


def feature_vector(features: Mapping[str, float], family: str | None = None) -> np.ndarray:
    """The classifier's input: the features in :data:`FEATURE_NAMES` order (heavy-tailed ones on
    log scales, clipped ranges), then the leading family one-hot (:data:`FAMILY_INPUTS`).

    Parameters
    ----------
    features : dict
        As returned by :func:`condition_features`.
    family : str, optional
        The family leading the stretch (from the family classifier); ``None`` or a label outside
        the eight gives all zeros.

    Returns
    -------
    np.ndarray [shape=(len(INPUT_NAMES),), dtype=float32]
    """
    f = dict(features)
    v = [
        np.clip(f["hnr_db"], -10.0, 60.0),
        np.log10(f["spectral_flatness"] + 1e-6),
        np.clip(f["decay_rate_db_per_s"], -50.0, 200.0),
        np.log10(f["decay_variance"] + 1.0),
        f["crest_factor_db"],
        np.log10(f["clipping_ratio"] + 1e-5),
        np.log10(f["zero_crossing_rate"] + 1e-4),
        np.log10(f["spectral_centroid_hz"] + 1.0),
        np.log10(f["hf_ratio"] + 1e-6),
        max(f["noise_floor_db"], -60.0),
        np.log10(f["flatness_quiet"] + 1e-6),
        np.log10(f["envelope_modulation_db"] + 0.01),
        np.log10(f["spectral_flux"] + 1e-5),
        np.log10(f["partial_fluctuation_db"] + 0.01),
        np.clip(f["hum_db"], -10.0, 40.0),
        np.log10(f["wow_cents"] + 0.1),
        np.log10(f["flutter_cents"] + 0.1),
        np.log10(f["hf_flatness"] + 1e-6),
        np.log10(f["attack_flatness"] + 1e-6),
    ]
    v += [1.0 if family == fam else 0.0 for fam in FAMILIES]
    return np.asarray(v, dtype=np.float32)
