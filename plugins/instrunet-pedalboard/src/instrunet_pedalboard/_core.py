"""Shared pieces: the one adapter to the core's push-style classifier, and pedalboard's array layouts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from instrunet_core.audio import as_float_audio
from instrunet_core.errors import InputError

__all__ = ["new_classifier", "Layout", "check_rate"]


def new_classifier(
    model: Any = None, *, hop: float | None = None, thresholds: Any = None, keep: int | None = None
) -> Any:
    """The core's :class:`instrunet_core.Classifier` (the only place this plugin creates one).

    Returns
    -------
    instrunet_core.Classifier
        ``process(block, sample_rate) -> list[WindowResult]``, ``flush()``, ``reset()``,
        ``results``, ``analysis()``, ``window_seconds``, ``hop_seconds``, ``labels``.
    """
    from instrunet_core import Classifier

    return Classifier(model, hop=hop, thresholds=thresholds, keep=keep)


def check_rate(sample_rate: Any, what: str) -> int:
    """A positive integer sample rate, else :class:`InputError` naming ``what``."""
    try:
        sr = float(sample_rate)
    except (TypeError, ValueError):
        raise InputError(f"{what}: sample_rate must be a positive number, got {sample_rate!r}") from None
    if not math.isfinite(sr) or sr <= 0 or sr != int(sr):
        raise InputError(f"{what}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sr)


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
        a = audio if isinstance(audio, np.ndarray) else np.asarray(audio)
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
