"""One exception family: every error instrunet raises on purpose is an ``InstrunetError``."""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import warnings
from typing import Any

__all__ = [
    "InstrunetError",
    "DecodeError",
    "InputError",
    "ModelError",
    "UnknownModelError",
    "PluginError",
    "OutputError",
    "ConcurrentUseError",
    "InstrunetWarning",
    "warn",
]


class InstrunetError(Exception):
    """Base class of all instrunet errors; the message names the file or value at fault."""


class DecodeError(InstrunetError):
    """Audio could not be read or decoded (missing, empty, corrupt or unsupported file)."""


class InputError(InstrunetError, ValueError):
    """An argument or audio array is unusable (wrong shape, NaN, bad rate, bad option)."""


class ModelError(InstrunetError):
    """A model artifact is missing, malformed, or disagrees with its manifest."""


class UnknownModelError(ModelError, LookupError):
    """A model was asked for by a name or version that names nothing installed (or is no model
    name at all): the command line's mistake, not an artifact's (``instrunet`` exits 2)."""


class PluginError(InstrunetError):
    """A plugin failed to load or registered something invalid."""


class OutputError(InstrunetError, OSError):
    """An output could not be written: a file, a folder, stdout (full disk, closed stream, ...)."""


class ConcurrentUseError(InstrunetError, RuntimeError):
    """Two threads fed one stream at the same time (a ``Classifier``, a ``Tagger``...); each
    stream belongs to the one thread feeding it at a time."""


def describe(e: BaseException, limit: int = 500, *, first_line: bool = False) -> str:
    """``"<Type>: <message>"`` of an exception from code instrunet does not own (a plugin,
    onnxruntime, Ray) on one line: its newlines and colour codes dropped, at most ``limit``
    characters, and never an error of its own (an exception whose ``__str__`` raises).
    ``first_line``: only the message's first line (Ray's carry a remote traceback after it)."""
    try:
        text = str(e).strip()
        text = one_line(text.splitlines()[0] if first_line and text else text, limit)
    except Exception:  # noqa: BLE001 - a message that cannot be made is not worth a crash
        text = "<the exception's message could not be read>"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line: terminal escape sequences dropped, whitespace runs (newlines
    included) made one space, cut to ``limit`` characters with ``...``."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InstrunetWarning(RuntimeWarning):
    """What instrunet warns about (a damaged file decoded in part, a plugin said broken, a hop
    that leaves audio unread...): a ``RuntimeWarning``, so filters for that still apply, and a
    category of its own, so a host can route or silence instrunet's alone
    (``warnings.filterwarnings("ignore", category=InstrunetWarning)``)."""


def _library_frame(frame: Any) -> bool:
    """Whether a frame is instrunet's (the core, its plugins) or the standard library's (a
    ``with`` block's ``contextlib``, ``os.walk``, ``threading``, ``<frozen ...>`` modules):
    frames a warning is not attributed to. The standard library is told by module name
    (``sys.stdlib_module_names``): by path, ``site-packages`` lies inside it in a virtualenv
    and most installs, and the host's installed packages were skipped too (a review)."""
    name = str(frame.f_globals.get("__name__", ""))
    if name.startswith("instrunet_") or name == "_instrunet_cli":
        return True
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen "):
        return True
    # (a host module that shares a standard module's name, `wave` or `profile`, is no stdlib
    # module when it is installed or lies outside the interpreter's library)
    if name.split(".")[0] not in _STDLIB_MODULES or "-packages" in filename:
        return False
    return filename.startswith(_STDLIB_DIRS) or not os.path.isabs(filename)


_STDLIB_MODULES = frozenset(getattr(sys, "stdlib_module_names", ())) - {"__main__"}
_STDLIB_DIRS = tuple(
    os.path.join(p, "")
    for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}
    if p
)


def warn(message: str, category: type[Warning] = InstrunetWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first caller outside instrunet
    (its core and plugins) and the standard library: the host's line, whichever entry point it
    called (a fixed stack level pointed at the host's line from one entry point and at a
    library line from another, so ``warnings.filterwarnings(..., module=...)`` could not tell
    them apart: a host audit)."""
    level = 1
    frame = sys._getframe(0)
    while frame is not None and _library_frame(frame):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    if frame is None:  # (on a worker thread, only library frames: the outermost)
        level -= 1
    warnings.warn(message, category, stacklevel=max(1, level))
