"""Input validation: the one place that decides which rates, lengths, hops and arrays are usable.

Every entry point that accepts audio or analysis settings (the
:class:`~instrunet_core.inference.Classifier` behind ``Model.predict``,
:func:`~instrunet_core.analyze` and the CLI, and the decoders in :mod:`instrunet_core.audio`)
calls these functions, so a value is refused the same way wherever it comes in. Each
check raises :class:`~instrunet_core.errors.InputError` (an argument or array is
unusable) or :class:`~instrunet_core.errors.DecodeError` (a file's header is), with a
message that names the source and the allowed range.

The bounds exist so that no input can make the runtime allocate or compute without
limit: a 1 Hz header would make the resampler produce 22,050 samples per input sample,
a hop of a microsecond one window per output sample.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import DecodeError, InputError

__all__ = [
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
    "MIN_HOP_SECONDS",
    "MAX_HOP_SECONDS",
    "MAX_BLOCK_SAMPLES",
    "MAX_STREAM_BYTES",
    "check_sample_rate",
    "check_channels",
    "check_hop",
    "check_audio_array",
    "DEFAULT_BATCH_SIZE",
]

#: Lowest sample rate accepted (Hz), from an argument or a file header.
MIN_SAMPLE_RATE: int = 1_000
#: Highest sample rate accepted (Hz).
MAX_SAMPLE_RATE: int = 1_000_000
#: Most channels accepted (libsndfile's own limit for most formats is 1024).
MAX_CHANNELS: int = 1024
#: Shortest hop between analysis windows (seconds): 100 windows per second of audio.
MIN_HOP_SECONDS: float = 0.01
#: Longest hop between analysis windows (seconds).
MAX_HOP_SECONDS: float = 3600.0
#: Most samples (frames × channels) decoded or resampled at once; bounds every block's memory.
MAX_BLOCK_SAMPLES: int = 1 << 22
#: Most bytes read from a stream that cannot seek (a pipe, a FIFO, stdin) before decoding it.
MAX_STREAM_BYTES: int = 1 << 30
#: Windows per batch unless a caller says otherwise: per ``InferenceSession.run`` call
#: (:mod:`~instrunet_core.session`) and per batch of :func:`~instrunet_core.audio.stream_windows`.
DEFAULT_BATCH_SIZE: int = 16


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, (bool, np.bool_))


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
    if not _is_number(value):
        raise err(f"{what}: {origin} {value!r} is not a number of Hz (need an int)")
    try:
        sr = float(value)
    except (TypeError, ValueError, OverflowError):
        raise err(f"{what}: {origin} {value!r} is not a number of Hz (need an int)") from None
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


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def _seconds(value: Any, *, name: str, what: str) -> float:
    if not _is_number(value):
        raise InputError(f"{_prefix(what)}{name} must be a number of seconds, got {value!r}")
    try:
        s = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{_prefix(what)}{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(s):
        raise InputError(f"{_prefix(what)}{name} must be a finite number of seconds, got {value!r}")
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
