"""Audio input: decoding files and arrays into blocks of mono samples at the front end's rate.

Files (wav, flac, ogg, mp3 and everything else libsndfile reads) are decoded with
:mod:`soundfile`; MP3 needs libsndfile >= 1.1.0 (see :data:`MP3_SUPPORTED`). Blocks are
mixed to mono and resampled by :mod:`instrunet_core.inputs` (the one mixdown and resampler),
block by block, so a file is never loaded whole by :func:`iter_blocks`. :class:`AudioReader`
gives the same decoded blocks at the file's own rate and channels (for hosts that process the
audio itself: the pedalboard adapters' ``process_file``), so every file is opened, checked and
decoded by one code.

What a decoder makes of a damaged file, and so what instrunet does with it: a WAV, AIFF or
other PCM file that ends before its header says (a copy or a recording cut short) is read up
to where it ends, as a file whose header was left unfinished by a streaming writer must be; a
compressed file (FLAC, Ogg, MP3) whose frames stop decoding raises ``decoding failed after N
frames (S s; the header announces M frames: ...)`` unless the decoder itself stops cleanly at
the cut (MP3 does, as far as it got; an Ogg file stops at its last whole page, and a stream
without its end-of-stream page is said: :func:`ogg_ends_whole`); the frames before the failure are decoded and passed on
first (blocks are read in steps of :data:`READ_FRAMES`, and a failed step is read again in
smaller ones where the decoder can seek back), so ``N`` is where decoding stops, to within a step.
:func:`iter_blocks` can take that error, and a decoder's clean stop well before the header's
length, as a note instead (its ``damage`` list): the classifier does, so every classification
uses what decodes and warns (:attr:`Classifier.damage <instrunet_core.Classifier>`), while
:func:`load_audio` and :class:`AudioReader` (the whole file or an error) raise.

Every problem is raised as :class:`~instrunet_core.errors.DecodeError` (the file
cannot be read) or :class:`~instrunet_core.errors.InputError` (an argument or an
array is unusable), with a message that starts with the file name (or ``array``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import stat
from collections.abc import Iterator
from typing import IO, Any, Literal, Union

import numpy as np
import soundfile as sf

from ._files import HoldsFile
from .errors import DecodeError, InputError, warn
from .features import DEFAULT_FRONT_END
from .inputs import (
    MAX_BLOCK_SAMPLES,
    MAX_SAMPLE_RATE,
    MAX_STREAM_BYTES,
    MIN_SAMPLE_RATE,
    SampleRate,
    as_float_audio,
    check_amplitude,
    check_audio_array,
    check_channels,
    check_count,
    check_path,
    check_sample_rate,
    check_seconds,
    frames_first,
    mix_down,
    mix_down_int,
    resampler,
    warn_narrow_values,
)

__all__ = [
    "AudioSource",
    "AudioReader",
    "AUDIO_EXTENSIONS",
    "MP3_SUPPORTED",
    "source_name",
    "audio_info",
    "load_audio",
    "iter_blocks",
]

#: Anything :func:`load_audio` and :func:`iter_blocks` accept.
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
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".au", ".w64", ".rf64", ".caf"}
    | ({".mp3"} if MP3_SUPPORTED else set())
)


def source_name(source: Any) -> str:
    """Name used in messages: the path, a file object's ``name`` (``"<file object>"`` when it
    has none), ``"array"`` / ``"bytes"``, or ``"audio"`` for anything else (a list)."""
    if isinstance(source, np.ndarray):
        return "array"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if not hasattr(source, "read"):
        return "audio"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, bytes)) and name else "<file object>"


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
#: Leading bytes of the containers libsndfile reads besides MPEG (WAV, RF64, AIFF, FLAC, Ogg, CAF,
#: AU, W64): a file of one of them named ``.mp3`` is decoded, not refused as "not an MP3 file".
_CONTAINERS = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"caff", b".snd", b"riff")


def _sniff(head: bytes, name: str) -> str | None:
    """Refuse data that is certainly not audio before a decoder guesses at it.

    libsndfile hands any file named ``*.mp3`` whose header it does not recognise to
    mpg123, which prints resync chatter on stderr and ends with a misleading "possibly a
    pipe?"; an MPEG file starts with an ID3 tag or a frame sync (11 set bits).
    """
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            raise DecodeError(f"{name}: not an audio file (the data looks like {what})")
    if name.lower().endswith(_MPEG_EXTENSIONS) and not head.startswith(_CONTAINERS):
        # (another format's container named .mp3 is left to libsndfile, which reads it)
        if not _looks_mpeg(head):
            raise DecodeError(f"{name}: not an MP3 file (no ID3 tag or MPEG frame header near the start)")
    rate = _aiff_rate_problem(head)
    if rate is not None:
        raise DecodeError(f"{name}: {rate}")
    # what the decoding passes warn about (not audio_info: a file is opened for facts first)
    why = _wav_fmt_problem(head)
    return None if why is None else f"{name}: {why}"


def _aiff_rate_problem(head: bytes) -> str | None:
    """What is wrong with an AIFF/AIFC ``COMM`` chunk's sample rate among the first bytes, which
    libsndfile clamps before anyone can check it (NaN and infinity read as 67,108,864 Hz, zero
    as 1 Hz); ``None``: no such chunk there, or a rate that is a positive number."""
    if head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    at = 12
    while at + 8 <= len(head):
        cid, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "big")
        if cid == b"COMM":
            ext = head[at + 16 : at + 26]  # channels 2, frames 4, bits 2, then the 80-bit rate
            if len(ext) < 10:
                return None
            exponent, mantissa = int.from_bytes(ext[:2], "big"), int.from_bytes(ext[2:], "big")
            if exponent & 0x7FFF == 0x7FFF:
                what = "infinite" if mantissa & ((1 << 63) - 1) == 0 else "not a number (NaN)"
                return f"the AIFF header's sample rate is {what}"
            if mantissa == 0 or exponent & 0x8000:
                return "the AIFF header's sample rate is zero or negative"
            shift = (exponent & 0x7FFF) - 16383 - 63
            rate = math.ldexp(mantissa, shift) if shift < 900 else math.inf
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                said = "more than 1e308" if math.isinf(rate) else f"{rate:.4g}"
                return (
                    f"the file header says a sample rate of {said} Hz, outside the supported range "
                    f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
                )
            return None
        at += 8 + size + (size & 1)
    return None


def _wav_fmt_problem(head: bytes) -> str | None:
    """What is wrong with a RIFF/WAVE ``fmt `` chunk among the first bytes whose bits per sample
    contradict its bytes per frame (``None``: no such chunk there, or nothing wrong).
    libsndfile takes the sample width from the bits and ignores the frame size: 8 bits in
    2-byte frames was read as noise of twice the length, and judged "broken"."""
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order: Literal["little", "big"] = "little" if head[:4] == b"RIFF" else "big"
    at = 12
    while at + 8 <= len(head):
        cid, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], order)
        if cid == b"fmt ":
            body = head[at + 8 : at + 8 + min(size, 40)]
            if len(body) < 16:
                return None
            tag, channels = int.from_bytes(body[0:2], order), int.from_bytes(body[2:4], order)
            align, bits = int.from_bytes(body[12:14], order), int.from_bytes(body[14:16], order)
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = int.from_bytes(body[24:26], order)
            if tag not in (1, 3) or not channels or not align or not bits:
                return None  # compressed formats, or fields libsndfile refuses on its own
            width = (bits + 7) // 8
            if align != channels * width:
                return (
                    f"the WAV header contradicts itself: {bits} bits per sample x {channels} "
                    f"channel(s) make {channels * width} bytes a frame, but it says {align}; the samples "
                    f"are read as {bits}-bit, which is noise if the frame size was the true one"
                )
            return None
        at += 8 + size + (size & 1)
    return None


def _looks_mpeg(head: bytes) -> bool:
    """An ID3 tag or an MPEG frame sync, at the start or after a few junk bytes."""
    body = head.lstrip(b"\x00")
    return body.startswith(b"ID3") or any(
        body[i] == 0xFF and body[i + 1] & 0xE0 == 0xE0 for i in range(min(len(body) - 1, 4096))
    )


def _mpeg_chain(data: bytes) -> bool:
    """An ID3 tag at the start, or, in the first 4 KiB, an MPEG Layer III frame header followed
    by another where its length says (random bytes hold a lone frame sync more often than not)."""
    body = data.lstrip(b"\x00")
    if body.startswith(b"ID3"):
        return True
    for i in range(min(len(body) - 4, 4096)):
        frame = _l3_frame(body[i : i + 4])
        if frame is not None and _l3_frame(body[i + frame[0] : i + frame[0] + 4]) is not None:
            return True
    return False


def _no_header(first: bytes, name: str) -> None:
    """Refuse a stream whose first MiB holds no audio header libsndfile knows, before the rest is
    read into memory: a link to /dev/zero or /dev/urandom took 1.1 GB and seconds to be refused.
    (Headers are at the start; an MPEG stream, which libsndfile may know by a file's name only,
    is left to the decoder.)"""
    if _mpeg_chain(first):
        return
    try:
        sf.info(io.BytesIO(first))
    except Exception as e:  # noqa: BLE001 - libsndfile's errors come as several types
        if "not recognised" in str(e).lower() or "not recognized" in str(e).lower():
            raise DecodeError(
                f"{name}: not an audio file (its first {len(first) >> 10} KiB hold no audio header)"
            ) from None


def _read_bounded(f: Any, name: str) -> io.BytesIO:
    """Copy a non-seekable stream (pipe, FIFO, socket) into memory, at most MAX_STREAM_BYTES (into
    one buffer as it is read: a list of chunks joined at the end held the stream twice)."""
    out = io.BytesIO()
    total = 0
    probed = False  # the first MiB looked at for an audio header
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
        out.write(b)
        if not probed and total >= 1 << 20:  # (reads of a pipe may be 64 KiB each)
            probed = True
            _no_header(_head(out, 1 << 20), name)
    if total == 0:
        raise DecodeError(f"{name}: empty stream (0 bytes)")
    out.seek(0)
    out.name = name  # type: ignore[attr-defined]
    return out


def _head(buf: io.BytesIO, n: int = 4096) -> bytes:
    """The first ``n`` bytes of an in-memory file, without copying the rest (``getvalue`` would)."""
    with buf.getbuffer() as view:
        return bytes(view[:n])


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


def _check_file_object(f: Any, name: str) -> None:
    """Refuse a closed file object, or a text-mode one before libsndfile's read callback meets
    ``str``."""
    if getattr(f, "closed", False) is True:
        raise InputError(f"{name}: the file object is closed")
    if isinstance(f, io.TextIOBase):
        raise InputError(f"{name}: file object must be opened in binary mode (open(path, 'rb')), not text")
    decoded = InputError(
        # soundfile.SoundFile, pedalboard's AudioFile: read() gives decoded samples, which reached
        # libsndfile's byte buffer (tracebacks from a C callback, then "corrupt" for a good file)
        f"{name}: a {type(f).__module__}.{type(f).__name__} reads decoded audio, not the file's bytes; "
        "pass its path, or its samples (an array) with their sample rate"
    )
    if hasattr(f, "samplerate") and hasattr(f, "frames"):
        raise decoded
    try:
        probe = f.read(0)
    except (OSError, ValueError, TypeError):
        return  # read(0) unsupported or the file closed: decoding reports it
    if isinstance(probe, str):
        raise InputError(f"{name}: file object must be opened in binary mode (open(path, 'rb')), not text")
    if not isinstance(probe, (bytes, bytearray, memoryview)):
        raise decoded


def _left_to_read(f: Any) -> int | None:
    """Bytes from a seekable file object's position to its end (``None``: it cannot say)."""
    try:
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return int(end) - int(pos) if isinstance(end, int) and isinstance(pos, int) else None


