"""Reports of an analysis: plots (matplotlib), the analysis JSON and the PDF (fpdf2).

Nothing here imports Streamlit. The JSON is written by the core's registered ``json``
writer, so it is byte for byte what ``instrunet analyze FILE --json OUT`` writes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from instrunet_core import FAMILIES, MEASURES, Analysis, get_registry, plots
from instrunet_core.analysis import measures_for
from instrunet_core.errors import InstrunetError, OutputError
from instrunet_core.output import display_name
from instrunet_core.timeline import format_ranges, format_time, range_decimals
from instrunet_core.writers import atomic_write_bytes, detected_ranges, figure_bytes

from .service import (
    NO_VALUE,
    condition_model_line,
    condition_text,
    condition_view,
    label_text,
    length_text,
    model_card,
    other_extras,
    seconds_text,
)

__all__ = [
    "MEASURES",
    "measures",
    "timeline_figure",
    "probabilities_figure",
    "figure_png",
    "analysis_json",
    "ranges_csv",
    "writer_bytes",
    "build_pdf",
    "write_pdf",
    "fmt_ranges",
    "fmt_value",
    "unit_of",
    "range_rows",
]


def measures(analysis: Analysis | None = None) -> dict[str, str]:
    """What each number in the page and the report means: the core's
    :data:`instrunet_core.MEASURES` (worded for ``analysis``'s labels and settings when given:
    :func:`instrunet_core.analysis.measures_for`), then the condition analyzer's own descriptions
    of its verdict and features when it is installed (``instrunet_condition.DESCRIPTIONS``)."""
    core = dict(MEASURES) if analysis is None else measures_for(analysis.labels, analysis.settings)
    try:
        from instrunet_condition import DESCRIPTIONS
    except ImportError:
        return core
    return {**core, **DESCRIPTIONS}


def _words(analysis: Analysis) -> tuple[str, str]:
    """What the report calls one of ``analysis``'s labels and the open-set answer: "family" and
    "none of the eight" for the eight families, "label" and "none of the labels" for another
    model's (a custom model's report spoke of families and of "none of the eight")."""
    families = tuple(analysis.labels) == FAMILIES
    return ("family", "none of the eight") if families else ("label", "none of the labels")


# ----------------------------------------------------------------------------- plots
def timeline_figure(analysis: Analysis, *, narrow: bool = False) -> Any:
    """The core's timeline (:func:`instrunet_core.plots.timeline`) as the page and the PDF show it:
    ``narrow`` for a phone's width (390 px), larger letters and fewer ticks.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = len(analysis.labels) + (1 if analysis.prediction.other is not None else 0)
    other = label_text("other", len(analysis.labels))
    if narrow:
        fig = plots.new_figure(4.0, 0.34 * rows + 1.5)
        ax = plots.timeline(analysis, ax=fig.subplots(), fontsize=8.5, other_name=other)
        plots.time_axis(ax, duration=analysis.duration, max_ticks=4)
        ax.set_xlabel("")
    else:
        fig = plots.new_figure(9.0, 0.42 * rows + 1.6)
        plots.timeline(analysis, ax=fig.subplots(), other_name=other)
    fig.tight_layout()
    return fig


