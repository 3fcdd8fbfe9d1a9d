"""Waveform augmentation: make clean SoundFont renders sound like real rooms and microphones.

One call of :func:`augment` runs a random chain over a mono clip, in the order a real
signal would meet them:

1. **pitch** - varispeed resampling by a few cents (``soxr``); like a tape-speed change
   it also stretches time by the same tiny ratio (±30 cents = ±1.7 %);
2. **offset** - the onset moves by a few tens of ms (silence in front, or the start cut);
3. **reverb** - ``pedalboard.Reverb`` with random room size, damping and wet/dry mix;
   **room / device impulse responses** (when ``irs`` are given) - convolution with a real
   room's measured response or a device's (dictaphone, phonograph, radio) at a random wet mix;
4. **noise** - white or pink noise at a random SNR (relative to the clip's mean power);
5. **microphone / EQ** - high-pass, low-pass, a peak band and a low or high shelf;
6. **gain** - input level into the "device" stages below;
7. **distortion** - light ``tanh`` drive; **compression** - ``pedalboard.Compressor``;
8. **codec** - ``pedalboard.MP3Compressor`` at a random VBR quality;
9. **production** - ``pedalboard.Chorus`` and a radio band (high-pass and low-pass close
   together), off in the default configuration (the ``production`` preset turns them on).

The output has the input's length, is float32, finite, and is rescaled to peak 1 when an
effect pushed it above 1 (never otherwise, so ``AugmentConfig.none()`` is the identity for
any input within [-1, 1]). Every random number comes from the ``rng`` passed in, and every
pedalboard plugin is created afresh for each call (no state carries over), so the same
generator state gives bit-identical output.

Example::

    rng = np.random.default_rng(0)
    y_aug = augment(y, sr=22050, rng=rng)                       # default chain
    log = []
    y_aug = augment(y, sr=22050, rng=rng, log=log)              # and what was applied
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pedalboard as pb
import soxr

from instrunet_core.audio import load_audio
from instrunet_core.features import DEFAULT_FRONT_END, SAMPLE_RATE
from instrunet_core.inputs import check_float_samples, check_sample_rate

try:  # scipy (a librosa dependency) filters pink noise fastest; numpy's FFT is the fallback
    from scipy.signal import lfilter as _lfilter
except ImportError:  # pragma: no cover
    _lfilter = None

__all__ = [
    "AugmentConfig",
    "PRESETS",
    "CHAINS",
    "CHAIN_RANGES",
    "apply_chain",
    "augment",
    "load_irs",
    "random_chain",
]

Range = tuple[float, float]

# Paul Kellet's "economy" pink filter (±0.5 dB from 9 Hz to Nyquist at 44.1 kHz; close enough at 22.05 kHz).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Per-effect probabilities (``p_*``, each drawn independently) and parameter ranges.

    Ranges are ``(low, high)``; values are drawn uniformly, frequencies log-uniformly.
    The defaults cost about 3-5 ms per 3 s clip (see ``python -m training.augment``).
    """

    # source: pitch (varispeed) and onset offset
    p_pitch: float = 0.5
    pitch_cents: Range = (-30.0, 30.0)
    p_offset: float = 0.3
    offset_ms: Range = (-20.0, 40.0)  # > 0 delays the onset, < 0 cuts the start
    # room
    p_reverb: float = 0.4
    reverb_room_size: Range = (0.05, 0.85)
    reverb_damping: Range = (0.1, 0.9)
    reverb_wet: Range = (0.05, 0.4)
    reverb_dry: Range = (0.6, 1.0)
    p_room_ir: float = 0.3  # only when augment() is given impulse responses
    room_ir_wet: Range = (0.2, 0.9)
    p_device_ir: float = 0.1
    device_ir_wet: Range = (0.3, 1.0)
    p_noise: float = 0.5
    noise_snr_db: Range = (10.0, 45.0)
    p_pink: float = 0.5  # share of the noisy clips that get pink rather than white noise
    # microphone / EQ
    p_highpass: float = 0.3
    highpass_hz: Range = (30.0, 300.0)
    p_lowpass: float = 0.3
    lowpass_hz: Range = (3000.0, 10000.0)
    p_peak_eq: float = 0.4
    peak_hz: Range = (100.0, 8000.0)
    peak_gain_db: Range = (-12.0, 12.0)
    peak_q: Range = (0.5, 3.0)
    p_shelf: float = 0.3  # low or high shelf, half each
    low_shelf_hz: Range = (80.0, 400.0)
    high_shelf_hz: Range = (2000.0, 8000.0)
    shelf_gain_db: Range = (-9.0, 9.0)
    # device
    p_gain: float = 0.5
    gain_db: Range = (-12.0, 6.0)
    p_distortion: float = 0.1
    distortion_drive_db: Range = (2.0, 12.0)
    p_compressor: float = 0.3
    compressor_threshold_db: Range = (-30.0, -8.0)
    compressor_ratio: Range = (1.5, 8.0)
    compressor_attack_ms: Range = (1.0, 30.0)
    compressor_release_ms: Range = (40.0, 300.0)
    p_mp3: float = 0.2
    mp3_vbr_quality: Range = (2.0, 9.0)  # LAME VBR: 0 best .. 9.999 worst
    # production effects, drawn only when their probability is above 0 (so that configs
    # without them keep the random sequence they always had)
    p_chorus: float = 0.0
    chorus_rate_hz: Range = (0.3, 3.0)
    chorus_depth: Range = (0.1, 0.6)
    chorus_mix: Range = (0.2, 0.6)
    p_radio: float = 0.0  # a telephone / AM-radio band: high-pass and low-pass close together
    radio_low_hz: Range = (250.0, 700.0)
    radio_high_hz: Range = (2500.0, 4500.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
                    raise ValueError(f"AugmentConfig.{f.name}={v!r}: a probability must lie in [0, 1]")
            else:
                if len(v) != 2 or not all(math.isfinite(float(x)) for x in v) or float(v[0]) > float(v[1]):
                    raise ValueError(
                        f"AugmentConfig.{f.name}={v!r}: expected a (low, high) range with low <= high"
                    )
                object.__setattr__(self, f.name, (float(v[0]), float(v[1])))
        for name in (
            "highpass_hz",
            "lowpass_hz",
            "peak_hz",
            "low_shelf_hz",
            "high_shelf_hz",
            "chorus_rate_hz",
            "radio_low_hz",
            "radio_high_hz",
        ):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"AugmentConfig.{name}: frequencies must be positive")
        if self.mp3_vbr_quality[0] < 0 or self.mp3_vbr_quality[1] >= 10:
            raise ValueError("AugmentConfig.mp3_vbr_quality must lie in [0, 10)")

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every effect off: :func:`augment` returns its input (as float32) unchanged."""
        off: dict[str, Any] = {f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")}
        return cls(**off)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ranges as two-element lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown augmentation parameters: {sorted(unknown)}")
        kwargs: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in data.items()
        }
        return cls(**kwargs)


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _draw(rng: np.random.Generator, names: Sequence[str], ranges: Sequence[Range]) -> dict[str, float]:
    """One uniform draw from each range, in order: the parameters of one effect, by name."""
    return {k: _uniform(rng, r) for k, r in zip(names, ranges, strict=True)}


def _log_uniform(rng: np.random.Generator, r: Range) -> float:
    return float(math.exp(_uniform(rng, (math.log(r[0]), math.log(r[1])))))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], dtype=y.dtype)])


def _run(plugin: Any, y: np.ndarray, sr: int) -> np.ndarray:
    out = plugin.process(y, float(sr), reset=True)
    out = np.asarray(out, dtype=np.float32)
    if out.ndim > 1:  # pedalboard keeps mono input 1-D, but be safe
        out = out.reshape(-1) if out.shape[0] == 1 else out.mean(axis=0)
    return _fit(out, y.shape[0])


def _hit(rng: np.random.Generator, p: float) -> bool:
    """One Bernoulli draw. Always drawn, so that one effect's probability does not shift the
    other effects' draws."""
    return bool(rng.random() < p)