def _position(f: Any) -> int:
    """A file object's position (0 when it cannot say)."""
    try:
        return int(f.tell())
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def _seekable(f: Any) -> bool:
    """Whether a file object can be read as a file (sought, its length known). A descriptor on a
    character device is not, though it says it can seek: stdin from /dev/zero seeks to an "end"
    of 0 and was called an empty stream (a docs audit); it is read as a stream is, bounded."""
    try:
        if not (bool(f.seekable()) if hasattr(f, "seekable") else hasattr(f, "seek")):
            return False
    except (OSError, ValueError):
        return False
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (AttributeError, OSError, ValueError, TypeError, io.UnsupportedOperation):
        return True  # no descriptor (io.BytesIO, a wrapper): its own seek is its length


def _open(source: Any, *, count: bool = True, count_until: float | None = None) -> _SoundFile:
    """``source`` opened and checked. ``count``: a file whose header does not give its length
    has it counted by decoding it once (:func:`_sized`; only until it passes ``count_until``
    seconds when given); without, it is left at :data:`UNKNOWN_FRAMES` for a reader that only
    reads to the end (:func:`iter_blocks`)."""
    name = source_name(source)
    head: bytes | None = None  # a regular file's first bytes (read to sniff it)
    note: str | None = None  # what the header says that the decoding passes warn about
    if isinstance(source, (str, os.PathLike)):
        path = check_path(source)
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
            note = _sniff(head, name)
            # Bytes, not str: libsndfile gets the file system's own bytes, so a name that is
            # not valid UTF-8 (surrogate-escaped by Python) still opens.
            target: Any = os.fsencode(path)
        else:  # a FIFO, /dev/stdin, a character device: read once into memory (bounded)
            try:
                with open(path, "rb") as fh:
                    target = _read_bounded(fh, name)
            except OSError as e:
                raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
            note = _sniff(_head(target), name)
    elif hasattr(source, "read"):
        _check_file_object(source, name)
        target = source if _seekable(source) else _read_bounded(source, name)
        if _left_to_read(target) == 0:  # io.BytesIO(b""), stdin from /dev/null (seekable)
            at = _position(target)
            if at:  # a file object read to its end (by an earlier call): not an empty file
                raise DecodeError(
                    f"{name}: the file object is at its end (position {at}): nothing is left to read; "
                    "audio is read from a file object's current position, so seek(0) to read it again"
                )
            raise DecodeError(f"{name}: empty stream (0 bytes)")
        if isinstance(target, io.BytesIO):
            note = _sniff(_head(target), name)
        else:  # a seekable file object (stdin redirected from a file): its first bytes, put back
            at = _position(target) or 0
            try:
                head = target.read(4096)
            finally:
                target.seek(at)
            if isinstance(head, (bytes, bytearray)):
                note = _sniff(bytes(head), name)
    else:
        raise InputError(
            f"{name}: unsupported source type {type(source).__name__} (need a path, a binary file object "
            "such as io.BytesIO(data) for bytes in memory, or an array)"
        )
    origin = 0  # where a file object's audio starts: its position now (libsndfile reads from there)
    if hasattr(target, "read"):
        origin = _position(target) or 0
        if origin:
            # the decoder is shown the data from there as a file of its own: libsndfile's FLAC and
            # ID3 readers seek to absolute offsets, and its length counted the bytes before it
            # ("lost sync", "Format not recognised" for a FLAC or a tagged MP3 after a header)
            end = int(target.seek(0, io.SEEK_END))
            target = _Slice(target, origin, end - origin)
            origin = 0
    # an MP3 or a FLAC the decoder would stop reading early (a Xing/Info or STREAMINFO count
    # short of its frames, or an MP3 without a tag whose VBR length it estimates from the first
    # frame) is given a reader that counts its frames right (before the decoder reads anything: it must never see the
    # file object moved under it)
    patched = _count_patch(target, origin, head)
    owned = None
    if patched is not None:
        owned = patched if isinstance(target, bytes) else None
        target = patched
    if hasattr(target, "read"):
        target = _SafeSeekFile(target)
    f = _soundfile_owning(target, name, owned)
    if f.frames >= UNKNOWN_FRAMES:
        if count:
            f = _sized(f, target, name, origin, count_until)
        else:
            f.unsized = True
    elif f.frames == 0 and f.format in ("WAV", "WAVEX", "RF64", "AIFF"):
        f = _unfinished_wav(f, target, name, origin)
    f.no_seek = True  # read front to back: soundfile's seek after every read is not needed
    f.count_corrected = patched is not None and f.format == "FLAC"
    short = _data_short(f, target, name, origin) if f.frames and f.format in _SIZED_CONTAINERS else None
    f.header_notes = tuple(n for n in (note, short) if n is not None)
    if f.format == "OGG":  # looked at once the file has been read to its end (end_note)
        f._end_check = functools.partial(_ogg_unfinished, target, name, origin)
    try:
        check_sample_rate(f.samplerate, what=name, header=True)
        check_channels(f.channels, what=name, header=True)
        if f.frames == 0:
            raise DecodeError(f"{name}: no audio frames (0-length audio)")
    except DecodeError:
        f.close()
        raise
    return f