def probabilities_figure(analysis: Analysis, *, narrow: bool = False) -> Any:
    """The core's bars of mean probability per family (:func:`instrunet_core.plots.probabilities`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = plots.new_figure(4.0 if narrow else 9.0, 0.3 * len(analysis.labels) + 1.2)
    ax = plots.probabilities(analysis, ax=fig.subplots(), fontsize=8.5 if narrow else None)
    if narrow:
        ax.set_xlabel("mean probability")
    fig.tight_layout()
    return fig


def figure_png(fig: Any, *, dpi: int = 110) -> bytes:
    """A matplotlib figure rendered to PNG bytes (:func:`instrunet_core.writers.figure_bytes`)."""
    return figure_bytes(fig, "png", dpi=dpi)


def fmt_ranges(ranges: Any, *, limit: int | None = None, where: str = "full list below") -> str:
    """``[[0.0, 4.5], [69, 72]]`` → ``"0:00.0-0:04.5, 1:09.0-1:12.0"``; with ``limit``, the first
    ``limit`` ranges, how many more there are and ``where`` the full list is
    (``"0:00.0-0:04.5 and 3 more (full list below)"``)."""
    ranges = list(ranges)
    if limit is not None and len(ranges) > limit:
        return f"{format_ranges(ranges[:limit])} and {len(ranges) - limit} more ({where})"
    return format_ranges(ranges)


def range_rows(analysis: Analysis) -> list[list[str]]:
    """Every detected range in time order: ``[family, start, end, length]`` (``m:ss.s``, more
    digits where a range is too short for them; the length in s in the same digits, or ms under
    0.1 s; "none of
    the eight" for an open-set model's ``other`` ranges)."""
    out = []
    for lab, a, b, _ in detected_ranges(analysis):
        d = range_decimals(a, b, 1)
        out.append(
            [
                label_text(lab, len(analysis.labels)),
                format_time(a, decimals=d),
                format_time(b, decimals=d),
                # in the start's and end's digits, their difference as shown (whole seconds from
                # 10 s on wrote 17 s beside 0:05.5-0:22.1: an audit)
                f"{round(b, d) - round(a, d):.{d}f} s" if b - a >= 0.1 else seconds_text(b - a),
            ]
        )
    return out


#: Units of the condition analyzer's features, by the end of their names.
_UNITS = (("_db_per_s", "dB/s"), ("_db", "dB"), ("_hz", "Hz"), ("_cents", "cents"))
_SHARES = ("ratio", "flatness", "zero_crossing_rate", "flatness_quiet", "spectral_flux")


def unit_of(feature: str) -> str:
    """The unit a feature's value is in (``"dB"``, ``"Hz"``, ``"dB/s"``, ``"(dB/s)²"``, ``"0-1"``
    for shares and ratios), ``""`` when it has none."""
    if feature == "decay_variance":
        return "(dB/s)\u00b2"
    for end, unit in _UNITS:
        if feature.endswith(end):
            return unit
    if any(feature.endswith(x) or feature == x for x in _SHARES):
        return "0-1"
    return ""


# ----------------------------------------------------------------------------- JSON
def writer_bytes(analysis: Analysis, fmt: str, *, registry: Any = None) -> bytes:
    """What the core's registered writer ``fmt`` writes for ``analysis`` (as ``instrunet analyze
    FILE --format FMT --out OUT`` does), as bytes."""
    reg = registry or get_registry()
    with tempfile.TemporaryDirectory(prefix="instrunet-app-") as d:
        path = os.path.join(d, f"analysis.{fmt}")
        reg.writer(fmt)(analysis, path)
        with open(path, "rb") as f:
            return f.read()


def analysis_json(analysis: Analysis, *, registry: Any = None) -> bytes:
    """The analysis as the core's registered ``json`` writer writes it (as the CLI's ``--json``).

    Returns
    -------
    bytes
        UTF-8 JSON.
    """
    return writer_bytes(analysis, "json", registry=registry)


def ranges_csv(analysis: Analysis, *, registry: Any = None) -> bytes:
    """Every detected range as CSV: the core's ``ranges`` writer (``instrunet analyze FILE --format
    ranges --out OUT``)."""
    return writer_bytes(analysis, "ranges", registry=registry)


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


#: Characters of one text value the report shows (the JSON has it all).
MAX_TEXT_CHARS = 300


def fmt_value(v: Any) -> str:
    """A number to 4 significant digits; containers as (truncated) JSON; anything else as text,
    cut to :data:`MAX_TEXT_CHARS` characters with an ellipsis and its length."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return f"{v:.4g}"
    if isinstance(v, Mapping | list):
        text = json.dumps(v)
        if len(text) <= 120:
            return text
        return f"{text[:120]}... ({len(text):,} characters; the JSON has them all)"
    text = str(v)
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return f"{text[:MAX_TEXT_CHARS]}... ({len(text):,} characters; the JSON has them all)"


class _Pdf:
    """A thin layer over :class:`fpdf.FPDF` for headings, paragraphs, tables and images."""

    def __init__(self, title: str) -> None:
        from fpdf import FPDF

        pdf = FPDF(format="A4", unit="mm")
        for style in _FONT_FILES:
            pdf.add_font(PDF_FONT, style, _font_path(style))
        pdf.set_title(display_name(title))  # metadata: any Unicode, no glyphs needed
        pdf.set_creator("instrunet-app")
        pdf.set_auto_page_break(auto=True, margin=14)
        pdf.set_margins(14, 14, 14)
        pdf.add_page()
        self.pdf = pdf

    def heading(self, text: str, *, size: int = 13, keep: float = 40) -> None:
        """A heading, on the next page unless it and ``keep`` mm of what follows fit under it."""
        p = self.pdf
        if p.get_y() + self.heading_height(text, size=size) + keep > p.h - p.b_margin:
            p.add_page()
        p.ln(2)
        p.set_font(PDF_FONT, "B", size)
        p.multi_cell(0, size * 0.5, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        p.ln(1)

    def heading_height(self, text: str, *, size: int = 13) -> float:
        """Millimetres :meth:`heading` takes for ``text`` (it may wrap)."""
        p = self.pdf
        p.set_font(PDF_FONT, "B", size)
        lines = p.multi_cell(0, size * 0.5, _pdf_text(text), dry_run=True, output="LINES")
        return 3 + (len(lines) if isinstance(lines, list) else 1) * size * 0.5

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

    def image(self, png: bytes, *, heading: str | None = None, width: float | None = None) -> None:
        """An image, on the next page if it does not fit here; ``heading`` goes with it."""
        p = self.pdf
        from PIL import Image

        w, h = Image.open(io.BytesIO(png)).size
        width = width or p.epw
        height = width * h / w
        if p.get_y() + height + (self.heading_height(heading) if heading else 0) > p.h - p.b_margin:
            p.add_page()
        if heading:
            self.heading(heading, keep=height)
        p.image(io.BytesIO(png), w=width)
        p.ln(2)

    def keep(self, mm: float) -> None:
        """Start a new page unless ``mm`` more millimetres fit on this one (a heading and the
        first lines of what follows it stay together)."""
        p = self.pdf
        if p.get_y() + mm > p.h - p.b_margin:
            p.add_page()

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def build_pdf(analysis: Analysis, *, filename: str | None = None, registry: Any = None) -> bytes:
    """The PDF report: summary, model card, instruments, timeline, probabilities, condition, what
    each measure means, and every detected range in an appendix.

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
    doc.para(f"Duration {length_text(analysis.duration)}. Written {now} by instrunet-app.")
    if analysis.damage is not None:  # the page and the JSON say so; a report kept alone must too
        doc.para(
            f"The file is cut short or damaged: only {length_text(analysis.duration)} could be decoded, "
            f"and the results cover that part ({analysis.damage}).",
            style="B",
        )

    doc.heading("Overall prediction")
    if analysis.silent:
        doc.para(
            "The recording is silent (no sound above -60 dBFS; DC is no sound): no instruments to detect.",
            style="B",
        )
    else:
        shown = label_text(analysis.label, len(analysis.labels))
        doc.para(f"{shown} (mean probability {analysis.confidence:.2f})", size=12, style="B")
    one, none = _words(analysis)
    if analysis.prediction.other is not None:
        doc.para(f"{none.capitalize()} (open-set output): mean probability {analysis.prediction.other:.2f}.")
    if analysis.low_evidence and not analysis.silent:
        doc.para(
            f"Low evidence: only {seconds_text(analysis.prediction.sounding_seconds)} of sound; treat this as a hint."
        )
    doc.para(
        "Detected instruments: "
        + (", ".join(i.label for i in analysis.instruments) if analysis.instruments else "none")
    )
    cv = condition_view(analysis)
    if cv["status"] == "ok":
        doc.para(f"Condition: {_condition_line(cv)}; details below.")

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
            ["instrument", "mean probability", "presence", "intensity", "time ranges (m:ss)"],
            [
                [
                    i.label,
                    f"{i.mean_probability:.2f}",
                    f"{i.presence:.0%}",
                    f"{i.intensity:.2f}",
                    fmt_ranges(i.ranges, limit=4, where="appendix"),
                ]
                for i in analysis.instruments
            ],
            widths=(24, 26, 20, 18, 94),
        )
    else:
        doc.para("None detected.")
    if analysis.other_ranges():
        doc.para(f"{none.capitalize()}: {fmt_ranges(analysis.other_ranges(), limit=4, where='appendix')}")

    if analysis.timeline:
        doc.image(
            figure_png(timeline_figure(analysis)),
            heading="Timeline (m:ss)",
        )
    doc.image(figure_png(probabilities_figure(analysis)), heading=f"Mean probability per {one}")
    s = analysis.settings
    thresholds = s.get("thresholds", {})
    detected = {i.label for i in analysis.instruments}
    doc.keep(60)
    doc.table(
        [one, "mean probability", "threshold (smoothed probability)", "detected"],
        [
            [
                lab,
                f"{analysis.prediction.probabilities.get(lab, 0.0):.2f}",
                fmt_value(thresholds.get(lab, NO_VALUE)),
                "yes" if lab in detected else "no",
            ]
            for lab in sorted(analysis.labels, key=lambda x: -analysis.prediction.probabilities.get(x, 0.0))
        ],
        widths=(40, 40, 60, 40),
    )

    with _analyzer_output("condition"):
        _pdf_condition(doc, analysis)

    extras = other_extras(analysis)
    if extras:
        doc.heading("Other analyses")
        for key, val in extras.items():
            with _analyzer_output(key):
                doc.para(fmt_value(key), style="B")
                if isinstance(val, Mapping):
                    doc.table(
                        ["field", "value"],
                        [[fmt_value(str(k)), fmt_value(v)] for k, v in list(val.items())[:40]],
                        widths=(55, 125),
                    )
                    if len(val) > 40:
                        doc.para(f"... and {len(val) - 40} more fields (the JSON has them all).", size=8)
                else:
                    doc.para(fmt_value(val))

    doc.heading("What the measures mean")
    for k, v in measures(analysis).items():
        doc.para(f"{k}: {v}")
    doc.para(
        f"Settings: window {fmt_value(s.get('window'))} s, hop {fmt_value(s.get('hop'))} s, smoothing "
        f"{fmt_value(s.get('smoothing'))} s, minimum duration {fmt_value(s.get('min_duration'))} s, "
        f"silence below {fmt_value(s.get('silence_db'))} dBFS for {fmt_value(s.get('min_silence'))} s or more "
        "ends a range."
        + (
            f' No {one} is detected where "{none}" is the answer with a smoothed probability '
            f"of {fmt_value(s.get('other_veto'))} or more."
            if s.get("other_threshold") is not None and s.get("other_veto") is not None
            else ""
        ),
        size=8,
    )

    ranges = range_rows(analysis)
    if ranges:
        doc.heading("Appendix: every detected range")
        doc.table([one, "start", "end", "length"], ranges, widths=(50, 40, 40, 40))
    return doc.output()


