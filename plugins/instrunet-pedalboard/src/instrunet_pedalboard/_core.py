"""Shared pieces: the one adapter to the core's push-style classifier (:class:`Adapter`, the base
of :class:`~instrunet_pedalboard.Tagger`, :class:`~instrunet_pedalboard.StreamTagger` and
:class:`~instrunet_pedalboard.Router`), and pedalboard's array layouts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instrunet_core.errors import InputError
from instrunet_core.inputs import as_float_audio, check_amplitude, check_channels, check_sample_rate
from instrunet_core.scheduler import StreamOwner

__all__ = ["new_classifier", "Layout", "Adapter"]


def new_classifier(
    model: Any = None,
    *,
    hop: float | None = None,
    thresholds: Any = None,
    keep: int | None = None,
    leading: int | None = None,
) -> Any:
    """The core's :class:`instrunet_core.Classifier` (the only place this plugin creates one).

    Returns
    -------
    instrunet_core.Classifier
        ``process(block, sample_rate) -> list[WindowResult]``, ``flush()``, ``reset()``,
        ``results``, ``analysis()``, ``window_seconds``, ``hop_seconds``, ``labels``.
    """
    from instrunet_core import Classifier

    return Classifier(model, hop=hop, thresholds=thresholds, keep=keep, leading=leading)


def as_array(audio: Any, what: str) -> np.ndarray:
    """``audio`` as an array (a list of samples is fine): text, bytes or a ragged list is an
    :class:`~instrunet_core.errors.InputError` naming what it is, not numpy's message."""
    if isinstance(audio, np.ndarray):
        return audio
    if isinstance(audio, (str, bytes, bytearray)):
        raise InputError(f"{what}: audio must be an array of samples, got {type(audio).__name__}")
    try:
        return np.asarray(audio)
    except (TypeError, ValueError) as e:
        raise InputError(
            f"{what}: audio must be an array of samples, got {type(audio).__name__} ({e})"
        ) from None


class Layout:
    """Pedalboard's array layouts, remembered across the blocks of one stream.

    Pedalboard takes mono audio as ``(samples,)`` and multichannel audio as
    ``(channels, samples)`` (what ``AudioFile.read`` returns) or ``(samples, channels)``,
    telling them apart by the shorter axis and, for a square block, by the layout it saw
    last. This class applies the same rule, so a 1-sample stereo block ``(2, 1)`` that
    follows longer ``(2, n)`` blocks is read as one stereo frame.

    Parameters
    ----------
    what : str
        Name used in error messages.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.reset()

    def reset(self) -> None:
        self.kind: str | None = None  # "mono", "first" (channels, n) or "last" (n, channels)
        self.channels: int | None = None

    def detect(self, audio: Any) -> tuple[str, int]:
        """``(kind, channels)`` of ``audio``, consistent with earlier blocks of the stream.

        Raises
        ------
        InputError
            Not an array of 1 or 2 dimensions, an ambiguous square first block, or a
            channel count that changes within the stream.
        """
        a = as_array(audio, self.what)
        if a.ndim == 1:
            kind, ch = "mono", 1
        elif a.ndim == 2:
            rows, cols = a.shape
            if self.kind == "first" and rows == self.channels:
                kind, ch = "first", rows
            elif self.kind == "last" and cols == self.channels:
                kind, ch = "last", cols
            elif rows < cols:
                kind, ch = "first", rows
            elif rows > cols:
                kind, ch = "last", cols
            else:
                raise InputError(
                    f"{self.what}: cannot tell channels from samples in a block of shape {a.shape}; "
                    "pass a block with more samples than channels first (pedalboard has the same rule)"
                )
        else:
            raise InputError(
                f"{self.what}: expected audio of shape (samples,), (channels, samples) or (samples, channels), "
                f"got shape {a.shape}"
            )
        check_channels(ch, what=f"{self.what}: block of shape {a.shape}")  # before the stream keeps it
        if self.channels is not None and ch != self.channels:
            raise InputError(
                f"{self.what}: the stream had {self.channels} channel(s), this block has {ch} "
                f"(shape {a.shape}); call with reset=True to start a new stream"
            )
        self.kind, self.channels = kind, ch
        return kind, ch

    def assume(self, kind: str, channels: int) -> None:
        """Start the stream with a known layout (e.g. ``"first"`` for ``AudioFile`` blocks)."""
        if self.kind is None:
            self.kind, self.channels = kind, int(channels)

    @staticmethod
    def frames(audio: np.ndarray, kind: str) -> np.ndarray:
        """``audio`` as ``(samples,)`` or ``(samples, channels)`` (a view), what the classifier takes."""
        return audio.T if kind == "first" else audio

    @staticmethod
    def channels_first(audio: Any, kind: str, what: str) -> np.ndarray:
        """``audio`` as float32 ``(channels, samples)`` (integers scaled to [-1, 1))."""
        y = as_float_audio(audio, what=what)
        if kind == "mono":
            return y[None, :]
        return np.ascontiguousarray(y.T) if kind == "last" else y

    @staticmethod
    def restore(y: np.ndarray, kind: str) -> np.ndarray:
        """Float32 ``(channels, samples)`` back to the caller's layout."""
        if kind == "mono":
            return y[0]
        return np.ascontiguousarray(y.T) if kind == "last" else y