#: What libsndfile reports as a file's length when its header does not say (SF_COUNT_MAX): a
#: FLAC written to a pipe (ffmpeg ... -f flac -) leaves STREAMINFO's total at 0.
UNKNOWN_FRAMES = 2**63 - 1


class _SoundFile(sf.SoundFile):
    """A ``soundfile.SoundFile`` that can be told not to seek: soundfile seeks after each read of
    a file it thinks seekable, and libsndfile fails every seek in a FLAC of unknown length (or
    after a FLAC decode error). ``unsized``: the header does not give the length (``frames`` was
    counted by decoding, or is :data:`UNKNOWN_FRAMES` for a reader that reads to the end)."""

    no_seek = False
    unsized = False
    #: The container's name where libsndfile reads the data as another (an unfinished WAV's
    #: samples are read as ``RAW``); ``None``: ``format`` says it.
    container: str | None = None
    #: A file this object opened itself, closed with it.
    _owned: Any = None
    #: What its header says that reading it warns about (a WAV whose bits per sample contradict
    #: its bytes per frame, or whose data size stops well before the samples do).
    header_notes: tuple[str, ...] = ()
    #: Its length was counted from its last frames, not read from its header (a FLAC whose
    #: STREAMINFO counts too few: :func:`_flac_fix`).
    count_corrected = False
    #: What tells, once the file has been read to its end, whether its data stop before the
    #: stream does (an Ogg file: :func:`_ogg_unfinished`); ``None``: nothing to tell.
    _end_check: Any = None

    def end_note(self) -> str | None:
        """What to say once the file has been read to its end: its data stop before its stream
        does (an Ogg file without its end-of-stream page), where the decoder stops without an
        error; ``None`` otherwise. Looked at only by a reading that got to the end (opening a
        file for its header reads nothing more)."""
        return None if self._end_check is None else self._end_check()

    def warn_header(self) -> None:
        """Warn about :attr:`header_notes` (a decoding pass: once per reading)."""
        for note in self.header_notes:
            warn(note)

    def seekable(self) -> bool:
        return False if self.no_seek else bool(super().seekable())

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._owned is not None:
                self._owned.close()
                self._owned = None


#: Bytes per sample of the WAV subtypes whose samples can be read from the data as they lie
#: (:func:`_unfinished_wav`).
_RAW_SAMPLE_BYTES = {
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}


class _Slice:
    """Bytes ``start`` to ``start + length`` of a seekable file object, as a file object of its
    own (what libsndfile's ``RAW`` reader sees of an unfinished WAV's data)."""

    def __init__(self, f: Any, start: int, length: int) -> None:
        self._f, self._start, self._length, self._pos = f, start, length, 0
        self.name = getattr(f, "name", "")

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._length)[whence]
        self._pos = min(max(0, base + offset), self._length)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._length - self._pos if n is None or n < 0 else min(n, self._length - self._pos)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return bytes(data)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


#: Most chunks walked after an empty data chunk: metadata there is a few chunks (LIST, id3,
#: cue); a file of millions of tiny chunks took 0.11 s per MB to be refused.
_MAX_TRAILING_CHUNKS = 4096


def _chunk_chain(f: Any, at: int, end: int, kind: str = "riff") -> bool:
    """Whether the bytes from ``at`` to ``end`` are chunks of the container ``kind`` (four ASCII
    letters and a size: RIFF's little-endian, AIFF's big-endian, both padded to even sizes; CAF's
    eight-byte big-endian, unpadded) that end exactly at ``end``: the metadata after an empty data
    chunk, not audio (at most :data:`_MAX_TRAILING_CHUNKS` of them: more is taken for metadata
    too, read as no audio)."""
    head_size = 12 if kind == "caf" else 8
    for _ in range(_MAX_TRAILING_CHUNKS):
        if at >= end:
            break
        f.seek(at)
        head = f.read(head_size)
        if len(head) < head_size or not all(32 <= c < 127 for c in head[:4]):
            return False
        if kind == "caf":
            size = int.from_bytes(head[4:12], "big", signed=True)
            if size < 0:
                return False
            at += 12 + size
        else:
            size = int.from_bytes(head[4:8], "little" if kind == "riff" else "big")
            at += 8 + size + (size & 1)
    else:
        return True  # thousands of well-formed chunks: metadata, not samples
    return at == end


def _data_span(src: Any, origin: int, end: int) -> tuple[int, int, str] | None:
    """Where the samples of a RIFF or RF64 WAVE, an AIFF/AIFC or a CAF file start, the size of
    them its header gives, and the container (``"riff"``, ``"aiff"``, ``"caf"``: how the chunks
    after them are laid out), walking the chunks from ``origin``; ``None`` for another file, no
    data chunk, or one that runs to the end of the file by definition (a CAF's size -1)."""
    src.seek(origin)
    head = src.read(12)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        at, ds64 = origin + 12, None
        while at + 8 <= end:
            src.seek(at)
            chunk = src.read(24)
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"ds64" and len(chunk) >= 24:  # RF64: the 64-bit sizes
                ds64 = int.from_bytes(chunk[16:24], "little")
            if chunk[:4] == b"data":
                if head[:4] == b"RF64" and size == 0xFFFFFFFF and ds64 is not None:
                    size = ds64
                return at + 8, size, "riff"
            at += 8 + size + (size & 1)
        return None
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        at = origin + 12
        while at + 8 <= end:
            src.seek(at)
            chunk = src.read(16)
            size = int.from_bytes(chunk[4:8], "big")
            if chunk[:4] == b"SSND" and len(chunk) == 16:  # offset and block size, then samples
                offset = int.from_bytes(chunk[8:12], "big")
                return at + 16 + offset, max(0, size - 8 - offset), "aiff"
            at += 8 + size + (size & 1)
        return None
    if head[:4] == b"caff":
        at = origin + 8
        while at + 12 <= end:
            src.seek(at)
            chunk = src.read(16)
            size = int.from_bytes(chunk[4:12], "big", signed=True)
            if chunk[:4] == b"data":  # an edit count, then samples
                return None if size < 0 else (at + 16, max(0, size - 4), "caf")
            if size < 0:
                return None
            at += 12 + size
        return None
    return None


def _wav_data_chunk(src: Any, origin: int, end: int) -> tuple[int, int] | None:
    """Where a RIFF/WAVE file's ``data`` chunk starts (its samples' offset) and the size its
    header gives, walking the chunks from ``origin``; ``None`` for no WAV or no data chunk."""
    src.seek(origin)
    if src.read(4) != b"RIFF":
        return None
    span = _data_span(src, origin, end)
    return None if span is None else span[:2]


def _data_short(f: _SoundFile, target: Any, name: str, origin: int) -> str | None:
    """What to say of a WAV, RF64, AIFF or CAF file whose data size stops a second or more before
    samples do (a header last updated before the recording ended: libsndfile reads what the size
    says, and the rest was dropped without a word; the RF64 of long broadcast and field
    recordings, AIFF and CAF as well as WAV: a codec audit); ``None`` when what follows the data
    is chunks, or little."""
    width = _RAW_SAMPLE_BYTES.get(f.subtype)
    if width is None:
        return None
    try:
        with _looking_at(target) as src:
            end = src.seek(0, io.SEEK_END)
            data = _data_span(src, origin, end)
            if data is None:
                return None
            after = data[0] + data[1] + (data[1] & 1 if data[2] != "caf" else 0)
            per_second = f.samplerate * f.channels * width
            if end - after < per_second or _chunk_chain(src, after, end, data[2]):
                return None
    except (OSError, ValueError):
        return None
    return (
        f"{name}: the header's data size says {f.frames / f.samplerate:.2f} s, but "
        f"{(end - after) / per_second:.2f} s more of data follow it that are no chunks (a "
        "header last updated before the recording ended?); what the header says is read"
    )


