"""Plots of an analysis, drawn on matplotlib ``Figure`` objects (never through ``pyplot``).

A library must not choose the host program's matplotlib backend, nor keep figures in
pyplot's global list: every figure here is a :class:`matplotlib.figure.Figure` made directly,
which renders to PNG, SVG or PDF without a backend being chosen (``Figure.savefig``). The
``png`` writer (``instrunet analyze --plot``) and the web app's page and PDF draw the activity
plot with the same function. matplotlib is optional (``pip install 'instrunet[plot]'``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InstrunetError
from .output import display_name

if TYPE_CHECKING:  # annotations only
    from .analysis import Analysis

__all__ = ["new_figure", "activity_figure", "probabilities_figure"]


def new_figure(width: float, height: float) -> Any:
    """A :class:`matplotlib.figure.Figure` of ``width`` × ``height`` inches, outside pyplot.

    Raises
    ------
    InstrunetError
        matplotlib is not installed (``pip install 'instrunet[plot]'``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InstrunetError(
            "plots need matplotlib, which is not installed (pip install 'instrunet[plot]')"
        ) from None
    return Figure(figsize=(width, height))


def activity_figure(analysis: Analysis, *, title: str | None = None, width: float = 10.0) -> Any:
    """Each label's probability over time as a heat map (one row per label, in the model's
    order from the top), the detected instruments' time ranges outlined.

    Parameters
    ----------
    analysis : Analysis
    title : str, optional
        Default: the file name, the overall label and its confidence.
    width : float
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Rectangle

    labels = list(analysis.labels)
    fig = new_figure(width, 0.45 * len(labels) + 1.5)
    ax = fig.subplots()
    centers = analysis.times.mean(axis=1) if len(analysis.times) else np.zeros(0)
    if len(centers):
        edges = np.concatenate(
            [[0.0], (centers[1:] + centers[:-1]) / 2, [max(analysis.duration, float(centers[-1]))]]
        )
        probs = np.asarray(analysis.probabilities, dtype=float).T
        mesh = ax.pcolormesh(
            edges, np.arange(len(labels) + 1), probs, vmin=0, vmax=1, cmap="magma", shading="flat"
        )
        fig.colorbar(mesh, ax=ax, label="probability", pad=0.01)
    for ins in analysis.instruments:
        if ins.label in labels:
            row = labels.index(ins.label)
            for a, b in ins.ranges:
                ax.add_patch(Rectangle((a, row + 0.06), b - a, 0.88, fill=False, edgecolor="cyan", lw=1.5))
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels)
    ax.set_xlim(0, max(analysis.duration, 1e-3))
    ax.set_ylim(len(labels), 0)
    ax.set_xlabel("time (s)")
    if title is None:
        # The name as text: escaped control characters and bytes that are not UTF-8 (matplotlib
        # cannot draw them), and no "$" starting mathtext.
        name = display_name(os.path.basename(analysis.source)).replace("$", r"\$")
        title = f"{name}: {analysis.label} ({analysis.confidence:.2f})"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def probabilities_figure(analysis: Analysis, *, width: float = 9.0) -> Any:
    """Horizontal bars of the overall (loudness-weighted mean) probability per label, the
    detected ones highlighted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = list(analysis.labels)
    p = [float(analysis.prediction.probabilities.get(lab, 0.0)) for lab in labels]
    detected = {i.label for i in analysis.instruments}
    fig = new_figure(width, 0.3 * len(labels) + 1.0)
    ax = fig.subplots()
    colors = ["#d1495b" if lab in detected else "#8d99ae" for lab in labels]
    ax.barh(labels[::-1], p[::-1], color=colors[::-1])
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean probability over non-silent windows (red: detected)")
    fig.tight_layout()
    return fig
