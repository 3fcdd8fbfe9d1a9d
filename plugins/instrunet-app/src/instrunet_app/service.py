"""The app's logic without Streamlit: check an upload, analyse it, describe the result.

:func:`analyze_upload` takes the uploaded bytes and returns an :class:`AppResult` or
raises an :class:`~instrunet_core.InstrunetError` whose message names the file and the
problem (empty, not audio, too large, too long, unsupported extension). A silent
recording is not an error: it comes back with ``result.notice`` set.

Examples
--------
>>> from instrunet_app.service import analyze_upload
>>> data = open("examples/ensemble.flac", "rb").read()  # doctest: +SKIP
>>> res = analyze_upload(data, "ensemble.flac")  # doctest: +SKIP
>>> [i.label for i in res.analysis.instruments]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from instrunet_core import Analysis, InputError, Model, analyze, get_registry, load_model
from instrunet_core.analysis import count_word
from instrunet_core.audio import MP3_SUPPORTED, UNKNOWN_FRAMES, audio_info, ended_early
from instrunet_core.features import SILENCE_DB
from instrunet_core.inputs import plain_float, plain_int
from instrunet_core.registry import Registry
from instrunet_core.timeline import format_time

__all__ = [
    "ALLOWED_EXTENSIONS",
    "Limits",
    "ModelChoice",
    "AppResult",
    "available_models",
    "check_upload",
    "analyze_upload",
    "analysis_steps",
    "audio_mime",
    "model_card",
    "condition_view",
    "unknown_reason_text",
    "condition_model_line",
    "other_extras",
    "markdown_text",
    "NO_VALUE",
    "label_text",
    "condition_text",
    "length_text",
    "player_audio",
]

#: What a cell without a value shows (a lone "-" is an empty list item in Streamlit's tables,
#: which read every cell as Markdown; the page and the PDF show the same).
NO_VALUE = "\u2013"


#: Extensions the uploader accepts (mp3 only where libsndfile decodes it).
ALLOWED_EXTENSIONS: tuple[str, ...] = (
    ("wav", "flac", "ogg", "mp3") if MP3_SUPPORTED else ("wav", "flac", "ogg")
)

#: Called with (fraction in [0, 1], what is happening); what it returns is ignored.
Progress = Callable[[float, str], Any]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Upload limits.

    Attributes
    ----------
    max_mb : float
        Largest upload in megabytes (10**6 bytes).
    max_seconds : float
        Longest recording in seconds.
    max_analyses : int
        Most analyses the server runs at once, over every session (each holds its upload, its
        decoding and its analysis: about 0.4 GB for a 50 MB upload of ten minutes); an upload
        beyond them waits for one to end. By default the usable cores (1 to 4).
    """

    max_mb: float = 50.0
    max_seconds: float = 600.0
    max_analyses: int = dataclasses.field(default_factory=lambda: default_analyses())

    def __post_init__(self) -> None:
        # a limit that is no number, NaN (which no size exceeds) or infinite (whose bytes do not
        # exist) is refused here, not by every upload's check
        for name, most in (("max_mb", 1e6), ("max_seconds", 1e7)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= most:
                raise InputError(f"Limits: {name} must be a number > 0 and at most {most:g}, got {v!r}")
        n = self.max_analyses
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ANALYSES:
            raise InputError(
                f"Limits: max_analyses must be a whole number from 1 to {MAX_ANALYSES}, got {n!r}"
            )

    @classmethod
    def from_env(cls) -> Limits:
        """Limits from ``INSTRUNET_APP_MAX_MB``, ``INSTRUNET_APP_MAX_SECONDS`` and
        ``INSTRUNET_APP_MAX_ANALYSES`` (defaults 50, 600 and the usable cores, 1 to 4)."""
        out: dict[str, Any] = {}
        for field, var in (("max_mb", "INSTRUNET_APP_MAX_MB"), ("max_seconds", "INSTRUNET_APP_MAX_SECONDS")):
            raw = os.environ.get(var)
            if raw:
                try:
                    v = plain_float(raw)  # (not 1_5 for 15)
                except ValueError:
                    raise InputError(f"{var} must be a number, got {raw!r}") from None
                if not v > 0:
                    raise InputError(f"{var} must be > 0, got {raw!r}")
                out[field] = v
        raw = os.environ.get("INSTRUNET_APP_MAX_ANALYSES")
        if raw:
            try:
                out["max_analyses"] = plain_int(raw)
            except ValueError:
                raise InputError(f"INSTRUNET_APP_MAX_ANALYSES must be a whole number, got {raw!r}") from None
        try:
            return cls(**out)
        except InputError as e:  # inf, 1e400: name the variable
            raise InputError(
                f"INSTRUNET_APP_MAX_MB / INSTRUNET_APP_MAX_SECONDS / INSTRUNET_APP_MAX_ANALYSES: {e}"
            ) from None

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)

    @property
    def duration_text(self) -> str:
        """``max_seconds`` for people: ``"30 s"``, ``"10 min"``."""
        s = self.max_seconds
        if s < 120:
            return f"{s:g} s"
        if s % 60 == 0:
            return f"{s / 60:g} min"
        return format_time(s) + (" (h:mm:ss)" if s >= 3600 else " (m:ss)")


