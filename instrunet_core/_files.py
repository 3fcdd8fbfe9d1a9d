"""What the library's objects that hold an open file share."""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["HoldsFile"]

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