@contextlib.contextmanager
def _analyzer_output(name: str) -> Iterator[None]:
    """Lay out analyzer ``name``'s result; a failure becomes an :class:`OutputError` naming it."""
    try:
        yield
    except InstrunetError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the layout engine raises, named
        raise OutputError(
            f"PDF report: the result of analyzer {display_name(name)[:80]!r} cannot be laid out: "
            f"{type(e).__name__}: {str(e)[:200]}"
        ) from e


def _condition_line(cv: Mapping[str, Any]) -> str:
    """``healthy (probability 0.93)``, or ``unknown`` and why, for the summary."""
    label = str(cv["label"])
    if label == "unknown":
        return f"unknown ({cv['reason_text']})"
    p = cv["probabilities"].get(label)
    return condition_text(label) + (f" (probability {float(p):.2f})" if isinstance(p, (int, float)) else "")


def probability_text(v: Any) -> str:
    """A class probability as the page and the PDF show it: two decimals."""
    return f"{float(v):.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else NO_VALUE


def condition_rows(cv: Mapping[str, Any]) -> list[list[str]]:
    """One row per detected instrument: its name, condition and class probabilities
    (:data:`~instrunet_app.service.NO_VALUE` for "unknown", as for the whole file); the page and
    the PDF show the same."""
    return [
        [
            str(lab),
            condition_text(v.get("label", NO_VALUE)),
            *[
                NO_VALUE
                if v.get("label") == "unknown"
                else probability_text((v.get("probabilities") or {}).get(c))
                for c in cv["classes"]
            ],
        ]
        for lab, v in cv["instruments"].items()
        if isinstance(v, Mapping)
    ]


