"""Thread control for plugins: limiting numpy's BLAS threads around a stretch of numpy work.

The core itself never changes BLAS settings: its front end's matrix products are sized so
that OpenBLAS runs them on the calling thread (:data:`instrunet_core.features.MAX_PRODUCT`),
whatever the host application set. :func:`blas_limited` is for plugin code with larger
products (the condition analyzer's features): BLAS thread limits are process-wide, so while
such code runs the limit holds for every thread of the process (the host's too), and it is
restored when the last concurrent user leaves, unless the host changed it meanwhile (then the
host's setting stays).

``INSTRUNET_BLAS_THREADS`` sets the limit (default 1; ``0`` leaves BLAS alone).

The limit is set by whichever thread enters first and restored by whichever leaves last.
threadpoolctl 3.8 lets only one thread, the first to set an OpenBLAS (pthreads) limit, change
it until control is released, and a bare ``limit()`` never releases it: a worker's limit was
then silently ignored. So each change here takes control and releases it again
(:func:`_release_control`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_limited", "blas_threads"]

_lock = threading.Lock()
_depth = 0
_limiter: Any = None
_blas: Any = None
_clear: Any = None  # resolved with _blas (see _blas_pools)
_limited_to: list[int] = []  # the limit set by the current first user


def blas_threads() -> int:
    """The BLAS thread limit in force inside the library (0: not limited)."""
    raw = os.environ.get("INSTRUNET_BLAS_THREADS", "1").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        n = 1
    return max(0, n)


def _blas_pools() -> Any:
    global _blas, _clear
    if _blas is None:
        try:
            import threadpoolctl
        except ImportError:  # pragma: no cover - a declared dependency
            _blas = False
        else:
            # The BLAS libraries loaded when the library first needs one (numpy's among them;
            # libraries loaded later, e.g. scipy's own OpenBLAS, are not used by our code).
            _blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
            # threadpoolctl >= 3.8's release of OpenBLAS control (absent before: nothing to release)
            _clear = getattr(
                getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None
            )
    return _blas


def _release_control() -> None:
    """Let any thread set the next OpenBLAS limit (threadpoolctl >= 3.8; a no-op before)."""
    if _clear is not None:
        _clear(force=True)


def _still_ours() -> bool:
    """Whether every BLAS library still has the limit :func:`blas_limited` set."""
    try:
        return all(c.num_threads in _limited_to for c in _blas.lib_controllers)
    except Exception:  # noqa: BLE001 - threadpoolctl's view of a library it cannot read: restore
        return True


@contextlib.contextmanager
def blas_limited() -> Iterator[None]:
    """Run the body with numpy's BLAS limited to :func:`blas_threads` threads.

    Re-entrant and thread-safe: the limit is set by the first caller that enters and the
    setting before it is restored when the last one leaves (about 8 µs per use), unless the
    host set another limit in between. The limit is process-wide while the body runs (BLAS has
    no per-thread limit).
    """
    global _depth, _limiter
    n = blas_threads()
    if n == 0:
        yield
        return
    with _lock:
        if _depth == 0:
            pools = _blas_pools()
            if pools:
                _release_control()
                _limiter = pools.limit(limits=n)
                _release_control()
                _limited_to[:] = [n]
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _limiter is not None:
                _release_control()
                if _still_ours():  # the host did not set a limit of its own meanwhile
                    _limiter.restore_original_limits()
                    _release_control()
                _limiter = None
