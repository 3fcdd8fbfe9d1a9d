"""How the benchmark children (programs that ``benchmarks/run.py`` starts in fresh processes) time
a call: warm-up calls first, then the median and the 90th percentile of ``runs`` calls."""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
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


def processor() -> str:
    """The CPU's model name and widest vector extension (``/proc/cpuinfo`` on Linux, else
    :func:`platform.processor`): the network's time per window depends on both (the same
    runtime took 1.2 ms per window on one machine of this workplace and 0.76 ms on another)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    parts = [p for p in (name or platform.machine(), vec) if p]
    return ", ".join(parts)


def write_doc(doc: Path, text: str, marker: str = "bench") -> None:
    """Put ``text`` between ``<!-- MARKER:start -->`` and ``<!-- MARKER:end -->`` in ``doc``,
    replacing what was there; a file without that section (or no file yet) gets it at its end, so
    a benchmark pointed at a new file (``--doc /tmp/b.md``) does not fail after its run."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    section = f"{start}\n{text}\n{end}"
    old = doc.read_text() if doc.exists() else ""
    new, n = re.subn(
        re.escape(start) + r"\n?.*?" + re.escape(end), lambda _: section, old, count=1, flags=re.S
    )
    if n == 0:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + section + "\n"
    doc.write_text(new)