#: What :func:`augment` reports in ``log``: one dict per effect applied, ``{"effect": name, **params}``.
Log = list[dict[str, Any]]


def _checked_input(y: np.ndarray, sr: int) -> np.ndarray:
    """A float32 copy of mono, finite, floating-point ``y``, by the runtime's input rules
    (:mod:`instrunet_core.inputs`; ``InputError`` is a ``ValueError``)."""
    check_sample_rate(sr, what="augment")
    return check_float_samples(y, what="augment").copy()


def _pitch(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """1. Varispeed by resampling: ``sr * ratio -> sr`` shortens the clip for ratio > 1 (pitch up)."""
    if _hit(rng, c.p_pitch):
        cents = _uniform(rng, c.pitch_cents)
        if cents != 0.0:
            ratio = 2.0 ** (cents / 1200.0)
            x = _fit(np.asarray(soxr.resample(x, sr * ratio, sr, quality="MQ"), dtype=np.float32), x.shape[0])
        log.append({"effect": "pitch", "cents": cents})
    return x


def _offset(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """2. The onset moves: silence in front (later) or the start cut (earlier)."""
    if _hit(rng, c.p_offset):
        n = x.shape[0]
        ms = _uniform(rng, c.offset_ms)
        k = int(round(ms * sr / 1000.0))
        if k > 0:
            x = np.concatenate([np.zeros(min(k, n), dtype=np.float32), x[: max(0, n - k)]])
        elif k < 0:
            x = _fit(x[min(-k, n) :], n)
        log.append({"effect": "offset", "ms": ms, "samples": k})
    return x


def _room(
    x: np.ndarray,
    rng: np.random.Generator,
    c: AugmentConfig,
    sr: int,
    log: Log,
    irs: Sequence[tuple[str, np.ndarray]],
) -> np.ndarray:
    """3. Algorithmic reverb, then measured room and device impulse responses (drawn only when
    some of that use are given, so that the chain without them keeps its random sequence)."""
    if _hit(rng, c.p_reverb):
        ranges = (c.reverb_room_size, c.reverb_damping, c.reverb_wet, c.reverb_dry)
        params = _draw(rng, ("room_size", "damping", "wet_level", "dry_level"), ranges)
        x = _run(pb.Reverb(**params, width=1.0), x, sr)
        log.append({"effect": "reverb", **params})
    for use, p, wet_range in (
        ("room", c.p_room_ir, c.room_ir_wet),
        ("device", c.p_device_ir, c.device_ir_wet),
    ):
        pool = [ir for u, ir in irs if u == use]
        if pool and _hit(rng, p):
            k = int(rng.integers(len(pool)))
            wet = _uniform(rng, wet_range)
            x = _convolve(x, pool[k], wet)
            log.append({"effect": f"{use}_ir", "index": k, "wet": wet})
    return x


def _noise(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """4. White or pink noise at a random SNR relative to the clip's mean power."""
    if _hit(rng, c.p_noise):
        n = x.shape[0]
        snr = _uniform(rng, c.noise_snr_db)
        pink = _hit(rng, c.p_pink)
        noise = _pink_noise(rng, n) if pink else rng.standard_normal(n, dtype=np.float32)
        p_sig = float(np.mean(np.square(x, dtype=np.float64)))
        p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
        if p_sig > 0.0 and p_noise > 0.0:
            x = x + noise * np.float32(math.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0))))
        log.append({"effect": "noise", "color": "pink" if pink else "white", "snr_db": snr})
    return x