#: The most analyses ``Limits.max_analyses`` may allow at once.
MAX_ANALYSES = 64


def default_analyses() -> int:
    """Analyses at once by default: the cores this process may use, 1 to 4 (each analysis uses
    its own worker threads; more at once only share the cores and add their memory)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


_SLOTS_LOCK = threading.Lock()
_SLOTS: dict[int, threading.BoundedSemaphore] = {}


@contextlib.contextmanager
def analysis_slot(limits: Limits, waiting: Callable[[], Any]) -> Iterator[None]:
    """Hold one of the server's ``limits.max_analyses`` analysis slots (shared by every session
    of the process) while the block runs; ``waiting`` is called about four times a second while
    every slot is taken (the page's "waiting" line, and Streamlit's chance to stop a session that
    was closed while it waited)."""
    with _SLOTS_LOCK:
        sem = _SLOTS.setdefault(limits.max_analyses, threading.BoundedSemaphore(limits.max_analyses))
    while not sem.acquire(timeout=0.25):
        waiting()
    try:
        yield
    finally:
        sem.release()


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One installed, usable model version, as the model picker lists it."""

    name: str
    version: str
    plugin: str
    default: bool

    @property
    def title(self) -> str:
        return f"{self.name} {self.version}" + (" (default)" if self.default else "")


@dataclasses.dataclass
class AppResult:
    """What the page shows.

    Attributes
    ----------
    analysis : instrunet_core.Analysis
    filename : str
        The uploaded file's name.
    size_bytes : int
    notice : str or None
        A message for the page when the result needs one (a silent recording).
    """

    analysis: Analysis
    filename: str
    size_bytes: int
    notice: str | None = None
    #: The steps the progress bar named, the last (writing the reports) still to come.
    steps: tuple[str, ...] = ()


def available_models(*, registry: Any = None) -> list[ModelChoice]:
    """Usable registered models, newest version of each name, the default first, and the
    default name's previous version (``family`` 3.2.0 beside 3.3.0: the previous default, the
    same graph around the network before its last training; docs/models.md).

    The default is the model ``instrunet`` and ``load_model()`` use without a name, version
    included: ``INSTRUNET_DEFAULT_MODEL=family@2.0.0`` offers family 2.0.0 first, as the default,
    and family's newest version beside it (the page ran the newest version and called it the
    default, so the app and the command line answered one file differently: an audit).

    Returns
    -------
    list of ModelChoice
    """
    from instrunet_core.errors import ModelError
    from instrunet_core.manifest import parse_semver

    reg = registry or get_registry()
    best: dict[str, Any] = {}
    for e in reg.models:
        if e.error is None and (
            e.name not in best or parse_semver(e.version) > parse_semver(best[e.name].version)
        ):
            best[e.name] = e
    try:
        chosen = reg.resolve_model(None)
    except ModelError:
        chosen = None
    out = [ModelChoice(chosen.name, chosen.version, chosen.plugin, True)] if chosen is not None else []
    offered = list(best.values())
    if chosen is not None:
        earlier = [
            e
            for e in reg.models
            if e.error is None
            and e.name == chosen.name
            and parse_semver(e.version) < parse_semver(chosen.version)
        ]
        if earlier:
            offered.append(max(earlier, key=lambda e: parse_semver(e.version)))
    out += [
        ModelChoice(e.name, e.version, e.plugin, False)
        for e in offered
        if chosen is None or (e.name, e.version) != (chosen.name, chosen.version)
    ]
    return sorted(out, key=lambda c: (not c.default, c.name, [-x for x in parse_semver(c.version)[:3]]))


