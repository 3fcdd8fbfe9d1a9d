"""The one log-mel front end, shared by the runtime and by training.

Everything that turns audio into model input lives here, in numpy alone, so that
the spectrograms a model was trained on and the ones it sees at run time are
computed by the same code. The reference is librosa's
``melspectrogram`` + ``power_to_db(ref=np.max)``; ``tests/test_features.py``
checks parity within 1e-4 on the [0, 1] scale.

Pipeline for one window of mono audio at 22,050 Hz:

1. centred STFT (periodic Hann, ``n_fft=2048``, ``hop_length=512``, zero padding);
2. power spectrum projected on 128 Slaney mel bands (0 Hz to Nyquist);
3. ``10 log10`` relative to the window's maximum, floored ``top_db=80`` below it;
4. scaled to [0, 1] by ``(dB + top_db) / top_db`` (0 is the floor, 1 the peak).

A window shorter than ``window_samples`` is padded with digital silence *before*
the transform, so padding lands on the floor (0), never on the loudest value as
the seed's 0 dB padding did. A window with no energy at all (digital silence)
maps to all zeros.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._threads import blas_limited
from .errors import InputError

__all__ = [
    "FrontEnd",
    "DEFAULT_FRONT_END",
    "mel_filterbank",
    "logmel",
    "window_features",
    "batch_features",
]


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """Parameters of the log-mel front end (all stored in every model manifest).

    Attributes
    ----------
    sample_rate : int
        Rate the audio is resampled to before analysis.
    n_fft : int
        FFT size (and Hann window length) in samples.
    hop_length : int
        Samples between successive frames.
    n_mels : int
        Number of mel bands (model input height).
    fmin, fmax : float
        Frequency range of the mel filterbank in Hz; ``fmax=None`` means Nyquist.
    frames : int
        Frames per model window (model input width).
    top_db : float
        Dynamic range kept below each window's peak, in dB.
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    frames: int = 128
    top_db: float = 80.0
    normalization: str = "db_ref_max_top_db_to_unit"

    def __post_init__(self) -> None:
        _check_front_end(self)

    @property
    def window_samples(self) -> int:
        """Samples that give exactly ``frames`` centred frames (2.949 s by default)."""
        return (self.frames - 1) * self.hop_length

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def fmax_hz(self) -> float:
        return float(self.sample_rate / 2 if self.fmax is None else self.fmax)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["window_samples"] = self.window_samples
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrontEnd:
        """Build from a manifest's ``front_end`` (every value's type and range checked)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"window_samples"}
        if unknown:
            raise InputError(f"unknown front-end parameters: {sorted(str(k)[:40] for k in unknown)[:10]}")
        ws = data.get("window_samples")
        if ws is not None and (isinstance(ws, bool) or not isinstance(ws, int)):
            raise InputError(f"window_samples must be an int, got {_short(ws)}")
        fe = cls(**{k: v for k, v in data.items() if k in names})
        if fe.normalization != DEFAULT_FRONT_END.normalization:
            raise InputError(
                f"front-end normalization {fe.normalization!r} is not supported "
                f"(this runtime implements {DEFAULT_FRONT_END.normalization!r})"
            )
        if "window_samples" in data and int(data["window_samples"]) != fe.window_samples:
            raise InputError(
                f"window_samples={data['window_samples']} disagrees with frames and hop_length "
                f"(expected {fe.window_samples})"
            )
        return fe


#: Bounds of every front-end parameter (checked when a FrontEnd is made, e.g. from a manifest),
#: so that no manifest can make the front end allocate without limit or compute nonsense.
FRONT_END_LIMITS: dict[str, tuple[float, float]] = {
    "sample_rate": (4_000, 192_000),
    "n_fft": (16, 16_384),
    "n_mels": (1, 512),
    "frames": (1, 4_096),
    "top_db": (1.0, 200.0),
}
#: Most samples in one analysis window (60 s at 22,050 Hz).
MAX_WINDOW_SAMPLES = 60 * 22_050


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _int_in(fe: FrontEnd, name: str, lo: float, hi: float) -> int:
    v = getattr(fe, name)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{name} must be an int, got {_short(v)}")
    if not lo <= v <= hi:
        raise InputError(f"{name} must be in [{lo:g}, {hi:g}], got {v}")
    return int(v)


def _num_in(fe: FrontEnd, name: str, lo: float, hi: float) -> float:
    v = getattr(fe, name)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {_short(v)}")
    f = float(v)
    if not (np.isfinite(f) and lo <= f <= hi):
        raise InputError(f"{name} must be in [{lo:g}, {hi:g}], got {_short(v)}")
    return f


def _check_front_end(fe: FrontEnd) -> None:
    """Type and range of every parameter, and their consistency; raises :class:`InputError`."""
    sr = _int_in(fe, "sample_rate", *FRONT_END_LIMITS["sample_rate"])
    n_fft = _int_in(fe, "n_fft", *FRONT_END_LIMITS["n_fft"])
    _int_in(fe, "hop_length", 1, n_fft)
    n_mels = _int_in(fe, "n_mels", *FRONT_END_LIMITS["n_mels"])
    if n_mels > n_fft // 2 + 1:
        raise InputError(f"n_mels={n_mels} exceeds the {n_fft // 2 + 1} frequency bins of n_fft={n_fft}")
    _int_in(fe, "frames", *FRONT_END_LIMITS["frames"])
    _num_in(fe, "top_db", *FRONT_END_LIMITS["top_db"])
    fmin = _num_in(fe, "fmin", 0.0, sr / 2)
    if fe.fmax is not None:
        fmax = _num_in(fe, "fmax", 0.0, sr / 2)
        if fmax <= fmin:
            raise InputError(f"fmax={fe.fmax!r} must be above fmin={fe.fmin!r}")
    elif fmin >= sr / 2:
        raise InputError(f"fmin={fe.fmin!r} must be below Nyquist ({sr / 2:g} Hz)")
    if not isinstance(fe.normalization, str):
        raise InputError(f"normalization must be a string, got {_short(fe.normalization)}")
    if fe.window_samples > MAX_WINDOW_SAMPLES:
        raise InputError(
            f"frames={fe.frames} x hop_length={fe.hop_length} makes a {fe.window_samples}-sample window "
            f"(at most {MAX_WINDOW_SAMPLES})"
        )


DEFAULT_FRONT_END = FrontEnd()

_AMIN = 1e-10


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = f >= min_log_hz
    mels = np.where(log_t, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = m >= min_log_mel
    return np.where(log_t, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


_FILTERBANKS: dict[tuple[int, int, int, float, float], np.ndarray] = {}
_WINDOWS: dict[int, np.ndarray] = {}


def mel_filterbank(fe: FrontEnd = DEFAULT_FRONT_END) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
        Same values as ``librosa.filters.mel(sr=..., n_fft=..., n_mels=...)``.
    """
    key = (fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fe.fmax_hz)
    cached = _FILTERBANKS.get(key)
    if cached is not None:
        return cached
    fftfreqs = np.fft.rfftfreq(fe.n_fft, d=1.0 / fe.sample_rate)
    mel_pts = np.linspace(_hz_to_mel(np.array(fe.fmin)), _hz_to_mel(np.array(fe.fmax_hz)), fe.n_mels + 2)
    mel_f = _mel_to_hz(mel_pts)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : fe.n_mels + 2] - mel_f[: fe.n_mels])
    weights *= enorm[:, None]
    fb = np.ascontiguousarray(weights, dtype=np.float32)
    fb.setflags(write=False)
    _FILTERBANKS[key] = fb
    return fb


