"""Plots of an analysis, drawn into a matplotlib ``Axes`` you give (or a new ``Figure``).

Like ``librosa.display``, each function draws into ``ax`` and returns it, so a plot can sit in
your own figure beside your own axes::

    from matplotlib.figure import Figure
    import instrunet_core
    from instrunet_core import plots

    an = instrunet_core.analyze("examples/ensemble.flac")
    fig = Figure(figsize=(10, 5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    plots.timeline(an, ax=top)
    plots.levels(an, ax=bottom)
    fig.savefig("out/ensemble_timeline.png")

A library must not choose the host program's matplotlib backend, nor keep figures in pyplot's
global list: nothing here imports ``pyplot``; without ``ax`` a
:class:`matplotlib.figure.Figure` is made directly, which renders to PNG, SVG or PDF without a
backend being chosen (``Figure.savefig``). The ``png`` writer (``instrunet analyze --plot``),
the web app's page and its PDF draw with these functions. matplotlib is optional
(``pip install 'instrunet[plot]'``).

What is drawn is what is detected: the timeline's cells are each family's *smoothed
probability* on the analysis' time axis (:attr:`instrunet_core.Analysis.activity`), the value
its threshold applies to, and the outlines are the detected ranges from the same axis. Times
read ``m:ss``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InstrunetError
from .output import display_name
from .timeline import format_time

if TYPE_CHECKING:  # annotations only
    from .analysis import Analysis

__all__ = [
    "new_figure",
    "timeline",
    "probabilities",
    "levels",
    "time_axis",
    "activity_figure",
    "probabilities_figure",
    "plot_text",
]

#: Colours shared by every plot: detected (outlines, bars) and not detected.
DETECTED = "#00c8ff"
DETECTED_BAR = "#d1495b"
NOT_DETECTED = "#8d99ae"
#: Most columns a timeline draws (a long recording's 23 ms grid is averaged down to this).
_MAX_COLUMNS = 1600
#: Most characters of a row label and of a file name drawn (longer ones are shortened in the
#: middle, so the figure keeps its width for the plot and the title its overall answer).
LABEL_CHARS = 28
NAME_CHARS = 40


def plot_text(text: str, limit: int | None = None) -> str:
    """``text`` as matplotlib draws it literally: a file name's escapes (:func:`display_name`),
    at most ``limit`` characters (the middle replaced by "…"), characters the figure's font has
    no glyph for as ``\\uXXXX`` (boxes otherwise, and a warning for each), and ``$`` escaped (it
    starts mathtext: ``$5 and $10`` was drawn as a formula, ``$\\frac{a}{$`` failed)."""
    glyphs = _font_glyphs()
    units = [  # each character as drawn (an escape for one the font lacks): cut between them
        ch
        if not glyphs or ord(ch) < 128 or ord(ch) in glyphs
        else ch.encode("unicode_escape").decode("ascii")
        for ch in display_name(str(text))
    ]
    if limit is not None and sum(map(len, units)) > limit:
        room = limit - 1
        head, tail = _fit(units, room - room // 3), _fit(units[::-1], room // 3)[::-1]
        units = [*head, "…", *tail]
    return "".join(units).replace("$", r"\$")


def _fit(units: list[str], room: int) -> list[str]:
    """The leading ``units`` whose characters fit in ``room``."""
    out, used = [], 0
    for u in units:
        if used + len(u) > room:
            break
        out.append(u)
        used += len(u)
    return out


_GLYPHS: set[int] | None = None


def _font_glyphs() -> set[int]:
    """The code points of the font matplotlib draws text in (empty where it cannot be read:
    then nothing is escaped)."""
    global _GLYPHS
    if _GLYPHS is None:
        try:
            from matplotlib import font_manager
            from matplotlib.ft2font import FT2Font

            _GLYPHS = set(FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())
        except Exception:  # noqa: BLE001 - a font matplotlib cannot read: draw as it can
            _GLYPHS = set()
    return _GLYPHS


def new_figure(width: float, height: float) -> Any:
    """A :class:`matplotlib.figure.Figure` of ``width`` × ``height`` inches, outside pyplot.

    Raises
    ------
    InstrunetError
        matplotlib is not installed (``pip install 'instrunet[plot]'``).
    """
    Figure = _matplotlib("matplotlib.figure").Figure
    return Figure(figsize=(width, height))


def _matplotlib(module: str) -> Any:
    """``module`` of matplotlib imported, or an :class:`InstrunetError` that says why not: not
    installed (with the extra to install), or installed but failing to import (a matplotlib
    built for another numpy: the import's own error)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "matplotlib":
            raise InstrunetError(
                "plots need matplotlib, which is not installed (pip install 'instrunet[plot]')"
            ) from None
        raise InstrunetError(
            f"plots need matplotlib, which is installed but cannot be imported: {e}"
        ) from None
    except OSError as e:  # no writable config or cache folder (a read-only container): its words
        raise InstrunetError(
            f"plots need matplotlib, which cannot start here: {str(e).split('; ')[0]} (set MPLCONFIGDIR "
            "to a writable folder)"
        ) from None


def _axes(ax: Any, width: float, height: float) -> Any:
    return ax if ax is not None else new_figure(width, height).subplots()


#: Tick steps of the time axis (seconds): round on a clock (10 s, 15 s, 1 min, 5 min, 1 h).
_TIME_STEPS = (
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
)


def _time_step(span: float, max_ticks: int) -> float:
    """The smallest clock-round step that puts at most ``max_ticks`` ticks on ``span`` seconds."""
    return next((s for s in _TIME_STEPS if span / s <= max_ticks), _TIME_STEPS[-1])


def time_axis(ax: Any, *, duration: float | None = None, max_ticks: int = 8) -> Any:
    """Label ``ax``'s x axis in ``m:ss`` (``h:mm:ss`` past an hour) at steps round on a clock
    (0.1 s, 1 s, 15 s, 1 min, 5 min, 10 min, 1 h: :data:`_TIME_STEPS`), every label with the
    decimals its step needs (``0:00.5``, ``0:01.0``; ``0:15``, ``1:00``); returns ``ax``."""
    from matplotlib.ticker import FuncFormatter, Locator

    class _ClockLocator(Locator):  # type: ignore[misc]
        step = 1.0

        def __call__(self) -> Any:
            if self.axis is None:  # not placed on an axis yet: no ticks
                return np.zeros(0)
            lo, hi = sorted(self.axis.get_view_interval())
            self.step = _time_step(max(hi - lo, 1e-3), max_ticks)
            first = np.ceil(max(lo, 0.0) / self.step - 1e-9) * self.step
            return np.arange(first, hi + self.step * 1e-6, self.step)

    locator = _ClockLocator()

    def label(x: float, _pos: Any) -> str:
        step = locator.step
        decimals = 2 if step < 0.1 else 1 if step < 1 else 0
        return format_time(max(0.0, x), decimals=decimals)

    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    if duration is not None:
        ax.set_xlim(0, max(float(duration), 1e-3))
    ax.set_xlabel("time (m:ss)")
    return ax


def _columns(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`_MAX_COLUMNS` columns: neighbouring grid points averaged together."""
    n = values.shape[0]
    k = max(1, int(np.ceil(n / _MAX_COLUMNS)))
    if k == 1:
        return edges, values
    m = n // k * k
    v = values[:m].reshape(n // k, k, *values.shape[1:]).mean(axis=1)
    e = edges[: m + 1 : k]
    if m < n:
        v = np.concatenate([v, values[m:].mean(axis=0, keepdims=True)])
        e = np.concatenate([e, edges[-1:]])
    return e, v


def outline_width(duration: float) -> float:
    """Points of the detected ranges' outlines on a timeline of ``duration`` seconds: 1.6 up to
    two minutes, then thinner (0.5 from about six), so that crowded ranges leave the colours
    readable."""
    return float(min(1.6, max(0.5, 1.6 * 120.0 / max(float(duration), 1e-3))))


def timeline(
    analysis: Analysis,
    *,
    ax: Any = None,
    colorbar: bool = True,
    legend: bool = True,
    silence: bool = True,
    fontsize: float | None = None,
    other_name: str = "none of these",
) -> Any:
    """Each family's smoothed probability over time, one row per family (the model's order from
    the top; an ``other`` row for open-set models), with the detected ranges outlined and
    silence shaded. Outlines are thinner on recordings longer than two minutes, where ranges
    crowd (1.6 points up to 2 minutes, down to 0.5 from about 6).

    Parameters
    ----------
    analysis : Analysis
    ax : matplotlib.axes.Axes, optional
        Where to draw (a new figure's axes if omitted).
    colorbar : bool
        Add a colour bar for the probability beside ``ax`` (it takes room from ``ax``).
    legend : bool
        Explain the outline and the shading under the axes.
    silence : bool
        Shade the silences that end ranges (a second or more of blocks below -60 dBFS).
    fontsize : float, optional
        Size of the row labels and ticks.
    other_name : str
        The open-set row's label.

    Returns
    -------
    matplotlib.axes.Axes
    """
    patches = _matplotlib("matplotlib.patches")
    Patch, Rectangle = patches.Patch, patches.Rectangle

    labels = list(analysis.labels)
    act = analysis.activity
    rows = list(labels)
    has_other = act is not None and act.other is not None
    if has_other:
        rows.append(other_name)
    ax = _axes(ax, 10.0, 0.45 * len(rows) + 1.6)
    fs = fontsize
    duration = max(float(analysis.duration), 1e-3)
    if act is not None and act.n:
        values = act.probability.astype(np.float64)
        if has_other and act.other is not None:
            values = np.concatenate([values, act.other[:, None].astype(np.float64)], axis=1)
        edges, cols = _columns(act.edges, values)
        mesh = ax.pcolormesh(
            edges,
            np.arange(len(rows) + 1),
            cols.T,
            vmin=0,
            vmax=1,
            cmap="magma",
            shading="flat",
            rasterized=True,
        )
        if colorbar:
            cb = ax.figure.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
            cb.set_label("smoothed probability", fontsize=fs)
            cb.ax.tick_params(labelsize=fs)
        lw = outline_width(duration)
        for r, lab in enumerate([*labels, "other"][: len(rows)]):
            for a, b in act.ranges(lab):
                ax.add_patch(
                    Rectangle((a, r + 0.08), b - a, 0.84, fill=False, edgecolor=DETECTED, lw=lw, zorder=3)
                )
        if silence:
            quiet = np.concatenate([[False], ~act.sounding, [False]]).astype(np.int8)
            d = np.diff(quiet)
            e = act.edges
            for s, t in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
                ax.axvspan(e[s], e[t], color="#cfd8dc", alpha=0.55, lw=0, zorder=2)
    ax.set_yticks(np.arange(len(rows)) + 0.5, [plot_text(r, LABEL_CHARS) for r in rows], fontsize=fs)
    ax.set_ylim(len(rows), 0)
    time_axis(ax, duration=duration)
    ax.tick_params(axis="x", labelsize=fs)
    ax.xaxis.label.set_fontsize(fs)
    if legend:
        handles = [Patch(fill=False, edgecolor=DETECTED, lw=1.6, label="detected")]
        if silence:
            handles.append(Patch(color="#cfd8dc", alpha=0.55, label="silence"))
        ax.legend(
            handles=handles,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=len(handles),
            frameon=False,
            fontsize=fs,
            borderaxespad=0.2,
            handlelength=1.6,
        )
    return ax


def probabilities(analysis: Analysis, *, ax: Any = None, fontsize: float | None = None) -> Any:
    """Each family's mean probability over the recording, highest first (the order of the overall
    answer), detected families in red.

    Returns
    -------
    matplotlib.axes.Axes
    """
    Patch = _matplotlib("matplotlib.patches").Patch

    p = analysis.prediction.probabilities
    labels = sorted(analysis.labels, key=lambda lab: -float(p.get(lab, 0.0)))
    ax = _axes(ax, 9.0, 0.3 * len(labels) + 1.2)
    detected = {i.label for i in analysis.instruments}
    values = [float(p.get(lab, 0.0)) for lab in labels]
    colors = [DETECTED_BAR if lab in detected else NOT_DETECTED for lab in labels]
    ys = np.arange(len(labels))
    ax.barh(ys, values[::-1], color=colors[::-1])
    ax.set_yticks(ys, [plot_text(lab, LABEL_CHARS) for lab in labels[::-1]])
    for y, v in enumerate(values[::-1]):
        ax.text(v + 0.01, y, f"{v:.2f}", va="center", fontsize=fs if (fs := fontsize) else 8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean probability (loudness-weighted, over the non-silent windows)", fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    ax.legend(
        handles=[
            Patch(color=DETECTED_BAR, label="detected"),
            Patch(color=NOT_DETECTED, label="not detected"),
        ],
        loc="lower right",
        frameon=False,
        fontsize=fontsize,
    )
    return ax


def levels(analysis: Analysis, *, ax: Any = None) -> Any:
    """The level track: each 23 ms block's RMS in dBFS, the silence level dashed.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, 10.0, 1.8)
    act = analysis.activity
    if act is not None and act.n:
        edges, lv = _columns(act.edges, np.maximum(act.level_db.astype(np.float64), -100.0))
        ax.stairs(lv, edges, color="#455a64", lw=0.8)
        ax.axhline(act.detection.silence_db, color="#b0bec5", ls="--", lw=0.8)
    ax.set_ylim(-100, 0)
    ax.set_ylabel("level (dBFS)")
    time_axis(ax, duration=analysis.duration)
    return ax


def activity_figure(analysis: Analysis, *, title: str | None = None, width: float = 10.0) -> Any:
    """A figure of :func:`timeline` (what ``instrunet analyze --plot`` writes).

    Parameters
    ----------
    analysis : Analysis
    title : str, optional
        Default: the file name, the overall label and its mean probability.
    width : float
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = len(analysis.labels) + (1 if analysis.prediction.other is not None else 0)
    fig = new_figure(width, 0.42 * rows + 1.9)
    timeline(analysis, ax=fig.subplots())
    if title is None:
        # The name as text (plot_text), short enough to leave the overall answer in the figure
        name = plot_text(os.path.basename(analysis.source), NAME_CHARS)
        title = (
            f"{name}: {plot_text(analysis.label, LABEL_CHARS)} (mean probability {analysis.confidence:.2f})"
        )
    # above the axes and their legend (a title on the axes ran into the legend where long row
    # labels narrowed the axes)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def probabilities_figure(analysis: Analysis, *, width: float = 9.0) -> Any:
    """A figure of :func:`probabilities`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure(width, 0.3 * len(analysis.labels) + 1.2)
    probabilities(analysis, ax=fig.subplots())
    fig.tight_layout()
    return fig
