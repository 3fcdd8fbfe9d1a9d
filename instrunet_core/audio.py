"""Audio input: decoding, mono mixdown, resampling, and bounded-memory windowing.

Files (wav, flac, ogg, mp3 and everything else libsndfile reads) are decoded with
:mod:`soundfile`; MP3 needs libsndfile >= 1.1.0 (see :data:`MP3_SUPPORTED`).
Any sample rate is resampled to the front end's rate (22,050 Hz) with
:class:`soxr.ResampleStream` (quality ``"HQ"``), block by block, so a file is never
loaded whole by :func:`stream_windows`. Any channel count is mixed to mono by the
mean over channels.

Every problem is raised as :class:`~instrunet_core.errors.DecodeError` (the file
cannot be read) or :class:`~instrunet_core.errors.InputError` (an argument or an
array is unusable), with a message that starts with the file name (or ``array``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
from collections.abc import Iterator
from typing import IO, Any, Union

import numpy as np
import soundfile as sf
import soxr

from .errors import DecodeError, InputError
from .features import DEFAULT_FRONT_END, FrontEnd
from .validate import (
    DEFAULT_BATCH_SIZE,
    MAX_BLOCK_SAMPLES,
    MAX_STREAM_BYTES,
    MIN_HOP_SECONDS,
    check_audio_array,
    check_channels,
    check_sample_rate,
)

__all__ = [
    "AudioSource",
    "AUDIO_EXTENSIONS",
    "MP3_SUPPORTED",
    "SILENCE_DB",
    "WindowBatch",
    "source_name",
    "to_mono",
    "as_float_audio",
    "audio_info",
    "load_audio",
    "iter_blocks",
    "stream_windows",
    "rms_db",
]

#: Anything :func:`load_audio` and :func:`stream_windows` accept.
AudioSource = Union[str, "os.PathLike[str]", IO[bytes], np.ndarray]


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


#: True when the linked libsndfile (>= 1.1.0) decodes MP3.
MP3_SUPPORTED: bool = _version_tuple(getattr(sf, "__libsndfile_version__", "0")) >= (1, 1, 0) and (
    "MP3" in sf.available_formats()
)

#: File extensions treated as audio by directory walks (``instrunet batch``).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf"}
    | ({".mp3"} if MP3_SUPPORTED else set())
)

#: Windows whose RMS is below this many dB re. full scale are silent.
SILENCE_DB: float = -60.0


def source_name(source: Any) -> str:
    """Name used in messages: the path, a file object's ``name``, or ``"array"``."""
    if isinstance(source, np.ndarray):
        return "array"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, bytes)) and name else "<file object>"