#: Every ASCII punctuation character: CommonMark lets each be escaped with a backslash, and
#: escaping them all leaves Markdown (and Streamlit's additions: ``:color[...]`` directives,
#: ``$`` math) nothing to interpret.
_MARKDOWN_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span: shown verbatim, whatever it holds."""
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_text(text: str, *, literal: Sequence[str] = ()) -> str:
    """``text`` for a Markdown element (``st.warning``, ``st.error``...), shown as it is.

    An upload's name is the user's: ``**bold** [x](https://evil.example) ![p](http://host/p.png)``
    must not become bold text, a link, or an image the browser fetches. Each occurrence of a
    ``literal`` string (the upload's name) becomes a code span: escapes are not enough there,
    because Streamlit's Markdown turns a bare URL into a link after parsing, escaped or not, but
    never inside code. Everywhere else every ASCII punctuation character is backslash-escaped.
    Control characters and bytes that are not UTF-8 are shown escaped
    (:func:`instrunet_core.output.display_name`), so the text stays one line.
    """
    from instrunet_core.output import display_name

    def escaped(part: str) -> str:
        return "".join("\\" + ch if ch in _MARKDOWN_PUNCTUATION else ch for ch in part)

    shown = display_name(text)
    names = {display_name(n) for n in literal if n}
    out, i = [], 0
    while True:
        found = [(at, n) for n in names if (at := shown.find(n, i)) >= 0]
        if not found:
            out.append(escaped(shown[i:]))
            return "".join(out)
        at, name = min(found, key=lambda f: (f[0], -len(f[1])))  # the first; the longest there
        out.append(escaped(shown[i:at]) + _code_span(name))
        i = at + len(name)


def _extension(filename: str) -> str:
    """The extension, lower case: ``".wav"`` (a name that is only an extension) is ``wav`` too
    (``os.path.splitext`` takes a leading dot for part of the name)."""
    base = os.path.basename(filename)
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


#: Bytes a download's name may take (file systems take 255), its suffix (``_ranges.csv``) included.
_MAX_NAME_BYTES = 255
_LONGEST_SUFFIX = "_ranges.csv"


def file_stem(filename: str) -> str:
    """The name for downloads: the upload's name without its extension (``"analysis"`` when
    nothing usable is left: ``.wav``, ``..wav``, whose dots a browser strips to an empty name),
    cut to fit a file name with the longest download suffix (255 bytes)."""
    base = os.path.basename(filename)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    if not stem.strip("."):
        return "analysis"
    room = _MAX_NAME_BYTES - len(_LONGEST_SUFFIX)
    raw = stem.encode("utf-8", "surrogatepass")
    if len(raw) > room:
        stem = raw[:room].decode("utf-8", "ignore")  # (a character cut in two is left out)
    return stem


def upload_name(name: str) -> str:
    """An upload's name as the user typed it: browsers send ``"``, CR and LF in a file name as
    ``%22``, ``%0D`` and ``%0A`` (the HTML form encoding) and never as themselves, so those three
    escapes are undone (``say "hi".wav`` was shown and reported as ``say %22hi%22.wav``)."""
    for escape, ch in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n"), ("%0d", "\r"), ("%0a", "\n")):
        name = name.replace(escape, ch)
    return name


def label_text(label: str, n_labels: int = 8) -> str:
    """A label as people read it: the open-set answer ``other`` is "none of the eight" (of an
    eight-label model; "none of the labels" otherwise), every other label itself."""
    if label != "other":
        return label
    return "none of the eight" if n_labels == 8 else "none of the labels"


#: The condition classes as the page and the PDF write them (the JSON keeps the keys).
CONDITION_TEXT = {
    "healthy": "healthy",
    "moderately_aged": "moderately aged",
    "broken_noisy": "broken / noisy",
}


def condition_text(label: Any) -> str:
    """A condition class as people read it: ``broken_noisy`` → "broken / noisy"."""
    text = str(label)
    return CONDITION_TEXT.get(text, text.replace("_", " "))


def length_text(seconds: float) -> str:
    """A recording's length: ``m:ss.s``, or :func:`seconds_text` under a second (a 45 ms file is
    "45 ms", not "0:00.0")."""
    s = float(seconds)
    return seconds_text(s) if s < 1.0 else format_time(s, decimals=1)


def check_upload(data: bytes, filename: str, *, limits: Limits | None = None) -> float:
    """Check an upload before analysing it.

    Parameters
    ----------
    data : bytes
        The file's content.
    filename : str
        Its name (for the extension and the messages).
    limits : Limits, optional
        Default: :meth:`Limits.from_env`.

    Returns
    -------
    float
        Duration in seconds.

    Raises
    ------
    InputError
        ``data`` not bytes, ``filename`` not a string, unsupported extension, empty, too large,
        too many samples a second (:data:`MAX_RATE_TIMES_CHANNELS`) or too long.
    DecodeError
        Not decodable audio.
    """
    if not isinstance(filename, str):
        raise InputError(f"upload: the file name must be a str, got {type(filename).__name__}")
    if not isinstance(data, (bytes, bytearray)):
        raise InputError(f"{filename}: the upload's content must be bytes, got {type(data).__name__}")
    lim = limits or Limits.from_env()
    ext = _extension(filename)
    if ext not in ALLOWED_EXTENSIONS:
        raise InputError(
            f"{filename}: unsupported file type {('.' + ext) if ext else '(no extension)'}; "
            f"upload one of: {', '.join(ALLOWED_EXTENSIONS)}"
        )
    if len(data) == 0:
        raise InputError(f"{filename}: the file is empty (0 bytes)")
    if len(data) > lim.max_bytes:
        raise InputError(
            f"{filename}: the file is {len(data):,} bytes, more than the limit of {lim.max_mb:g} MB "
            f"({lim.max_bytes:,} bytes)"
        )
    buf = io.BytesIO(data)
    buf.name = filename
    head = audio_info(buf, count=False)  # the header alone: nothing decoded yet
    if head.sample_rate * head.channels > MAX_RATE_TIMES_CHANNELS:
        # what one upload costs grows with rate x channels x seconds, and a stream that
        # compresses to a few bytes a frame passes the size limit at any rate
        raise InputError(
            f"{filename}: {head.sample_rate:,} Hz x {head.channels} channels is more than the app analyses "
            f"(sample rate x channels at most {MAX_RATE_TIMES_CHANNELS:,}: 192 kHz stereo, 48 kHz in 8 "
            "channels); resample it or pick fewer channels first"
        )
    # a length the header does not give is counted by decoding, only until it passes the limit
    info = audio_info(buf, count_until=lim.max_seconds)
    if info.duration > lim.max_seconds:
        if head.frames >= UNKNOWN_FRAMES:
            raise InputError(
                f"{filename}: the recording is longer than the limit of {lim.duration_text} (its header "
                "gives no length: it was counted that far)"
            )
        raise InputError(
            f"{filename}: the recording is {info.duration:.3f} s long, more than the limit of {lim.duration_text}"
        )
    return float(info.duration)


#: The most samples a second (sample rate x channels) an upload may carry: 192 kHz stereo or
#: 48 kHz in 8 channels. Decoding, mixing and the player's transcoding cost that much per second of
#: audio (a 1 MHz 8-channel FLAC of 120 KB cost 25 times what 44.1 kHz stereo does).
MAX_RATE_TIMES_CHANNELS = 384_000


class _ReadProgress(io.BytesIO):
    """In-memory file that reports how far decoding has read (the analysis streams it)."""

    def __init__(self, data: bytes, name: str, report: Callable[[float], None]) -> None:
        super().__init__(data)
        self.name = name
        self._size = max(1, len(data))
        self._report = report
        self._seen = 0.0
        self._front = 0  # how far reads from the start have come (a look at the end is not progress)
        #: What the callback raised (e.g. Streamlit's rerun): raised again after decoding,
        #: since an exception inside libsndfile's read callback would only break the decoder.
        self.pending: BaseException | None = None

    def _tick(self, start: int) -> None:
        if start > self._front + (1 << 16):
            return  # a jump ahead (the decoder checking a FLAC's last frames): not read that far
        self._front = max(self._front, self.tell())
        frac = min(1.0, self._front / self._size)
        if frac >= self._seen + 0.02 and self.pending is None:
            self._seen = frac
            try:
                self._report(frac)
            except BaseException as e:  # noqa: BLE001 - re-raised by analyze_upload
                self.pending = e

    def read(self, size: int | None = -1) -> bytes:
        if self.pending is not None:  # the page stopped (Stop, another model): the end, at once
            return b""
        start = self.tell()
        out = super().read(size)
        self._tick(start)
        return out

    def readinto(self, buffer: Any) -> int:
        if self.pending is not None:
            return 0
        start = self.tell()
        n = super().readinto(buffer)
        self._tick(start)
        return n


#: The MIME type the page's audio player is given for each allowed extension.
_MIME = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
#: ... and for each container recognised by its first bytes (the decoder reads a file by its
#: content, so an AIFF named ``.wav`` is analysed; the browser's player needs its real type).
_MIME_BY_MAGIC = (
    (b"RIFF", "audio/wav"),
    (b"RF64", "audio/wav"),
    (b"FORM", "audio/aiff"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
)


def audio_mime(filename: str, data: bytes = b"") -> str:
    """The MIME type of an upload: by its first bytes when they name a container (``data``),
    else by its extension (``audio/wav`` when unknown)."""
    return _magic_mime(data) or _MIME.get(_extension(filename), "audio/wav")


def _magic_mime(data: bytes) -> str | None:
    for magic, mime in _MIME_BY_MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG frame sync
        return "audio/mpeg"
    return None


#: What browsers' audio players take; anything else the page transcodes for its player.
_PLAYABLE = ("audio/wav", "audio/flac", "audio/ogg", "audio/mpeg")
#: Most channels the player is given as uploaded (browsers refuse 64; more are mixed down to 2).
_PLAYER_CHANNELS = 2
#: WAV sample formats browsers play (Chromium refuses ADPCM, GSM 6.10 and 64-bit float: the
#: player showed 0:00 with no word).
_PLAYABLE_WAV = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT")
#: Highest rate of the player's converted audio: a 384 kHz upload of 1.2 MB (silence
#: compresses) became a 906 MB WAV held per session (an app audit).
PLAYER_MAX_RATE = 48000


def player_audio(data: bytes, filename: str, *, seconds: float | None = None) -> tuple[bytes, str]:
    """The upload as the page's audio player gets it, with its MIME type.

    As uploaded when its first bytes name a container browsers play, holding samples they play
    (a WAV's: 8 to 32-bit PCM or 32-bit float), with at most two channels; else (a CAF, W64 or
    AU file named ``.wav``, which the decoder reads by its content; ADPCM or 64-bit float WAV;
    many channels) converted: FLAC, 16-bit, its channels mixed to two, at most
    :data:`PLAYER_MAX_RATE` Hz, so that the memory one upload costs the server is bounded by
    the app's limits (a few tens of MB for ten minutes), not by its rate; its CPU time is bounded
    by them with :data:`MAX_RATE_TIMES_CHANNELS`, which :func:`check_upload` holds. With ``seconds`` (a
    damaged file: what the analysis decoded), that much of it, and a file whose decoding fails
    partway gives what decoded before, so the player's length is what was analysed. Converted
    in blocks (a long many-channel file is never held as float samples whole).
    """
    mime = _magic_mime(data[:16])
    if mime in _PLAYABLE and seconds is None and _plays_as_uploaded(data, mime):
        return data, str(mime)
    import numpy as np
    import soundfile as sf
    import soxr

    out = io.BytesIO()
    wrote = 0
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            ch = min(f.channels, _PLAYER_CHANNELS)
            rate = min(int(f.samplerate), PLAYER_MAX_RATE)
            rs = (
                soxr.ResampleStream(f.samplerate, rate, ch, dtype="float32") if rate != f.samplerate else None
            )
            left = f.frames if seconds is None else min(f.frames, int(round(seconds * f.samplerate)))
            with sf.SoundFile(out, "w", samplerate=rate, channels=ch, format="FLAC", subtype="PCM_16") as w:
                chunk = 65536
                seekable = f.seekable()  # (GSM 6.10 in a WAV is not)
                while left > 0:
                    at = f.tell() if seekable else 0
                    try:
                        y = f.read(min(left, chunk), dtype="float32", always_2d=True)
                    except (RuntimeError, sf.LibsndfileError):
                        # a damaged file: what decodes before the damage is kept (smaller reads
                        # from where this one began, down to 1024 frames)
                        if seekable and chunk > 1024:
                            chunk //= 4
                            with contextlib.suppress(RuntimeError, sf.LibsndfileError):
                                f.seek(at)
                                continue
                        y = np.zeros((0, f.channels), np.float32)
                    last = not len(y) or left - len(y) <= 0
                    left -= len(y)
                    if y.shape[1] > ch:  # mixed down: the mean of the channels on each side
                        y = np.stack([y[:, i::ch].mean(axis=1) for i in range(ch)], axis=1)
                    if rs is not None:
                        y = rs.resample_chunk(np.ascontiguousarray(y), last=last)
                    if len(y):
                        w.write(np.clip(y, -1.0, 1.0))
                        wrote += len(y)
                    if last:
                        break
    except Exception:  # noqa: BLE001 - the analysis decoded it; the player is a convenience
        wrote = 0
    if not wrote:
        return data, mime or audio_mime(filename)
    return out.getvalue(), "audio/flac"


def _plays_as_uploaded(data: bytes, mime: str | None) -> bool:
    """Whether a browser plays the upload as it is: at most :data:`_PLAYER_CHANNELS` channels
    and, in a WAV, samples it plays (one read of the header; one that libsndfile cannot read
    here, an MP3 say, is taken as it is)."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not for the player to judge: the analysis said what it could
        return True
    return info.channels <= _PLAYER_CHANNELS and (mime != "audio/wav" or info.subtype in _PLAYABLE_WAV)