#: The formats (libsndfile's names) whose header gives their data's size (:func:`_data_short`).
_SIZED_CONTAINERS = ("WAV", "WAVEX", "RF64", "AIFF", "CAF")


@contextlib.contextmanager
def _looking_at(target: Any) -> Iterator[Any]:
    """What ``target`` (a path as bytes, or the file object a decoder reads) holds, to be read
    from anywhere: a path's file opened and closed again, a file object's position (where the
    opened decoder left it) put back."""
    src = open(target, "rb") if isinstance(target, bytes) else target  # noqa: SIM115 - closed below
    was = None if src is not target else src.tell()
    try:
        yield src
    finally:
        if was is None:
            src.close()
        else:
            _seek_back(src, was)


#: The most bytes an Ogg page can take: a 27-byte header, 255 lacing values, 255 x 255 bytes.
_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _ogg_unfinished(target: Any, name: str, origin: int) -> str | None:
    """What to say of an Ogg file (Vorbis, Opus, FLAC) that does not end with its stream's last
    page (a copy or a download cut short, a recording whose writer was stopped): libsndfile
    decodes the pages that are there and stops without an error, so the file would read as a
    shorter one without a word. ``None`` when its last page ends the stream (the end-of-stream
    flag of the Ogg page header, RFC 3533), or when its end cannot be read or told."""
    try:
        with _looking_at(target) as src:
            end = src.seek(0, io.SEEK_END)
            start = max(origin, end - 2 * _OGG_MAX_PAGE)
            src.seek(start)
            tail = bytearray()
            while len(tail) < end - start:  # a stream may give fewer bytes than asked
                chunk = src.read(end - start - len(tail))
                if chunk is None:  # a raw stream with nothing to give now: the end is not told
                    raise OSError("no data")
                if not chunk:
                    break
                tail += chunk
        whole = ogg_ends_whole(bytes(tail))
    except (OSError, ValueError, TypeError):  # TypeError: a read that gives no bytes
        return None
    if whole is not False:
        return None
    return (
        f"{name}: the Ogg stream stops before its last page (the file is cut short, or its writer "
        "never finished it); what decoded is used"
    )


def ogg_ends_whole(tail: bytes) -> bool | None:
    """Whether the Ogg pages at the end of a file (``tail``: its last bytes, at least two of the
    largest pages' worth where the file is that long) end its stream: ``True`` when its last page
    carries the end-of-stream flag (RFC 3533; data that follow it, a tag, are allowed), ``False``
    when it does not or the file stops inside a page, ``None`` when it cannot be told (not Ogg,
    or damaged there).

    The capture pattern ``OggS`` can also occur inside a page's data, so pages are followed
    from the first pattern on, and a chain is trusted when it reaches the end or holds two pages.
    """
    n = len(tail)
    at = tail.find(b"OggS")
    while at != -1:
        pos, pages, flags = at, 0, 0
        while pos < n:
            head = tail[pos : pos + 27]
            if not head.startswith(b"OggS"):
                if pages and b"OggS".startswith(head):  # a page header cut by the end
                    return False
                break  # no page here: data after the stream, or a false start
            if head[4:5] != b"\x00" and len(head) > 4:
                break  # not a page of Ogg version 0
            if len(head) < 27 or pos + 27 + head[26] > n:
                if pages:
                    return False
                break
            size = 27 + head[26] + sum(tail[pos + 27 : pos + 27 + head[26]])
            if pos + size > n:
                if pages:
                    return False  # the file stops inside this page
                break
            flags = head[5]
            pos += size
            pages += 1
        if pages >= 2 or (pages and pos == n):
            return bool(flags & 0x04)
        at = tail.find(b"OggS", at + 1)
    return None


def _unfinished_wav(f: _SoundFile, target: Any, name: str, origin: int = 0) -> _SoundFile:
    """A WAV, RF64 or AIFF file whose header says its data is empty although samples follow it,
    read to the end.

    A recorder that stops before it finishes the file (a crash, a full disk, a capture tool
    that writes to a pipe) leaves the RIFF and data sizes at 0 (an RF64's ds64 sizes, an AIFF's
    SSND size); libsndfile then reads 0 frames. As ffmpeg and sox do, the samples after the data
    chunk's header are read to the end of the file (whole frames). ``f`` is returned as it is
    when the data really is empty (nothing, or only metadata chunks, after it) or its subtype
    cannot be read as it lies (ADPCM, GSM; an AIFC compression other than raw samples).
    ``origin``: where the file starts in a file object (its position when it was given).
    """
    width = _RAW_SAMPLE_BYTES.get(f.subtype)
    if width is None:
        return f
    owned = open(target, "rb") if isinstance(target, bytes) else None  # noqa: SIM115 - closed with the file
    src = owned if owned is not None else target
    try:
        end = src.seek(0, io.SEEK_END)
        span = _data_span(src, origin, end)
        start, kind = (None, "riff") if span is None else (span[0], span[2])
        endian = "LITTLE" if kind == "riff" else _aiff_endian(src, origin, end) if kind == "aiff" else None
        frame = width * f.channels
        if start is None or endian is None or end - start < frame or _chunk_chain(src, start, end, kind):
            if owned is not None:
                owned.close()
            return f
        data = _Slice(src, start, (end - start) // frame * frame)
        raw = _SoundFile(
            data,
            samplerate=f.samplerate,
            channels=f.channels,
            subtype=f.subtype,
            endian=endian,
            format="RAW",
        )
    except (OSError, ValueError, RuntimeError, sf.LibsndfileError):
        if owned is not None:
            owned.close()
        return f
    f.close()
    raw.container, raw._owned, raw.unsized = f.format, owned, True
    return raw


def _aiff_endian(src: Any, origin: int, end: int) -> str | None:
    """The byte order of an AIFF or AIFC file's samples (AIFF: big-endian; AIFC by its COMM
    chunk's compression type: ``sowt`` little-endian, ``NONE``/``twos``/``fl32``/``fl64``
    big-endian), ``None`` for a compression that is not raw samples."""
    src.seek(origin + 8)
    form = src.read(4)
    at = origin + 12
    while at + 8 <= end:
        src.seek(at)
        chunk = src.read(8 + 22)
        size = int.from_bytes(chunk[4:8], "big")
        if chunk[:4] == b"COMM":
            if form == b"AIFF":
                return "BIG"
            kind = chunk[8 + 18 : 8 + 22].lower()
            return (
                "LITTLE"
                if kind == b"sowt"
                else "BIG"
                if kind in (b"none", b"twos", b"fl32", b"fl64")
                else None
            )
        at += 8 + size + (size & 1)
    return None


#: Most bits per second MPEG audio takes (Layer I: 448 kbps), with room: a Xing/Info frame
#: count that makes the audio denser than this counts too few frames.
_MPEG_MAX_BPS = 480_000
#: Sample rates of MPEG-1 by the header's index (MPEG-2 halves them, MPEG-2.5 quarters them).
_MPEG1_RATES = (44100, 48000, 32000)


class _Patched:
    """A binary file object whose bytes from ``at`` read as ``patch`` (the rest as they are)."""

    def __init__(self, f: Any, at: int, patch: bytes) -> None:
        self._f, self._at, self._patch = f, at, patch
        self.name = source_name(f)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._f.seek(offset, whence))

    def tell(self) -> int:
        return int(self._f.tell())

    def read(self, n: int = -1) -> bytes:
        start = int(self._f.tell())
        data = self._f.read(n)
        lo, hi = max(start, self._at), min(start + len(data), self._at + len(self._patch))
        if lo < hi:
            b = bytearray(data)
            b[lo - start : hi - start] = self._patch[lo - self._at : hi - self._at]
            data = bytes(b)
        return data

    def close(self) -> None:
        if hasattr(self._f, "close"):
            self._f.close()


#: Bit rates of MPEG audio Layer III by the header's index (kbps): MPEG-1, and MPEG-2/2.5.
_L3_KBPS = (
    (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0),
    (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0),
)