def rms_db(y: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMS level in dB re. full scale (1.0); digital silence gives -200 dB."""
    y = np.asarray(y, dtype=np.float32)
    ms = np.mean(np.square(y, dtype=np.float64), axis=axis) if y.shape[axis] else np.zeros(())
    return 10.0 * np.log10(np.maximum(ms, 1e-20))


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
        y = y.astype(np.float32, copy=False)
        if not np.all(np.isfinite(y)):
            raise InputError(f"{what}: audio contains NaN or infinite samples")
    return y


def _channel_mean(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the channel ``axis`` of 2-D float32 audio, one channel at a time: numpy's
    ``mean(axis=1)`` over a few interleaved channels is a slow strided reduction (about 8.5 ms
    for 10 s of 44.1 kHz stereo; this takes about 1.5 ms)."""
    chans = y.T if axis == 1 else y
    out = chans[0].astype(np.float32, copy=True)
    for c in chans[1:]:
        out += c
    if len(chans) > 1:
        out *= np.float32(1.0 / len(chans))
    return out


#: libsndfile subtypes read as integers: (dtype, full-scale value). libsndfile returns a
#: 16-bit file's samples as int16 unchanged and 24/32-bit ones left-aligned in int32, and its
#: own float conversion divides by the same full-scale value, so the result is identical.
_INT_SUBTYPES: dict[str, tuple[Any, float]] = {
    "PCM_16": (np.int16, 32768.0),
    "PCM_S8": (np.int16, 32768.0),
    "PCM_U8": (np.int16, 32768.0),
    "PCM_24": (np.int32, 2147483648.0),
    "PCM_32": (np.int32, 2147483648.0),
}


def _int_mean(block: np.ndarray, full_scale: float) -> np.ndarray:
    """Integer ``[n, channels]`` block → mono float32 in [-1, 1): channels summed in float32
    one at a time, then one scale by ``1 / (full_scale * channels)``."""
    out = block[:, 0].astype(np.float32)
    for c in range(1, block.shape[1]):
        out += block[:, c]
    out *= np.float32(1.0 / (full_scale * block.shape[1]))
    return out


def to_mono(y: np.ndarray, *, what: str = "array") -> np.ndarray:
    """Mix audio to mono by the mean over channels.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        For 2-D input the shorter axis is taken as channels (soundfile's layout is
        ``(n, channels)``, librosa's is ``(channels, n)``; both work).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    y = as_float_audio(y, what=what)
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise InputError(f"{what}: expected audio of shape (n,) or (n, channels), got shape {y.shape}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        return np.zeros(0, dtype=np.float32)
    axis = 1 if y.shape[1] <= y.shape[0] else 0
    return _channel_mean(y, axis)


def _check_rate(sample_rate: Any, what: str) -> int:
    return check_sample_rate(sample_rate, what=what)


#: Leading bytes of common non-audio files, named in the error instead of a decoder's guess.
_NOT_AUDIO: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
    (b"{", "text (JSON?)"),
    (b"<", "text (HTML/XML?)"),
)
_MPEG_EXTENSIONS = (".mp3", ".mp2", ".mp1", ".mpga", ".mpeg")


def _sniff(head: bytes, name: str) -> None:
    """Refuse data that is certainly not audio before a decoder guesses at it.

    libsndfile hands any file named ``*.mp3`` whose header it does not recognise to
    mpg123, which prints resync chatter on stderr and ends with a misleading "possibly a
    pipe?"; an MPEG file starts with an ID3 tag or a frame sync (11 set bits).
    """
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            raise DecodeError(f"{name}: not an audio file (the data looks like {what})")
    if name.lower().endswith(_MPEG_EXTENSIONS):
        body = head.lstrip(b"\x00")
        mpeg = body.startswith(b"ID3") or (len(body) >= 2 and body[0] == 0xFF and body[1] & 0xE0 == 0xE0)
        if not mpeg:
            raise DecodeError(f"{name}: not an MP3 file (no ID3 tag or MPEG frame header at the start)")


def _read_bounded(f: Any, name: str) -> io.BytesIO:
    """Copy a non-seekable stream (pipe, FIFO, socket) into memory, at most MAX_STREAM_BYTES."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            b = f.read(1 << 20)
        except OSError as e:
            raise DecodeError(f"{name}: cannot read: {e.strerror or e}") from None
        if not b:
            break
        if not isinstance(b, (bytes, bytearray, memoryview)):
            raise InputError(
                f"{name}: file object must be opened in binary mode (read() returned {type(b).__name__})"
            )
        total += len(b)
        if total > MAX_STREAM_BYTES:
            raise DecodeError(
                f"{name}: stream is longer than {MAX_STREAM_BYTES >> 20} MiB; save it to a file to analyse it"
            )
        chunks.append(bytes(b))
    if total == 0:
        raise DecodeError(f"{name}: empty stream (0 bytes)")
    out = io.BytesIO(b"".join(chunks))
    out.name = name  # type: ignore[attr-defined]
    return out


class _SafeSeekFile:
    """What libsndfile's virtual I/O sees of a file object: a corrupt header can make it seek
    before the start, which Python file objects refuse with ValueError inside a C callback
    (printed as "Exception ignored from cffi callback"); here such a seek stays put."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.name = source_name(f)

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return int(self._f.seek(offset, whence))
        except (ValueError, OSError, OverflowError):
            return int(self._f.tell())

    def tell(self) -> int:
        return int(self._f.tell())

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def readinto(self, buf: Any) -> int:
        if hasattr(self._f, "readinto"):
            return int(self._f.readinto(buf) or 0)
        data = self._f.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable()) if hasattr(f, "seekable") else hasattr(f, "seek")
    except (OSError, ValueError):
        return False


def _open(source: Any) -> sf.SoundFile:
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DecodeError(f"{name}: file not found") from None
        except OSError as e:
            raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError(f"{name}: is a directory, not an audio file")
        if stat.S_ISREG(st.st_mode):
            if st.st_size == 0:
                raise DecodeError(f"{name}: empty file (0 bytes)")
            try:
                with open(path, "rb") as fh:
                    head = fh.read(4096)
            except OSError as e:
                raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
            _sniff(head, name)
            # Bytes, not str: libsndfile gets the file system's own bytes, so a name that is
            # not valid UTF-8 (surrogate-escaped by Python) still opens.
            target: Any = os.fsencode(path)
        else:  # a FIFO, /dev/stdin, a character device: read once into memory (bounded)
            try:
                with open(path, "rb") as fh:
                    target = _read_bounded(fh, name)
            except OSError as e:
                raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
            _sniff(target.getvalue()[:4096], name)
    elif hasattr(source, "read"):
        target = source if _seekable(source) else _read_bounded(source, name)
        if isinstance(target, io.BytesIO):
            _sniff(target.getvalue()[:4096], name)
    else:
        raise InputError(
            f"{name}: unsupported source type {type(source).__name__} (need a path, file object or array)"
        )
    if hasattr(target, "read"):
        target = _SafeSeekFile(target)
    try:
        f = sf.SoundFile(target)
    except sf.LibsndfileError as e:
        raise DecodeError(
            f"{name}: cannot decode audio (corrupt or unsupported format: {e.error_string})"
        ) from None
    except (RuntimeError, OSError, TypeError, ValueError) as e:
        raise DecodeError(f"{name}: cannot decode audio ({e})") from None
    try:
        check_sample_rate(f.samplerate, what=name, header=True)
        check_channels(f.channels, what=name, header=True)
        if f.frames == 0:
            raise DecodeError(f"{name}: no audio frames (0-length audio)")
    except DecodeError:
        f.close()
        raise
    return f


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """Basic facts of a source before decoding (``frames`` at the native rate)."""

    name: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(source: AudioSource, sample_rate: int | None = None) -> AudioInfo:
    """Sample rate, channels, frames and format of a source without decoding it."""
    name = source_name(source)
    if isinstance(source, np.ndarray):
        sr = _check_rate(sample_rate, name)
        y = to_mono(source, what=name)
        return AudioInfo(name, sr, 1 if source.ndim == 1 else min(source.shape), y.shape[0], "array")
    f = _open(source)
    try:
        return AudioInfo(name, f.samplerate, f.channels, f.frames, f.format)
    finally:
        f.close()
        _rewind(source)


def _rewind(source: Any) -> None:
    if hasattr(source, "seek") and not isinstance(source, (str, os.PathLike, np.ndarray)):
        try:
            source.seek(0)
        except (OSError, ValueError):
            pass


def iter_blocks(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    target_sr: int = DEFAULT_FRONT_END.sample_rate,
    block_seconds: float = 10.0,
) -> Iterator[np.ndarray]:
    """Decode a source block by block as mono float32 at ``target_sr``.

    At most ``block_seconds`` of native-rate audio is read from a file at a time
    (``SoundFile.read(frames)``), mixed to mono and resampled with
    :class:`soxr.ResampleStream`, so memory stays bounded for any file length.

    Yields
    ------
    np.ndarray [shape=(m,), dtype=float32]
        Consecutive blocks of resampled mono audio (some may be empty).
    """
    name = source_name(source)
    if block_seconds <= 0:
        raise InputError(f"{name}: block_seconds must be > 0, got {block_seconds!r}")
    if isinstance(source, np.ndarray):
        yield from _array_blocks(
            source, sample_rate, name=name, target_sr=target_sr, block_seconds=block_seconds
        )
        return
    f = _open(source)
    try:
        sr = f.samplerate
        frames_per_block = max(1, min(int(block_seconds * sr), MAX_BLOCK_SAMPLES // f.channels))
        rs = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ") if sr != target_sr else None
        int_dtype, full_scale = _INT_SUBTYPES.get(f.subtype, (None, 0.0))
        # One read buffer for the whole file (SoundFile.read(out=...)): integer files are read as
        # integers, which libsndfile does ~6x faster than converting them to float itself.
        buf = np.empty((frames_per_block, f.channels), dtype=int_dtype or np.float32)
        got = 0
        while True:
            try:
                block = f.read(frames_per_block, always_2d=True, out=buf)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise DecodeError(f"{name}: decoding failed after {got} frames ({e})") from None
            last = block.shape[0] < frames_per_block
            got += block.shape[0]
            if int_dtype is not None:
                mono = _int_mean(block, full_scale)
            else:
                if block.shape[0] and not np.all(np.isfinite(block)):
                    raise DecodeError(f"{name}: audio contains NaN or infinite samples")
                mono = _channel_mean(block, 1)
            if rs is not None:
                mono = rs.resample_chunk(mono, last=last)
            yield mono
            if last:
                break
        if got == 0:
            raise DecodeError(f"{name}: no audio frames could be decoded")
    finally:
        f.close()


def _array_blocks(
    source: np.ndarray, sample_rate: Any, *, name: str, target_sr: int, block_seconds: float
) -> Iterator[np.ndarray]:
    """Blocks of an in-memory array: mixed to mono and resampled one block at a time, so the
    temporary memory is bounded by the block size whatever the rate ratio and length."""
    sr = check_sample_rate(sample_rate, what=name)
    y = check_audio_array(source, what=name)
    if y.ndim == 2:
        axis = 1 if y.shape[1] <= y.shape[0] else 0
        y = y if axis == 1 else y.T  # frames first
    n = y.shape[0]
    channels = 1 if y.ndim == 1 else y.shape[1]
    step = max(1, min(int(block_seconds * sr), MAX_BLOCK_SAMPLES // channels))
    rs = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ") if sr != target_sr else None
    for i in range(0, n, step):
        block = as_float_audio(y[i : i + step], what=name)
        mono = block if block.ndim == 1 else _channel_mean(block, 1)
        if rs is not None:
            mono = rs.resample_chunk(np.ascontiguousarray(mono), last=i + step >= n)
        yield mono


def load_audio(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    target_sr: int = DEFAULT_FRONT_END.sample_rate,
) -> np.ndarray:
    """Decode a whole source to mono float32 at ``target_sr``.

    Parameters
    ----------
    source : str, PathLike, file-like or np.ndarray
        An audio file, an open binary file object, or samples of shape ``(n,)`` /
        ``(n, channels)`` (then ``sample_rate`` is required).
    sample_rate : int, optional
        Rate of an array source.
    target_sr : int
        Output rate.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    blocks = list(iter_blocks(source, sample_rate, target_sr=target_sr))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class WindowBatch:
    """A batch of analysis windows from :func:`stream_windows`.

    Attributes
    ----------
    windows : np.ndarray [shape=(B, window_samples), dtype=float32]
        Mono audio at the front end's rate, the last one zero-padded if partial.
    starts : np.ndarray [shape=(B,), dtype=int64]
        First sample of each window.
    lengths : np.ndarray [shape=(B,), dtype=int64]
        Real (unpadded) samples in each window.
    """

    windows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


def stream_windows(
    source: AudioSource,
    sample_rate: int | None = None,
    *,
    fe: FrontEnd = DEFAULT_FRONT_END,
    hop_samples: int | None = None,
    window_samples: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    block_seconds: float = 10.0,
) -> Iterator[WindowBatch]:
    """Yield batches of fixed-length windows with bounded memory.

    Windows start at ``0, hop, 2*hop, ...``; the last one reaches the end of the
    audio and is zero-padded. Audio shorter than a window gives one padded window.
    Memory is bounded by ``block_seconds`` of audio plus one window plus one batch.

    Parameters
    ----------
    source : str, PathLike, file-like or np.ndarray
    sample_rate : int, optional
        Required for arrays.
    fe : FrontEnd
        Gives the target rate and the default window length.
    hop_samples : int, optional
        Samples between window starts (default: half a window).
    window_samples : int, optional
        Window length (default ``fe.window_samples``).
    batch_size : int
        Windows per yielded batch.

    Yields
    ------
    WindowBatch
    """
    name = source_name(source)
    win = int(window_samples or fe.window_samples)
    hop = int(hop_samples) if hop_samples is not None else win // 2
    min_hop = max(1, int(MIN_HOP_SECONDS * fe.sample_rate))
    if hop < min_hop:
        raise InputError(
            f"{name}: hop must be >= {min_hop} samples ({MIN_HOP_SECONDS:g} s), got {hop_samples!r}"
        )
    if win <= 0:
        raise InputError(f"{name}: window must be > 0 samples, got {window_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise InputError(f"{name}: batch_size must be > 0, got {batch_size!r}")
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index of buf[0]
    next_start = 0
    total = 0
    emitted_end = -1
    pending: list[tuple[np.ndarray, int, int]] = []

    def flush() -> WindowBatch:
        w = np.stack([p[0] for p in pending])
        s = np.array([p[1] for p in pending], dtype=np.int64)
        n = np.array([p[2] for p in pending], dtype=np.int64)
        pending.clear()
        return WindowBatch(w, s, n)

    for block in iter_blocks(source, sample_rate, target_sr=fe.sample_rate, block_seconds=block_seconds):
        if block.size == 0:
            continue
        total += block.shape[0]
        buf = np.concatenate([buf, block]) if buf.size else block.copy()
        while next_start + win <= buf_start + buf.shape[0]:
            off = next_start - buf_start
            pending.append((buf[off : off + win].copy(), next_start, win))
            emitted_end = next_start + win
            next_start += hop
            if len(pending) >= batch_size:
                yield flush()
        drop = min(next_start - buf_start, buf.shape[0])
        if drop > 0:
            buf = buf[drop:]
            buf_start += drop
    if total == 0:
        raise DecodeError(f"{name}: no audio samples")
    if emitted_end < total and next_start < total:
        off = max(0, next_start - buf_start)
        tail = buf[off:]
        w = np.zeros(win, dtype=np.float32)
        w[: tail.shape[0]] = tail
        pending.append((w, next_start, int(tail.shape[0])))
    if pending:
        yield flush()


def _is_filelike(x: Any) -> bool:
    return hasattr(x, "read") and not isinstance(x, (str, bytes, os.PathLike, np.ndarray))


def rereadable_source(source: Any) -> Any:
    """Return a re-readable form of ``source``: non-seekable file objects, FIFOs and other
    non-regular paths (``/dev/stdin``) are copied to memory once (at most
    :data:`~instrunet_core.validate.MAX_STREAM_BYTES`), so that analyzers can decode the
    source a second time."""
    if _is_filelike(source) and not _seekable(source):
        return _read_bounded(source, source_name(source))
    if isinstance(source, (str, os.PathLike)):
        name = source_name(source)
        try:
            st = os.stat(source)
        except OSError:
            return source  # missing or unreadable: _open reports it
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            try:
                with open(source, "rb") as fh:
                    return _read_bounded(fh, name)
            except OSError as e:
                raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
    return source