def nothing_detected_text(an: Any) -> str:
    """Why the page lists no instrument: no family's smoothed probability reaches its presence
    threshold anywhere (with the nearest family's peak and threshold, the numbers the overall
    prediction beside it does not show); or one does, but where it does the sound is answered
    "none of the eight" (the open-set veto), or only for less than a family must hold to be
    reported (``min_duration``, or all of a shorter sound), or mostly behind two more probable
    families, where it needs its margin above its threshold too (:attr:`Detection.margins`)."""
    base = "No family is detected anywhere in the recording: none reaches its presence threshold."
    act = getattr(an, "activity", None)
    thresholds = an.settings.get("thresholds") or {}
    if act is None or not getattr(act, "n", 0) or not thresholds:
        return base
    where = act.sounding if act.sounding.any() else np.ones(len(act.probability), bool)
    peaks = act.probability[where].max(axis=0)
    gaps = [
        (float(thresholds.get(lab, 1.0)) - float(peaks[i]), lab, float(peaks[i]), i)
        for i, lab in enumerate(act.labels)
    ]
    gap, lab, peak, i = min(gaps)
    thr = float(thresholds[lab])
    shown_peak, shown_thr = _distinct(peak, thr)
    if gap > 0:
        return f"{base} The nearest is {lab}: its smoothed probability peaks at {shown_peak}, its threshold is {shown_thr}."
    above = where & (act.probability[:, i] >= thr)
    veto = float(getattr(act.detection, "other_veto", 1.0))
    other = getattr(act, "other", None)
    if other is not None and veto < 1.0 and bool(np.all(other[above] >= veto)):
        return (
            "No family is detected anywhere in the recording: where a family reaches its threshold "
            f"(the highest, {lab}, peaks at {shown_peak} against {shown_thr}), the sound is "
            'answered "none of the eight" (other), which keeps families from being listed.'
        )
    held = float(above.sum()) * float(act.step)
    sound = float(where.sum()) * float(act.step)
    need = float(getattr(act.detection, "min_duration", 0.0))
    if sound < need:
        rule = f"all of a sound shorter than {need:g} s"
    else:
        rule = f"{need:g} s"
    margin = act.detection.margin(lab) if hasattr(act.detection, "margin") else 0.0
    clear = where & act.clears(lab, thr) if margin else above
    if margin and clear.sum() < above.sum():
        k = int(act.detection.leading)
        ahead = "another family is" if k == 1 else f"{count_word(k)} other families are"
        kept = float(clear.sum()) * float(act.step)
        holds = f"which it holds for {seconds_text(kept)}" if kept else "which it never reaches"
        return (
            f"No family is detected anywhere in the recording: {lab} reaches its threshold ({shown_thr}; "
            f"it peaks at {shown_peak}) for {seconds_text(held)} of the {seconds_text(sound)} of sound, but "
            f"where {ahead} more probable it needs its threshold plus {margin:g}, {holds}; a family is "
            f"listed only where it holds what it needs for {rule}."
        )
    return (
        f"No family is detected anywhere in the recording: {lab} reaches its threshold ({shown_thr}; "
        f"it peaks at {shown_peak}) for {seconds_text(held)} of the {seconds_text(sound)} of sound, "
        f"but a family is listed only where it holds its threshold for {rule}."
    )


