"""Input normalisation: the one home of what audio and settings instrunet accepts, and how any
audio becomes mono samples at the front end's rate.

Every entry point that takes audio or an analysis setting calls these functions: the decoders
(:mod:`instrunet_core.audio`), the :class:`~instrunet_core.inference.Classifier` behind
``Model.predict``, :func:`~instrunet_core.analyze` and the CLI, the front end, the plugins
(pedalboard adapters, condition analyzer) and training's augmentation. So a value is refused the
same way wherever it comes in, and there is one channel limit, one mixdown and one resampler.

Each check raises :class:`~instrunet_core.errors.InputError` (an argument or array is unusable;
it is also a ``ValueError``) or :class:`~instrunet_core.errors.DecodeError` (a file's header is),
with a message that names the source and the allowed range.

The bounds exist so that no input can make the runtime allocate or compute without limit: a
1 Hz header would make the resampler produce 22,050 samples per input sample, a hop of a
microsecond one window per output sample.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from typing import Any

import numpy as np
import soxr

from .errors import DecodeError, InputError, warn

__all__ = [
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
    "MIN_HOP_SECONDS",
    "MAX_HOP_SECONDS",
    "MAX_BLOCK_SAMPLES",
    "MAX_STREAM_BYTES",
    "MAX_THREADS",
    "MAX_AMPLITUDE",
    "RESAMPLE_QUALITY",
    "check_sample_rate",
    "check_channels",
    "check_hop",
    "check_seconds",
    "check_count",
    "check_threads",
    "check_path",
    "check_audio_array",
    "check_amplitude",
    "check_float_samples",
    "as_float_audio",
    "frames_first",
    "to_mono",
    "block_to_mono",
    "mix_down",
    "mix_down_int",
    "resampler",
    "resampler_holdback",
]

#: Lowest sample rate accepted (Hz), from an argument or a file header.
MIN_SAMPLE_RATE: int = 1_000
#: Highest sample rate accepted (Hz).
MAX_SAMPLE_RATE: int = 1_000_000
#: Most channels accepted, from an array or a file header. An array's channel axis is a guess
#: (the shorter axis, or a stream block's second one), and a block wider than this is almost
#: surely ``(channels, n)`` (Pedalboard's layout) given the other way round.
MAX_CHANNELS: int = 64
#: Shortest hop between analysis windows (seconds): 100 windows per second of audio.
MIN_HOP_SECONDS: float = 0.01
#: Longest hop between analysis windows (seconds).
MAX_HOP_SECONDS: float = 3600.0
#: Most samples (frames × channels) decoded or resampled at once; bounds every block's memory.
MAX_BLOCK_SAMPLES: int = 1 << 22
#: Most bytes read from a stream that cannot seek (a pipe, a FIFO, stdin) before decoding it.
MAX_STREAM_BYTES: int = 1 << 30
#: Most threads one setting may ask for (onnxruntime's intra- and inter-op threads, a
#: classifier's workers). Past the cores extra threads only cost memory (each reserves a stack):
#: an unbounded ``--threads 100000`` started 32,423 threads and took 16.8 GB.
MAX_THREADS: int = 256
#: Largest float sample magnitude accepted (200 dB above full scale). Float audio belongs in
#: [-1, 1], but floats holding unscaled integers (up to 2**31) classify the same, the front end
#: being scale-invariant; far beyond, squares overflow float32 (1e30 gave NaN features).
MAX_AMPLITUDE: float = 1e10
#: soxr quality of every resampling to the front end's rate.
RESAMPLE_QUALITY = "HQ"


def _as_float(x: Any, error: Exception) -> float:
    """``x`` as a float when it is a real number (not a bool, not a string), else raise ``error``."""
    if isinstance(x, numbers.Number) and not isinstance(x, (bool, np.bool_)):
        try:
            return float(x)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            pass
    raise error


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def check_sample_rate(value: Any, *, what: str, header: bool = False) -> int:
    """A usable sample rate as ``int``.

    Parameters
    ----------
    value : int or float
        An integral number of Hz in [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`]
        (``44100.0`` is accepted; ``True``, ``"44100"``, ``44100.5`` are not).
    what : str
        Source named in the message (a file name or ``"array"``).
    header : bool
        The rate comes from a file header: errors are :class:`DecodeError`.

    Returns
    -------
    int

    Raises
    ------
    InputError, DecodeError
    """
    err = DecodeError if header else InputError
    origin = "the file header says a sample rate of" if header else "sample rate"
    if value is None:
        raise InputError(f"{what}: sample_rate is required for array input")
    sr = _as_float(value, err(f"{what}: {origin} {value!r} is not a number of Hz (need an int)"))
    if not math.isfinite(sr) or sr != int(sr):
        raise err(f"{what}: {origin} {value!r} is not a whole number of Hz")
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise err(
            f"{what}: {origin} {int(sr)} Hz, outside the supported range "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return int(sr)


def check_channels(n: int, *, what: str, header: bool = False) -> int:
    """A channel count in [1, :data:`MAX_CHANNELS`]."""
    err = DecodeError if header else InputError
    if not 1 <= int(n) <= MAX_CHANNELS:
        raise err(f"{what}: {int(n)} channels, outside the supported range 1..{MAX_CHANNELS}")
    return int(n)


def _seconds(value: Any, *, name: str, what: str) -> float:
    s = _as_float(value, InputError(f"{_prefix(what)}{name} must be a number of seconds, got {value!r}"))
    if not math.isfinite(s):
        raise InputError(f"{_prefix(what)}{name} must be a finite number of seconds, got {value!r}")
    return s


def check_seconds(value: Any, *, name: str, what: str = "") -> float:
    """A duration option: a finite number of seconds > 0 (``True``, ``"3"``, NaN, inf refused).

    Raises
    ------
    InputError
        Naming ``name`` and the value.
    """
    s = _seconds(value, name=name, what=what)
    if not s > 0:
        raise InputError(f"{_prefix(what)}{name} must be more than 0 seconds, got {value!r}")
    return s


def check_hop(hop: Any, *, sample_rate: int, what: str = "") -> int:
    """Hop between window starts, seconds → samples at ``sample_rate``.

    Parameters
    ----------
    hop : float
        Seconds in [:data:`MIN_HOP_SECONDS`, :data:`MAX_HOP_SECONDS`].
    sample_rate : int
        Rate the windows are cut at (the front end's).

    Returns
    -------
    int
        Samples, at least 1.
    """
    h = _seconds(hop, name="hop", what=what)
    if not MIN_HOP_SECONDS <= h <= MAX_HOP_SECONDS:
        raise InputError(
            f"{_prefix(what)}hop must be between {MIN_HOP_SECONDS:g} and {MAX_HOP_SECONDS:g} seconds, got {hop!r}"
        )
    return max(1, int(round(h * sample_rate)))


def check_count(
    value: Any, *, name: str, minimum: int = 1, maximum: int | None = None, what: str = "", unit: str = ""
) -> int:
    """An integer option (a count of windows, workers, threads, samples) in [``minimum``, ``maximum``].

    ``True`` and ``2.0`` are refused: a count is an ``int`` (or a numpy integer).

    Raises
    ------
    InputError
        Naming ``name``, the value and the allowed range.
    """
    bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum
    if bad or (maximum is not None and value > maximum):
        kind = f" ({unit})" if unit else ""
        want = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge int"
        raise InputError(f"{_prefix(what)}{name} must be an int {want}{kind}, got {shown}")
    return int(value)


def check_flag(value: Any, *, name: str, what: str = "") -> bool:
    """``True`` or ``False`` (numpy's bools too): ``"no"`` or ``None`` would count as a choice
    the caller did not make.

    Raises
    ------
    InputError
        Anything else.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{_prefix(what)}{name} must be True or False, got {value!r}")
    return bool(value)


def check_threads(value: Any, *, name: str, minimum: int = 1, unit: str = "") -> int:
    """A thread count in [``minimum``, :data:`MAX_THREADS`] (see :func:`check_count`)."""
    return check_count(value, name=name, minimum=minimum, maximum=MAX_THREADS, unit=unit)


def _plain(text: str) -> str:
    """``text`` when it is written as numbers are on a command line: ASCII, no ``_`` (Python's
    ``float`` and ``int`` take ``1_5`` for 15 and full-width digits: ``--hop 1_5``, a slip for
    1.5, ran with a hop ten times as long, an environment audit); else a ``ValueError``."""
    if "_" in text or not text.isascii():
        raise ValueError(text)
    return text


def plain_float(text: str) -> float:
    """``float(text)`` of a plain number (:func:`_plain`): ``ValueError`` for ``1_5`` too."""
    return float(_plain(text))


def plain_int(text: str) -> int:
    """``int(text)`` of a plain number (:func:`_plain`): ``ValueError`` for ``1_0`` too."""
    return int(_plain(text))


def is_seconds(value: Any) -> bool:
    """Whether a record's ``value`` (a hop, read back from JSON) is a number of seconds: an int or
    float (not a bool), finite and above 0 (an integer of hundreds of digits, which float() cannot
    take, is not: a fuzzing audit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return 0 < float(value) < math.inf
    except OverflowError:
        return False


def path_problem(name: str) -> str | None:
    """What keeps the operating system from taking ``name`` as a path (``"holds a NUL byte"``,
    ``"cannot be encoded"``: a lone surrogate), ``None`` when nothing does (:func:`check_path`)."""
    if "\x00" in name:
        return "holds a NUL byte"
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return "cannot be encoded"
    return None


def check_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, once the operating system can take it.

    Raises
    ------
    InputError
        It holds a NUL byte (no file name can: ``os.stat`` would raise a bare ``ValueError``),
        or a character the file system's encoding cannot take (a lone surrogate, which no name
        read from the system holds: ``os.stat`` would raise a bare ``UnicodeEncodeError``).
    """
    name = os.fspath(path)
    problem = path_problem(name)
    if problem == "holds a NUL byte":
        raise InputError(f"{name}: a path cannot hold a NUL byte")
    if problem is not None:
        shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InputError(f"{shown}: not a file name this system can encode (a lone surrogate?)")
    return name


def check_audio_array(y: Any, *, what: str = "array") -> np.ndarray:
    """Check an audio array's dtype and shape (not its values).

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        Integer (``int8``-``int64``, ``uint8``-``uint64``) or float (``float16``-``float64``)
        samples. For 2-D input the shorter axis is the channel axis, at most
        :data:`MAX_CHANNELS` long.

    Returns
    -------
    np.ndarray
        ``y`` itself (as an ndarray).

    Raises
    ------
    InputError
        Other dtypes (bool, complex, object, strings), other ranks, empty audio, too many channels.
    """
    if not isinstance(y, np.ndarray):
        raise InputError(f"{what}: audio must be a numpy array, got {type(y).__name__}")
    if y.dtype.kind not in "iuf" or y.dtype.kind == "b":
        raise InputError(f"{what}: unsupported sample dtype {y.dtype} (need int or float)")
    if y.ndim not in (1, 2):
        raise InputError(f"{what}: expected audio of shape (n,) or (n, channels), got shape {y.shape}")
    if y.size == 0:
        raise InputError(f"{what}: audio is empty (shape {y.shape})")
    if y.ndim == 2:
        check_channels(min(y.shape), what=what)
    return y


def check_float_samples(y: Any, *, what: str, ndim: int = 1, dtype: Any = np.float32) -> np.ndarray:
    """Finite floating-point samples of rank ``ndim``: mono audio ``(n,)``, or windows ``(batch, n)``.

    For the functions that take audio already decoded and mixed (the front end, a waveform
    model's windows, the condition features, training's augmentation), where integers or
    channels would be a caller's mistake rather than a format to convert.

    Returns
    -------
    np.ndarray [dtype=dtype]
        ``y`` converted (a copy only when the dtype differs).

    Raises
    ------
    InputError
        Not floating point, another rank, NaN or infinite samples.
    """
    y = np.asarray(y)
    if y.ndim != ndim:
        want = "mono audio of shape (n,)" if ndim == 1 else "shape (batch, n)"
        raise InputError(f"{what}: expected {want}, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise InputError(f"{what}: expected floating-point audio, got dtype {y.dtype}")
    check_amplitude(y, what=what)  # before the cast: 1e300 in float64 would become inf in float32
    return y.astype(dtype, copy=False)


def check_amplitude(y: np.ndarray, *, what: str, error: type[Exception] = InputError) -> None:
    """Float samples finite and within :data:`MAX_AMPLITUDE` (one pass over ``y``).

    Raises
    ------
    InputError (or ``error``)
        NaN or infinite samples, or samples beyond the bound, naming the peak.
    """
    if y.size == 0:
        return
    peak = float(np.max(np.abs(y)))
    if not math.isfinite(peak):
        raise error(f"{what}: audio contains NaN or infinite samples")
    if peak > MAX_AMPLITUDE:
        raise error(
            f"{what}: samples reach {peak:.3g}; float audio is expected within [-1, 1] "
            f"(at most {MAX_AMPLITUDE:.0e} is accepted)"
        )


def as_float_audio(y: np.ndarray, *, what: str = "array") -> np.ndarray:
    """Integer or float samples → float32; integers scaled by their full-scale value.

    ``int16`` is divided by 32768, ``int32`` by 2**31, ``uint8`` is centred on 128.
    Raises :class:`InputError` for non-numeric dtypes and NaN/inf samples.
    """
    y = np.asarray(y)
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise InputError(f"{what}: unsupported sample dtype {y.dtype} (need int or float)")
    if y.dtype.kind == "i":
        y = (y.astype(np.float64) / float(-np.iinfo(y.dtype).min)).astype(np.float32)
    elif y.dtype.kind == "u":
        half = float(np.iinfo(y.dtype).max // 2 + 1)
        y = ((y.astype(np.float64) - half) / half).astype(np.float32)
    else:
        check_amplitude(y, what=what)  # before the cast: 1e300 in float64 would become inf in float32
        y = y.astype(np.float32, copy=False)
    return y


#: What a sample rate may be given as: an int, a whole float (``44100.0``) or a numpy number
#: (:func:`check_sample_rate` checks the value).
SampleRate = int | float | np.integer[Any] | np.floating[Any]

#: Scaled integer samples that never pass this (-96 dBFS: 16-bit values in an int32 array reach
#: 2**-16 at most) are taken for a narrower type's values in a wider one.
_NARROW_PEAK = 2.0**-16


def warn_narrow_values(y: np.ndarray, what: str, *, whole: bool) -> None:
    """Warn when an integer array holds what looks like 16-bit values in a wider type
    (``np.array(list_of_ints)`` and ``.astype(int)`` give int64): scaled by the type's full
    scale, a loud recording became about 1e-15 and was answered "silence" with confidence 1.
    ``whole``: ``y`` is a whole recording (int32 too is judged: 32-bit audio that never passes
    -96 dBFS is not a recording), else one block of a stream (only 64-bit integers, which no
    audio format holds: a quiet passage of real 32-bit audio is no sign of anything)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.dtype.itemsize < (4 if whole else 8) or not y.size:
        return
    full = float(np.iinfo(y.dtype).max) + 1.0
    centre = full / 2 if y.dtype.kind == "u" else 0.0
    peak = max(abs(float(y.max()) - centre), abs(float(y.min()) - centre)) / (full / 2 if centre else full)
    if 0.0 < peak <= _NARROW_PEAK:
        warn(
            f"{what}: {y.dtype} samples are scaled by their type's full scale, and these never pass "
            "-96 dBFS of it: 16-bit values held in a wider integer type (np.array of Python ints "
            "and .astype(int) give int64)? If so, convert with y.astype(np.int16); floats in "
            "[-1, 1] are taken as they are"
        )


def frames_first(y: np.ndarray) -> np.ndarray:
    """A whole piece of audio as ``(n,)`` or ``(n, channels)`` (a view): for 2-D input the
    shorter axis is the channels (soundfile's layout is ``(n, channels)``, librosa's and
    Pedalboard's ``(channels, n)``; both work)."""
    if y.ndim == 2 and y.shape[0] < y.shape[1]:
        return y.T
    return y


def mix_down(y: np.ndarray) -> np.ndarray:
    """Mean over the channels of float32 ``(n, channels)`` audio, one channel at a time: numpy's
    ``mean(axis=1)`` over a few interleaved channels is a slow strided reduction (about 8.5 ms
    for 10 s of 44.1 kHz stereo; this takes about 1.5 ms).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    chans = y.T
    out = chans[0].astype(np.float32, copy=True)
    for c in chans[1:]:
        out += c
    if len(chans) > 1:
        out *= np.float32(1.0 / len(chans))
    return out


def mix_down_int(block: np.ndarray, full_scale: float) -> np.ndarray:
    """Integer ``(n, channels)`` samples → mono float32 in [-1, 1): channels summed in float32
    one at a time, then one scale by ``1 / (full_scale * channels)`` (a decoder's integer
    blocks, read as integers because libsndfile does that much faster than converting)."""
    out = block[:, 0].astype(np.float32)
    for c in range(1, block.shape[1]):
        out += block[:, c]
    out *= np.float32(1.0 / (full_scale * block.shape[1]))
    return out


def to_mono(y: np.ndarray, *, what: str = "array") -> np.ndarray:
    """Mix a whole piece of audio to mono by the mean over channels.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        Any int or float dtype; for 2-D input the shorter axis is the channels
        (:func:`frames_first`).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    y = np.asarray(y)
    return block_to_mono(frames_first(y) if y.ndim == 2 else y, what=what)


def block_to_mono(block: Any, *, what: str = "block") -> np.ndarray:
    """One block of a stream → mono float32.

    A stream's blocks are ``(n,)`` or ``(n, channels)`` whatever their length (a short block
    may have fewer samples than channels, so the shorter-axis rule of whole pieces cannot
    apply); a block wider than :data:`MAX_CHANNELS` is refused with a hint to transpose it.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    InputError
        ``block`` is not a numpy array (bytes, a list: ``np.asarray`` would read a file's bytes
        as 8-bit samples), or has an unusable dtype, shape or values.
    """
    if not isinstance(block, np.ndarray):
        raise InputError(
            f"{what}: audio must be a numpy array, got {type(block).__name__} (an encoded file's "
            "bytes go to classify() as io.BytesIO(data))"
        )
    warn_narrow_values(block, what, whole=False)
    y = as_float_audio(block, what=what)
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise InputError(f"{what}: expected shape (n,) or (n, channels), got {y.shape}")
    if y.shape[1] == 0:
        raise InputError(f"{what}: no channels (shape {y.shape}); expected (n,) or (n, channels)")
    if y.shape[1] > MAX_CHANNELS:
        raise InputError(
            f"{what}: shape {y.shape} would be {y.shape[1]} channels (at most {MAX_CHANNELS}); blocks are "
            "(n, channels): transpose (channels, n) audio such as Pedalboard's with block.T"
        )
    return mix_down(y) if y.shape[0] else np.zeros(0, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def resampler_holdback(rate_in: int, rate_out: int) -> float:
    """The most seconds of input :func:`resampler`'s stream holds back before its output catches
    up (soxr returns output in chunks, later at low input rates): 0 at equal rates, 42 ms
    from 44.1 kHz and 38 ms from 48 kHz to 22,050 Hz, 0.12 s from 8 kHz, 0.27 s from 4 kHz,
    0.97 s from 1 kHz (8 samples' margin included). Measured once per pair of rates by feeding the stream silence 8 samples at a
    time (a few ms to a few tens of ms), to within those 8 samples; the resampler's output does
    not depend on what it is fed in this."""
    if rate_in == rate_out:
        return 0.0
    rs = resampler(rate_in, rate_out)
    step = 8
    block = np.zeros(step, np.float32)
    fed = out = 0
    worst = 0.0
    for _ in range(max(16384, rate_in // 2) // step):
        out += rs.resample_chunk(block, last=False).shape[0]
        fed += step
        worst = max(worst, fed / rate_in - out / rate_out)
    return worst + step / rate_in


def resampler(rate_in: int, rate_out: int) -> Any:
    """The stream resampler from ``rate_in`` to ``rate_out`` Hz (mono float32, quality
    :data:`RESAMPLE_QUALITY`), or ``None`` when the rates are equal.

    One per stream: ``resample_chunk(block, last=...)`` keeps its state between blocks, so where
    a stream is cut into blocks never changes the result.
    """
    if rate_in == rate_out:
        return None
    return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)
