"""Reports of an analysis: plots (matplotlib), the analysis JSON and the PDF (fpdf2).

Nothing here imports Streamlit. The JSON is written by the core's registered ``json``
writer, so it is byte for byte what ``instrunet analyze FILE --json OUT`` writes.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from instrunet_core import Analysis, get_registry
from instrunet_core.output import display_name
from instrunet_core.plots import activity_figure, probabilities_figure
from instrunet_core.writers import atomic_write_bytes, figure_bytes

from .service import condition_view, model_card, other_extras

__all__ = [
    "MEASURES",
    "measures",
    "timeline_figure",
    "probabilities_figure",
    "figure_png",
    "analysis_json",
    "build_pdf",
    "write_pdf",
    "fmt_ranges",
    "fmt_value",
]

#: What each number in the page and the report means.
MEASURES: dict[str, str] = {
    "overall prediction": (
        "The family with the highest mean probability over the recording's windows (2.95 s each, "
        "one every hop seconds), each window weighted by its loudness relative to the loudest "
        "(near-silent windows hardly vote); 'silence' when every window is below -60 dBFS. With less "
        "than about 1 s of sound the result is marked low evidence."
    ),
    "confidence": "That family's weighted mean probability, between 0 and 1.",
    "probability": (
        "The model's output per family for one window (0 to 1). The default model scores each family on "
        "its own (several can be high at once); a softmax model's probabilities sum to 1."
    ),
    "presence": "The share of non-silent windows in which the instrument is detected.",
    "time ranges": (
        "Where the instrument is detected: its probability, smoothed by a moving median over 3 windows, "
        "is above the model's threshold for that family; touching windows are merged."
    ),
    "intensity": (
        "Mean over the detected windows of probability x loudness, loudness being the window's RMS "
        "relative to the loudest window (0 to 1): how strongly and how loudly it plays."
    ),
    "mean / max probability": "The instrument's probability averaged over, and at its highest in, the non-silent windows.",
}


def measures() -> dict[str, str]:
    """What each number in the page and the report means: :data:`MEASURES`, then the condition
    analyzer's own descriptions of its verdict and features when it is installed
    (``instrunet_condition.DESCRIPTIONS``)."""
    try:
        from instrunet_condition import DESCRIPTIONS
    except ImportError:
        return dict(MEASURES)
    return {**MEASURES, **DESCRIPTIONS}


# ----------------------------------------------------------------------------- plots
def timeline_figure(analysis: Analysis) -> Any:
    """The core's activity plot (:func:`instrunet_core.plots.activity_figure`), as the page and
    the PDF show it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return activity_figure(
        analysis, title="Timeline: probability per window; detected ranges outlined in cyan", width=9.0
    )


def figure_png(fig: Any, *, dpi: int = 110) -> bytes:
    """A matplotlib figure rendered to PNG bytes (:func:`instrunet_core.writers.figure_bytes`)."""
    return figure_bytes(fig, "png", dpi=dpi)


def fmt_ranges(ranges: Any, *, limit: int = 6) -> str:
    """``[[0.0, 4.5], [9, 12]]`` → ``"0.0-4.5 s, 9.0-12.0 s"`` (at most ``limit`` ranges shown)."""
    parts = [f"{float(a):.1f}-{float(b):.1f} s" for a, b in ranges]
    if len(parts) > limit:
        parts = parts[:limit] + [f"(+{len(parts) - limit} more)"]
    return ", ".join(parts) or "-"


# ----------------------------------------------------------------------------- JSON
def analysis_json(analysis: Analysis, *, registry: Any = None) -> bytes:
    """The analysis as the core's registered ``json`` writer writes it (as the CLI's ``--json``).

    Returns
    -------
    bytes
        UTF-8 JSON.
    """
    reg = registry or get_registry()
    with tempfile.TemporaryDirectory(prefix="instrunet-app-") as d:
        path = os.path.join(d, "analysis.json")
        reg.writer("json")(analysis, path)
        with open(path, "rb") as f:
            return f.read()


# ----------------------------------------------------------------------------- PDF
#: The PDF's font: DejaVu Sans as matplotlib ships it (a dependency of the app), so the
#: report shows Latin, Greek, Cyrillic and many symbols in any file name, where fpdf2's core
#: fonts (Latin-1) printed "😀🎻.wav" and "名前.wav" as "??.wav".
PDF_FONT = "DejaVu"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf"}


