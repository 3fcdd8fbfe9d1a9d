"""The Streamlit page (start it with ``instrunet-app``; ``streamlit run`` this file works too).

Only layout lives here; checking, analysing and the reports are in
:mod:`instrunet_app.service` and :mod:`instrunet_app.report`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import streamlit as st

from instrunet_app import report, service
from instrunet_core import InstrunetError, load_model, plots

st.set_page_config(page_title="instrunet", page_icon=":musical_note:", layout="wide")


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


def _show_condition(an: Any) -> None:
    st.subheader("Condition")
    cv = service.condition_view(an)
    with st.container(key="condition"):
        if cv["status"] != "ok":
            (st.info if cv["status"] == "missing" else st.error)(cv["notice"])
            return
        st.markdown(f"**Condition: {cv['label']}**")
        if cv["explanation"]:
            st.caption(cv["explanation"])
        cols = st.columns(2)
        with cols[0]:
            probs = cv["probabilities"]
            if probs:
                st.table({"class": list(probs), "probability": [f"{float(v):.3f}" for v in probs.values()]})
        with cols[1]:
            feats = cv["features"]
            if feats:
                st.table({"feature": list(feats), "value": [report.fmt_value(v) for v in feats.values()]})
        insts = {k: v for k, v in cv["instruments"].items() if isinstance(v, dict)}
        if insts:
            st.markdown("Per detected instrument")
            st.table(
                {
                    "instrument": list(insts),
                    "condition": [str(v.get("label", "-")) for v in insts.values()],
                    **{
                        c: [
                            report.fmt_value((v.get("probabilities") or {}).get(c, "-"))
                            for v in insts.values()
                        ]
                        for c in cv["classes"]
                    },
                    "why": [str(v.get("explanation") or "") for v in insts.values()],
                }
            )
        m = cv["model"]
        if m:
            st.caption(
                f"Condition model: {m.get('name', '?')} {m.get('version', '?')}, sha256 {m.get('sha256', '?')}"
            )


def _show_result(res: service.AppResult, pdf: bytes, js: bytes) -> None:
    an = res.analysis
    stem = os.path.splitext(os.path.basename(res.filename))[0] or "analysis"
    if res.notice:
        st.warning(service.markdown_text(res.notice, literal=[res.filename]))
    with st.container(key="summary"):
        c1, c2, c3, c4 = st.columns(4)
        c1.metric(
            "Overall prediction",
            an.label,
            f"confidence {an.confidence:.2f}",
            delta_color="off",
            delta_arrow="off",
        )
        cv = service.condition_view(an)
        if cv["status"] == "ok":
            p = cv["probabilities"].get(cv["label"])
            c2.metric(
                "Condition",
                cv["label"].replace("_", " "),
                f"p {float(p):.2f}" if isinstance(p, (int, float)) else None,
                delta_color="off",
                delta_arrow="off",
            )
        else:
            c2.metric("Condition", "not installed" if cv["status"] == "missing" else "failed")
        c3.metric("Duration", f"{an.duration:.1f} s")
        c4.metric("Model", f"{an.model.get('name')} {an.model.get('version')}")
    d1, d2, _ = st.columns([1, 1, 2])
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
        pdf,
        file_name=f"{stem}.pdf",
        mime="application/pdf",
        on_click="ignore",
        key="dl-pdf",
    )
    if an.silent:
        return

    st.subheader("Detected instruments")
    with st.container(key="instruments"):
        if an.instruments:
            st.table(
                {
                    "instrument": [i.label for i in an.instruments],
                    "presence": [f"{i.presence:.0%}" for i in an.instruments],
                    "intensity": [f"{i.intensity:.2f}" for i in an.instruments],
                    "max probability": [f"{i.max_probability:.2f}" for i in an.instruments],
                    "time ranges": [report.fmt_ranges(i.ranges) for i in an.instruments],
                }
            )
        else:
            st.info("No instrument is above its presence threshold anywhere in the recording.")

    st.subheader("Timeline")
    st.pyplot(report.timeline_figure(an), clear_figure=True)
    with st.expander("Probability per family"):
        st.pyplot(plots.probabilities_figure(an), clear_figure=True)

    _show_condition(an)

    extras = service.other_extras(an)
    if extras:
        st.subheader("Other analyses")
        for k, v in extras.items():
            with st.expander(k):
                st.json(v)

    with st.expander("What the measures mean"):
        for k, v in report.measures().items():
            st.markdown(f"**{k}**: {v}")


def main() -> None:
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
    key = (hashlib.sha256(data).hexdigest(), up.name, choice.name, choice.version)
    cached = st.session_state.get("result")
    if cached is None or cached[0] != key:
        st.session_state.pop("result", None)
        bar = st.progress(0.0, text="Starting")
        try:
            model = _model(choice.name, choice.version)
            res = service.analyze_upload(
                data,
                up.name,
                model=model,
                limits=limits,
                progress=lambda f, t: bar.progress(min(f, 1.0), text=t),
            )
            bar.progress(0.93, text="Writing the reports")
            js = report.analysis_json(res.analysis)
            pdf = report.build_pdf(res.analysis, filename=up.name)
        except InstrunetError as e:
            bar.empty()
            st.error(service.markdown_text(f"Cannot analyse this upload. {e}", literal=[up.name]))
            return
        except Exception as e:  # noqa: BLE001 - the page must survive anything
            bar.empty()
            st.error(
                service.markdown_text(
                    f"Unexpected error while analysing {up.name}: {type(e).__name__}: {e}", literal=[up.name]
                )
            )
            return
        bar.empty()
        st.session_state["result"] = (key, res, pdf, js)
    _, res, pdf, js = st.session_state["result"]
    _show_result(res, pdf, js)


main()