def _microphone(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """5. Microphone / EQ: high-pass, low-pass, a peak band, a low or high shelf."""
    nyq = sr / 2.0
    if _hit(rng, c.p_highpass):
        hz = min(_log_uniform(rng, c.highpass_hz), 0.45 * nyq)
        x = _run(pb.HighpassFilter(cutoff_frequency_hz=hz), x, sr)
        log.append({"effect": "highpass", "cutoff_hz": hz})
    if _hit(rng, c.p_lowpass):
        hz = min(_log_uniform(rng, c.lowpass_hz), 0.95 * nyq)
        x = _run(pb.LowpassFilter(cutoff_frequency_hz=hz), x, sr)
        log.append({"effect": "lowpass", "cutoff_hz": hz})
    if _hit(rng, c.p_peak_eq):
        params = {
            "cutoff_frequency_hz": min(_log_uniform(rng, c.peak_hz), 0.95 * nyq),
            "gain_db": _uniform(rng, c.peak_gain_db),
            "q": _uniform(rng, c.peak_q),
        }
        x = _run(pb.PeakFilter(**params), x, sr)
        log.append({"effect": "peak_eq", **params})
    if _hit(rng, c.p_shelf):
        high = _hit(rng, 0.5)
        hz = min(_log_uniform(rng, c.high_shelf_hz if high else c.low_shelf_hz), 0.95 * nyq)
        gain = _uniform(rng, c.shelf_gain_db)
        cls = pb.HighShelfFilter if high else pb.LowShelfFilter
        x = _run(cls(cutoff_frequency_hz=hz, gain_db=gain), x, sr)
        log.append({"effect": "high_shelf" if high else "low_shelf", "cutoff_hz": hz, "gain_db": gain})
    return x


def _gain(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """6. Input level into the device stages."""
    if _hit(rng, c.p_gain):
        db = _uniform(rng, c.gain_db)
        x = x * np.float32(10.0 ** (db / 20.0))
        log.append({"effect": "gain", "gain_db": db})
    return x


def _device(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """7. Device: distortion, then compression."""
    if _hit(rng, c.p_distortion):
        drive = _uniform(rng, c.distortion_drive_db)
        x = _run(pb.Distortion(drive_db=drive), x, sr)
        log.append({"effect": "distortion", "drive_db": drive})
    if _hit(rng, c.p_compressor):
        names = ("threshold_db", "ratio", "attack_ms", "release_ms")
        params = _draw(rng, names, [getattr(c, f"compressor_{k}") for k in names])
        x = _run(pb.Compressor(**params), x, sr)
        log.append({"effect": "compressor", **params})
    return x


def _codec(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """8. MP3 codec (its input must not clip: LAME would wrap or saturate)."""
    if _hit(rng, c.p_mp3):
        q = _uniform(rng, c.mp3_vbr_quality)
        x = _renormalise(x)
        x = _run(pb.MP3Compressor(vbr_quality=q), x, sr)
        log.append({"effect": "mp3", "vbr_quality": q})
    return x


def _production(x: np.ndarray, rng: np.random.Generator, c: AugmentConfig, sr: int, log: Log) -> np.ndarray:
    """9. Production: chorus, then a radio band (each only when its probability is above 0)."""
    if c.p_chorus > 0 and _hit(rng, c.p_chorus):
        params = {
            "rate_hz": _log_uniform(rng, c.chorus_rate_hz),
            "depth": _uniform(rng, c.chorus_depth),
            "mix": _uniform(rng, c.chorus_mix),
        }
        x = _run(pb.Chorus(**params), x, sr)
        log.append({"effect": "chorus", **params})
    if c.p_radio > 0 and _hit(rng, c.p_radio):
        lo = _log_uniform(rng, c.radio_low_hz)
        hi = min(_log_uniform(rng, c.radio_high_hz), 0.95 * sr / 2)
        x = _run(pb.Pedalboard([pb.HighpassFilter(lo), pb.LowpassFilter(hi)]), x, sr)
        log.append({"effect": "radio", "low_hz": lo, "high_hz": hi})
    return x


#: Named configurations for :class:`training.dataset.ExampleSpec` (``augment_preset``).
#: ``production``: what users' producer chains do to a recording (drive, chorus, a radio
#: band, MP3, rooms, a quiet take under noise) more often and harder than the default.
PRESETS: dict[str, AugmentConfig] = {
    "default": AugmentConfig(),
    "production": AugmentConfig(
        p_reverb=0.45,
        noise_snr_db=(3.0, 45.0),
        p_gain=0.6,
        gain_db=(-30.0, 6.0),
        p_distortion=0.2,
        distortion_drive_db=(2.0, 24.0),
        p_mp3=0.25,
        p_chorus=0.2,
        p_radio=0.1,
    ),
}


def _convolve(x: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    """``x`` through impulse response ``ir`` (same rate), mixed ``wet`` : ``1 - wet`` with the dry
    signal; the wet part is scaled to the dry part's RMS. ``scipy.signal.oaconvolve``:
    ``pedalboard.Convolution`` gives the same result but measured about 5x slower here
    (65 ms against 13 ms per 3 s clip with a 1 s response)."""
    from scipy.signal import oaconvolve

    y = oaconvolve(x, ir)[: x.shape[0]].astype(np.float32)
    rx, ry = float(np.sqrt(np.mean(np.square(x)))), float(np.sqrt(np.mean(np.square(y))))
    if ry > 0:
        y *= np.float32(rx / ry)
    return (np.float32(1.0 - wet) * x + np.float32(wet) * y).astype(np.float32)


def load_irs(
    files: Sequence[tuple[str, Any]], *, sr: int, max_s: float = 1.0
) -> list[tuple[str, np.ndarray]]:
    """Impulse responses ``(use, path)`` read as mono at ``sr``, from the direct sound on, at most
    ``max_s`` seconds (a 50 ms fade-out at the cut) and normalised to unit energy. Files are read
    by the core's loader (:func:`instrunet_core.audio.load_audio`: its mixdown and resampler)."""
    out: list[tuple[str, np.ndarray]] = []
    for use, path in files:
        m = load_audio(path, target_sr=sr)
        start = int(np.argmax(np.abs(m) > 0.1 * np.abs(m).max())) if m.size else 0
        m = m[start : start + int(max_s * sr)].copy()
        fade = min(len(m), int(0.05 * sr))
        if fade:
            m[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        energy = float(np.sqrt(np.sum(np.square(m))))
        if energy > 0 and np.all(np.isfinite(m)):
            out.append((use, (m / energy).astype(np.float32)))
    return out


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink (1/f power) noise, float32, unit-ish variance before the SNR scaling."""
    if _lfilter is not None:
        return _lfilter(_PINK_B, _PINK_A, rng.standard_normal(n)).astype(np.float32)
    m = 1 << max(1, (n - 1).bit_length())
    k = np.arange(m // 2 + 1, dtype=np.float64)
    k[0] = np.inf  # no DC
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(m)) / np.sqrt(k), m)[:n].astype(np.float32)


def _renormalise(x: np.ndarray) -> np.ndarray:
    """Scale to peak 1 if (and only if) the peak exceeds 1."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x / np.float32(peak)
    return x


def augment(
    y: np.ndarray,
    *,
    sr: int = SAMPLE_RATE,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),  # noqa: B008 - frozen, so a shared default is safe
    irs: Sequence[tuple[str, np.ndarray]] = (),
    log: Log | None = None,
) -> np.ndarray:
    """Randomly augmented copy of a mono clip.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono floating-point audio, finite.
    sr : int
        Sample rate of ``y`` in Hz.
    rng : np.random.Generator
        Source of every random choice; the same state gives bit-identical output.
    config : AugmentConfig
        Probabilities and ranges; ``AugmentConfig.none()`` returns ``y`` unchanged.
    irs : sequence of (str, np.ndarray [shape=(m,)])
        Measured impulse responses at ``sr`` tagged ``"room"`` or ``"device"``
        (:func:`load_irs`); none by default.
    log : list, optional
        Receives one dict per effect applied, ``{"effect": name, **params}``.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        Finite, peak at most 1 (rescaled to peak 1 only if an effect clipped).

    Notes
    -----
    The chain is the module docstring's nine stages, one function each: ``stage(x, rng, c, sr,
    log) -> x`` draws its numbers from ``rng`` in a fixed order (every probability is drawn even
    when the effect is off), appends one log entry per effect it applies and keeps ``x``'s
    length. NaN/inf are zeroed at the end and the clip renormalised to peak 1 if above.
    """
    x = _checked_input(y, sr)
    if log is None:
        log = []
    if x.shape[0] == 0:
        return x
    c = config
    x = _pitch(x, rng, c, sr, log)
    x = _offset(x, rng, c, sr, log)
    x = _room(x, rng, c, sr, log, irs)
    x = _noise(x, rng, c, sr, log)
    x = _microphone(x, rng, c, sr, log)
    x = _gain(x, rng, c, sr, log)
    x = _device(x, rng, c, sr, log)
    x = _codec(x, rng, c, sr, log)
    x = _production(x, rng, c, sr, log)
    x = _renormalise(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
    return x.astype(np.float32, copy=False)


def _benchmark(n_clips: int = 200, seed: int = 0) -> None:
    import time

    sr = DEFAULT_FRONT_END.sample_rate
    n = DEFAULT_FRONT_END.window_samples
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = (0.9 * np.sin(2 * np.pi * 220 * t) * np.exp(-1.5 * t)).astype(np.float32)
    augment(y, sr=sr, rng=rng)  # warm-up (imports)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(n_clips):
        log: Log = []
        augment(y, sr=sr, rng=rng, log=log)
        for e in log:
            counts[e["effect"]] = counts.get(e["effect"], 0) + 1
    dt = (time.perf_counter() - t0) / n_clips
    print(f"{dt * 1000:.2f} ms per {n / sr:.2f} s clip ({n_clips} clips, default config)")
    print("applied:", ", ".join(f"{k} {v / n_clips:.0%}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    _benchmark()


def _under_noise(x: np.ndarray, noise: np.ndarray, level_db: float, snr_db: float) -> np.ndarray:
    """``x`` taken ``level_db`` down, under ``noise`` ``snr_db`` below it (float32)."""
    x = x * np.float32(10 ** (level_db / 20))
    ps = float(np.mean(np.square(x, dtype=np.float64)))
    pn = float(np.mean(np.square(noise, dtype=np.float64)))
    if ps > 0 and pn > 0:
        x = x + noise * np.float32(math.sqrt(ps / (pn * 10 ** (snr_db / 10))))
    return x.astype(np.float32, copy=False)


def _quiet_take(x: np.ndarray, sr: int) -> np.ndarray:
    """A quiet take: 30 dB down, under pink noise 15 dB below the signal."""
    return _under_noise(x, _pink_noise(np.random.default_rng(0), x.shape[0]), -30.0, 15.0)


#: Fixed producer chains (deterministic) that users run before tagging: the robustness
#: evaluation (:func:`training.evaluate.chain_robustness`) scores how many labels each changes.
CHAINS: dict[str, Any] = {
    "drive": lambda x, sr: _run(
        pb.Pedalboard([pb.Distortion(drive_db=18.0), pb.Compressor(-18.0, 4.0)]), x, sr
    ),
    "chorus": lambda x, sr: _run(pb.Chorus(rate_hz=1.2, depth=0.4, mix=0.5), x, sr),
    "radio": lambda x, sr: _run(
        pb.Pedalboard([pb.HighpassFilter(400.0), pb.LowpassFilter(3400.0), pb.Distortion(drive_db=6.0)]),
        x,
        sr,
    ),
    "mp3": lambda x, sr: _run(pb.MP3Compressor(vbr_quality=7.0), _renormalise(x), sr),
    "reverb": lambda x, sr: _run(pb.Reverb(room_size=0.85, damping=0.3, wet_level=0.4, dry_level=0.7), x, sr),
    "quiet_noisy": _quiet_take,
}


def apply_chain(name: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` through the fixed producer chain ``name`` (:data:`CHAINS`), same length, finite."""
    x = _checked_input(y, sr)
    out = CHAINS[name](x, sr)
    return _renormalise(np.nan_to_num(np.asarray(out, np.float32))).astype(np.float32)


#: The ranges :func:`random_chain` draws each kind of producer chain from (each fixed chain of
#: :data:`CHAINS` is one point of its kind's ranges, so training meets that kind of chain, not
#: that setting).
CHAIN_RANGES: dict[str, dict[str, Range]] = {
    "drive": {"drive_db": (6.0, 24.0), "threshold_db": (-24.0, -10.0), "ratio": (2.0, 6.0)},
    "chorus": {"rate_hz": (0.3, 3.0), "depth": (0.15, 0.6), "mix": (0.25, 0.6)},
    "radio": {"low_hz": (250.0, 700.0), "high_hz": (2500.0, 4500.0), "drive_db": (0.0, 10.0)},
    "mp3": {"vbr_quality": (4.0, 9.5)},
    "reverb": {
        "room_size": (0.4, 0.95),
        "damping": (0.1, 0.6),
        "wet_level": (0.15, 0.5),
        "dry_level": (0.5, 0.9),
    },
    "quiet_noisy": {"level_db": (-40.0, -15.0), "snr_db": (6.0, 25.0)},
}


def random_chain(y: np.ndarray, sr: int, rng: np.random.Generator, *, log: Log | None = None) -> np.ndarray:
    """``y`` through one or two producer chains of the kinds of :data:`CHAINS` (drive, chorus,
    radio band, MP3, reverb, a quiet take under noise), each with parameters drawn from
    :data:`CHAIN_RANGES`, in random order: the invariance copies of ``training.train
    --chain-copies``. Same length, float32, finite, peak at most 1 (rescaled only if above)."""
    x = _checked_input(y, sr)
    if log is None:
        log = []
    kinds = list(CHAIN_RANGES)
    board: list[pb.Plugin]
    for kind in rng.choice(kinds, size=1 + int(rng.random() < 0.35), replace=False):
        r = CHAIN_RANGES[str(kind)]
        if kind == "drive":
            p = {"drive_db": _uniform(rng, r["drive_db"]), "threshold_db": _uniform(rng, r["threshold_db"])}
            p["ratio"] = _uniform(rng, r["ratio"])
            board = [pb.Distortion(drive_db=p["drive_db"])]
            if rng.random() < 0.7:
                board.append(pb.Compressor(p["threshold_db"], p["ratio"]))
            else:  # drawn all the same (the draws stay in step); logged only when applied
                del p["threshold_db"], p["ratio"]
            x = _run(pb.Pedalboard(board), x, sr)
        elif kind == "chorus":
            p = {k: (_log_uniform if k == "rate_hz" else _uniform)(rng, v) for k, v in r.items()}
            x = _run(pb.Chorus(**p), x, sr)
        elif kind == "radio":
            p = {k: (_uniform if k == "drive_db" else _log_uniform)(rng, v) for k, v in r.items()}
            p["high_hz"] = min(p["high_hz"], 0.95 * sr / 2)
            board = [pb.HighpassFilter(p["low_hz"]), pb.LowpassFilter(p["high_hz"])]
            if p["drive_db"] > 1.0:
                board.append(pb.Distortion(drive_db=p["drive_db"]))
            else:  # logged only when applied
                del p["drive_db"]
            x = _run(pb.Pedalboard(board), x, sr)
        elif kind == "mp3":
            p = {"vbr_quality": _uniform(rng, r["vbr_quality"])}
            x = _run(pb.MP3Compressor(vbr_quality=p["vbr_quality"]), _renormalise(x), sr)
        elif kind == "reverb":
            p = _draw(rng, list(r), list(r.values()))
            x = _run(pb.Reverb(**p), x, sr)
        else:  # quiet_noisy: the level falls, a noise floor (pink or white) stays
            p = {"level_db": _uniform(rng, r["level_db"]), "snr_db": _uniform(rng, r["snr_db"])}
            pink = rng.random() < 0.5
            n = x.shape[0]
            noise = _pink_noise(rng, n) if pink else np.asarray(rng.standard_normal(size=(n,)), np.float32)
            x = _under_noise(x, noise, p["level_db"], p["snr_db"])
        log.append({"chain": str(kind), **p})
    return _renormalise(np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=0.0, neginf=0.0)).astype(
        np.float32, copy=False
    )
