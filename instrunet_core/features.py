"""The one log-mel front end: parameters, the transform, dB scaling, levels and the only
windowing path, shared by the runtime, export and training.

Everything that turns audio into model input lives here, in numpy alone, so that the
spectrograms a model was trained on and the ones it sees at run time are computed by the same
code. The reference is librosa's ``melspectrogram`` + ``power_to_db(ref=np.max)``;
``tests/test_features.py`` checks parity within 1e-4 on the [0, 1] scale.

Pipeline for one window of mono audio at 22,050 Hz:

1. centred STFT (periodic Hann, ``n_fft=2048``, ``hop_length=512``, zero padding);
2. power spectrum projected on 128 Slaney mel bands (0 Hz to Nyquist);
3. ``10 log10`` relative to the window's maximum, floored ``top_db=80`` below it;
4. scaled to [0, 1] by ``(dB + top_db) / top_db`` (0 is the floor, 1 the peak).

A window shorter than ``window_samples`` is padded with digital silence *before*
the transform, so padding lands on the floor (0), never on the loudest value as
the seed's 0 dB padding did. A window with no energy at all (digital silence)
maps to all zeros.

Two ways in, one transform: :func:`batch_features` takes windows one by one (training and
export use it, and it is the reference); :class:`WindowStream` takes a stream and cuts it into
windows on a grid of STFT frames, so that overlapping windows share their frames (each frame's
FFT and mel projection computed once for the stream). Both use the same power-mel projection
(:func:`_power_mel`) and the same per-window dB scaling (:func:`_scale_to_unit`), and agree
within float32 rounding (tested). :class:`WindowStream` is the only place windows are cut:
the :class:`~instrunet_core.inference.Classifier`, export's parity windows and
:func:`window_audio` all go through it.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .inputs import check_float_samples, check_hop

__all__ = [
    "FrontEnd",
    "release_scratch",
    "DEFAULT_FRONT_END",
    "SAMPLE_RATE",
    "DEFAULT_HOP_SECONDS",
    "DEFAULT_BATCH_SIZE",
    "SILENCE_DB",
    "LEVEL_BLOCK",
    "block_power",
    "mel_filterbank",
    "logmel",
    "window_features",
    "batch_features",
    "power_features",
    "rms_db",
    "scratch",
    "rfft_into",
    "irfft_into",
    "WindowStream",
    "window_audio",
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
#: Most seconds in one analysis window (at the manifest's rate).
MAX_WINDOW_SECONDS = 60


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
    most = MAX_WINDOW_SECONDS * sr
    if fe.window_samples > most:
        raise InputError(
            f"frames={fe.frames} x hop_length={fe.hop_length} makes a {fe.window_samples}-sample window "
            f"(at most {most}: {MAX_WINDOW_SECONDS} s)"
        )


DEFAULT_FRONT_END = FrontEnd()
#: The rate every packaged model and the training corpus use (Hz).
SAMPLE_RATE: int = DEFAULT_FRONT_END.sample_rate
#: Seconds between window starts unless a caller says otherwise (snapped to whole frames).
DEFAULT_HOP_SECONDS = 1.5
#: Windows per batch unless a caller says otherwise: the windows whose features are computed
#: together from shared frames (and one job of the classifier's worker threads).
DEFAULT_BATCH_SIZE = 16
#: Windows whose RMS is below this many dB re. full scale are silent (they never vote).
SILENCE_DB: float = -60.0

#: Smallest power (dB floor ``10 log10(_AMIN)`` = -100 dB).
_AMIN = 1e-10
#: dB value of a frame with no energy (``10 log10(amin)``).
_DB_FLOOR = float(10.0 * np.log10(_AMIN))


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


_local = threading.local()
#: Frames transformed per step inside :func:`_power_mel` (bounds its scratch memory to ~8 MB).
#: 128 measured fastest of 16-256: with 256 the per-step buffers outgrow the CPU's caches and
#: a chunk of 512 frames takes longer (benchmarks/frontend.py times 64, 128 and 256).
_FFT_ROWS = 128
_RFFT_OUT = tuple(int(v) for v in np.__version__.split(".")[:1]) >= (2,)  # rfft(out=...) since numpy 2.0


def rfft_into(a: np.ndarray, out: np.ndarray, *, n: int | None = None, axis: int = -1) -> np.ndarray:
    """``np.fft.rfft(a, n, axis)``, written into ``out`` where numpy can (2.0 on: no new array
    each call), else into a new array; returns the result either way."""
    if _RFFT_OUT:
        return np.fft.rfft(a, n, axis=axis, out=out)
    return np.fft.rfft(a, n, axis=axis)  # pragma: no cover - numpy < 2


def irfft_into(a: np.ndarray, out: np.ndarray, *, n: int | None = None, axis: int = -1) -> np.ndarray:
    """``np.fft.irfft(a, n, axis)``, into ``out`` where numpy can (as :func:`rfft_into`)."""
    if _RFFT_OUT:
        return np.fft.irfft(a, n, axis=axis, out=out)
    return np.fft.irfft(a, n, axis=axis)  # pragma: no cover - numpy < 2


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-thread buffer reused between calls: a fresh multi-MB array every call costs page
    faults that took longer than the FFT itself.

    The buffer named ``name`` in the calling thread, grown when it is too small; its contents
    are whatever the last user left. Every module of a thread shares the names: code outside
    this module prefixes its own (``"condition.spec"``), and a buffer is used only until the
    next call that asks for the same name.

    Returns
    -------
    np.ndarray [shape=shape, dtype=dtype]
    """
    bufs = _local.__dict__.setdefault("bufs", {})
    n = int(np.prod(shape))
    buf = bufs.get(name)
    if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
        buf = bufs[name] = np.empty(n, dtype=dtype)
    return buf[:n].reshape(shape)