def _pdf_condition(doc: _Pdf, analysis: Analysis) -> None:
    cv = condition_view(analysis)
    doc.heading("Condition")
    if cv["status"] != "ok":
        doc.para(cv["notice"])
        return
    doc.para(f"Condition: {condition_text(cv['label'])}", size=12, style="B")
    if cv["label"] == "unknown":
        why = cv["reason_text"]
        doc.para(
            "Too little sound to judge: the condition model needs about a second of notes or more."
            if cv["reason"] == "too_short"
            else f"Not judged: {why}."
        )
    if cv["explanation"]:
        doc.para(fmt_value(cv["explanation"]))
    probs = cv["probabilities"]
    if probs and cv["label"] != "unknown":  # what the page shows: no probabilities for "unknown"
        doc.table(
            ["class", "probability"],
            [[condition_text(k), probability_text(probs.get(k))] for k in cv["classes"]],
            widths=(60, 40),
        )
    feats = {k: v for k, v in cv["features"].items() if v is not None}  # (not measured: left out)
    if feats:
        doc.table(
            ["feature", "value", "unit"],
            [[k, fmt_value(v), unit_of(k)] for k, v in feats.items()],
            widths=(60, 40, 30),
        )
    if cv["instruments"]:
        doc.table(
            ["instrument", "condition", *(condition_text(c) for c in cv["classes"])], condition_rows(cv)
        )
        for lab, v in cv["instruments"].items():
            if isinstance(v, Mapping) and v.get("explanation"):
                doc.para(f"{lab}: {v['explanation']}", size=8)
    m = cv["model"]
    if m:
        doc.para(condition_model_line(m), size=8)


def write_pdf(analysis: Analysis, path: str | os.PathLike[str]) -> None:
    """Writer for the registry (``instrunet analyze FILE --format pdf --out report.pdf``), through
    the core's writer layer: atomic, and ``"-"`` writes to stdout."""
    atomic_write_bytes(path, build_pdf(analysis))
