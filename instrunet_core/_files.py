"""What the library's objects that hold an open file share."""

from __future__ import annotations

import os
from typing import Any, TypeVar

__all__ = ["HoldsFile", "file_identity"]

_T = TypeVar("_T", bound="HoldsFile")


class HoldsFile:
    """An object that holds one open file, ``_f``: :meth:`close` closes it, and so does leaving
    a ``with`` block on the object."""

    _f: Any

    def close(self) -> None:
        self._f.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_identity(source: Any) -> tuple[int, int, int, int] | None:
    """A file's device, inode, size and modification time (``None`` for a file object, an
    array, or a path that cannot be stat-ed): what says it is still the file it was, or that
    something was written to it."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        st = os.stat(source)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