def release_scratch() -> int:
    """Let go of the calling thread's :func:`scratch` buffers (the front end's FFT buffers, about
    6.5 MB once a window has been transformed, and the condition analyzer's); returns the bytes
    let go. A thread keeps them between calls, for speed, until it ends: a host whose long-lived
    pool threads each ran an analysis once can call this in each (docs/inference.md). The next
    call in the thread makes them again."""
    bufs = _local.__dict__.pop("bufs", {})
    return int(sum(b.nbytes for b in bufs.values()))


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
    for i in range(0, rows.shape[0], _FFT_ROWS):
        x = rows[i : i + _FFT_ROWS]
        m = x.shape[0]
        # windowed in float32, written out as float64 in the same pass (the same numbers as
        # a float32 product copied to float64)
        wide = scratch("windowed64", (m, fe.n_fft), np.float64)
        np.multiply(x, hann, out=wide, dtype=np.float32, casting="same_kind")
        spec = rfft_into(wide, scratch("spec", (m, n_bins), np.complex128))
        sq = scratch("spec_sq", (m, 2 * n_bins), np.float64)
        np.square(spec.view(np.float64), out=sq)
        pairs = sq.reshape(m, n_bins, 2)
        power = scratch("power", (m, n_bins), np.float32)
        np.add(pairs[..., 0], pairs[..., 1], out=power, casting="same_kind")
        _project_mel(power, mel[i : i + m], bands)
    return np.swapaxes(mel.reshape(*lead, fe.n_mels), -1, -2)


#: Most multiply-adds (M x N x K) in one matrix product of the front end: OpenBLAS runs a
#: product of at most 65,536 x GEMM_MULTITHREAD_THRESHOLD (4 by default) on the calling thread,
#: so products this small never start BLAS threads, whatever the host set. The library thus
#: leaves numpy's BLAS settings alone (they are process-wide), its products never fight
#: onnxruntime's or the host's threads for the cores, and every thread computes the same numbers.
MAX_PRODUCT = 1 << 18


