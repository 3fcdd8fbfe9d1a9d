"""Built-in writers (registered by :mod:`instrunet_core.default_plugins`): ``json`` and ``csv``.

A writer is called as ``writer(analysis, path)``; ``path == "-"`` means stdout. Files are
written atomically: into a uniquely named temporary file next to the target, then renamed
over it, so concurrent writers to one path never share a temporary file and a reader never
sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from typing import Any

__all__ = ["write_json", "write_csv", "atomic_write_text"]


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``"-"`` writes to stdout.

    The temporary file is created by :func:`tempfile.mkstemp` in the target's folder
    (``.<name>.<random>.tmp``), given the usual ``0o666 & ~umask`` permissions, then moved
    over ``path`` with :func:`os.replace`; it is removed if anything fails.
    """
    target = os.fspath(path)
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder, base = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write ``analysis.to_dict()`` (``instrunet.analysis/1``) as indented UTF-8 JSON."""
    atomic_write_text(path, json.dumps(analysis.to_dict(), indent=2, allow_nan=False) + "\n")


def write_csv(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the timeline as CSV: one row per segment.

    Columns: ``start, end`` (seconds), ``rms_db``, ``silent`` (0/1), then one probability
    column per label in the model's order. Silent segments have probability 0.
    """
    d = analysis.to_dict()
    labels = list(d["labels"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["start", "end", "rms_db", "silent", *labels])
    for seg in d["timeline"]:
        probs = seg.get("probabilities") or {}
        w.writerow([
            seg["start"], seg["end"], seg.get("rms_db"), int(bool(seg.get("silent"))),
            *[probs.get(lab, 0.0) for lab in labels],
        ])
    atomic_write_text(path, buf.getvalue())
