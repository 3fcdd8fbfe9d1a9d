"""Built-in writers (registered by :mod:`instrunet_core.default_plugins`): ``json``, ``csv`` and
``png`` (the activity plot of ``instrunet analyze --plot``; needs matplotlib).

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

from .errors import InstrunetError

__all__ = ["write_json", "write_csv", "write_png", "atomic_write_text", "atomic_write_bytes"]


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
    if os.fspath(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write_text` for bytes; ``"-"`` writes to stdout's binary buffer."""
    target = os.fspath(path)
    if target == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    folder, base = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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
        w.writerow(
            [
                seg["start"],
                seg["end"],
                seg.get("rms_db"),
                int(bool(seg.get("silent"))),
                *[probs.get(lab, 0.0) for lab in labels],
            ]
        )
    atomic_write_text(path, buf.getvalue())


def write_png(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the activity plot as PNG: each label's probability over time (a heat map), the
    detected instruments' time ranges outlined.

    Raises
    ------
    InstrunetError
        matplotlib is not installed (``pip install 'instrunet[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InstrunetError(
            "--plot needs matplotlib, which is not installed (pip install 'instrunet[plot]')"
        ) from None
    import numpy as np

    an = analysis
    labels = list(an.labels)
    probs = np.asarray(an.probabilities).T
    centers = an.times.mean(axis=1)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5))
    edges = (
        np.concatenate([[0.0], (centers[1:] + centers[:-1]) / 2, [an.duration]]) if len(centers) else [0, 1]
    )
    mesh = ax.pcolormesh(
        edges, np.arange(len(labels) + 1), probs, vmin=0, vmax=1, cmap="magma", shading="flat"
    )
    for ins in an.instruments:
        row = labels.index(ins.label)
        for a, b in ins.ranges:
            ax.add_patch(plt.Rectangle((a, row + 0.05), b - a, 0.9, fill=False, edgecolor="cyan", lw=1.5))
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{os.path.basename(an.source)}: {an.label} ({an.confidence:.2f})")
    fig.colorbar(mesh, ax=ax, label="probability")
    fig.tight_layout()
    # PNG, or what the file name asks for when matplotlib knows it (``--plot out.svg``).
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    fmt = ext if ext in fig.canvas.get_supported_filetypes() else "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