def _project_mel(
    power: np.ndarray, out: np.ndarray, bands: list[tuple[int, int, int, int, np.ndarray]]
) -> None:
    """The mel projection [frames, bins] @ [bins, mels] into ``out`` [frames, mels], band block by
    band block (see :func:`_mel_bands`), in products of at most :data:`MAX_PRODUCT`
    multiply-adds: on the calling thread, the same numbers on every thread."""
    n = power.shape[0]
    for m0, m1, b0, b1, w in bands:
        step = max(1, MAX_PRODUCT // w.size)
        for i in range(0, n, step):
            np.matmul(power[i : i + step, b0:b1], w, out=out[i : i + step, m0:m1])


def _to_db(mel: np.ndarray) -> np.ndarray:
    """Power mel → dB (``10 log10``, floored at ``_AMIN``), float32."""
    return (10.0 * np.log10(np.maximum(mel, _AMIN))).astype(np.float32, copy=False)


def _scale_to_unit(db: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """dB mel [..., a, b] → relative to each item's maximum over its last two axes, floored
    ``top_db`` below it, scaled to [0, 1]; in place (the same operations in the same order,
    without a temporary per step). Digital silence (no energy anywhere) maps to the floor, not
    to a flat "peak" image."""
    peak = db.max(axis=(-2, -1), keepdims=True)
    db -= peak
    db += fe.top_db
    db /= fe.top_db
    np.clip(db, 0.0, 1.0, out=db)
    db[peak[..., 0, 0] <= _DB_FLOOR] = 0.0
    return db


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
    y = check_float_samples(y, what="logmel")
    return _scale_to_unit(_to_db(_power_mel(_frame(y, fe), fe)), fe)


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
    y = check_float_samples(y, what="window_features")
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
    windows = check_float_samples(windows, what="batch_features", ndim=2)
    windows = _fit(windows, fe.window_samples)
    out = np.empty((windows.shape[0], fe.n_mels, fe.frames), dtype=np.float32)
    for i in range(0, windows.shape[0], chunk):
        frames = _frame(windows[i : i + chunk], fe)
        out[i : i + chunk] = _scale_to_unit(_to_db(_power_mel(frames, fe)[..., : fe.frames]), fe)
    return out


def power_features(power: np.ndarray, *, fe: FrontEnd = DEFAULT_FRONT_END) -> np.ndarray:
    """Model input for one window from its power spectrogram, for code that has already taken
    the window's STFT (the condition analyzer's features take the same one): the same mel
    projection, dB and scaling as :func:`window_features`, without a second transform.

    Parameters
    ----------
    power : np.ndarray [shape=(frames, 1 + n_fft // 2)]
        ``|X|**2`` of the window's centred, zero-padded, periodic-Hann STFT at ``fe.n_fft`` and
        ``fe.hop_length`` (the frames of :func:`window_features`; at least ``fe.frames`` of them,
        the first ``fe.frames`` are used).

    Returns
    -------
    np.ndarray [shape=(n_mels, frames), dtype=float32]
        What :func:`window_features` gives for that window, within float32 rounding.

    Raises
    ------
    InputError
        Wrong shape, or NaN or infinite values.
    """
    p = np.asarray(power)
    n_bins = fe.n_fft // 2 + 1
    if p.ndim != 2 or p.shape[1] != n_bins or p.shape[0] < fe.frames:
        raise InputError(f"power_features: expected shape (>= {fe.frames}, {n_bins}), got {np.shape(power)}")
    p = np.ascontiguousarray(p[: fe.frames], dtype=np.float32)
    if not np.all(np.isfinite(p)):
        raise InputError("power_features: power contains NaN or infinite values")
    mel = np.empty((fe.frames, fe.n_mels), dtype=np.float32)
    _project_mel(p, mel, _mel_bands(fe))
    return _scale_to_unit(_to_db(np.ascontiguousarray(mel.T)), fe)


# ---------------------------------------------------------------------------- levels
#: Samples per evidence block: the unit of a stream's sounding seconds, of window levels and of
#: the level track (the time grid of a timeline: 23 ms at 22,050 Hz).
LEVEL_BLOCK = 512
_EV_BLOCK = LEVEL_BLOCK


@functools.lru_cache(maxsize=8)
def _line_basis(n: int) -> np.ndarray:
    """Orthonormal basis [shape=(n, 2), float32] of the constants and straight lines over n samples."""
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return np.stack([np.full(n, 1.0 / np.sqrt(n)), t / np.sqrt(t @ t)], axis=1).astype(np.float32)


def _mean_square(blocks: np.ndarray) -> np.ndarray:
    """Power of each row of ``blocks`` [shape=(m, n)] about its own least-squares straight line,
    in float64: the level of a block's sound. A constant offset (DC) or a drift slower than a
    block (a ramp) is no sound, so DC alone reads as digital silence instead of a loud note
    (3 s of DC at 0.5 once came out "brass, 0.83"). Blocks of 1 or 2 samples have no sound of
    their own (a line fits them).

    Computed in float32 as fast as a plain mean square: the rows are first taken about their
    first sample, so an offset does not swamp the sums (at DC 0.9 a -60 dB sound is measured
    within 0.001 dB of float64).
    """
    x = np.asarray(blocks, dtype=np.float32)
    n = x.shape[-1]
    if n < 3:
        return np.zeros(x.shape[:-1])
    x = x - x[..., :1]
    energy = np.einsum("...i,...i->...", x, x).astype(np.float64)
    basis = _line_basis(n)
    rows = x.reshape(-1, n)
    proj = np.empty((rows.shape[0], 2), np.float32)
    step = max(1, MAX_PRODUCT // (2 * n))  # (products on the calling thread, as _project_mel's)
    for i in range(0, rows.shape[0], step):
        np.matmul(rows[i : i + step], basis, out=proj[i : i + step])
    fitted = np.sum(np.square(proj.reshape(*x.shape[:-1], 2), dtype=np.float64), axis=-1)
    return np.maximum(energy - fitted, 0.0) / n


def block_power(blocks: np.ndarray) -> np.ndarray:
    """Power of each row of ``blocks`` [shape=(m, n)] about its own least-squares straight line
    (float64): how the core measures the level of each 512-sample block (:data:`LEVEL_BLOCK`),
    so that DC and a drift slower than a block count as no sound. For plugins that must agree
    with the core on what is sound (``instrunet-condition``).
    """
    return _mean_square(blocks)


def _segment_power(seg: np.ndarray) -> float:
    """Power of a stretch of audio of any length: the sample-weighted mean of its 512-sample
    blocks' powers (:func:`_mean_square`; the last block may be shorter)."""
    n = seg.shape[0]
    full = n - n % _EV_BLOCK
    blocks = _mean_square(seg[:full].reshape(-1, _EV_BLOCK)) if full else np.zeros(0)
    tail = float(_mean_square(seg[None, full:])[0]) if n > full else 0.0
    return _pooled_power(blocks, tail, n - full)


def _pooled_power(blocks: np.ndarray, tail: float, tail_n: int) -> float:
    """The sample-weighted mean power of whole 512-sample blocks (their powers ``blocks``) and a
    last block of ``tail_n`` samples (power ``tail``); 0 for no samples."""
    n = blocks.size * _EV_BLOCK + tail_n
    total = float(np.sum(blocks)) * _EV_BLOCK if blocks.size else 0.0
    return (total + tail * tail_n) / n if n else 0.0


def _ms_db(ms: Any) -> Any:
    """Mean square → RMS level in dBFS (digital silence: -200)."""
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


def rms_db(y: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMS level in dB re. full scale (1.0); digital silence gives -200 dB."""
    y = np.asarray(y, dtype=np.float32)
    ms = np.mean(np.square(y, dtype=np.float64), axis=axis) if y.shape[axis] else np.zeros(())
    return _ms_db(ms)


# ---------------------------------------------------------------------------- the stream
def end_window_frame(total: int, fe: FrontEnd = DEFAULT_FRONT_END) -> int | None:
    """The STFT frame on which the classifier's last window starts when audio is left after its
    last full window: the first frame from which a window reaches the last of ``total`` samples
    (so it holds at most ``hop_length - 1`` samples of padding); ``None`` when the stream is
    shorter than a window (its one window starts at 0, zero-padded). An evidence grid (the
    windows :meth:`~instrunet_core.inference.Classifier.refine` reads in between) adds no window
    past its last full one: the classifier's last window covers the end.

    The last window used to start on the hop's grid, zero-padded past the end (the seed's
    framing): a window whose sound stops into a second or more of silence reads as a plucked
    note, so pink noise, "other" everywhere else, ended on 0.5 s of "guitar".
    """
    if total < fe.window_samples:
        return None
    return -(-(total - fe.window_samples) // fe.hop_length)


#: Frames transformed at once (bounds the temporary FFT memory to a few MB).
_FRAME_CHUNK = 512


class _Tape:
    """A growable array along axis 0 addressed by absolute index (amortised O(1) appends).

    Holds items ``[base, base + n)``; :meth:`drop_before` forgets the oldest ones.
    """

    def __init__(self, row_shape: tuple[int, ...], base: int = 0, dtype: Any = np.float32) -> None:
        self._data = np.zeros((1024, *row_shape), dtype=dtype)
        self._off = 0  # index in _data of item `base`
        self.base = base
        self.n = 0

    @property
    def end(self) -> int:
        return self.base + self.n

    def append(self, x: np.ndarray) -> None:
        m = x.shape[0]
        if m == 0:
            return
        if self._off + self.n + m > self._data.shape[0]:
            cap = self._data.shape[0]
            if self.n + m <= cap // 2:
                # At most half full: move the kept items to the front of the same buffer (a fresh
                # buffer on every wrap cost page faults). They start past the half the new items
                # leave free (off > cap - n - m >= n), so the move never overlaps itself (which
                # would cost numpy a temporary copy).
                self._data[: self.n] = self._data[self._off : self._off + self.n]
            else:
                new = np.empty(
                    (max(2 * cap, 2 * (self.n + m)), *self._data.shape[1:]), dtype=self._data.dtype
                )
                new[: self.n] = self._data[self._off : self._off + self.n]
                self._data = new
            self._off = 0
        self._data[self._off + self.n : self._off + self.n + m] = x
        self.n += m

    def view(self, a: int, b: int) -> np.ndarray:
        """Items ``[a, b)``; past the end, zeros (only used once the stream has ended)."""
        if a < self.base:
            raise AssertionError(f"internal: item {a} was dropped (oldest kept {self.base})")
        if b <= self.end:
            return self._data[self._off + a - self.base : self._off + b - self.base]
        out = np.zeros((b - a, *self._data.shape[1:]), dtype=self._data.dtype)
        have = max(0, self.end - a)
        if have:
            out[:have] = self._data[self._off + a - self.base : self._off + self.n]
        return out

    def drop_before(self, a: int) -> None:
        k = min(max(0, a - self.base), self.n)
        self._off += k
        self.base += k
        self.n -= k

    def restart(self, base: int) -> None:
        """Forget every item; the next append is item ``base``."""
        self._off, self.base, self.n = 0, base, 0


#: ``view(a, b)``: items ``[a, b)`` of a stream (audio samples or dB mel frames) by absolute index.
_View = Callable[[int, int], np.ndarray]
#: A batch of windows: ``(window index, real samples)`` for each.
Ready = list[tuple[int, int]]


class WindowStream:
    """The only windowing path: mono samples at the front end's rate in, analysis windows out.

    Windows of ``fe.window_samples`` (2.949 s, 128 frames) start every :attr:`hop_samples`:
    the hop is **snapped to a whole number of STFT frames** (512 samples; the default 1.5 s
    becomes 65 frames = 1.5093 s), so that adjacent windows lie on one frame grid and share
    their STFT frames. The centred STFT of a window zero-pads its edges, so the two frames at
    each end of a window see padding rather than the neighbouring audio: these edge frames are
    recomputed per window with the window's own padding, and the dB scaling is relative to each
    window's peak, so every window's features equal :func:`batch_features` of its samples
    within float32 rounding.

    A full window is ready as soon as its last sample is in; at the end of the stream
    (``final``) audio after the last full window gets one more window, **aligned to the end**
    (:func:`end_window_frame`) rather than zero-padded past it. Audio shorter than a window
    gets one zero-padded window.

    The stream also measures levels: the mean square of every 512-sample evidence block, from
    which come :attr:`sounding_samples` (the blocks at or above :data:`SILENCE_DB`) and each
    window's RMS (:meth:`levels`).

    Memory is bounded: the stream keeps one window and one hop of audio and of frames plus what
    the last :meth:`push` brought, once the caller has :meth:`advance`-d past the windows it took (and a
    :attr:`keeper`, when one is set, what it keeps within its own bound).

    Parameters
    ----------
    fe : FrontEnd
    hop : float, optional
        Seconds between window starts (default :data:`DEFAULT_HOP_SECONDS`), checked by
        :func:`~instrunet_core.inputs.check_hop`.
    share_frames : bool
        Keep the dB mel frames shared by windows (for :meth:`features`); ``False`` when only the
        windows' audio is wanted (:meth:`windows`: a waveform-input model, export's parity).
    phases : sequence of int
        Where in each hop windows start, in STFT frames from the hop's start, ascending, each
        less than the hop (default ``(0,)``: one window per hop). More than one phase puts
        windows in between another grid's: :meth:`~instrunet_core.inference.Classifier.refine`
        reads with phases that skip 0, so its windows fall between the classifier's.

    Notes
    -----
    One stream per thread. :meth:`detached` hands a batch's work to another thread.
    """

    def __init__(
        self,
        fe: FrontEnd = DEFAULT_FRONT_END,
        hop: float | None = None,
        *,
        share_frames: bool = True,
        phases: Sequence[int] = (0,),
    ) -> None:
        self.fe = fe
        h = check_hop(DEFAULT_HOP_SECONDS if hop is None else hop, sample_rate=fe.sample_rate)
        #: Seconds between window starts after snapping, in STFT frames (at least 1) and samples.
        self.hop_frames = max(1, int(round(h / fe.hop_length)))
        self.hop_samples = self.hop_frames * fe.hop_length
        self.phases = tuple(int(p) for p in phases)
        if (
            not self.phases
            or any(not 0 <= p < self.hop_frames for p in self.phases)
            or (list(self.phases) != sorted(set(self.phases)))
        ):
            raise InputError(f"phases: ascending frames in [0, {self.hop_frames}), got {self.phases}")
        self._H = fe.hop_length
        self._pad = fe.n_fft // 2
        self._win = fe.window_samples
        self._F = fe.frames
        self._share = share_frames
        # Frames whose centred n_fft span leaves the window (they see its zero padding).
        self._left = [j for j in range(self._F) if j * self._H - self._pad < 0]
        self._right = [
            j
            for j in range(self._F)
            if j * self._H - self._pad + fe.n_fft > self._win and j not in self._left
        ]
        self._inner = (len(self._left), self._F - len(self._right))  # [lo, hi) shared frames
        #: What a second reading with other phases needs, kept from this one
        #: (:class:`instrunet_core.refine.EvidenceStore`, which fills it); ``None`` unless asked for.
        self.keeper: Any = None
        self.reset()

    def reset(self) -> None:
        """Forget the stream: audio, frames and levels."""
        # Audio; indices < 0 are the centred STFT's left padding.
        self._audio = _Tape((), base=-self._pad)
        self._audio.append(np.zeros(self._pad, dtype=np.float32))
        self.total = 0
        self._frames = _Tape((self.fe.n_mels,), base=0)  # dB mel frames, shared by windows
        self._next_win = 0
        self._last_full_end = -1
        #: ``(k, frame)``: the last window, aligned to the end of the stream, starts on ``frame``
        self._end_window: tuple[int, int] | None = None
        self._ev_pos = 0
        # Mean square of each evidence block (block i: samples [512 i, 512 i + 512)).
        self._block_ms = _Tape((), base=0, dtype=np.float64)
        # The level track: every block's level in dBFS, the last (partial) one at the end;
        # kept until the caller forgets it (forget_levels), the time axis of a timeline.
        self._levels = _Tape((), base=0, dtype=np.float32)
        self.sounding_samples = 0
        if self.keeper is not None:
            self.keeper.clear()

    # ------------------------------------------------------------------ input
    def push(self, y: np.ndarray) -> None:
        """Append mono float32 samples at ``fe.sample_rate`` (checked by the caller)."""
        if y.size == 0:
            return
        self._audio.append(y)
        self.total += y.shape[0]
        n_blocks = (self.total - self._ev_pos) // _EV_BLOCK
        if n_blocks:
            seg = self._audio.view(self._ev_pos, self._ev_pos + n_blocks * _EV_BLOCK).reshape(
                n_blocks, _EV_BLOCK
            )
            ms = _mean_square(seg)
            self._block_ms.append(ms)
            if self.keeper is not None:
                self.keeper.add_blocks(ms)
            db = _ms_db(ms)
            self._levels.append(db.astype(np.float32))
            self.sounding_samples += _EV_BLOCK * int(np.count_nonzero(db >= SILENCE_DB))
            self._ev_pos += n_blocks * _EV_BLOCK

    def finish(self) -> None:
        """The stream has ended: count the last, partial evidence block."""
        if self._ev_pos < self.total:
            seg = self._audio.view(self._ev_pos, self.total)
            tail = _mean_square(seg[None, :])[0]
            if self.keeper is not None:
                self.keeper.add_tail(float(tail))
            db = _ms_db(tail)
            self._levels.append(np.array([db], dtype=np.float32))
            if db >= SILENCE_DB:
                self.sounding_samples += seg.shape[0]
            self._ev_pos = self.total

    # ------------------------------------------------------------------ levels
    @property
    def level_blocks(self) -> int:
        """Blocks of the level track so far (the last one partial after :meth:`finish`)."""
        return self._levels.end

    def level_db(self, first: int = 0) -> np.ndarray:
        """The level track from block ``first`` (or the oldest kept): each block's RMS in dBFS.

        Returns
        -------
        np.ndarray [shape=(m,), dtype=float32]
        """
        a = max(int(first), self._levels.base)
        return self._levels.view(a, max(a, self._levels.end)).copy()

    def forget_levels(self, before: int) -> None:
        """Drop the level track's blocks before block ``before`` (bounded memory for endless streams)."""
        self._levels.drop_before(int(before))

    # ------------------------------------------------------------------ windows
    def start(self, k: int) -> int:
        """First sample of window ``k``."""
        return self.start_frame(k) * self._H

    def start_frame(self, k: int) -> int:
        """First STFT frame of window ``k`` (its frame ``j`` is global frame ``start_frame(k) + j``)."""
        end = self._end_window
        if end is not None and k == end[0]:
            return end[1]
        cycle, phase = divmod(k, len(self.phases))
        return cycle * self.hop_frames + self.phases[phase]

    def n_ready(self) -> int:
        """Full windows that could be taken now."""
        last = self.total - self._win  # the latest start of a full window
        if last < 0:
            return 0
        cycles, rest = divmod(last, self.hop_samples)
        n = cycles * len(self.phases) + sum(1 for p in self.phases if p * self._H <= rest)
        return max(0, n - self._next_win)

    def ready(self, limit: int, *, final: bool = False) -> Ready:
        """``(window index, real samples)`` of at most ``limit`` windows that can be taken now.

        Full windows as soon as their last sample is in; with ``final`` (the stream has ended),
        one window for audio after the last full window (:func:`end_window_frame`): aligned to
        the end on the classifier's grid, none on an evidence grid, zero-padded when the stream is
        shorter than a window.
        """
        return self._walk(self._next_win, self._last_full_end, self.total, limit, final=final)

    def _walk(self, k: int, covered: int, total: int, limit: float, *, final: bool) -> Ready:
        """:meth:`ready` from window ``k`` on, ``covered`` samples covered so far, of a stream
        of ``total`` samples (so far). Shared with a store of evidence that ends a stream
        without reading it again (:meth:`instrunet_core.refine.EvidenceStore.windows`)."""
        out: Ready = []
        while len(out) < limit:
            s = self.start(k)
            if s + self._win <= total:
                out.append((k, self._win))
                covered = s + self._win
            else:
                # the end of a stream no window reached: a window aligned to it (also when the
                # hop is longer than a window and the next one would start past the end)
                if final and covered < total:
                    end = end_window_frame(total, self.fe)
                    if end is None:  # shorter than a window: one zero-padded window, at 0
                        # (none on an evidence grid: there is nothing in between to settle, and
                        # a window of its tail alone, even a silent one, pulled the note's
                        # probability down and made the answer depend on the hop: an audit)
                        if s < total and self.phases == (0,):
                            out.append((k, total - s))
                    elif self.phases == (0,):  # the classifier's grid (an evidence grid adds none)
                        self._end_window = (k, end)
                        out.append((k, total - end * self._H))
                break
            k += 1
        return out

    def advance(self, ready: Ready) -> None:
        """The windows in ``ready`` are taken (their features computed, or their work
        :meth:`detached`): drop audio, frames and evidence blocks that no later window needs."""
        for k, n in ready:
            # the last window (aligned to the end, or padded) covers the rest
            self._last_full_end = self.start(k) + n if n == self._win else self.total
        self._next_win = ready[-1][0] + 1
        # Kept from one hop before the next window: the last window, aligned to the end of the
        # stream, may start there (one hop of audio and frames more, about 1.5 s).
        s_next = max(0, self.start(self._next_win) - self.hop_samples)
        self._block_ms.drop_before(s_next // _EV_BLOCK)
        if not self._share:  # no stored frames: keep the audio of the next window on
            self._audio.drop_before(max(self._audio.base, min(s_next, self._ev_pos, self._audio.end)))
            return
        first_frame = max(0, self.start_frame(self._next_win) - self.hop_frames) + self._inner[0]
        if self._frames.end < first_frame:  # hop longer than a window, or batches that made their own frames
            self._frames.restart(first_frame)
        else:
            self._frames.drop_before(first_frame)
        keep_from = min(s_next - self._pad, self._frames.end * self._H - self._pad, self._ev_pos)
        keep_from = max(self._audio.base, min(keep_from, self._audio.end))
        if self.keeper is not None:
            self.keeper.collect(self, drop_before=keep_from)
        self._audio.drop_before(keep_from)

    def levels(self, ready: Ready) -> np.ndarray:
        """Level (dBFS) of the real samples of each window in ``ready``: the RMS of its sound, the
        mean of its 512-sample evidence blocks' powers (each about its own straight line: DC and
        slow drift excluded, :func:`_mean_square`), from the stream's blocks when the window is
        made of whole blocks (the default front end's windows always are), else from its audio.

        Returns
        -------
        np.ndarray [shape=(B,), dtype=float64]
        """
        out = np.empty(len(ready), dtype=np.float64)
        for b, (k, n) in enumerate(ready):
            s = self.start(k)
            first, last = s // _EV_BLOCK, (s + n) // _EV_BLOCK  # whole blocks [first, last)
            whole = n > 0 and s % _EV_BLOCK == 0 and n % _EV_BLOCK == 0
            if whole and self._block_ms.base <= first and last <= self._block_ms.end:
                ms = float(np.mean(self._block_ms.view(first, last)))
            else:
                ms = _segment_power(self._audio.view(s, s + max(1, n)))
            out[b] = _ms_db(ms)
        return out

    def features(self, ready: Ready) -> np.ndarray:
        """Model input of the windows in ``ready`` from the shared frames (computing the frames
        they need that the stream lacks).

        Returns
        -------
        np.ndarray [shape=(B, n_mels, frames), dtype=float32]
        """
        first, last = self._frame_range(ready)
        if self._frames.end < first:  # hop longer than a window: skip the unused frames
            self._frames.restart(first)
        new = self._frames_db(self._frames.end, last, self._audio.view)
        if self.keeper is not None:
            self.keeper.put_frames(self._frames.end, new)
        self._frames.append(new)
        return self._features(ready, self._frames.view, self._audio.view)

    def windows(self, ready: Ready) -> np.ndarray:
        """Audio of the windows in ``ready``, zero-padded past the end of the stream.

        Returns
        -------
        np.ndarray [shape=(B, window_samples), dtype=float32]
        """
        return self._windows(ready, self._audio.view)

    def detached(self, ready: Ready) -> Callable[[], np.ndarray]:
        """:meth:`features` (or, without shared frames, :meth:`windows`) of full windows as a
        function of a copy of their audio, to run on another thread: it reads nothing that the
        stream changes. It computes the frames it shares with the previous batch again (about
        6 % more FFTs at the default hop), so that threads share no state."""
        s0 = self.start(ready[0][0])
        seg = self._audio.view(s0, self.start(ready[-1][0]) + self._win).copy()

        def audio_view(a: int, b: int) -> np.ndarray:
            return seg[a - s0 : b - s0]

        if not self._share:
            return lambda: self._windows(ready, audio_view)

        keeper = self.keeper
        generation = None if keeper is None else keeper.generation  # the stream this job belongs to

        def job() -> np.ndarray:
            first, last = self._frame_range(ready)
            frames = self._frames_db(first, last, audio_view)
            if keeper is not None:
                keeper.put_frames(first, frames, generation)
            return self._features(ready, lambda a, b: frames[a - first : b - first], audio_view)

        return job

    # ------------------------------------------------------------------ internals
    def _frame_range(self, ready: Ready) -> tuple[int, int]:
        """Global frames ``[first, last)`` shared by the windows in ``ready`` (edge frames excluded)."""
        lo, hi = self._inner
        return self.start_frame(ready[0][0]) + lo, self.start_frame(ready[-1][0]) + hi

    def _frames_db(self, f0: int, f1: int, audio_view: _View) -> np.ndarray:
        """dB mel of global frames ``[f0, f1)`` (frame ``f`` centred on sample ``f * hop_length``),
        transformed ``_FRAME_CHUNK`` frames at a time.

        Returns
        -------
        np.ndarray [shape=(f1 - f0, n_mels), dtype=float32]
        """
        fe = self.fe
        out = np.empty((max(0, f1 - f0), fe.n_mels), dtype=np.float32)
        for a in range(f0, f1, _FRAME_CHUNK):
            b = min(f1, a + _FRAME_CHUNK)
            seg = audio_view(a * self._H - self._pad, (b - 1) * self._H - self._pad + fe.n_fft)
            framed = np.lib.stride_tricks.sliding_window_view(seg, fe.n_fft)[:: self._H]
            out[a - f0 : b - f0] = _to_db(_power_mel(framed, fe)).T
        return out

    def _windows(self, ready: Ready, audio_view: _View) -> np.ndarray:
        W = np.zeros((len(ready), self._win), dtype=np.float32)
        for b, (k, n) in enumerate(ready):
            s = self.start(k)
            W[b, :n] = audio_view(s, s + n)
        return W

    def _features(self, ready: Ready, frames_view: _View, audio_view: _View) -> np.ndarray:
        """Model input of the windows in ``ready``, from their shared dB frames
        (``frames_view(a, b)``: global frames ``[a, b)``) and their audio (``audio_view``).

        Returns
        -------
        np.ndarray [shape=(B, n_mels, frames), dtype=float32]
        """
        return self.assemble(ready, frames_view, self.edge_db(ready, audio_view))

    @property
    def edge_frames(self) -> list[int]:
        """The frames of a window that see its own zero padding (recomputed per window): the
        :attr:`left_edge_frames`, then the :attr:`right_edge_frames`."""
        return self._left + self._right

    @property
    def left_edge_frames(self) -> list[int]:
        """The edge frames at a window's start."""
        return list(self._left)

    @property
    def right_edge_frames(self) -> list[int]:
        """The edge frames at a window's end."""
        return list(self._right)

    @property
    def inner_frames(self) -> tuple[int, int]:
        """A window's frames ``[lo, hi)`` that it shares with the stream's other windows."""
        return self._inner

    @property
    def next_window(self) -> int:
        """The first window not taken yet."""
        return self._next_win

    @property
    def held_from(self) -> int:
        """The oldest sample the stream still holds."""
        return self._audio.base

    def samples(self, a: int, b: int) -> np.ndarray:
        """Samples ``[a, b)`` the stream holds (zeros past its end once it has ended)."""
        return self._audio.view(a, b)

    def frames_db(self, f0: int, f1: int) -> np.ndarray:
        """dB mel of global frames ``[f0, f1)`` from the audio the stream holds.

        Returns
        -------
        np.ndarray [shape=(f1 - f0, n_mels), dtype=float32]
        """
        return self._frames_db(f0, f1, self._audio.view)

    def edge_region(self, k: int, j: int) -> tuple[int, int]:
        """Samples ``[a, b)`` of window ``k`` that its edge frame ``j`` reads (within the window)."""
        s = self.start(k)
        a = s + j * self._H - self._pad
        return max(a, s), min(a + self.fe.n_fft, s + self._win)

    def edge_db(self, ready: Ready, audio_view: _View, edges: Sequence[int] | None = None) -> np.ndarray:
        """dB mel of the edge frames (default :attr:`edge_frames`) of the windows in ``ready``,
        each with the window's own zero padding.

        Returns
        -------
        np.ndarray [shape=(B, len(edges), n_mels), dtype=float32]
        """
        fe = self.fe
        edges = self.edge_frames if edges is None else list(edges)
        B = len(ready)
        if not edges:
            return np.zeros((B, 0, fe.n_mels), dtype=np.float32)
        edge_frames = np.zeros((B, len(edges), fe.n_fft), dtype=np.float32)
        for b, (k, _n) in enumerate(ready):
            for e, j in enumerate(edges):
                a = self.start(k) + j * self._H - self._pad
                a0, b0 = self.edge_region(k, j)
                if b0 > a0:
                    edge_frames[b, e, a0 - a : b0 - a] = audio_view(a0, b0)
        return _to_db(_power_mel(edge_frames, fe)).swapaxes(-1, -2)

    def assemble(self, ready: Ready, frames_view: _View, edge_db: np.ndarray) -> np.ndarray:
        """Model input of the windows in ``ready`` from their shared dB frames and their edge
        frames' dB mel (:meth:`edge_db`), scaled per window as :func:`batch_features` does.

        Returns
        -------
        np.ndarray [shape=(B, n_mels, frames), dtype=float32]
        """
        fe = self.fe
        lo, hi = self._inner
        X = np.empty((len(ready), self._F, fe.n_mels), dtype=np.float32)
        for b, (k, _n) in enumerate(ready):
            g = self.start_frame(k)
            X[b, lo:hi] = frames_view(g + lo, g + hi)
        edges = self.edge_frames
        if edges:
            X[:, edges] = edge_db
        return np.ascontiguousarray(_scale_to_unit(X, fe).swapaxes(1, 2))


def window_audio(
    blocks: Iterable[np.ndarray],
    *,
    fe: FrontEnd = DEFAULT_FRONT_END,
    hop: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The analysis windows of a stream, a batch at a time: the windows a
    :class:`~instrunet_core.inference.Classifier` with the same ``hop`` analyses.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(m,), dtype=float32]
        Mono audio at ``fe.sample_rate`` (:func:`instrunet_core.audio.iter_blocks`).
    hop : float, optional
        Seconds between window starts (default :data:`DEFAULT_HOP_SECONDS`, snapped to whole frames).
    batch_size : int
        Most windows per yielded batch.

    Yields
    ------
    starts : np.ndarray [shape=(B,), dtype=int64]
        First sample of each window.
    windows : np.ndarray [shape=(B, window_samples), dtype=float32]
        The last one, when audio is left after the last full window, aligned to the end (zero-padded
        by less than one STFT hop; :func:`end_window_frame`); for audio shorter than a window, one
        zero-padded window.
    """
    stream = WindowStream(fe, hop, share_frames=False)

    def take(final: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while ready := stream.ready(batch_size, final=final):
            yield np.array([stream.start(k) for k, _ in ready], dtype=np.int64), stream.windows(ready)
            stream.advance(ready)

    for block in blocks:
        stream.push(block)
        yield from take(False)
    stream.finish()
    yield from take(True)