_BANDS: dict[tuple[int, int, int, float, float], list[tuple[int, int, int, int, np.ndarray]]] = {}
#: Mel bands per block of the banded projection (16 measured fastest of 8/16/32/64).
_BAND_GROUP = 16


def _mel_bands(fe: FrontEnd) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The filterbank cut into blocks of ``_BAND_GROUP`` mel bands, each with only the FFT bins
    its triangles cover: ``(m0, m1, b0, b1, weights [b1 - b0, m1 - m0])``.

    Each bin feeds at most two bands, so the blocks hold about 17k of the dense matrix's 131k
    weights, and projecting block by block is about ten times faster than one dense product
    (the zeros it skips add nothing: the result differs only by float32 rounding).
    """
    key = (fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fe.fmax_hz)
    cached = _BANDS.get(key)
    if cached is not None:
        return cached
    fb = mel_filterbank(fe)
    nz = fb > 0
    n_bins = fb.shape[1]
    lo = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)
    hi = np.where(nz.any(axis=1), n_bins - nz[:, ::-1].argmax(axis=1), 1)
    out = []
    for m0 in range(0, fe.n_mels, _BAND_GROUP):
        m1 = min(fe.n_mels, m0 + _BAND_GROUP)
        b0, b1 = int(lo[m0:m1].min()), int(hi[m0:m1].max())
        w = np.ascontiguousarray(fb[m0:m1, b0:b1].T)
        w.setflags(write=False)
        out.append((m0, m1, b0, b1, w))
    _BANDS[key] = out
    return out


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window, float32 (frames are windowed in float32, then transformed in float64)."""
    w = _WINDOWS.get(n)
    if w is None:
        w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)
        w.setflags(write=False)
        _WINDOWS[n] = w
    return w


