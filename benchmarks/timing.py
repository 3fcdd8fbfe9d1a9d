"""How the benchmark children (programs that ``benchmarks/run.py`` starts in fresh processes) time
a call: warm-up calls first, then the median and the 90th percentile of ``runs`` calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def timed(f: Callable[[], Any], runs: int, *, warmup: int = 20) -> tuple[float, float]:
    """Median and 90th percentile wall time of ``f()``, in milliseconds."""
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(runs):
        a = time.perf_counter()
        f()
        ts.append(time.perf_counter() - a)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)
