"""Thread control: the library limits its own BLAS threads, never the host's numpy globally.

The front end's one matrix product (power spectrum × mel filterbank) goes to numpy's BLAS,
which by default starts one thread per core. Next to onnxruntime's threads and the host's
own work those threads fight for the same cores: on the 2-core development machine under
load, ``predict`` took 15.9 ms with numpy's default BLAS threads against 6.1 ms with one.
:func:`blas_limited` is a context manager that limits the BLAS libraries numpy loaded
(through :mod:`threadpoolctl`) while the library's own numpy code runs and restores the
previous setting when the last concurrent user leaves it.

``INSTRUNET_BLAS_THREADS`` sets the limit (default 1; ``0`` leaves BLAS alone).

The limit is set by whichever thread enters first and restored by whichever leaves last (the
pipeline's worker threads compute features too). threadpoolctl 3.8 lets only one thread, the
first to set an OpenBLAS (pthreads) limit, change it until control is released, and a bare
``limit()`` never releases it: a worker's limit was then silently ignored, its matrix product
ran on every core, and its features differed from the calling thread's in the last bit. So
each change here takes control and releases it again (:func:`_release_control`).
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


@contextlib.contextmanager
def blas_limited() -> Iterator[None]:
    """Run the body with numpy's BLAS limited to :func:`blas_threads` threads.

    Re-entrant and thread-safe: the limit is set by the first caller that enters and the
    host's own setting is restored when the last one leaves (about 8 µs per use).
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
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _limiter is not None:
                _release_control()
                _limiter.restore_original_limits()
                _release_control()
                _limiter = None
