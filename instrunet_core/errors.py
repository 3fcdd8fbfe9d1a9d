"""One exception family: every error instrunet raises on purpose is an ``InstrunetError``."""

from __future__ import annotations

__all__ = [
    "InstrunetError",
    "DecodeError",
    "InputError",
    "ModelError",
    "PluginError",
    "OutputError",
    "ConcurrentUseError",
]


class InstrunetError(Exception):
    """Base class of all instrunet errors; the message names the file or value at fault."""


class DecodeError(InstrunetError):
    """Audio could not be read or decoded (missing, empty, corrupt or unsupported file)."""


class InputError(InstrunetError, ValueError):
    """An argument or audio array is unusable (wrong shape, NaN, bad rate, bad option)."""


class ModelError(InstrunetError):
    """A model artifact is missing, malformed, or disagrees with its manifest."""


class PluginError(InstrunetError):
    """A plugin failed to load or registered something invalid."""


class OutputError(InstrunetError, OSError):
    """An output could not be written: a file, a folder, stdout (full disk, closed stream, ...)."""


class ConcurrentUseError(InstrunetError, RuntimeError):
    """Two threads fed one stream at the same time (a ``Classifier``, a ``Tagger``...); each
    stream belongs to the one thread feeding it at a time."""