def _l3_frame(h: bytes) -> tuple[int, int, int] | None:
    """``(frame length in bytes, samples, sample rate)`` of an MPEG audio Layer III frame header
    (4 bytes), ``None`` when it is none (or free-format)."""
    if len(h) < 4 or h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return None
    version, layer, br_i, rate_i = (h[1] >> 3) & 3, (h[1] >> 1) & 3, h[2] >> 4, (h[2] >> 2) & 3
    if version == 1 or layer != 1 or rate_i == 3:
        return None
    kbps = _L3_KBPS[0 if version == 3 else 1][br_i]
    if not kbps:
        return None
    rate = _MPEG1_RATES[rate_i] // {3: 1, 2: 2, 0: 4}[version]
    padding = (h[2] >> 1) & 1
    if version == 3:
        return 144000 * kbps // rate + padding, 1152, rate
    return 72000 * kbps // rate + padding, 576, rate


@dataclasses.dataclass(frozen=True)
class _MpegStart:
    """The first frame of an MP3: where it is, its header, and its Xing/Info tag's frame count."""

    first: int  # absolute offset of the first frame
    header: bytes
    length: int  # its length in bytes
    side: int  # bytes of side information after the header (where a Xing/Info tag starts)
    tag: bool  # the first frame is a Xing/Info frame (no audio)
    count: int | None  # its frame count (None: no tag, or a tag without one)
    count_at: int  # absolute offset of the count field (when there is one)


def _mpeg_start(src: Any, origin: int) -> _MpegStart | None:
    """The first frame of an MP3 read from ``src`` at ``origin`` (behind an ID3v2 tag of any size;
    without a tag the first frame must start the data), ``None`` for anything else. ``src`` is
    left at ``origin``."""
    try:
        src.seek(origin)
        head = src.read(10)
        start = origin
        if head[:3] == b"ID3" and len(head) == 10:
            size = 0
            for b in head[6:10]:
                size = (size << 7) | (b & 0x7F)
            start = origin + 10 + size + (10 if head[5] & 0x10 else 0)
        src.seek(start)
        data = src.read(4096)
        i = 0
        while start > origin and i + 4 <= len(data) and _l3_frame(data[i : i + 4]) is None:
            i += 1  # padding after the tag
        frame = _l3_frame(data[i : i + 4])
        if frame is None:
            return None
        mono = (data[i + 3] >> 6) & 3 == 3
        side = (17 if mono else 32) if (data[i + 1] >> 3) & 3 == 3 else (9 if mono else 17)
        at = i + 4 + side
        tag = data[at : at + 4] in (b"Xing", b"Info")
        has_count = tag and int.from_bytes(data[at + 4 : at + 8], "big") & 1
        count = int.from_bytes(data[at + 8 : at + 12], "big") if has_count else None
        return _MpegStart(start + i, bytes(data[i : i + 4]), frame[0], side, tag, count, start + at + 8)
    except (OSError, ValueError, IndexError):
        return None
    finally:
        _seek_back(src, origin)


def _seek_back(src: Any, at: int) -> None:
    """``src`` put back at ``at`` after a look at its data (a file object that cannot: left)."""
    try:
        src.seek(at)
    except (OSError, ValueError):
        pass


def _mpeg_walk(src: Any, first: int) -> tuple[int, int]:
    """Audio frames of the MP3 whose first frame is at ``first``, counted by walking their headers
    to the end of the data (a trailing tag, or anything not a frame, ends the walk), and where the
    walk ended (past the last frame); ``src`` is read in blocks (a 10-minute file: about 23,000
    frames)."""
    n, pos = 0, first
    buf, buf_at = b"", first
    while True:
        if pos + 4 > buf_at + len(buf):
            src.seek(pos)
            buf, buf_at = src.read(1 << 16), pos
            if len(buf) < 4:
                return n, pos
        frame = _l3_frame(buf[pos - buf_at : pos - buf_at + 4])
        if frame is None:
            return n, pos
        n += 1
        pos += frame[0]


def _mpeg_tags_end(src: Any, pos: int, end: int) -> bool:
    """Whether the bytes from ``pos`` (where the frames ended) to ``end`` are only the tags an MP3
    ends with (ID3v1, APEv2 with or without its header, Lyrics3v2, an appended ID3v2 with its
    footer), so that the frames walked are all the audio: not a frame the walk could not read
    (damage), after which a decoder may find more."""
    while pos < end:
        if end - pos >= 128:
            src.seek(end - 128)
            if src.read(3) == b"TAG":  # ID3v1
                end -= 128
                continue
        if end - pos >= 32:
            src.seek(end - 32)
            foot = src.read(32)
            if foot[:8] == b"APETAGEX":
                size = int.from_bytes(foot[12:16], "little")  # items and footer
                flags = int.from_bytes(foot[20:24], "little")
                step = size + (32 if flags & 0x80000000 else 0)
                if not 32 <= step <= end - pos:  # (a size of 0 never moved on: a hang, a review)
                    return False
                end -= step
                continue
        if end - pos >= 15:
            src.seek(end - 15)
            tail = src.read(15)
            if tail[6:] == b"LYRICS200" and tail[:6].isdigit():  # Lyrics3v2: its size, then the end
                step = int(tail[:6]) + 15
                if step > end - pos:
                    return False
                end -= step
                continue
        if end - pos >= 10:
            src.seek(end - 10)
            foot = src.read(10)
            if foot[:3] == b"3DI":  # an ID3v2 tag appended with its footer
                size = 0
                for b in foot[6:10]:
                    size = (size << 7) | (b & 0x7F)
                if size + 20 > end - pos:
                    return False
                end -= size + 20
                continue
        return False
    return True


class _Inserted:
    """A binary file object that reads as ``f`` with ``data`` inserted at offset ``at``."""

    def __init__(self, f: Any, at: int, data: bytes) -> None:
        self._f, self._at, self._data = f, at, data
        self._pos = int(f.tell())
        self.name = source_name(f)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == io.SEEK_END:
            end = int(self._f.seek(0, io.SEEK_END)) + len(self._data)
            self._pos = end + offset
        else:
            self._pos = offset + (self._pos if whence == io.SEEK_CUR else 0)
        if self._pos < 0:
            raise ValueError("negative seek position")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        out = []
        want = n if n is not None and n >= 0 else 1 << 62
        while want > 0:
            p = self._pos
            if p < self._at:
                self._f.seek(p)
                got = self._f.read(min(want, self._at - p))
            elif p < self._at + len(self._data):
                got = self._data[p - self._at : p - self._at + want]
            else:
                self._f.seek(p - len(self._data))
                got = self._f.read(want if want < 1 << 62 else -1)
            if not got:
                break
            out.append(got)
            self._pos += len(got)
            want -= len(got)
        return b"".join(out)

    def close(self) -> None:
        if hasattr(self._f, "close"):
            self._f.close()


def _count_frame(start: _MpegStart, frames: int) -> bytes:
    """A Xing frame of the first frame's size carrying ``frames`` as its frame count."""
    body = bytearray(start.length)
    body[:4] = start.header
    at = 4 + start.side
    body[at : at + 12] = b"Xing" + (1).to_bytes(4, "big") + frames.to_bytes(4, "big")
    return bytes(body)


def _mpeg_fix(src: Any, origin: int) -> tuple[str, int, bytes] | None:
    """How to read an MP3 whole when its decoder would stop early: ``("patch", offset, count)``
    for a Xing/Info frame count short of the frames its data holds, ``("insert", offset, frame)``
    for a file without one whose length the decoder would estimate short (from the first frame's
    bit rate: a VBR file read as 4.9 s of 12); ``None`` when the decoder reads it whole."""
    start = _mpeg_start(src, origin)
    if start is None or (start.tag and start.count is None):
        return None
    try:
        walked, stop = _mpeg_walk(src, start.first)
        frames = walked - (1 if start.tag else 0)
        end = int(src.seek(0, io.SEEK_END))
        whole = stop >= end or _mpeg_tags_end(src, stop, end)
    except (OSError, ValueError):
        return None
    finally:
        _seek_back(src, origin)
    if start.count is not None:
        if frames > start.count:  # the tag counts too few (by 1.5 % a 5-minute file lost 5.7 s)
            return "patch", start.count_at, min(frames, 0xFFFFFFFF).to_bytes(4, "big")
        return None
    estimate = (end - start.first) // max(1, start.length)  # what the decoder assumes
    # ... from the file's size, tags and all, and the first frame's bit rate
    announced = (end - origin) // max(1, start.length)
    if whole and abs(announced - frames) > 0.01 * frames + 2:
        # every frame walked, to the end or to the tags it ends with, and the decoder's estimate
        # off by more than 1 %: it is given the count (a VBR file read as 4.9 s of 12; an encode
        # to a pipe, a cover picture in a tag taken for audio: a whole file called cut short).
        # Within 1 % (a CBR file, small tags) it reads as it always did: a Xing frame makes the
        # decoder trim its own 529-sample delay, which would move every such file's start
        return "insert", start.first, _count_frame(start, frames)
    if frames > estimate * 1.02 + 2:
        return "insert", start.first, _count_frame(start, frames)
    return None


