"""The Streamlit page (start it with ``instrunet-app``; ``streamlit run`` this file works too).

Only layout lives here; checking, analysing and the reports are in
:mod:`instrunet_app.service` and :mod:`instrunet_app.report`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import warnings
from typing import Any

import streamlit as st

from instrunet_app import report, service
from instrunet_core import InstrunetError, load_model
from instrunet_core.analysis import count_word
from instrunet_core.timeline import format_time, range_decimals
from instrunet_core.writers import detected_ranges

st.set_page_config(page_title="instrunet", page_icon=":musical_note:", layout="wide")
# every upload's warnings reach its page (service.analyze_upload collects them): Python's
# default shows a warning once per place, so the same problem in a later upload went unsaid
warnings.filterwarnings("always", category=RuntimeWarning)


@st.cache_resource(show_spinner=False)
def _model(name: str, version: str) -> Any:
    return load_model(name, version)


@st.cache_data(show_spinner=False)
def _models() -> list[service.ModelChoice]:
    return service.available_models()


def _limits() -> service.Limits:
    try:
        return service.Limits.from_env()
    except InstrunetError as e:
        st.error(service.markdown_text(f"Configuration: {e}"))
        st.stop()
        raise  # unreachable: st.stop() ends the run


#: Page styles: the phone-width timeline replaces the wide one below 640 px (Streamlit's own
#: breakpoint, where columns stack), and wide tables scroll inside their box instead of being cut.
_CSS = """
<style>
.st-key-timeline-narrow { display: none; }
@media (max-width: 640px) {
  .st-key-timeline-wide { display: none; }
  .st-key-timeline-narrow { display: block; }
}
[data-testid="stTable"] { overflow-x: auto; max-width: 100%; }
/* Streamlit's own "N MB per file" under the uploader: its limit is above the app's, which the
   uploader's label states (launcher.upload_cap_mb) */
[data-testid="stFileUploaderDropzoneInstructions"] { display: none; }
</style>
"""


@functools.cache
def _takes_alt(name: str) -> bool:
    """Whether this Streamlit's ``st.<name>`` takes ``alt`` (text for screen readers)."""
    return "alt" in inspect.signature(getattr(st, name)).parameters


def _alt(name: str, text: str) -> dict[str, Any]:
    return {"alt": text} if _takes_alt(name) else {}


def _timeline_alt(an: Any) -> str:
    """What the timeline shows, in words, for a screen reader."""
    parts = [f"{i.label} {report.fmt_ranges(i.ranges, limit=3, where='list below')}" for i in an.instruments]
    return "Timeline of each family's probability over time. Detected: " + ("; ".join(parts) or "none") + "."


def _show_condition(an: Any) -> None:
    st.subheader("Condition")
    cv = service.condition_view(an)
    with st.container(key="condition"):
        if cv["status"] != "ok":
            (st.info if cv["status"] == "missing" else st.error)(cv["notice"])
            return
        st.markdown(f"**Condition: {service.condition_text(cv['label'])}**")
        if cv["explanation"]:
            st.caption(cv["explanation"])
        cols = st.columns(2)
        with cols[0]:
            probs = cv["probabilities"]
            if probs and cv["label"] != "unknown":
                st.table(
                    {
                        "class": [service.condition_text(c) for c in probs],
                        "probability": [report.probability_text(v) for v in probs.values()],
                    }
                )
        with cols[1]:
            feats = {k: v for k, v in cv["features"].items() if v is not None}
            if feats:
                st.table(
                    {
                        "feature": list(feats),
                        "value": [report.fmt_value(v) for v in feats.values()],
                        "unit": [report.unit_of(k) for k in feats],
                    }
                )
        rows = report.condition_rows(cv)
        if rows:
            st.markdown("Per detected instrument")
            heads = ["instrument", "condition", *(service.condition_text(c) for c in cv["classes"])]
            # the reasons under the table, not in it: a column of sentences made a phone's table
            # screens tall
            st.table({h: [r[i] for r in rows] for i, h in enumerate(heads)})
            for lab, v in cv["instruments"].items():
                if isinstance(v, dict) and v.get("explanation"):
                    st.caption(service.markdown_text(f"{lab}: {v['explanation']}"))
        m = cv["model"]
        if m:
            st.caption(service.condition_model_line(m))