@functools.lru_cache(maxsize=1)
def _font_chars() -> frozenset[int]:
    """Code points the PDF font can draw (its character map)."""
    from fontTools.ttLib import TTFont

    with TTFont(_font_path("")) as font:
        return frozenset(font.getBestCmap())


def _font_path(style: str) -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", _FONT_FILES[style])


def _pdf_text(text: Any) -> str:
    """Text as the PDF can show it: control characters and bytes that are not UTF-8 escaped
    (:func:`instrunet_core.output.display_name`), and characters the font has no glyph for
    (CJK, emoji) as ``\\uXXXX`` escapes: unambiguous, where "?" was not."""
    shown = display_name(str(text))
    chars = _font_chars()
    return "".join(ch if ord(ch) in chars else ch.encode("unicode_escape").decode("ascii") for ch in shown)


def fmt_value(v: Any) -> str:
    """A number to 4 significant digits; containers as (truncated) JSON; anything else as text."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return f"{v:.4g}"
    if isinstance(v, Mapping | list):
        return json.dumps(v)[:120]
    return str(v)


class _Pdf:
    """A thin layer over :class:`fpdf.FPDF` for headings, paragraphs, tables and images."""

    def __init__(self, title: str) -> None:
        from fpdf import FPDF

        pdf = FPDF(format="A4", unit="mm")
        for style in _FONT_FILES:
            pdf.add_font(PDF_FONT, style, _font_path(style))
        pdf.set_title(_pdf_text(title))
        pdf.set_creator("instrunet-app")
        pdf.set_auto_page_break(auto=True, margin=14)
        pdf.set_margins(14, 14, 14)
        pdf.add_page()
        self.pdf = pdf

    def heading(self, text: str, *, size: int = 13) -> None:
        p = self.pdf
        if p.get_y() > p.h - 40:
            p.add_page()
        p.ln(2)
        p.set_font(PDF_FONT, "B", size)
        p.multi_cell(0, size * 0.5, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        p.ln(1)

    def para(self, text: str, *, size: int = 9, style: str = "") -> None:
        p = self.pdf
        p.set_font(PDF_FONT, style, size)
        p.multi_cell(0, size * 0.48, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        p.ln(1)

    def table(
        self, header: list[str], rows: list[list[Any]], *, widths: tuple[float, ...] | None = None
    ) -> None:
        p = self.pdf
        p.set_font(PDF_FONT, "", 8.5)
        with p.table(col_widths=widths, line_height=4.6, text_align="LEFT", first_row_as_headings=True) as t:
            r = t.row()
            for h in header:
                r.cell(_pdf_text(h))
            for row in rows:
                r = t.row()
                for v in row:
                    r.cell(_pdf_text(v if isinstance(v, str) else fmt_value(v)))
        p.ln(2)

    def image(self, png: bytes) -> None:
        p = self.pdf
        from PIL import Image

        w, h = Image.open(io.BytesIO(png)).size
        height = p.epw * h / w
        if p.get_y() + height > p.h - p.b_margin:
            p.add_page()
        p.image(io.BytesIO(png), w=p.epw)
        p.ln(2)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def build_pdf(analysis: Analysis, *, filename: str | None = None, registry: Any = None) -> bytes:
    """The PDF report: summary, model card, plots, tables, condition, and what each measure means.

    Parameters
    ----------
    analysis : instrunet_core.Analysis
    filename : str, optional
        Name to print for the recording (default: ``analysis.source``).
    registry : Registry, optional
        Where to look up the model's manifest (sha256).

    Returns
    -------
    bytes
        The PDF file.
    """
    name = filename or os.path.basename(str(analysis.source)) or str(analysis.source)
    card = model_card(analysis, registry=registry)
    doc = _Pdf(f"instrunet report: {name}")
    doc.heading(f"instrunet report: {name}", size=16)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.para(f"Duration {analysis.duration:.1f} s. Written {now} by instrunet-app.")

    doc.heading("Overall prediction")
    if analysis.silent:
        doc.para(
            "The recording is silent (every window is below -60 dBFS): no instruments to detect.", style="B"
        )
    else:
        doc.para(f"{analysis.label} (confidence {analysis.confidence:.2f})", size=12, style="B")
    doc.para(
        "Detected instruments: "
        + (", ".join(i.label for i in analysis.instruments) if analysis.instruments else "none")
    )
    cv = condition_view(analysis)
    if cv["status"] == "ok":
        p = cv["probabilities"].get(cv["label"])
        doc.para(
            f"Condition: {cv['label']}"
            + (f" (probability {float(p):.2f})" if isinstance(p, (int, float)) else "")
            + "; details below."
        )

    doc.heading("Model")
    rows = [
        ["name", card.get("name")],
        ["version", card.get("version")],
        ["task", card.get("task")],
        ["sha256", card.get("sha256")],
    ]
    for k in ("plugin", "license", "created"):
        if card.get(k):
            rows.append([k, card[k]])
    if "test_accuracy" in card:
        rows.append(["accuracy, single notes of unseen instruments", f"{card['test_accuracy']:.3f}"])
    doc.table(["field", "value"], [[str(a), str(b)] for a, b in rows], widths=(55, 125))

    doc.heading("Detected instruments")
    if analysis.instruments:
        doc.table(
            ["instrument", "presence", "intensity", "mean p", "max p", "time ranges"],
            [
                [
                    i.label,
                    f"{i.presence:.0%}",
                    f"{i.intensity:.2f}",
                    f"{i.mean_probability:.2f}",
                    f"{i.max_probability:.2f}",
                    fmt_ranges(i.ranges),
                ]
                for i in analysis.instruments
            ],
            widths=(24, 18, 18, 16, 16, 88),
        )
    else:
        doc.para("None detected.")

    if analysis.timeline:
        doc.heading("Timeline")
        doc.image(figure_png(timeline_figure(analysis)))
    doc.heading("Probability per family")
    doc.image(figure_png(probabilities_figure(analysis)))
    doc.table(
        ["family", "mean probability", "threshold"],
        [
            [
                lab,
                f"{analysis.prediction.probabilities.get(lab, 0.0):.3f}",
                fmt_value(analysis.settings.get("thresholds", {}).get(lab, "-")),
            ]
            for lab in analysis.labels
        ],
        widths=(50, 50, 50),
    )

    _pdf_condition(doc, analysis)

    extras = other_extras(analysis)
    if extras:
        doc.heading("Other analyses")
        for key, val in extras.items():
            doc.para(key, style="B")
            if isinstance(val, Mapping):
                doc.table(
                    ["field", "value"],
                    [[str(k), fmt_value(v)] for k, v in list(val.items())[:40]],
                    widths=(55, 125),
                )
            else:
                doc.para(fmt_value(val))

    doc.heading("What the measures mean")
    for k, v in measures().items():
        doc.para(f"{k}: {v}")
    s = analysis.settings
    doc.para(
        f"Settings: window {fmt_value(s.get('window'))} s, hop {fmt_value(s.get('hop'))} s, smoothing "
        f"{fmt_value(s.get('smoothing'))} windows, silence below {fmt_value(s.get('silence_db'))} dBFS.",
        size=8,
    )
    return doc.output()


def _pdf_condition(doc: _Pdf, analysis: Analysis) -> None:
    cv = condition_view(analysis)
    doc.heading("Condition")
    if cv["status"] != "ok":
        doc.para(cv["notice"])
        return
    doc.para(f"Condition: {cv['label']}", size=12, style="B")
    if cv["explanation"]:
        doc.para(cv["explanation"])
    probs = cv["probabilities"]
    if probs:
        doc.table(
            ["class", "probability"], [[k, fmt_value(probs.get(k))] for k in cv["classes"]], widths=(60, 40)
        )
    if cv["features"]:
        doc.table(
            ["feature", "value"], [[k, fmt_value(v)] for k, v in cv["features"].items()], widths=(60, 40)
        )
    if cv["instruments"]:
        doc.table(
            ["instrument", "condition", *cv["classes"]],
            [
                [
                    lab,
                    str(v.get("label", "-")),
                    *[fmt_value((v.get("probabilities") or {}).get(c, "-")) for c in cv["classes"]],
                ]
                for lab, v in cv["instruments"].items()
                if isinstance(v, Mapping)
            ],
        )
        for lab, v in cv["instruments"].items():
            if isinstance(v, Mapping) and v.get("explanation"):
                doc.para(f"{lab}: {v['explanation']}", size=8)
    m = cv["model"]
    if m:
        doc.para(
            f"Condition model: {m.get('name', '?')} {m.get('version', '?')}, sha256 {m.get('sha256', '?')}",
            size=8,
        )


def write_pdf(analysis: Analysis, path: str | os.PathLike[str]) -> None:
    """Writer for the registry (``instrunet analyze FILE --format pdf --out report.pdf``), through
    the core's writer layer: atomic, and ``"-"`` writes to stdout."""
    atomic_write_bytes(path, build_pdf(analysis))