def _crc8(data: bytes) -> int:
    """FLAC's frame-header CRC-8 (polynomial x^8 + x^2 + x + 1, initial 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _flac_frame(data: bytes, i: int, nominal: int) -> tuple[int, int] | None:
    """``(first sample, samples)`` of the FLAC frame whose header starts at ``data[i]`` (its CRC-8
    checked), ``None`` when none starts there. ``nominal``: STREAMINFO's block size, which a
    fixed-block stream's frame numbers count in."""
    h = data[i : i + 16]
    if len(h) < 6 or h[0] != 0xFF or h[1] & 0xFE != 0xF8 or h[3] & 1:
        return None
    variable, size_code, rate_code = h[1] & 1, h[2] >> 4, h[2] & 0x0F
    if size_code == 0 or rate_code == 15 or (h[3] >> 4) > 10 or (h[3] >> 1) & 7 in (3, 7):
        return None
    lead = h[4]  # the frame or sample number, UTF-8 coded
    extra = next((k for k in range(7) if not lead & (0x80 >> k)), 7)
    if extra == 1 or extra == 7:
        return None
    n = extra - 1 if extra else 0
    number = lead & (0x7F >> extra) if extra else lead
    at = 5
    for _ in range(n):
        if at >= len(h) or h[at] & 0xC0 != 0x80:
            return None
        number = (number << 6) | (h[at] & 0x3F)
        at += 1
    if size_code == 6:
        samples, at = h[at] + 1, at + 1
    elif size_code == 7:
        samples, at = int.from_bytes(h[at : at + 2], "big") + 1, at + 2
    elif size_code == 1:
        samples = 192
    elif size_code <= 5:
        samples = 576 << (size_code - 2)
    else:
        samples = 256 << (size_code - 8)
    at += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if at >= len(h) or _crc8(h[:at]) != h[at]:
        return None
    return (number if variable else number * nominal), samples


def _flac_fix(src: Any, origin: int) -> tuple[str, int, bytes] | None:
    """A STREAMINFO sample count short of the frames a FLAC holds (a file whose header was
    written before the recording ended): libsndfile stops at the count, and 59 s of a 60 s file
    were dropped without a word. The last two frames are found from the end of the data (their
    headers' CRCs checked, their numbers one apart) and the count their numbers give is patched
    in: ``("patch", offset, 8 bytes)``; ``None`` when the count is right, zero (unknown, read to
    the end anyway) or the frames cannot be found."""
    try:
        src.seek(origin)
        head = src.read(42)
        if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
            return None
        nominal = int.from_bytes(head[10:12], "big")  # the largest block (= every block in a fixed stream)
        packed = int.from_bytes(head[18:26], "big")  # rate 20 bits, channels 3, bits 5, samples 36
        total = packed & ((1 << 36) - 1)
        if not total or not nominal:
            return None
        end = src.seek(0, io.SEEK_END)
        start = max(origin + 42, end - (1 << 18))
        src.seek(start)
        tail = src.read(end - start)
        frames: list[tuple[int, int]] = []
        i = len(tail) - 1
        while (i := tail.rfind(b"\xff", 0, i)) >= 0:
            fr = _flac_frame(tail, i, nominal)
            if fr is not None:
                frames.append(fr)
                if len(frames) == 2:
                    break
        if len(frames) < 2 or frames[1][0] + frames[1][1] != frames[0][0]:
            return None  # not two frames that follow each other: nothing is changed
        held = frames[0][0] + frames[0][1]
        if held <= total or held >= 1 << 36:
            return None
        return "patch", origin + 18, ((packed >> 36 << 36) | held).to_bytes(8, "big")
    except (OSError, ValueError):
        return None
    finally:
        _seek_back(src, origin)


def _count_patch(target: Any, origin: int, head: bytes | None) -> Any:
    """A reader of ``target`` (a path's bytes, whose first bytes ``head`` were read to sniff it, or
    a file object at ``origin``) that makes the decoder read every frame of an MP3
    (:func:`_mpeg_fix`: a Xing/Info count short of the data, or no tag and a VBR stream the
    decoder would estimate short) or a FLAC (:func:`_flac_fix`: a STREAMINFO count short of its
    frames); ``None`` when it reads the file whole as it is. A path that starts as an MP3 or a
    FLAC does is opened for it (the reader owns it); no other is opened."""
    if isinstance(target, bytes):
        h = head or b""
        flac = h[:4] == b"fLaC"
        if not flac and h[:3] != b"ID3" and not (len(h) > 1 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0):
            return None
        try:
            fh = open(target, "rb")  # noqa: SIM115 - kept by the reader, or closed below
        except OSError:
            return None  # (the decoder opens it itself, and says what is wrong)
        fix = _flac_fix(fh, 0) if flac else _mpeg_fix(fh, 0)
        if fix is None:
            fh.close()
            return None
        src = fh
    elif hasattr(target, "read"):
        fix = _flac_fix(target, origin) or _mpeg_fix(target, origin)
        if fix is None:
            return None
        src = target
    else:
        return None
    kind, at, data = fix
    return _Patched(src, at, data) if kind == "patch" else _Inserted(src, at, data)


def _soundfile_owning(target: Any, name: str, owned: Any) -> _SoundFile:
    """:func:`_soundfile`, the file then owning ``owned`` (a reader it closes with itself),
    which is closed at once when opening fails."""
    try:
        f = _soundfile(target, name)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    f._owned = owned
    return f


def _soundfile(target: Any, name: str) -> _SoundFile:
    try:
        return _SoundFile(target)
    except sf.LibsndfileError as e:
        reason = e.error_string
        if "possibly a pipe" in reason:  # libsndfile's guess when mpg123 found no frame, misleading
            reason = "no audio frames found in the data"
        elif "SF_INFO struct incomplete" in reason:  # a rate of 0 Hz or >= 2**31 Hz, no channels
            reason = "the header's sample rate or channel count is invalid (0, negative or beyond 2**31)"
        raise DecodeError(f"{name}: cannot decode audio (corrupt or unsupported format: {reason})") from None
    except (RuntimeError, OSError, TypeError, ValueError) as e:
        raise DecodeError(f"{name}: cannot decode audio ({e})") from None


def _sized(f: _SoundFile, target: Any, name: str, origin: int = 0, until: float | None = None) -> _SoundFile:
    """``f`` (a file whose header leaves its length unknown) opened again, its length counted by
    decoding it once (without seeking), so that durations, limits and progress are true; reads
    never seek. A decoding error on the way is raised when the data is read, as for any file.
    ``until``: counting stops once more than that many seconds are counted (the length is then
    at least what it says: enough to refuse a file over a limit without decoding all of it)."""
    f.no_seek = True
    owned, f._owned = f._owned, None  # (the reader it opened reads again below)
    n = 0
    most = None if until is None or until * f.samplerate > 2**62 else int(until * f.samplerate)
    try:
        buf = np.empty((1 << 16, f.channels), dtype=np.float32)  # 16 MB at 64 channels
        while True:
            got = _fill(f, buf).shape[0]
            n += got
            if got < buf.shape[0] or (most is not None and n > most):
                break
    except _Stopped as stop:
        n += stop.frames  # counted up to where it stops decoding; reading will say where
    finally:
        f.close()
    if hasattr(target, "seek"):
        target.seek(origin)
    again = _soundfile_owning(target, name, owned)
    again.no_seek = again.unsized = True
    again._info.frames = n
    return again


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