def _distinct(value: float, threshold: float) -> tuple[str, str]:
    """``value`` and ``threshold`` written with two decimals, or as many more as it takes for a
    value below the threshold not to read as equal to it ("peaks at 0.30, its threshold is 0.30")."""
    for digits in range(2, 7):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b or value == threshold:
            return a, b
    return a, b


def seconds_text(seconds: float) -> str:
    """A duration for the progress bar and notices: whole seconds from 10 s on, tenths below,
    milliseconds below 0.1 s (a 0.1 s file is not "0 s")."""
    s = float(seconds)
    if s >= 10:
        return f"{s:.0f} s"
    if s >= 0.1:
        return f"{s:.1f} s"
    return f"{s * 1000:.0f} ms"


def analysis_steps(analyzers: Sequence[str]) -> list[str]:
    """What the progress bar names, in order, for an analysis with these analyzers."""
    names = {"condition": "Judging the condition"}
    return [
        "Checking the file",
        "Finding the instruments",
        "Looking closer where a family is in doubt",
        *[names.get(a, f"Running the {a} analysis") for a in analyzers],
        "Writing the reports",
    ]


def analyze_upload(
    data: bytes,
    filename: str,
    *,
    model: Model | str | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    registry: Any = None,
    **analyze_options: Any,
) -> AppResult:
    """Check and analyse an uploaded recording.

    Parameters
    ----------
    data : bytes
    filename : str
    model : Model or str, optional
        A loaded model or a registered model name (default: the default model).
    limits : Limits, optional
    progress : callable, optional
        ``progress(fraction, text)`` as it works: the text names the step (``"Step 2 of 5:
        Finding the instruments: 12 s of 24 s read"``); decoding reports how much it has read.
        The last step, writing the reports, is the caller's (:attr:`AppResult.steps`).
    registry : Registry, optional
        Where the model and the analyzers come from.
    **analyze_options
        Passed to :func:`instrunet_core.analyze` (``hop``, ``smoothing``, ...).

    Returns
    -------
    AppResult

    Raises
    ------
    InstrunetError
        ``InputError`` / ``DecodeError`` naming the file and the problem, ``ModelError``.
    """
    if limits is not None and not isinstance(limits, Limits):
        raise InputError(f"analyze_upload: limits must be a Limits, got {type(limits).__name__}")
    if progress is not None and not callable(progress):
        raise InputError(
            f"analyze_upload: progress must be callable (fraction, text), got {type(progress).__name__}"
        )
    if registry is not None and not isinstance(registry, Registry):
        raise InputError(f"analyze_upload: registry must be a Registry, got {type(registry).__name__}")
    reg = registry or get_registry()
    wanted = analyze_options.get("analyzers", True)
    if not (
        isinstance(wanted, bool)
        or (isinstance(wanted, (list, tuple)) and all(isinstance(a, str) for a in wanted))
    ):
        raise InputError(
            f"analyze_upload: analyzers must be True, False or a list of analyzer names, got {wanted!r}"
        )
    names = list(reg.analyzers) if wanted is True else ([] if not wanted else list(wanted))
    steps = analysis_steps(names)
    n = len(steps)
    # fractions: checking 0-0.05, reading 0.05-0.7, looking closer 0.7-0.75, analyzers 0.75-0.92
    say = progress or (lambda f, t: None)

    def step(i: int, fraction: float, more: str = "") -> None:
        say(fraction, f"Step {i + 1} of {n}: {steps[i]}{more}")

    step(0, 0.02)
    duration = check_upload(data, filename, limits=limits)
    m = model if isinstance(model, Model) else load_model(model, registry=reg)
    step(1, 0.05, f": {seconds_text(duration)} of audio with {m.name} {m.version}")
    src = _ReadProgress(
        data,
        filename,
        lambda f: step(
            1, 0.05 + 0.65 * f, f": {seconds_text(f * duration)} of {seconds_text(duration)} read"
        ),
    )

    def later(what: str, fraction: float) -> None:
        if what == "refine":
            step(2, 0.7)
        elif what.startswith("analyzer "):
            i = names.index(what[len("analyzer ") :])
            step(3 + i, 0.75 + 0.17 * i / max(1, len(names)))

    with _collecting_warnings() as said:
        try:
            an = analyze(src, model=m, registry=reg, progress=later, **analyze_options)
        except Exception:
            if src.pending is not None:
                raise src.pending from None
            raise
    if src.pending is not None:
        raise src.pending
    notice = None
    if ended_early(duration, float(an.duration)):  # (analyze warns too; the page says it here)
        notice = (
            f"{filename}: the file's header announces {seconds_text(duration)} of audio but only "
            f"{seconds_text(float(an.duration))} could be decoded (the file is cut short or damaged); "
            "the result covers that part."
        )
    elif an.damage is not None:  # a FLAC without its length (written to a pipe), an Ogg cut short
        notice = (
            f"{filename}: decoding stopped after {seconds_text(float(an.duration))} (the file is cut "
            "short or damaged); the result covers that part."
        )
    if an.silent:
        notice = (notice + " " if notice else "") + (
            f"{filename}: the recording is silent (no sound above {SILENCE_DB:g} dBFS in any window; a "
            "constant offset, DC, is no sound), so there are no instruments to detect."
        )
    elif getattr(an.prediction, "low_evidence", False):
        secs = float(getattr(an.prediction, "sounding_seconds", 0.0))
        notice = (notice + " " if notice else "") + (
            f"{filename}: only {seconds_text(secs)} of sound; the models were trained on notes of about "
            "3 s, so treat this result as a hint."
        )
    # What the core warned about this upload (a header that stops before the recording does,
    # channels that cancel in the mono mix, ...), as `instrunet analyze` prints it: the page
    # showed none of it (an app audit); the notes the page words itself are not repeated.
    for text in dict.fromkeys(said):
        if notice is not None and ("could be decoded" in text or "decoding failed" in text):
            continue
        notice = (notice + " " if notice else "") + (text if text.endswith(".") else text + ".")
    return AppResult(analysis=an, filename=filename, size_bytes=len(data), notice=notice, steps=tuple(steps))