def _check_audio(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        raise InputError(f"{what}: expected floating-point audio, got dtype {y.dtype}")
    if y.dtype != np.float32:
        y = y.astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise InputError(f"{what}: audio contains NaN or infinite samples")
    return y


_local = threading.local()
#: Frames transformed per step inside :func:`_power_mel` (bounds its scratch memory to ~8 MB).
#: 128 measured fastest of 16-256: with 256 the per-step buffers outgrow the CPU's caches and
#: a chunk of 512 frames takes longer (benchmarks/frontend.py times 64, 128 and 256).
_FFT_ROWS = 128
_RFFT_OUT = tuple(int(v) for v in np.__version__.split(".")[:1]) >= (2,)  # rfft(out=...) since numpy 2.0


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-thread buffer reused between calls: a fresh multi-MB array every call costs page
    faults that took longer than the FFT itself."""
    bufs = _local.__dict__.setdefault("bufs", {})
    n = int(np.prod(shape))
    buf = bufs.get(name)
    if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
        buf = bufs[name] = np.empty(n, dtype=dtype)
    return buf[:n].reshape(shape)


def _power_mel(frames_2d: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``frames_2d``: [..., n_frames, n_fft] → mel power [..., n_mels, n_frames].

    Frames are windowed in float32 and transformed in float64: numpy's (pocketfft) float64
    transform is about four times faster than its float32 one for a batch of 2048-point
    frames, and closer to librosa. The power ``re**2 + im**2`` is taken on the spectrum seen
    as interleaved float64 pairs (faster than through ``.real`` and ``.imag``). Frames are
    transformed ``_FFT_ROWS`` at a time in per-thread scratch buffers.
    """
    lead = frames_2d.shape[:-1]
    rows = frames_2d.reshape(-1, fe.n_fft)
    n_bins = fe.n_fft // 2 + 1
    mel = np.empty((rows.shape[0], fe.n_mels), dtype=np.float32)
    hann = _hann(fe.n_fft)
    bands = _mel_bands(fe)
    with blas_limited():
        for i in range(0, rows.shape[0], _FFT_ROWS):
            x = rows[i : i + _FFT_ROWS]
            m = x.shape[0]
            windowed = _scratch("windowed", (m, fe.n_fft), np.float32)
            np.multiply(x, hann, out=windowed)
            wide = _scratch("windowed64", (m, fe.n_fft), np.float64)
            np.copyto(wide, windowed)
            if _RFFT_OUT:
                spec = np.fft.rfft(wide, axis=-1, out=_scratch("spec", (m, n_bins), np.complex128))
            else:  # pragma: no cover - numpy < 2
                spec = np.fft.rfft(wide, axis=-1)
            sq = _scratch("spec_sq", (m, 2 * n_bins), np.float64)
            np.square(spec.view(np.float64), out=sq)
            pairs = sq.reshape(m, n_bins, 2)
            power = _scratch("power", (m, n_bins), np.float32)
            np.add(pairs[..., 0], pairs[..., 1], out=power, casting="same_kind")
            # The mel projection [frames, bins] @ [bins, mels] on the library's own BLAS thread
            # budget (instrunet_core._threads), band block by band block (see _mel_bands).
            out = mel[i : i + m]
            for m0, m1, b0, b1, w in bands:
                np.matmul(power[:, b0:b1], w, out=out[:, m0:m1])
    return np.swapaxes(mel.reshape(*lead, fe.n_mels), -1, -2)


def _to_unit(mel: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Power mel [..., n_mels, n_frames] → dB re. per-item max → [0, 1]."""
    axes = (-2, -1)
    peak = mel.max(axis=axes, keepdims=True)
    log_spec = 10.0 * np.log10(np.maximum(mel, _AMIN))
    log_spec -= 10.0 * np.log10(np.maximum(peak, _AMIN))
    out = np.clip((log_spec + fe.top_db) / fe.top_db, 0.0, 1.0).astype(np.float32, copy=False)
    # Digital silence: no energy anywhere → the floor, not a flat "peak" image.
    silent = peak <= _AMIN
    if np.any(silent):
        out = np.where(silent, np.float32(0.0), out)
    return out


def _frame(y: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Centred, zero-padded framing of [..., n] → [..., 1 + n // hop, n_fft] (a view)."""
    pad = fe.n_fft // 2
    widths = [(0, 0)] * (y.ndim - 1) + [(pad, pad)]
    yp = np.pad(y, widths, mode="constant")
    win = np.lib.stride_tricks.sliding_window_view(yp, fe.n_fft, axis=-1)
    return win[..., :: fe.hop_length, :]


def logmel(y: np.ndarray, *, fe: FrontEnd = DEFAULT_FRONT_END) -> np.ndarray:
    """Log-mel spectrogram of mono audio, scaled to [0, 1].

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono floating-point audio at ``fe.sample_rate``.
    fe : FrontEnd
        Front-end parameters.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n // hop_length), dtype=float32]

    Examples
    --------
    >>> import numpy as np
    >>> from instrunet_core.features import logmel
    >>> t = np.arange(22050) / 22050
    >>> S = logmel(np.sin(2 * np.pi * 440 * t).astype(np.float32))
    >>> S.shape, float(S.max())
    ((128, 44), 1.0)
    """
    y = _check_audio(y, "logmel")
    if y.ndim != 1:
        raise InputError(f"logmel: expected mono audio of shape (n,), got shape {y.shape}")
    return _to_unit(_power_mel(_frame(y, fe), fe), fe)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    if y.shape[-1] >= n:
        return y[..., :n]
    widths = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
    return np.pad(y, widths, mode="constant")


def window_features(y: np.ndarray, *, fe: FrontEnd = DEFAULT_FRONT_END) -> np.ndarray:
    """Model input for one window: exactly ``(n_mels, frames)``.

    Audio longer than ``fe.window_samples`` is cut to its start; shorter audio is padded
    with silence (which lands on the floor value 0).

    Returns
    -------
    np.ndarray [shape=(n_mels, frames), dtype=float32]
    """
    y = _check_audio(y, "window_features")
    if y.ndim != 1:
        raise InputError(f"window_features: expected mono audio of shape (n,), got shape {y.shape}")
    return batch_features(y[None, :], fe=fe)[0]


def batch_features(windows: np.ndarray, *, fe: FrontEnd = DEFAULT_FRONT_END, chunk: int = 8) -> np.ndarray:
    """Model inputs for a batch of windows.

    Parameters
    ----------
    windows : np.ndarray [shape=(batch, n)]
        Mono windows; each is cut or silence-padded to ``fe.window_samples``.
    chunk : int
        Windows transformed at once (bounds the temporary STFT memory).

    Returns
    -------
    np.ndarray [shape=(batch, n_mels, frames), dtype=float32]
    """
    windows = _check_audio(windows, "batch_features")
    if windows.ndim != 2:
        raise InputError(f"batch_features: expected shape (batch, n), got shape {windows.shape}")
    windows = _fit(windows, fe.window_samples)
    out = np.empty((windows.shape[0], fe.n_mels, fe.frames), dtype=np.float32)
    for i in range(0, windows.shape[0], chunk):
        frames = _frame(windows[i : i + chunk], fe)
        out[i : i + chunk] = _to_unit(_power_mel(frames, fe), fe)[..., : fe.frames]
    return out