def audio_info(
    source: AudioSource,
    sample_rate: SampleRate | None = None,
    *,
    count: bool = True,
    count_until: float | None = None,
) -> AudioInfo:
    """Sample rate, channels, frames and format of a source without decoding it (but for a
    file whose header does not give its length, counted by decoding it once; ``count=False``:
    ``frames`` is then :data:`UNKNOWN_FRAMES`; ``count_until``: counted only until it passes
    that many seconds, so that a file over a limit is told without decoding all of it)."""
    name = source_name(source)
    if isinstance(source, np.ndarray):
        sr = check_sample_rate(sample_rate, what=name)
        if source.ndim not in (1, 2):
            raise InputError(f"{name}: expected shape (n,) or (n, channels), got {source.shape}")
        # the shape says it all: no mixed copy of a long array (decoding checks the samples)
        frames = source.shape[0] if source.ndim == 1 else max(source.shape)
        return AudioInfo(name, sr, 1 if source.ndim == 1 else min(source.shape), frames, "array")
    if count_until is not None:
        count_until = check_seconds(count_until, name="count_until", what=name)
    start = _position(source) if hasattr(source, "read") else 0
    f = _open(source, count=count, count_until=count_until)
    try:
        _check_file_rate(f, sample_rate, name)
        return AudioInfo(name, f.samplerate, f.channels, f.frames, f.container or f.format)
    finally:
        f.close()
        _rewind(source, start)


def _check_file_rate(f: sf.SoundFile, sample_rate: Any, name: str) -> None:
    """A file's rate is its header's: a ``sample_rate`` given with a file must say the same (it
    was ignored, so ``analyze("x.wav", 44100)`` on a 22,050 Hz file ran at 22,050 Hz unsaid)."""
    if sample_rate is not None and sample_rate != f.samplerate:
        raise InputError(
            f"{name}: sample_rate={sample_rate!r} was given, but the file's header says {f.samplerate} Hz; "
            "a file is read at its own rate (sample_rate is for arrays: leave it out)"
        )


def _rewind(source: Any, to: int = 0) -> None:
    """A file object back where reading started (``to``), so the next read sees what this one did."""
    if hasattr(source, "seek") and not isinstance(source, (str, os.PathLike, np.ndarray)):
        try:
            source.seek(to)
        except (OSError, ValueError):
            pass


def ended_early(expected: float, decoded: float) -> bool:
    """Whether decoding ended well before the length a header announced: by more than 0.1 s and
    2 % of it (an encoder's padding and a resampler's rounding stay below that). The one rule of
    the classifier's damage note and the web app's notice."""
    return expected - decoded > max(0.1, 0.02 * expected)


def _raw_blocks(
    f: sf.SoundFile, name: str, frames_per_block: int
) -> Iterator[tuple[np.ndarray, float, bool]]:
    """A file's blocks as decoded: ``(block, full_scale, last)``, ``block`` of shape
    ``(n, channels)`` in one reused buffer, integers (full scale ``full_scale``) when the file's
    subtype is PCM (libsndfile reads those ~6x faster than it converts them), else float32
    (float64 for a ``DOUBLE`` file; ``full_scale`` 0) with every sample checked (finite,
    bounded)."""
    int_dtype, full_scale = _INT_SUBTYPES.get(f.subtype, (None, 0.0))
    # a DOUBLE file's samples as float64: read as float32, 1e300 would be inf ("NaN or infinite")
    float_dtype = np.float64 if f.subtype == "DOUBLE" else np.float32
    buf = np.empty((frames_per_block, f.channels), dtype=int_dtype or float_dtype)
    got = 0
    while True:
        try:
            block = _fill(f, buf)
        except _Stopped as stop:
            # What decoded of this block is passed on; the failed read is tried again in small
            # steps where the decoder can seek back, so the message says where decoding stops.
            if stop.frames:
                part = buf[: stop.frames]
                if int_dtype is None:
                    check_amplitude(part, what=name, error=DecodeError)
                got += stop.frames
                yield part, full_scale, False
            for part in _salvage(f, got, buf[stop.frames :], name, int_dtype is None):
                got += part.shape[0]
                yield part, full_scale, False
            said = (
                "the header does not give its length"
                if f.unsized
                else f"its last frames announce {f.frames} frames, the header fewer"
                if f.count_corrected
                else f"the header announces {f.frames} frames"
            )
            err = DecodeError(
                f"{name}: decoding failed after {got} frames ({got / f.samplerate:.2f} s; {said}: {stop.error})"
            )
            err.frames_decoded = got  # type: ignore[attr-defined]  # what iter_blocks may keep
            raise err from None
        last = block.shape[0] < frames_per_block
        got += block.shape[0]
        if int_dtype is None and block.shape[0]:
            check_amplitude(block, what=name, error=DecodeError)
        yield block, full_scale, last
        if last:
            break
    if got == 0:
        raise DecodeError(f"{name}: no audio frames could be decoded")


#: Frames per read when a block that failed to decode is read again (:func:`_salvage`).
SALVAGE_FRAMES = 4096
#: Frames per read within a block (:func:`_fill`): a read that fails loses at most this much
#: (0.37 s at 44.1 kHz) where the decoder cannot seek back (FLAC); ~1 % slower than one read.
READ_FRAMES = 16384


class _Stopped(Exception):
    """A read within a block failed after ``frames`` frames of it had decoded."""

    def __init__(self, frames: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.frames, self.error = frames, error


def _fill(f: sf.SoundFile, buf: np.ndarray) -> np.ndarray:
    """``buf`` filled by reads of :data:`READ_FRAMES` (fewer rows at the end of the data).

    Raises
    ------
    _Stopped
        A read failed; how many frames of ``buf`` had decoded.
    """
    n = 0
    while n < buf.shape[0]:
        want = min(READ_FRAMES, buf.shape[0] - n)
        try:
            got = f.read(want, always_2d=True, out=buf[n : n + want]).shape[0]
        except (sf.LibsndfileError, RuntimeError) as e:
            raise _Stopped(n, e) from None
        n += got
        if got < want:
            break
    return buf[:n]


def _salvage(f: sf.SoundFile, at: int, buf: np.ndarray, name: str, check: bool) -> Iterator[np.ndarray]:
    """The frames from ``at`` on that still decode, read again :data:`SALVAGE_FRAMES` at a time
    into ``buf`` after a block read from ``at`` failed; stops at the first read that fails
    again (or where the data ends), or at once when the decoder cannot seek back."""
    try:
        f.seek(at)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):  # a stream cannot seek back
        return
    step = min(SALVAGE_FRAMES, buf.shape[0])
    while True:
        try:
            part = f.read(step, always_2d=True, out=buf[:step])
        except (sf.LibsndfileError, RuntimeError):
            return
        if not part.shape[0]:
            return
        if check:
            check_amplitude(part, what=name, error=DecodeError)
        yield part
        if part.shape[0] < step:
            return