class Adapter:
    """One stream through the core's classifier, in pedalboard's layouts: the classifier, the
    stream's layout and rate, and what the classifier found so far.

    Attributes
    ----------
    labels : tuple of str
        The model's labels, in the order of every probability vector.
    window_seconds : float
        Length of one analysis window (2.949 s for the shipped models).
    hop_seconds : float
        Seconds between window starts: a result comes out every hop.

    Notes
    -----
    The core's thread-ownership rule (:class:`instrunet_core.scheduler.StreamOwner`): one
    thread feeds an adapter at a time, and a call from a second thread while the first is
    inside one raises :class:`instrunet_core.errors.ConcurrentUseError`; any thread may read
    ``results`` and ``analysis``. Use one adapter per stream and per thread.
    """

    _what = "Tagger"

    def __init__(
        self,
        model: Any = None,
        *,
        hop: float | None = None,
        thresholds: Any = None,
        keep: int | None = None,
        leading: int | None = None,
    ) -> None:
        self._owner = StreamOwner(self._what)
        if thresholds is not None and not isinstance(thresholds, Mapping):
            raise InputError(
                f"{self._what}: thresholds must be a dict {{label: threshold}}, got {type(thresholds).__name__}"
            )
        try:
            self._clf = new_classifier(model, hop=hop, thresholds=thresholds, keep=keep, leading=leading)
        except InputError as e:  # the core's words, prefixed with the object at fault
            msg = str(e)
            raise InputError(msg if msg.startswith(f"{self._what}:") else f"{self._what}: {msg}") from None
        self.labels: tuple[str, ...] = tuple(self._clf.labels)
        self.window_seconds = float(self._clf.window_seconds)
        self.hop_seconds = float(self._clf.hop_seconds)
        self._layout = Layout(self._what)
        self._sr: int | None = None
        self._finished = False

    def reset(self) -> None:
        """Forget the stream: results, buffered audio, layout and sample rate."""
        with self._owner.feeding("reset"):
            self._clf.reset()
            self._layout.reset()
            self._sr = None
            self._finished = False

    def _accept(self, audio: Any, sample_rate: Any) -> tuple[np.ndarray, str, int, int] | None:
        """The next block checked against the stream: ``(array, layout kind, channels, rate)``,
        or ``None`` for an empty block. A block after the end of a stream starts a new one.

        Raises
        ------
        InputError
            A bad rate, a rate or channel count that changes within the stream, a bad shape.
        """
        if self._finished:
            self.reset()
        sr = check_sample_rate(sample_rate, what=self._what)
        if self._sr is not None and sr != self._sr:
            raise InputError(
                f"{self._what}: sample rate changed from {self._sr} to {sr} Hz within a stream; "
                "call with reset=True (or reset()) to start a new stream"
            )
        a = as_array(audio, self._what)
        if a.size == 0:
            return None
        # refused before the stream keeps its rate and layout: a refused block sets nothing
        if a.dtype.kind not in "iuf":
            raise InputError(f"{self._what}: unsupported sample dtype {a.dtype} (need int or float)")
        if a.dtype.kind == "f":
            check_amplitude(a, what=self._what)  # NaN, infinite, or beyond any audio
        kind, ch = self._layout.detect(a)
        self._sr = sr
        return a, kind, ch, sr

    @property
    def results(self) -> list[Any]:
        """Every window so far (``instrunet_core.WindowResult``: start, end, probabilities, rms_db, silent, label)."""
        with self._owner.reading():
            return list(self._clf.results)

    @property
    def analysis(self) -> Any:
        """:class:`instrunet_core.Analysis` of the windows so far: prediction, timeline, instruments."""
        with self._owner.reading():
            return self._clf.analysis()