_WARNED = threading.local()  # this thread's list of the core's warnings, while one is collected
_PREVIOUS_SHOW: Any = None


def _route_warning(
    message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
) -> None:
    bucket = getattr(_WARNED, "bucket", None)
    if bucket is not None and isinstance(category, type) and issubclass(category, RuntimeWarning):
        bucket.append(str(message))
    if _PREVIOUS_SHOW is not None:
        _PREVIOUS_SHOW(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _collecting_warnings() -> Iterator[list[str]]:
    """The core's warnings raised on this thread while the block runs (each also shown as
    before). ``warnings.catch_warnings`` would not do: it swaps process-wide state, and the
    app's sessions run on threads side by side."""
    global _PREVIOUS_SHOW
    if warnings.showwarning is not _route_warning:
        _PREVIOUS_SHOW = warnings.showwarning
        warnings.showwarning = _route_warning
    bucket: list[str] = []
    _WARNED.bucket = bucket
    try:
        yield bucket
    finally:
        _WARNED.bucket = None


def model_card(analysis: Analysis, *, registry: Any = None) -> dict[str, Any]:
    """Name, version, task, sha256 and origin of the model that made ``analysis``.

    The sha256 is the analysis's own (the weights that ran); the registry's plugin, licence,
    date and accuracy are added only when a registered model of that name and version has those
    weights: a model loaded from a folder under a registered name and version (a re-export, a
    fine-tune) is not described by the registered one's manifest.

    Returns
    -------
    dict
        ``name``, ``version``, ``task``, ``sha256``, ``plugin``, ``license``, ``created``,
        and ``test_accuracy`` (single notes of unseen instruments) when the manifest has it.
    """
    reg = registry or get_registry()
    name, version = analysis.model.get("name"), analysis.model.get("version")
    sha = analysis.model.get("sha256")
    card: dict[str, Any] = {"name": name, "version": version, "task": analysis.model.get("task")}
    entry = next(
        (e for e in reg.models if e.name == name and e.version == version and e.manifest is not None), None
    )
    m = entry.manifest if entry is not None else None
    if entry is None or m is None or (sha and m.sha256 != sha):
        if sha:
            card["sha256"] = str(sha)
            card["plugin"] = (
                "not registered here"
                if entry is None
                else "not the registered model of this name and version"
            )
        else:
            card["sha256"] = "unknown (model not registered here)"
        return card
    card.update(sha256=m.sha256, plugin=entry.plugin, license=m.license, created=m.created)
    acc = (
        m.metrics.get("test", {}).get("single", {}).get("accuracy")
        if isinstance(m.metrics, Mapping)
        else None
    )
    if isinstance(acc, (int, float)):
        card["test_accuracy"] = float(acc)
    return card


#: What the page and the report say when the condition analyzer is not installed.
MISSING_CONDITION = (
    "No condition analysis in this run: the instrunet-condition plugin is not installed "
    "(pip install plugins/instrunet-condition), or INSTRUNET_PLUGINS leaves it out."
)


#: Why the condition analyzer said "unknown", in words (its ``reason``; docs/condition.md): the
#: analyzer's own words, which its verdicts carry as ``reason_text`` (none without it installed,
#: and then no verdict to word either).
UNKNOWN_REASONS: Mapping[str, str]
try:
    from instrunet_condition.stream import REASON_TEXT as UNKNOWN_REASONS
except ImportError:  # pragma: no cover - the app without the condition analyzer
    UNKNOWN_REASONS = {}


def unknown_reason_text(reason: Any) -> str:
    """``reason`` of an ``"unknown"`` condition in words (:data:`UNKNOWN_REASONS`; a reason it
    does not know is shown as given)."""
    if reason is None or reason == "":
        return "not judged"
    return UNKNOWN_REASONS.get(str(reason), f"not judged: {str(reason).replace('_', ' ')[:80]}")


def condition_view(analysis: Analysis) -> dict[str, Any]:
    """The condition analyzer's result, or why there is none.

    Returns
    -------
    dict
        ``{"status": "ok", "label", "reason", "reason_text", "classes", "probabilities",
        "features", "instruments", "model", "explanation"}`` (``reason``: why it is
        ``"unknown"``, else ``None``; ``reason_text``: that in words, :func:`unknown_reason_text`;
        ``classes``: in the analyzer's order, as its
        ``probabilities`` list them); ``{"status": "missing", "notice"}`` when the analyzer is not
        installed; ``{"status": "error", "error": message, "notice"}`` when it failed (``notice``:
        what the page and the report say instead).
    """
    c = analysis.extras.get("condition")
    if c is None:
        return {"status": "missing", "notice": MISSING_CONDITION}
    if not isinstance(c, Mapping) or "error" in c:
        error = str(c.get("error") if isinstance(c, Mapping) else c)
        return {"status": "error", "error": error, "notice": f"Condition analysis failed: {error}"}
    probs = dict(c.get("probabilities") or {})
    label = str(c.get("label", "unknown"))
    reason = c.get("reason") if label == "unknown" else None
    return {
        "status": "ok",
        "label": label,
        "reason": reason,
        "reason_text": (
            str(c["reason_text"]) if isinstance(c.get("reason_text"), str) else unknown_reason_text(reason)
        )
        if label == "unknown"
        else "",
        "classes": list(probs),
        "probabilities": probs,
        "features": dict(c.get("features") or {}),
        "instruments": dict(c.get("instruments") or {}),
        "model": dict(c.get("model") or {}),
        "explanation": str(c.get("explanation") or ""),
    }


def condition_model_line(m: Mapping[str, Any]) -> str:
    """The condition model's provenance for the page and the report: name, version, sha256, and
    the spectrogram network fused with it (condition 3.0.0 and later)."""
    line = f"Condition model: {m.get('name', '?')} {m.get('version', '?')}, sha256 {m.get('sha256', '?')}"
    net = m.get("spectrogram")
    if isinstance(net, Mapping):
        line += f"; with {net.get('name', '?')} {net.get('version', '?')}, sha256 {net.get('sha256', '?')}"
    return line


def other_extras(analysis: Analysis) -> dict[str, Any]:
    """Extras from analyzers other than ``condition`` (shown generically)."""
    return {k: v for k, v in analysis.extras.items() if k != "condition"}