def _show_timeline(an: Any, audio: bytes, mime: str, ident: str) -> None:
    """The audio player above the timeline (it stays beside the picture at every width), a
    choice of detected range to play from, and the timeline for wide and for phone screens."""
    st.subheader("Timeline")
    with st.container(key="player"):
        starts = {"the beginning": 0.0}
        for lab, a, b, _ in detected_ranges(an):
            d = range_decimals(a, b, 1)
            name = service.label_text(lab, len(an.labels))
            starts[f"{name} {format_time(a, decimals=d)}-{format_time(b, decimals=d)}"] = a
        # one choice per upload (a key of its own): a new file starts at its beginning
        pick = st.selectbox("Play from", list(starts), key=f"play-from-{ident}") if len(starts) > 1 else None
        start = starts[pick] if pick is not None else 0.0
        st.audio(audio, format=mime, start_time=int(start), **_alt("audio", "Play the uploaded recording"))
    alt = _timeline_alt(an)
    with st.container(key="timeline-wide"):
        st.pyplot(report.timeline_figure(an), clear_figure=True, **_alt("pyplot", alt))
    with st.container(key="timeline-narrow"):
        st.pyplot(report.timeline_figure(an, narrow=True), clear_figure=True, **_alt("pyplot", alt))
    k = int(an.settings.get("leading") or 0)
    behind = (
        f", and behind {'a more probable family' if k == 1 else f'{count_word(k)} more probable families'} its margin "
        "above it too; see 'threshold' below"
        if k and any(an.settings.get("margins") or {})
        else ""
    )
    st.caption(
        "Colours: each family's smoothed probability; outlines: where it is detected (its smoothed "
        f"probability at or above its threshold{behind}); grey: silence. Times in m:ss."
    )
    with st.expander("Mean probability per family"):
        bars = ", ".join(f"{lab} {p:.2f}" for lab, p in an.prediction.probabilities.items())
        st.pyplot(
            report.probabilities_figure(an), clear_figure=True, **_alt("pyplot", f"Mean probability: {bars}.")
        )


def _pdf_or_error(an: Any, filename: str) -> bytes | str:
    """The PDF report, or why it could not be made (the page and the JSON do not need it)."""
    try:
        return report.build_pdf(an, filename=filename)
    except Exception as e:  # noqa: BLE001 - one analyzer's odd output must not cost the whole upload
        return f"The PDF report could not be made: {e if isinstance(e, InstrunetError) else f'{type(e).__name__}: {e}'}"


def _show_result(
    res: service.AppResult, pdf: bytes | str, js: bytes, player: tuple[bytes, str] | None, ident: str
) -> None:
    an = res.analysis
    stem = service.file_stem(res.filename)
    # whose result this is: an upload the uploader refuses itself leaves the previous one shown
    st.markdown(service.markdown_text(f"Result for {res.filename}", literal=[res.filename]))
    if res.notice:
        st.warning(service.markdown_text(res.notice, literal=[res.filename]))
    if isinstance(pdf, str):
        st.error(service.markdown_text(pdf, literal=[res.filename]))
    with st.container(key="summary"):
        c1, c2, c3, c4 = st.columns(4)
        c1.metric(
            "Overall prediction",
            service.label_text(an.label, len(an.labels)),
            None if an.silent else f"mean probability {an.confidence:.2f}",
            delta_color="off",
            delta_arrow="off",
        )
        cv = service.condition_view(an)
        if cv["status"] == "ok":
            p = cv["probabilities"].get(cv["label"])
            c2.metric(
                "Condition",
                service.condition_text(cv["label"]),
                cv["reason_text"]
                if cv["label"] == "unknown"
                else f"probability {float(p):.2f}"
                if isinstance(p, (int, float))
                else None,
                delta_color="off",
                delta_arrow="off",
            )
        else:
            c2.metric("Condition", "not run" if cv["status"] == "missing" else "failed")
        c3.metric("Duration", service.length_text(an.duration))
        c4.metric("Model", f"{an.model.get('name')} {an.model.get('version')}")
    d1, d2, d3 = st.columns(3)
    d1.download_button(
        "Download JSON",
        js,
        file_name=f"{stem}.json",
        mime="application/json",
        on_click="ignore",
        key="dl-json",
    )
    d2.download_button(
        "Download PDF report",
        pdf if isinstance(pdf, bytes) else b"",
        disabled=isinstance(pdf, str),
        file_name=f"{stem}.pdf",
        mime="application/pdf",
        on_click="ignore",
        key="dl-pdf",
    )
    d3.download_button(
        "Download ranges (CSV)",
        report.ranges_csv(an),
        file_name=f"{stem}_ranges.csv",
        mime="text/csv",
        on_click="ignore",
        key="dl-csv",
    )
    if an.silent:
        return

    st.subheader("Detected instruments")
    with st.container(key="instruments"):
        if an.instruments:
            st.table(
                {
                    "instrument": [i.label for i in an.instruments],
                    "mean probability": [f"{i.mean_probability:.2f}" for i in an.instruments],
                    "presence": [f"{i.presence:.0%}" for i in an.instruments],
                    "intensity": [f"{i.intensity:.2f}" for i in an.instruments],
                    "time ranges (m:ss)": [report.fmt_ranges(i.ranges, limit=3) for i in an.instruments],
                }
            )
        else:
            st.info(service.nothing_detected_text(an))
    rows = report.range_rows(an)
    if rows:
        with st.expander(f"Every detected range ({len(rows)})", expanded=False), st.container(key="ranges"):
            st.table({k: [r[i] for r in rows] for i, k in enumerate(("family", "start", "end", "length"))})

    if player is not None:  # (a silent result returned above: it has none)
        _show_timeline(an, *player, ident)

    _show_condition(an)

    extras = service.other_extras(an)
    if extras:
        st.subheader("Other analyses")
        for k, v in extras.items():
            with st.expander(k):
                st.json(v)

    with st.expander("What the measures mean"), st.container(key="measures"):
        for k, v in report.measures(an).items():
            st.markdown(f"**{k}**: {v}")