class AudioReader(HoldsFile):
    """An audio file (path or binary file object) opened and checked, read block by block at
    its own rate and channels: the decoding of :func:`iter_blocks`, for a host that processes
    the audio itself (``instrunet_pedalboard.process_file``).

    Parameters
    ----------
    source : str, PathLike or binary file object

    Attributes
    ----------
    name : str
    sample_rate : int
    channels : int
    frames : int
        What the header says; a file cut short yields fewer (see the module's notes).

    Raises
    ------
    DecodeError, InputError
        As :func:`iter_blocks`: missing, empty, not audio, a header out of range.

    Examples
    --------
    >>> with AudioReader("song.flac") as r:  # doctest: +SKIP
    ...     for block in r.blocks(65536):  # (n, channels) float32
    ...         ...
    """

    def __init__(self, source: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(source, np.ndarray):
            raise InputError("array: AudioReader reads files; an array is already decoded")
        self.name = source_name(source)
        self._f = _open(source)
        self._f.warn_header()
        self.sample_rate: int = int(self._f.samplerate)
        self.channels: int = int(self._f.channels)
        self.frames: int = int(self._f.frames)

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``frames`` frames, float32 ``(n, channels)`` in [-1, 1]
        for integer files, each a new array.

        Raises
        ------
        DecodeError
            The data stops decoding (``decoding failed after N frames``), holds no frames, or
            holds NaN, infinite or absurdly large float samples.
        """
        n = min(check_count(frames, name="frames", what=self.name), MAX_BLOCK_SAMPLES // self.channels)
        for block, full_scale, _ in _raw_blocks(self._f, self.name, n):
            if full_scale:
                yield block.astype(np.float32) * np.float32(1.0 / full_scale)
            else:
                yield block.astype(np.float32)  # a copy (of a DOUBLE file's float64 too)
        note = self._f.end_note()
        if note is not None:
            warn(note)  # an Ogg file cut short: what decoded was all there was


#: Native-rate seconds decoded per block by the classifier's passes over a source (its first
#: pass and the evidence windows' reading).
DECODE_BLOCK_SECONDS = 20.0


def iter_blocks(
    source: AudioSource,
    sample_rate: SampleRate | None = None,
    *,
    target_sr: int = DEFAULT_FRONT_END.sample_rate,
    block_seconds: float = 10.0,
    damage: list[str] | None = None,
) -> Iterator[np.ndarray]:
    """Decode a source block by block as mono float32 at ``target_sr``.

    At most ``block_seconds`` of native-rate audio is read from a file at a time
    (``SoundFile.read(frames)``), mixed to mono and resampled by one stream resampler
    (:func:`instrunet_core.inputs.resampler`), so memory stays bounded for any file length.

    ``damage``: a list that takes a note, instead of an error, when a file stops decoding
    after some of its audio (a FLAC cut short: the ``decoding failed after N frames``
    message) and, at the end, when decoding ended well before the length its header announces
    (a damaged MP3 stops without an error; :func:`ended_early`); the blocks end with what
    decoded. A file of which nothing decodes is an error either way.

    Yields
    ------
    np.ndarray [shape=(m,), dtype=float32]
        Consecutive blocks of resampled mono audio (some may be empty).
    """
    name = source_name(source)
    block_seconds = check_seconds(block_seconds, name="block_seconds", what=name)
    if isinstance(source, np.ndarray):
        out = 0
        for mono in _array_blocks(
            source, sample_rate, name=name, target_sr=target_sr, block_seconds=block_seconds
        ):
            out += mono.shape[0]
            yield mono
        _check_resampled(name, np.asarray(source).size > 0, out, sample_rate, target_sr, InputError)
        return
    f = _open(source, count=False)  # read to the end: a length the header lacks is not needed
    try:
        f.warn_header()
        _check_file_rate(f, sample_rate, name)
        rs = resampler(f.samplerate, target_sr)
        frames = max(1, min(int(block_seconds * f.samplerate), MAX_BLOCK_SAMPLES // f.channels))
        got = out = 0
        said = False  # channels that cancel: said once
        try:
            for block, full_scale, last in _raw_blocks(f, name, frames):
                got += block.shape[0]
                mono = mix_down_int(block, full_scale) if full_scale else mix_down(block)
                said = said or _cancelled(name, block, mono, full_scale)
                if rs is not None:
                    mono = rs.resample_chunk(mono, last=last)
                out += mono.shape[0]
                yield mono
        except DecodeError as e:
            # decoding stopped partway (:func:`_raw_blocks` says how far): a note if asked for
            if damage is None or not getattr(e, "frames_decoded", 0):
                raise
            damage.append(f"{e}; what decoded is used")
            if rs is not None:  # the resampler's last samples: the stream ends here
                yield rs.resample_chunk(np.zeros(0, np.float32), last=True)
            return
        _check_resampled(name, got > 0, out, f.samplerate, target_sr)
        if damage is not None and not f.unsized and f.frames > 0:
            expected, decoded = f.frames / f.samplerate, got / f.samplerate
            if ended_early(expected, decoded):
                damage.append(
                    f"{name}: the header announces {expected:.2f} s but only {decoded:.2f} s could be "
                    "decoded (the file is cut short or damaged); what decoded is used"
                )
        note = f.end_note()
        if note is not None:
            # an Ogg file cut short: its length is counted from the pages that are there, so
            # nothing above could tell
            if damage is not None:
                damage.append(note)
            else:
                warn(note)
    finally:
        f.close()


#: A mix quieter than this (peak, dBFS) of channels louder than :data:`_CANCEL_CHANNELS_DB`
#: is said to cancel (:func:`_cancelled`).
_CANCEL_MIX_DB = -60.0
_CANCEL_CHANNELS_DB = -40.0


def _cancelled(name: str, block: np.ndarray, mono: np.ndarray, full_scale: float | None) -> bool:
    """Warn when a block's channels cancel in the mono mix (one channel the other inverted: a
    wiring fault), which made a full-scale file "silence" without a word. Checked only where the
    mix is quiet, so a normal block costs one peak of the mix. Returns whether it warned."""
    if block.ndim != 2 or block.shape[1] < 2 or not mono.size:
        return False
    mix = float(max(np.max(mono), -np.min(mono)))
    if mix >= 10 ** (_CANCEL_MIX_DB / 20):
        return False
    chans = float(np.max(np.abs(block))) / (full_scale or 1.0)
    if chans < 10 ** (_CANCEL_CHANNELS_DB / 20):
        return False
    how = "silent" if mix < 1e-9 else f"{20 * np.log10(chans / mix):.0f} dB below them"
    warn(
        f"{name}: its channels cancel when mixed to mono (the mix is {how}: one channel the other "
        "inverted?); what is analysed is that mix: analyse one channel to hear the recording"
    )
    return True


def _check_resampled(
    name: str, had_audio: bool, out: int, rate: Any, target_sr: int, error: type[Exception] = DecodeError
) -> None:
    """Audio that resampling turned into nothing (one sample at 192 kHz) is too short to hear,
    not silence: it was answered "silence", probability 1."""
    if had_audio and out == 0:
        raise error(
            f"{name}: too short to analyse: resampled from {rate} Hz to {target_sr} Hz it leaves "
            "no sample (less than one sample period)"
        )


def _array_blocks(
    source: np.ndarray, sample_rate: Any, *, name: str, target_sr: int, block_seconds: float
) -> Iterator[np.ndarray]:
    """Blocks of an in-memory array: mixed to mono and resampled one block at a time, so the
    temporary memory is bounded by the block size whatever the rate ratio and length."""
    sr = check_sample_rate(sample_rate, what=name)
    y = frames_first(check_audio_array(source, what=name))
    warn_narrow_values(y, name, whole=True)
    n = y.shape[0]
    channels = 1 if y.ndim == 1 else y.shape[1]
    step = max(1, min(int(block_seconds * sr), MAX_BLOCK_SAMPLES // channels))
    rs = resampler(sr, target_sr)
    said = False
    for i in range(0, n, step):
        block = as_float_audio(y[i : i + step], what=name)
        mono = block if block.ndim == 1 else mix_down(block)
        said = said or _cancelled(name, block, mono, None)
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
        Rate of an array source (with a file: its header's rate or nothing, else ``InputError``).
    target_sr : int
        Output rate.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    blocks = list(iter_blocks(source, sample_rate, target_sr=target_sr))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _is_filelike(x: Any) -> bool:
    return hasattr(x, "read") and not isinstance(x, (str, bytes, os.PathLike, np.ndarray))


def rereadable_source(source: Any) -> Any:
    """Return a re-readable form of ``source``: non-seekable file objects, FIFOs and other
    non-regular paths (``/dev/stdin``) are copied to memory once (at most
    :data:`~instrunet_core.inputs.MAX_STREAM_BYTES`), so that analyzers can decode the
    source a second time."""
    if _is_filelike(source):
        _check_file_object(source, source_name(source))
        if not _seekable(source):
            return _read_bounded(source, source_name(source))
    if isinstance(source, (str, os.PathLike)):
        name = source_name(source)
        try:
            st = os.stat(check_path(source))
        except OSError:
            return source  # missing or unreadable: _open reports it
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            try:
                with open(source, "rb") as fh:
                    return _read_bounded(fh, name)
            except OSError as e:
                raise DecodeError(f"{name}: cannot read file: {e.strerror or e}") from None
    return source
