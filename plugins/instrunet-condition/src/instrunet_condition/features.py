"""Condition features of a stretch of mono audio (numpy only).

Every feature is computed here, by the one implementation that both the corpus builder
(``training/condition.py``) and the analyzer use:

* ``hnr_db`` — harmonics-to-noise ratio by Boersma's (1993) autocorrelation method, the
  algorithm of Praat's *To Harmonicity (ac)* (time step 10 ms, minimum pitch 75 Hz,
  silence threshold 0.1, 4.5 periods per window): Gaussian-windowed frames with the local
  mean removed, the autocorrelation divided by the window's own autocorrelation, the
  strongest peak between 2 samples and one longest period (parabolic interpolation, values
  above 1 reflected as ``1/r``), ``HNR = 10 log10(r / (1 - r))``; silent frames are
  unvoiced. The mean is taken over voiced frames, as Praat's *Get mean*.
  ``tests/test_condition.py`` checks it against Praat itself (``praat-parselmouth``).
* ``spectral_flatness`` — Wiener entropy (geometric over arithmetic mean of the power
  spectrum; 2048-point Hann STFT, hop 512), averaged over frames within 50 dB of the
  loudest frame.
* ``decay_rate_db_per_s`` — how fast the RMS envelope (dB, 512-sample hop) falls after
  each onset: the median over notes of the negative slope of a straight-line fit
  (positive = decays);
* ``decay_variance`` — the variance, pooled over notes and time, of the short-time decay
  rate (slope over 0.25 s stretches), in (dB/s)^2: beating, rattles, dropouts and unsteady
  decay raise it;
* ``crest_factor_db``, ``clipping_ratio`` (samples within 0.1 % of the peak, in excess of
  a clean waveform's), ``zero_crossing_rate``, ``spectral_centroid_hz``,
  ``hf_ratio`` (share of the power above 4 kHz), ``noise_floor_db`` (10th percentile of
  the frame RMS relative to the loudest frame), ``flatness_quiet`` (spectral flatness
  of the quietest quarter of the non-silent frames), ``envelope_modulation_db`` (standard
  deviation of the dB envelope around its 0.3 s moving average, over frames within 30 dB
  of the loudest: beating, tremolo, rattles, dropouts), ``spectral_flux`` (mean cosine
  distance between successive magnitude spectra over the same frames, leaving out onsets
  (a rise of 3 dB or more): chorus, detuning, noise), ``partial_fluctuation_db`` (how much
  the 6 strongest spectral bins of those frames wobble around their 0.6 s moving average,
  in dB: beating partials of a detuned double, chorus) and ``hum_db`` (power within 0.5 Hz
  of 50 or 60 Hz and their 2nd/3rd harmonics over the power 1-6 Hz around them: mains hum).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from instrunet_core.features import SAMPLE_RATE
from instrunet_core.inputs import check_float_samples, check_sample_rate

__all__ = [
    "SAMPLE_RATE",
    "FEATURE_NAMES",
    "MIN_SECONDS",
    "hnr_frames",
    "hnr",
    "condition_features",
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
)
#: Shortest stretch (seconds) that features are computed for.
MIN_SECONDS = 0.25
_N_FFT = 2048
_HOP = 512
_EPS = 1e-12


def _check(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono, finite, floating-point audio as float64 (the core's input rules: ``InputError``,
    a ``ValueError``)."""
    check_sample_rate(sr, what="condition features")
    return check_float_samples(y, what="condition features", dtype=np.float64)


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
    x = _check(y, sr)
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
    n_fft = 1 << int(np.ceil(np.log2(2 * n_win)))
    wr = np.fft.irfft(np.abs(np.fft.rfft(g, n_fft)) ** 2, n_fft)[:n_win]
    wr = wr / wr[0]

    global_peak = float(np.max(np.abs(x - x.mean()))) if x.size else 0.0
    n_period = int(round(1.0 / (min_pitch * dx)))
    half_period = n_period // 2 + 1
    min_lag = 2
    max_lag = min(int(np.floor(n_win / (2.0 * periods_per_window))) + 2, n_win - 2)

    frames = x[starts[:, None] + idx[None, :]]
    # local mean over one longest period around the centre, as Praat
    lo, hi = max(0, half - half_period), min(n_win, half + half_period + 1)
    frames = frames - frames[:, lo:hi].mean(axis=1, keepdims=True)
    local_peak = np.abs(frames[:, lo:hi]).max(axis=1)
    frames = frames * g[None, :]
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2, n_fft, axis=1)[:, : max_lag + 2]
    r0 = ac[:, 0:1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ac / np.where(r0 > 0, r0, 1.0) / wr[None, : max_lag + 2]
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
        Passed to :func:`hnr_frames`.

    Returns
    -------
    float
    """
    h = hnr_frames(y, sr=sr, **kwargs)
    h = h[np.isfinite(h)]
    return float(h.mean()) if h.size else float("nan")


def _stft_power(x: np.ndarray) -> np.ndarray:
    """Power spectrogram [shape=(frames, 1 + n_fft/2)] of a centred Hann STFT."""
    pad = np.pad(x, _N_FFT // 2)
    n = 1 + (pad.size - _N_FFT) // _HOP
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)
    idx = np.arange(_N_FFT)[None, :] + _HOP * np.arange(n)[:, None]
    return np.abs(np.fft.rfft(pad[idx] * w, axis=1)) ** 2


def _flatness(power: np.ndarray) -> np.ndarray:
    p = np.maximum(power, 1e-10)
    return np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)


def _onsets(env_db: np.ndarray, fps: float) -> list[int]:
    """Frames where the envelope rises by more than 6 dB within 50 ms (at least 0.3 s apart)."""
    lag = max(1, int(round(0.05 * fps)))
    rise = env_db[lag:] - env_db[:-lag]
    gap = int(round(0.3 * fps))
    out: list[int] = [0]
    for i in np.flatnonzero(rise > 6.0) + lag:
        if i - out[-1] >= gap:
            out.append(int(i))
    return out


def _decay(env_db: np.ndarray, fps: float, active: np.ndarray) -> tuple[float, float]:
    """(median decay rate over notes in dB/s, variance of the 0.25 s decay rates in (dB/s)^2)."""
    bounds = [*_onsets(env_db, fps), env_db.size]
    rates: list[float] = []
    local: list[float] = []
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
        rates.append(-float(np.polyfit(t, tail, 1)[0]))
        for s in range(0, tail.size - seg + 1, seg):
            ts = t[s : s + seg]
            local.append(-float(np.polyfit(ts, tail[s : s + seg], 1)[0]))
    rate = float(np.median(rates)) if rates else 0.0
    var = float(np.var(local)) if len(local) >= 2 else 0.0
    return rate, var


def _hum_db(x: np.ndarray, sr: int) -> float:
    """Mains hum: power within 0.5 Hz of 50 or 60 Hz and their 2nd/3rd harmonics over the
    median power 1-6 Hz around them (whole-stretch Hann FFT), dB, the larger of the two."""
    p = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / sr)
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


def condition_features(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> dict[str, float] | None:
    """All condition features of one stretch of mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio (any level; features are level-independent).
    sr : int
        Sample rate; 22,050 Hz is what the classifier was trained on.

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
    x = _check(y, sr)
    if x.size < MIN_SECONDS * sr:
        return None
    peak = float(np.max(np.abs(x)))
    if peak < 1e-4:
        return None
    x = x / peak
    power = _stft_power(x)
    frame_db = 10.0 * np.log10(np.maximum(power.sum(axis=1), _EPS))
    active = frame_db > frame_db.max() - 50.0
    pa = power[active]
    flat = _flatness(pa)
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / sr)
    tot = pa.sum(axis=1) + _EPS
    centroid = float(np.mean((pa * freqs[None, :]).sum(axis=1) / tot))
    hf = float(pa[:, freqs >= 4000.0].sum() / tot.sum())
    quiet = np.argsort(frame_db[active])[: max(1, int(active.sum()) // 4)]
    fps = sr / _HOP
    rate, var = _decay(frame_db, fps, active)
    h = hnr(x, sr=sr) if x.size >= int(0.125 * sr) else float("nan")
    rms = float(np.sqrt(np.mean(x * x)))
    # a clean waveform has ~1 sample at its peak; a clipped one has runs of them
    clip = max(0.0, float(np.mean(np.abs(x) >= 0.999)) - 2.0 / x.size)
    zc = float(np.mean(np.abs(np.diff(np.signbit(x).astype(np.int8)))))
    # sustained part: frames within 30 dB of the loudest
    sus = frame_db > frame_db.max() - 30.0
    k = max(3, int(round(0.3 * fps)) | 1)
    trend = np.convolve(np.pad(frame_db, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    mod = float(np.std((frame_db - trend)[sus])) if sus.sum() >= 3 else 0.0
    mag = np.sqrt(power)
    mag = mag / (np.linalg.norm(mag, axis=1, keepdims=True) + _EPS)
    cos = np.sum(mag[1:] * mag[:-1], axis=1)
    both = sus[1:] & sus[:-1] & (np.diff(frame_db) < 3.0)  # not across onsets
    flux = float(np.mean(1.0 - cos[both])) if both.any() else 0.0
    # partials: the 6 strongest bins of the sustained part; how much their level wobbles
    # around a 0.6 s moving average (beating of a detuned double, chorus)
    part = 0.0
    k6 = max(3, int(round(0.6 * fps)) | 1)
    if sus.sum() >= k6 + 2:
        ps = power[sus]
        top = np.argsort(ps.mean(axis=0))[-6:]
        traj = 10.0 * np.log10(ps[:, top] + ps.max() * 1e-6)
        sm = np.apply_along_axis(
            lambda c: np.convolve(np.pad(c, k6 // 2, mode="edge"), np.ones(k6) / k6, "valid"), 0, traj
        )
        part = float(np.mean(np.std(traj - sm, axis=0)))
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
    }
    return {k: float(v) for k, v in feats.items()}


def feature_vector(features: Mapping[str, float]) -> np.ndarray:
    """The classifier's input: features in :data:`FEATURE_NAMES` order, heavy-tailed ones on log scales.

    Parameters
    ----------
    features : dict
        As returned by :func:`condition_features`.

    Returns
    -------
    np.ndarray [shape=(len(FEATURE_NAMES),), dtype=float32]
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
    ]
    return np.asarray(v, dtype=np.float32)