def main() -> None:
    st.html(_CSS)
    limits = _limits()
    st.title("instrunet: which instruments are playing?")
    models = _models()
    if not models:
        st.error("No usable model is installed (see 'instrunet models').")
        st.stop()
    by_title = {c.title: c for c in models}
    choice = by_title[st.sidebar.selectbox("Model", list(by_title), key="model")]
    st.sidebar.caption(f"from plugin {choice.plugin}")
    st.sidebar.markdown(
        f"Limits: {limits.max_mb:g} MB per file, {limits.duration_text} of audio. Nothing leaves this machine."
    )
    up = st.file_uploader(
        f"Upload a recording ({', '.join(service.ALLOWED_EXTENSIONS)}; up to {limits.max_mb:g} MB and "
        f"{limits.duration_text})",
        type=list(service.ALLOWED_EXTENSIONS),
        key="upload",
    )
    if up is None:
        st.info("Upload a recording to see which instrument families play in it, when, and how strongly.")
        return
    data = up.getvalue()
    name = service.upload_name(up.name)  # (as typed: the browser escapes quotes and line breaks)
    key = (hashlib.sha256(data).hexdigest(), name, choice.name, choice.version)
    cached = st.session_state.get("result")
    if cached is None or cached[0] != key:
        st.session_state.pop("result", None)
        bar = st.progress(0.0, text="Starting")
        try:  # (Stop or another model ends the analysis at the next block read: service._ReadProgress)
            model = _model(choice.name, choice.version)
            waiting = (
                f"Waiting: the server runs at most {limits.max_analyses} "
                f"{'analysis' if limits.max_analyses == 1 else 'analyses'} at once"
            )
            with service.analysis_slot(limits, lambda: bar.progress(0.0, text=waiting)):
                res = service.analyze_upload(
                    data,
                    name,
                    model=model,
                    limits=limits,
                    progress=lambda f, t: bar.progress(min(f, 1.0), text=t),
                )
            n = len(res.steps)
            bar.progress(0.93, text=f"Step {n} of {n}: {res.steps[-1]}")
            js = report.analysis_json(res.analysis)
            pdf = _pdf_or_error(res.analysis, name)
            # the player's audio, made once per result (a container browsers do not play, or a
            # damaged file: what was analysed); none for a silent result, which shows no player
            player: tuple[bytes | None, str] | None = (
                None
                if res.analysis.silent
                else service.player_audio(
                    data, name, seconds=res.analysis.duration if res.analysis.damage is not None else None
                )
            )
            if player is not None and player[0] is data:  # the upload itself: not kept twice (its
                player = (None, player[1])  # bytes are the uploader's; each run reads them again)
        except InstrunetError as e:
            bar.empty()
            st.error(service.markdown_text(f"Cannot analyse this upload. {e}", literal=[name]))
            return
        except Exception as e:  # noqa: BLE001 - the page must survive anything
            bar.empty()
            st.error(
                service.markdown_text(
                    f"Unexpected error while analysing {name}: {type(e).__name__}: {e}", literal=[name]
                )
            )
            return
        except BaseException:  # Streamlit's stop or rerun: no half-full bar left behind
            bar.empty()
            raise
        bar.empty()
        st.session_state["result"] = (key, res, pdf, js, player)
    key, res, pdf, js, kept = st.session_state["result"]
    shown = None if kept is None else (data if kept[0] is None else kept[0], kept[1])
    _show_result(res, pdf, js, shown, key[0][:16])


main()
