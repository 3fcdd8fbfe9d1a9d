"""Module locks that a forked child gets anew.

A lock that a thread of the parent held at the fork is copied held into the child, where that
thread does not exist: every later ``with lock:`` there waited for ever (a host audit: a fork
during a warm-up thread's first ``load_model``). A :class:`ForkSafeLock` is replaced by a new
lock in the child, all of them by one ``os.register_at_fork`` hook.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


class ForkSafeLock:
    """A ``threading.Lock`` for ``with`` blocks, made anew in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _ALL.add(self)

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def _renew(self) -> None:
        self._lock = threading.Lock()


_ALL: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _renew_all() -> None:
    for lock in list(_ALL):
        lock._renew()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_all)
