"""The web app's logic (instrunet_app.service / report), its pdf writer and launcher, and the
Streamlit page through ``AppTest`` — real models, real decoding, real PDFs read back with pypdf.

The browser test is ``tests/test_app_browser.py``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("CI"):  # make test installs them; elsewhere (another venv) skip
    for _tool in ("streamlit", "fpdf", "pypdf"):
        pytest.importorskip(_tool)

from instrunet_app import report, service  # noqa: E402
from instrunet_app.launcher import APP_FILE  # noqa: E402

from instrunet_core import DecodeError, InputError, hookimpl, load_model  # noqa: E402
from instrunet_core import cli as core_cli  # noqa: E402
from instrunet_core.errors import OutputError  # noqa: E402
from instrunet_core.registry import build_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = ROOT / "examples" / "ensemble.flac"
FLUTE = ROOT / "examples" / "solo_flute.wav"


def shown(markdown: str) -> str:
    """What a Markdown element displays (CommonMark, as rendered by markdown-it): its text."""
    import html
    import re

    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").render(markdown)
    assert "<a " not in rendered and "<img " not in rendered and "<strong>" not in rendered, rendered
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


def wav_bytes(y: np.ndarray, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def pdf_text(data: bytes) -> str:
    import pypdf

    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages)


TONE = wav_bytes(0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 8000) / 8000))


@pytest.mark.parametrize(
    ("name", "data", "limits", "error", "message"),
    [
        ("empty.wav", b"", service.Limits(), InputError, "empty.wav: the file is empty (0 bytes)"),
        (
            "notes.wav",
            b"not audio at all\n" * 40,
            service.Limits(),
            DecodeError,
            "notes.wav: cannot decode audio",
        ),
        ("notes.txt", b"text", service.Limits(), InputError, "notes.txt: unsupported file type .txt"),
        ("noext", TONE, service.Limits(), InputError, "noext: unsupported file type (no extension)"),
        (
            "big.wav",
            TONE,
            service.Limits(max_mb=0.01),
            InputError,
            f"big.wav: the file is {len(TONE):,} bytes, more than the limit of 0.01 MB (10,000 bytes)",
        ),
        (
            "long.wav",
            TONE,
            service.Limits(max_seconds=2),
            InputError,
            "long.wav: the recording is 3.000 s long, more than the limit of 2 s",
        ),
    ],
)
def test_bad_uploads_name_the_file_and_the_problem(name, data, limits, error, message):
    with pytest.raises(error) as e:
        service.check_upload(data, name, limits=limits)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (TONE, None, "upload: the file name must be a str, got NoneType"),
        (TONE, b"tone.wav", "upload: the file name must be a str, got bytes"),
        ("abc", "tone.wav", "tone.wav: the upload's content must be bytes, got str"),
        (None, "tone.wav", "tone.wav: the upload's content must be bytes, got NoneType"),
    ],
)
def test_uploads_of_the_wrong_type_are_input_errors(data, name, message, installed_registry):
    with pytest.raises(InputError) as e:
        service.check_upload(data, name, limits=service.Limits())
    assert message in str(e.value)
    with pytest.raises(InputError) as e:
        service.analyze_upload(data, name, limits=service.Limits(), registry=installed_registry)
    assert message in str(e.value)


@pytest.mark.parametrize("fmt", ["OGG", "MP3", "FLAC"])
def test_compressed_uploads_are_analysed(fmt, installed_registry):
    import soundfile as sf

    from instrunet_core.audio import MP3_SUPPORTED

    if fmt == "MP3" and not MP3_SUPPORTED:
        pytest.skip("this libsndfile has no MP3")
    y, sr = sf.read(FLUTE, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    name = f"flute.{fmt.lower()}"
    assert fmt.lower() in service.ALLOWED_EXTENSIONS
    res = service.analyze_upload(buf.getvalue(), name)
    assert res.analysis.source == name and abs(res.analysis.duration - len(y) / sr) < 0.1
    assert res.analysis.instruments and res.notice is None


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("INSTRUNET_APP_MAX_MB", "2.5")
    monkeypatch.setenv("INSTRUNET_APP_MAX_SECONDS", "900")
    lim = service.Limits.from_env()
    assert (lim.max_bytes, lim.max_seconds, lim.duration_text) == (2_500_000, 900.0, "15 min")
    monkeypatch.setenv("INSTRUNET_APP_MAX_SECONDS", "-1")
    with pytest.raises(InputError, match="INSTRUNET_APP_MAX_SECONDS must be > 0"):
        service.Limits.from_env()
    assert service.check_upload(TONE, "tone.WAV", limits=service.Limits()) == pytest.approx(3.0)
    # inf passed the check above, then every upload failed with an OverflowError (an audit)
    monkeypatch.setenv("INSTRUNET_APP_MAX_SECONDS", "900")
    monkeypatch.setenv("INSTRUNET_APP_MAX_MB", "inf")
    with pytest.raises(InputError, match="INSTRUNET_APP_MAX_MB.*max_mb must be a number > 0 and at most"):
        service.Limits.from_env()


@pytest.mark.parametrize(
    "make",
    [
        lambda: service.Limits(max_mb=float("nan")),  # a NaN limit: no upload is "too large"
        lambda: service.Limits(max_seconds=float("nan")),
        lambda: service.Limits(max_seconds="600"),  # type: ignore[arg-type]
        lambda: service.Limits(max_mb=-1),
        lambda: service.analyze_upload(TONE, "tone.wav", limits={"max_mb": 1}),  # type: ignore[arg-type]
        lambda: service.analyze_upload(TONE, "tone.wav", progress=1),  # type: ignore[arg-type]
        lambda: service.analyze_upload(TONE, "tone.wav", registry="x"),
        lambda: service.analyze_upload(TONE, "tone.wav", analyzers=5),
        lambda: service.analyze_upload(TONE, "tone.wav", analyzers=None),  # said "not installed"
    ],
)
def test_limits_and_options_are_checked_before_the_upload(make) -> None:
    with pytest.raises(InputError, match="Limits: |analyze_upload: "):
        make()


def test_available_models_default_first(installed_registry):
    models = service.available_models()
    names = [m.name for m in models]
    default = load_model()  # the version the core loads without a name
    assert names[0] == "family" and models[0].default
    assert models[0].title == f"family {default.version} (default)"
    # the default's previous version is offered beside it (family 3.2.0, the previous default)
    assert [m.version for m in models if m.name == "family" and not m.default] == ["3.2.0"]
    assert "baseline" in names  # the model plugin make test installs


def test_the_pinned_default_model_is_the_apps_default(installed_registry, monkeypatch):
    """An audit (2026-12-06): with INSTRUNET_DEFAULT_MODEL=family@2.0.0 (the README's way to
    keep the previous answers) the page still ran family's newest version and called it the
    default, so it answered white noise "other" where the command line says "guitar"; 2.0.0
    could not be chosen at all."""
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "family@2.0.0")
    models = service.available_models()
    assert (models[0].name, models[0].version, models[0].default) == ("family", "2.0.0", True)
    assert models[0].version == load_model().version
    newest = [m for m in models if m.name == "family" and not m.default]
    assert [m.version for m in newest] == ["3.3.0", "1.0.0"]  # family's newest, and the version before
    assert [m.title for m in models].count("family 2.0.0 (default)") == 1


@pytest.mark.slow
def test_ensemble_json_is_the_clis_and_pdf_has_the_results(installed_registry, tmp_path):
    steps = []
    res = service.analyze_upload(
        ENSEMBLE.read_bytes(), "ensemble.flac", progress=lambda f, t: steps.append((f, t))
    )
    an = res.analysis
    assert res.notice is None and an.instruments and an.model["name"] == "family"
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.75
    assert sum("s read" in t for _, t in steps) >= 5  # decoding reports how far it has read
    # every step is named, the analyzers' too (the condition step once sat unseen at "256 of 258 s")
    n = len(res.steps)
    assert res.steps[-1] == "Writing the reports" and "Judging the condition" in res.steps
    texts = [t for _, t in steps]
    for i, step in enumerate(res.steps[:-1]):
        assert any(t.startswith(f"Step {i + 1} of {n}: {step}") for t in texts), (step, texts)
    assert texts[-1] == f"Step {n - 1} of {n}: Judging the condition"  # the last analyzer is last

    app_json = json.loads(report.analysis_json(an))
    out = tmp_path / "cli.json"
    assert core_cli.main(["analyze", str(ENSEMBLE), "--json", str(out)]) == 0
    cli_json = json.loads(out.read_text())
    assert app_json.pop("source") == "ensemble.flac"
    cli_json.pop("source")
    assert app_json == cli_json

    text = pdf_text(report.build_pdf(an, filename="ensemble.flac"))
    flat = text.replace("\n", "")
    assert "instrunet report: ensemble.flac" in text
    assert f"{an.label} (mean probability {an.confidence:.2f})" in text
    # one name for one number: "confidence" only where the JSON's key is explained
    assert " ".join(text.split()).count("confidence") == 1 and "confidence (JSON):" in text
    assert "mean p " not in text
    for ins in an.instruments:
        assert ins.label in text and report.fmt_ranges(ins.ranges).split(",")[0] in text
    # the appendix lists every range, in m:ss, in time order
    appendix = text[text.index("Appendix: every detected range") :]
    rows = report.range_rows(an)
    assert rows and len(rows) == sum(len(i.ranges) for i in an.instruments) + len(an.other_ranges())
    pos = [appendix.index(" ".join(r)) for r in rows]
    assert pos == sorted(pos)

    def secs(t: str) -> float:
        m, s = t.split(":")
        return 60 * int(m) + float(s)

    for _, start, end, length in rows:  # the length is the shown end less the shown start
        # (whole seconds from 10 s on wrote "0:05.5 0:22.1 17 s": an audit)
        assert length.endswith(" s") and float(length[:-2]) == pytest.approx(secs(end) - secs(start)), (
            start,
            end,
            length,
        )
    for k in ("mean probability:", "smoothed probability:", "threshold:", "intensity:"):
        assert text.count(k) == 1, k  # each measure is defined once
    # the settings say when "none of the eight" keeps a family out (the default is open-set)
    assert "is the answer with a smoothed probability of 0.72 or more" in " ".join(text.split())
    # a figure's heading is on the figure's page (the timeline's once ended page 1 alone)
    import pypdf

    pages = pypdf.PdfReader(io.BytesIO(report.build_pdf(an, filename="ensemble.flac"))).pages
    for heading in ("Timeline (m:ss)", "Mean probability per family"):
        (page,) = [pg for pg in pages if heading in " ".join(pg.extract_text().split())]
        assert len(page.images) >= 1, heading
    manifest = installed_registry.resolve_model("family").manifest
    assert manifest.sha256 in flat
    assert "What the measures mean" in text and "intensity:" in text and "hnr_db:" in text
    cv = service.condition_view(an)  # plugins/instrunet-condition, installed by make test
    assert cv["status"] == "ok" and cv["model"]["name"] == "condition", cv
    assert f"Condition: {cv['label']}" in text and "spectral_flatness" in text
    net = cv["model"]["spectrogram"]  # condition 3.0.0 fuses a spectrogram network: both named
    assert cv["model"]["sha256"] in flat and net["sha256"] in flat
    assert service.condition_model_line(cv["model"]).endswith(
        f"with {net['name']} {net['version']}, sha256 {net['sha256']}"
    )
    assert set(cv["instruments"]) <= {i.label for i in an.instruments}


def test_silent_upload_gives_a_notice(installed_registry):
    res = service.analyze_upload(wav_bytes(np.zeros(2 * 8000)), "quiet.wav")
    assert res.analysis.silent and not res.analysis.instruments
    assert res.notice and "quiet.wav: the recording is silent" in res.notice
    assert "The recording is silent" in pdf_text(report.build_pdf(res.analysis))


def test_a_short_blip_is_marked_as_a_hint(installed_registry):
    sr = 8000
    y = np.zeros(4 * sr)
    y[sr : sr + int(0.4 * sr)] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.4 * sr)) / sr)
    res = service.analyze_upload(wav_bytes(y, sr), "blip.wav")
    assert res.analysis.prediction.low_evidence and not res.analysis.silent
    assert res.notice and res.notice.startswith("blip.wav: only 0.4 s of sound")
    assert service.condition_view(res.analysis)["label"] == "unknown"  # too little sound to judge
    assert "Condition: unknown (too little sound to judge)" in pdf_text(report.build_pdf(res.analysis))


def test_without_the_condition_plugin_the_report_says_so(installed_registry):
    reg = build_registry(entry_points=False)
    res = service.analyze_upload(TONE, "tone.wav", model=load_model(registry=reg), registry=reg)
    assert service.condition_view(res.analysis) == {"status": "missing", "notice": service.MISSING_CONDITION}
    assert "No condition analysis in this run" in " ".join(
        pdf_text(report.build_pdf(res.analysis, registry=reg)).split()
    )


class _PeakAnalyzer:
    """A real analyzer plugin (in-process): peak level of the file."""

    @hookimpl
    def instrunet_register_analyzers(self, register):
        register("peak", lambda ctx: {"peak_dbfs": float(20 * np.log10(np.max(np.abs(ctx.audio())) + 1e-12))})


class _BrokenCondition:
    """A ``condition`` analyzer that fails: the page and the report must say so and go on."""

    @hookimpl
    def instrunet_register_analyzers(self, register):
        def fail(ctx):
            raise RuntimeError("no notes long enough to judge")

        register("condition", fail)


def test_other_extras_and_a_failed_condition(installed_registry):
    reg = build_registry(
        extra_plugins=[("peak", _PeakAnalyzer()), ("cond", _BrokenCondition())], entry_points=False
    )
    model = load_model(registry=reg)
    res = service.analyze_upload(FLUTE.read_bytes(), "solo_flute.wav", model=model, registry=reg)
    an = res.analysis
    assert service.other_extras(an)["peak"]["peak_dbfs"] < 0
    assert service.condition_view(an) == {
        "status": "error",
        "error": "RuntimeError: no notes long enough to judge",
        "notice": "Condition analysis failed: RuntimeError: no notes long enough to judge",
    }
    text = pdf_text(report.build_pdf(an, registry=reg, filename="naïve – 音.wav"))
    assert "Other analyses" in text and "peak_dbfs" in text
    assert "Condition analysis failed: RuntimeError: no notes long enough to judge" in text
    # DejaVu Sans draws the Latin letters and the dash; a character it lacks is its code point
    assert "instrunet report: naïve – \\u97f3.wav" in text
    assert reg.resolve_model("family").manifest.sha256 in text.replace("\n", "")


def test_pdf_writer_through_the_cli(installed_registry, tmp_path):
    assert "pdf" in installed_registry.writers
    out = tmp_path / "flute.pdf"
    assert core_cli.main(["analyze", str(FLUTE), "--format", "pdf", "--out", str(out)]) == 0
    text = pdf_text(out.read_bytes())
    assert "instrunet report: solo_flute.wav" in text and "Detected instruments" in text


def test_pdf_and_ranges_to_stdout_from_the_real_command(installed_registry, tmp_path):
    """``instrunet analyze X --format pdf --out -`` writes the PDF to stdout (it once wrote a
    file named "-"); ``--csv -`` the timeline as CSV."""
    exe = Path(sys.executable).parent / "instrunet"
    p = subprocess.run(
        [str(exe), "analyze", str(FLUTE), "--format", "pdf", "--out", "-", "--analyzers", "none"],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"%PDF-") and not (tmp_path / "-").exists()
    assert "instrunet report: solo_flute.wav" in pdf_text(p.stdout)
    p = subprocess.run(
        [str(exe), "analyze", str(FLUTE), "--csv", "-", "--analyzers", "none"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("start,end,rms_db,silent,") and not (tmp_path / "-").exists()


def test_launcher_help_and_command():
    from instrunet_app.launcher import _parser, streamlit_command

    cmd = streamlit_command(_parser().parse_args(["--port", "9000", "--max-mb", "2.5"]))
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP_FILE)]
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9000"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.maxUploadSize"] == "4"  # above the app's 2.5: its own message names the file
    big = streamlit_command(_parser().parse_args(["--max-mb", "100"]))
    assert big[big.index("--server.maxUploadSize") + 1] == "111"  # was 201: what a refused upload keeps
    exe = Path(sys.executable).parent / "instrunet-app"
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "--max-seconds" in p.stdout and "--max-analyses" in p.stdout
    p = subprocess.run([str(exe), "--max-analyses", "0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--max-analyses must be a whole number from 1 to 64, got 0" in p.stderr


def test_a_load_audit_names_limits_and_analyses_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A web-app load audit: a name with a quote reached the app as `%22` (the browser's form
    encoding) and was shown and reported so; `..wav` gave downloads named `json` and `pdf`; a
    253-byte name a 260-byte CSV name; a limit of an hour read "1:00:05 (m:ss)"; and nothing
    bounded how many analyses the server ran at once (three 10-minute uploads: 0.94 GB)."""
    import threading
    import time

    from instrunet_app import service

    assert service.upload_name("say %22hi%22; x=1.wav") == 'say "hi"; x=1.wav'
    assert (
        service.upload_name("a%0Ab%0d.wav") == "a\nb\r.wav" and service.upload_name("100%.wav") == "100%.wav"
    )
    assert [service.file_stem(n) for n in ("..wav", "...wav", ".wav", "a.b.wav")] == [
        "analysis",
        "analysis",
        "analysis",
        "a.b",
    ]
    long = "\u540d" * 83 + ".wav"  # 253 bytes
    stem = service.file_stem(long)
    assert len((stem + "_ranges.csv").encode()) <= 255 and long.startswith(stem)
    assert service.Limits(max_seconds=3605).duration_text == "1:00:05 (h:mm:ss)"
    assert service.Limits(max_seconds=125).duration_text == "2:05 (m:ss)"
    monkeypatch.setenv("INSTRUNET_APP_MAX_ANALYSES", "2")
    limits = service.Limits.from_env()
    assert limits.max_analyses == 2 and 1 <= service.Limits().max_analyses <= 4
    monkeypatch.setenv("INSTRUNET_APP_MAX_ANALYSES", "many")
    with pytest.raises(InputError, match="INSTRUNET_APP_MAX_ANALYSES must be a whole number, got 'many'"):
        service.Limits.from_env()
    # at most two at once; a third waits (and is told so) until one ends
    running, most, waited = [0], [0], []
    lock = threading.Lock()

    def one(i: int) -> None:
        with service.analysis_slot(limits, lambda: waited.append(i)):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.6)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert most[0] == 2 and waited and set(waited) == {2}


@pytest.mark.parametrize("host", ["", "   "])
def test_launcher_refuses_an_empty_host(host):
    """An empty --host (an unset shell variable) would serve on every interface: a usage error."""
    exe = Path(sys.executable).parent / "instrunet-app"
    p = subprocess.run([str(exe), "--host", host, "--port", "9"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--host" in p.stderr and "empty address" in p.stderr and "serving" not in p.stdout


@pytest.mark.slow
def test_page_with_apptest(installed_registry, monkeypatch):
    """The Streamlit page itself: a bad upload shows an error, the ensemble its results, a model change re-runs."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INSTRUNET_APP_MAX_SECONDS", "60")
    at = AppTest.from_file(str(APP_FILE), default_timeout=180).run()
    assert not at.exception and at.info[0].value.startswith("Upload a recording")
    at.file_uploader[0].set_value(("notes.ogg", b"no audio here" * 10, "audio/ogg")).run()
    assert not at.exception
    assert "Cannot analyse this upload. notes.ogg: cannot decode audio" in shown(at.error[0].value)

    # issue 24 row 10: a name that is Markdown is shown as typed (silent audio: a warning)
    hostile = "**bold** [x](https://evil.example) ![p](http://127.0.0.1:9/p.png).wav"
    at.file_uploader[0].set_value((hostile, wav_bytes(np.zeros(16000)), "audio/wav")).run()
    assert not at.exception and not at.error
    assert shown(at.warning[0].value).startswith(f"{hostile}: the recording is silent")
    assert at.warning[0].value.startswith(f"`{hostile}`")  # a code span: shown verbatim

    at.file_uploader[0].set_value(("ensemble.flac", ENSEMBLE.read_bytes(), "audio/flac")).run()
    assert not at.exception and not at.error
    an = at.session_state["result"][1].analysis
    assert at.metric[0].value == an.label and at.metric[3].value == f"family {an.model['version']}"
    assert at.metric[1].value == an.extras["condition"]["label"].replace("_", " ")
    assert at.table[0].value["instrument"].tolist() == [i.label for i in an.instruments] != []
    assert "Condition" in [h.value for h in at.subheader]

    choices = at.sidebar.selectbox[0].options
    assert any(o.startswith("baseline") for o in choices)
    at.sidebar.selectbox[0].select_index(
        next(i for i, o in enumerate(choices) if o.startswith("baseline"))
    ).run()
    assert not at.exception and at.metric[3].value.startswith("baseline ")


def test_range_text_units_and_steps():
    ranges = [[0.0, 4.5], [69.0, 72.25], [80, 81], [90, 95]]
    assert report.fmt_ranges(ranges) == "0:00.0-0:04.5, 1:09.0-1:12.2, 1:20.0-1:21.0, 1:30.0-1:35.0"
    assert report.fmt_ranges(ranges, limit=2) == "0:00.0-0:04.5, 1:09.0-1:12.2 and 2 more (full list below)"
    assert report.fmt_ranges(ranges, limit=3, where="appendix").endswith("and 1 more (appendix)")
    assert report.fmt_ranges([]) == "-"
    assert [report.unit_of(f) for f in ("hnr_db", "f0_hz", "decay_db_per_s", "spectral_flatness", "x")] == [
        "dB",
        "Hz",
        "dB/s",
        "0-1",
        "",
    ]
    assert service.analysis_steps(["condition", "peak"]) == [
        "Checking the file",
        "Finding the instruments",
        "Looking closer where a family is in doubt",
        "Judging the condition",
        "Running the peak analysis",
        "Writing the reports",
    ]
    assert service.audio_mime("a.FLAC") == "audio/flac" and service.audio_mime("b.mp3") == "audio/mpeg"


def test_unknown_condition_says_why_on_the_page_and_in_the_report(installed_registry):
    """The condition's own reason for "unknown" (here too_quiet), not always "too little sound"."""
    sr = 8000
    quiet = 10 ** (-53 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * np.arange(5 * sr) / sr)
    res = service.analyze_upload(wav_bytes(quiet, sr), "quiet_tone.wav")
    cv = service.condition_view(res.analysis)
    assert (cv["label"], cv["reason"], cv["reason_text"]) == ("unknown", "too_quiet", "too quiet to judge")
    text = pdf_text(report.build_pdf(res.analysis))
    assert "Condition: unknown (too quiet to judge)" in text and "Not judged: too quiet to judge." in text
    assert "too little sound" not in text.lower()
    assert [
        service.unknown_reason_text(r) for r in ("silent", "too_short", "too_mixed", None, "odd_one")
    ] == [
        "silent: nothing to judge",
        "too little sound to judge",
        "too many instruments at once to judge",
        "not judged",
        "not judged: odd one",
    ]


class _Verbose:
    """An analyzer plugin with very long strings (a key and a value)."""

    @hookimpl
    def instrunet_register_analyzers(self, register):
        register("verbose", lambda ctx: {"note": "word " * 20000, "k" * 5000: "x" * 5000})


def test_report_cuts_long_analyzer_strings_and_names_an_analyzer_it_cannot_show(installed_registry):
    reg = build_registry(extra_plugins=[("verbose", _Verbose())], entry_points=False)
    res = service.analyze_upload(TONE, "tone.wav", model=load_model(registry=reg), registry=reg)
    an = res.analysis
    assert len(an.extras["verbose"]["note"]) == 100_000  # the JSON keeps it whole
    text = pdf_text(report.build_pdf(an, registry=reg)).replace("\n", " ")
    assert "... (100,000 characters; the JSON has them all)" in text
    assert "... (5,000 characters; the JSON has them all)" in text

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    an.extras["odd"] = {"value": Unprintable()}
    with pytest.raises(OutputError, match="PDF report: the result of analyzer 'odd' cannot be laid out: "):
        report.build_pdf(an, registry=reg)


# ----------------------------------------------------------------------------- an audit of the page


def test_condition_feature_units_and_a_pdf_for_an_unknown_verdict(installed_registry):
    """wow/flutter (cents) and spectral flux (0-1) had no unit; for an "unknown" verdict the PDF
    printed a probability table of zeros and 19 features valued "None" the page hides."""
    assert [report.unit_of(f) for f in ("wow_cents", "flutter_cents", "spectral_flux")] == [
        "cents",
        "cents",
        "0-1",
    ]
    sr = 8000
    short = wav_bytes(0.3 * np.sin(2 * np.pi * 440 * np.arange(int(0.1 * sr)) / sr), sr)
    res = service.analyze_upload(short, "short.wav")
    assert service.condition_view(res.analysis)["label"] == "unknown"
    text = pdf_text(report.build_pdf(res.analysis))
    assert "Condition: unknown" in text and " None" not in text and "moderately_aged" not in text
    assert res.notice and res.notice.startswith("short.wav: only 0.1 s of sound")


def test_seconds_text_never_rounds_a_short_file_to_nothing():
    assert [service.seconds_text(s) for s in (0.01, 0.1, 7.5, 240.4)] == ["10 ms", "0.1 s", "7.5 s", "240 s"]


def test_a_file_that_stops_decoding_early_says_so(installed_registry):
    """An MP3 with 2 % of its bytes damaged decoded as 1.2 s of its 8 s, analysed without a word."""
    import soundfile as sf

    from instrunet_core.audio import MP3_SUPPORTED

    if not MP3_SUPPORTED:  # pragma: no cover - libsndfile without MPEG
        pytest.skip("libsndfile here has no MP3")
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * 22050) / 22050), 22050, format="MP3")
    data = bytearray(buf.getvalue())
    rng = np.random.default_rng(1)
    for i in rng.choice(np.arange(2000, len(data)), len(data) // 50, replace=False):
        data[i] = int(rng.integers(0, 256))
    res = service.analyze_upload(bytes(data), "damaged.mp3")
    assert res.analysis.duration < 7.0 and res.notice
    assert res.notice.startswith("damaged.mp3: the file's header announces 8.0 s of audio but only ")
    assert "could be decoded (the file is cut short or damaged)" in res.notice
    assert service.analyze_upload(bytes(buf.getvalue()), "whole.mp3").notice is None


def test_a_flac_cut_short_is_a_result_with_a_notice(installed_registry, tmp_path):
    """A FLAC cut short was an error page after its decoded part had been analysed; one whose
    header gives no length (written to a pipe) had no length to compare with either."""
    from test_audio import _cut_flacs

    y = 0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * 22050) / 22050)
    for unknown, f in _cut_flacs(tmp_path, y, 22050):
        with pytest.warns(RuntimeWarning, match="decoding failed after"):
            res = service.analyze_upload(f.read_bytes(), "cut.flac")
        assert 2.0 < res.analysis.duration < 8.0 and res.notice
        if unknown:
            assert res.notice.startswith("cut.flac: decoding stopped after ")
        else:
            assert res.notice.startswith("cut.flac: the file's header announces 10 s of audio but only ")
        assert "(the file is cut short or damaged); the result covers that part." in res.notice
        # the PDF, kept and shared alone, says so too (it printed the decoded length as the file's)
        text = " ".join(pdf_text(report.build_pdf(res.analysis, filename="cut.flac")).split())
        assert "The file is cut short or damaged: only " in text and "decoding failed after" in text


def test_the_report_describes_the_weights_that_ran(installed_registry, tmp_path):
    """A model loaded from a folder under a registered name and version (a re-export) was
    reported with the registered one's sha256, licence, date and accuracy (an outputs audit)."""
    import dataclasses

    import instrunet_core as inet

    an = inet.analyze(str(FLUTE))
    assert service.model_card(an)["sha256"] == an.model["sha256"] and "license" in service.model_card(an)
    other = dataclasses.replace(an, model={**an.model, "sha256": "ab" * 32})
    card = service.model_card(other)
    assert (
        card["sha256"] == "ab" * 32 and card["plugin"] == "not the registered model of this name and version"
    )
    assert not {"license", "created", "test_accuracy"} & card.keys()
    text = " ".join(pdf_text(report.build_pdf(other)).split())
    assert "ab" * 32 in text.replace(" ", "") and an.model["sha256"] not in text.replace(" ", "")
    unknown = dataclasses.replace(an, model={**an.model, "name": "mine", "sha256": "cd" * 32})
    assert service.model_card(unknown)["plugin"] == "not registered here"


def test_nothing_detected_names_the_nearest_family_and_its_threshold(installed_registry):
    sr = 8000
    short = wav_bytes(0.3 * np.sin(2 * np.pi * 440 * np.arange(int(0.1 * sr)) / sr), sr)
    an = service.analyze_upload(short, "short.wav").analysis
    if an.instruments:  # pragma: no cover - the default model lists nothing for 0.1 s of tone
        pytest.skip("the model detects a family in 0.1 s of tone")
    text = service.nothing_detected_text(an)
    lab = text.split("The nearest is ")[1].split(":")[0]
    assert lab in an.labels and f"its threshold is {an.settings['thresholds'][lab]:.2f}" in text


def test_the_player_gets_the_uploads_real_container():
    """An AIFF named .wav is analysed (the decoder reads the content), but the browser was told
    it was audio/wav and could not play it: the player gets a WAV of it."""
    import soundfile as sf

    y = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    buf = io.BytesIO()
    sf.write(buf, y, 8000, format="AIFF")
    aiff = buf.getvalue()
    assert service.audio_mime("aiff_as.wav", aiff[:16]) == "audio/aiff"
    data, mime = service.player_audio(aiff, "aiff_as.wav")
    assert mime == "audio/flac" and data[:4] == b"fLaC"
    np.testing.assert_allclose(sf.read(io.BytesIO(data))[0], y, atol=1 / 16384)
    assert service.player_audio(TONE, "tone.mp3") == (TONE, "audio/wav")  # a WAV named .mp3
    assert service.player_audio(FLUTE.read_bytes(), "f.wav")[1] == "audio/wav"


@pytest.mark.parametrize("value", ["inf", "1e400", "2e6"])
def test_launcher_refuses_limits_the_page_would_refuse(value):
    """--max-mb inf crashed with a traceback; 2e6 started a server whose every page said only
    "Configuration: ...": usage errors now."""
    exe = Path(sys.executable).parent / "instrunet-app"
    p = subprocess.run(
        [str(exe), "--max-mb", value, "--port", "9"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "--max-mb must be a number > 0 and at most" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "serving" not in p.stdout


@pytest.mark.slow
def test_page_names_the_file_and_plays_each_upload_from_its_start(installed_registry, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INSTRUNET_APP_MAX_SECONDS", "60")
    at = AppTest.from_file(str(APP_FILE), default_timeout=180).run()
    at.file_uploader[0].set_value(("ensemble.flac", ENSEMBLE.read_bytes(), "audio/flac")).run()
    assert not at.exception and any(shown(m.value) == "Result for ensemble.flac" for m in at.markdown)
    first = [s.key for s in at.selectbox if s.key and s.key.startswith("play-from-")]
    at.selectbox(key=first[0]).select_index(1).run()
    at.file_uploader[0].set_value(("flute.wav", FLUTE.read_bytes(), "audio/wav")).run()
    assert not at.exception and any(shown(m.value) == "Result for flute.wav" for m in at.markdown)
    second = [s.key for s in at.selectbox if s.key and s.key.startswith("play-from-")]
    assert first and second and first != second  # a new upload's choice starts at "the beginning"
    assert at.selectbox(key=second[0]).value == "the beginning"


def test_nothing_detected_says_when_none_of_the_eight_held_the_families_off(installed_registry):
    """For white noise the notice said "none reaches its threshold ... guitar peaks at 0.98,
    its threshold is 0.30": the open-set answer kept guitar from being listed."""
    rng = np.random.default_rng(0)
    # 2.5 s of white noise at 22,050 Hz: the default's guitar curve (0.38) is above its threshold,
    # "other" (0.74) above the model's veto level
    noise = (0.1 * rng.standard_normal(int(2.5 * 22050))).astype(np.float32)
    an = service.analyze_upload(wav_bytes(noise, 22050), "noise.wav").analysis
    if an.instruments or an.label != "other":  # pragma: no cover - depends on the shipped model
        pytest.skip("the default model does not answer 'other' for white noise")
    text = service.nothing_detected_text(an)
    assert (
        'answered "none of the eight" (other)' in text and "none reaches its presence threshold" not in text
    )


def test_nothing_detected_names_the_margin_behind_the_leading_families(installed_registry):
    """An audit (2026-12-07): with family 3.1.0's margins the notice blamed the minimum duration
    ("reaches its threshold for 3.6 s ... listed only where it holds its threshold for 1 s") where
    the family was behind the two leading ones and short of its margin."""
    import instrunet_core as inet

    flute = FLUTE
    low = {"flute": 0.9, "reed": 0.9, "vocal": 0.2}  # vocal clears 0.2, always behind flute and reed
    an = inet.analyze(flute, thresholds=low, analyzers=False)
    assert an.instruments == [] and an.settings["leading"] == 2
    text = service.nothing_detected_text(an)
    assert "vocal reaches its threshold (0.20" in text and "two other families are more probable" in text
    assert "plus 0.075, which it never reaches" in text
    # without the margins it is listed: the notice is not shown
    assert [i.label for i in inet.analyze(flute, thresholds=low, analyzers=False, leading=0).instruments] == [
        "vocal"
    ]


def test_per_instrument_unknown_condition_shows_no_probabilities(installed_registry):
    sr = 8000
    y = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.4 * sr)) / sr)  # 0.4 s of tone: too little to judge
    res = service.analyze_upload(wav_bytes(y, sr), "blip.wav")
    insts = service.condition_view(res.analysis)["instruments"]
    unknown = [lab for lab, v in insts.items() if isinstance(v, dict) and v.get("label") == "unknown"]
    if not unknown:  # pragma: no cover - nothing detected in the blip
        pytest.skip("no instrument detected in the blip")
    text = pdf_text(report.build_pdf(res.analysis))
    assert f"{unknown[0]} unknown \u2013 \u2013 \u2013" in text and f"{unknown[0]} unknown 0 0 0" not in text


# ------------------------------------------------------------------ a web-app audit (2026-12-06)


def test_names_lengths_and_labels_as_people_read_them(installed_registry) -> None:
    """A file named just `.wav` was "no extension"; limits of 125 s read "2.08 min"; a 45 ms file
    was "0:00.0" long with ranges "0:00.0-0:00.0, 0.0 s"; "other" and "broken_noisy" were shown
    as the keys they are in the JSON."""
    assert service._extension(".wav") == "wav" and service.file_stem(".wav") == "analysis"
    assert service._extension("take.2.FLAC") == "flac" and service.file_stem("dir/take.2.flac") == "take.2"
    assert service._extension("noext") == "" and service.file_stem("noext") == "noext"
    res = service.analyze_upload(TONE, ".wav")
    assert res.analysis.duration > 2.9
    assert [service.Limits(max_seconds=s).duration_text for s in (90, 125, 600, 1300)] == [
        "90 s",
        "2:05 (m:ss)",
        "10 min",
        "21:40 (m:ss)",
    ]
    assert service.label_text("other") == "none of the eight" and service.label_text("other", 3) == (
        "none of the labels"
    )
    assert service.label_text("reed") == "reed"
    assert service.condition_text("broken_noisy") == "broken / noisy"
    assert service.condition_text("moderately_aged") == "moderately aged"
    assert service.length_text(0.045) == "45 ms" and service.length_text(24.0) == "0:24.0"
    sr = 8000
    blip = wav_bytes(0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.045 * sr)) / sr), sr)
    an = service.analyze_upload(blip, "blip.wav").analysis
    for family, start, end, length in report.range_rows(an):
        assert start != end and length.endswith("ms"), (family, start, end, length)
    noise = wav_bytes(0.3 * np.random.default_rng(0).standard_normal(3 * sr), sr)
    an = service.analyze_upload(noise, "noise.wav").analysis
    if an.label == "other":
        assert "none of the eight (mean probability" in pdf_text(report.build_pdf(an))
    assert report.fmt_value({"k": "x" * 200}).endswith("characters; the JSON has them all)")


def test_the_player_gets_what_browsers_play_and_what_was_analysed() -> None:
    """A CAF, W64 or AU file named `.wav` went to the player as audio/wav (it could not play it); a
    64-channel WAV too; a damaged file's player showed the header's length."""
    import soundfile as sf

    sr = 8000
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)).astype(np.float32)
    plain = wav_bytes(y, sr)
    assert service.player_audio(plain, "a.wav") == (plain, "audio/wav")  # as uploaded
    for fmt in ("CAF", "W64", "AU"):
        buf = io.BytesIO()
        sf.write(buf, y, sr, format=fmt, subtype="PCM_16")
        data, mime = service.player_audio(buf.getvalue(), "named.wav")
        assert mime == "audio/flac" and data[:4] == b"fLaC", fmt
        got, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == sr and abs(len(got) - len(y)) == 0 and np.abs(got - y).max() < 1e-3, fmt
    buf = io.BytesIO()
    sf.write(buf, np.repeat(y[:, None], 6, axis=1), sr, format="WAV", subtype="PCM_16")
    data, mime = service.player_audio(buf.getvalue(), "six.wav")
    assert mime == "audio/flac" and sf.info(io.BytesIO(data)).channels == 2
    data, mime = service.player_audio(plain, "cut.wav", seconds=0.5)
    assert sf.info(io.BytesIO(data)).frames == sr // 2
    # an app audit (2026-12-06): samples browsers do not play inside a WAV went as they were
    # ("0:00 / 0:00"); a 384 kHz upload became a WAV at 384 kHz (906 MB for 1.2 MB of silence);
    # a FLAC that loses sync partway went whole, with its header's length
    for subtype, rate in (("IMA_ADPCM", sr), ("MS_ADPCM", sr), ("GSM610", 8000), ("DOUBLE", sr)):
        buf = io.BytesIO()
        sf.write(buf, y, rate, format="WAV", subtype=subtype)
        data, mime = service.player_audio(buf.getvalue(), "odd.wav")
        frames = sf.info(io.BytesIO(buf.getvalue())).frames  # (ADPCM pads its last block)
        assert mime == "audio/flac" and sf.info(io.BytesIO(data)).frames == frames, subtype
    buf = io.BytesIO()
    sf.write(buf, np.zeros((384000 * 3, 2), np.float32), 384000, format="FLAC", subtype="PCM_16")
    data, mime = service.player_audio(buf.getvalue(), "hi.flac", seconds=3.0)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, round(info.duration, 2)) == (service.PLAYER_MAX_RATE, 2, 3.0)
    buf = io.BytesIO()
    sf.write(buf, np.tile(y, 3), sr, format="FLAC", subtype="PCM_16")
    whole = buf.getvalue()
    data, mime = service.player_audio(whole[: len(whole) // 3], "cut.flac", seconds=2.0)
    assert mime == "audio/flac" and 0 < sf.info(io.BytesIO(data)).duration <= 2.0


def test_the_cores_warnings_about_an_upload_reach_the_page(installed_registry) -> None:
    """An app audit (2026-12-06): what `instrunet analyze` warns about (a WAV whose header stops
    before the recording does, channels that cancel in the mono mix) never reached the page: an
    8-minute recording was shown as 30 s, a loud file as silent, without a word."""
    sr = 8000
    t = np.arange(4 * sr) / sr
    left = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.stack([left, -left], axis=1), sr, format="WAV", subtype="PCM_16")
    cancel = buf.getvalue()
    res = service.analyze_upload(cancel, "cancel.wav")
    assert res.notice is not None and "cancel.wav: its channels cancel when mixed to mono" in res.notice
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=RuntimeWarning)  # as the page sets it (app.py)
        again = service.analyze_upload(cancel, "cancel.wav")  # the same file again: said again
    assert again.notice is not None and "its channels cancel" in again.notice


@pytest.mark.filterwarnings("ignore:.*could be decoded:RuntimeWarning")
def test_stopping_ends_the_reading_at_once(installed_registry) -> None:
    """Stop (or another model) in the page raised Streamlit's exception from the progress bar;
    it was held until the whole file had been decoded and classified. Reading now ends at the
    next block and the exception follows."""

    class Stopped(BaseException):
        pass

    sr = 8000
    long = wav_bytes(0.3 * np.sin(2 * np.pi * 440 * np.arange(120 * sr) / sr), sr)
    seen: list[float] = []

    def progress(f: float, text: str) -> None:
        seen.append(f)
        if "read" in text:
            raise Stopped

    reads: list[int] = []
    original = service._ReadProgress.read

    def counted(self, size=-1):  # type: ignore[no-untyped-def]
        out = original(self, size)
        reads.append(len(out))
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(service._ReadProgress, "read", counted)
    try:
        with pytest.raises(Stopped):
            service.analyze_upload(long, "long.wav", progress=progress)
    finally:
        mp.undo()
    assert sum(reads) < len(long) / 4, (sum(reads), len(long))  # read a little, not the whole file


def _activity_of(prob: np.ndarray, other: np.ndarray | None = None) -> object:
    """An analysis as `nothing_detected_text` reads it: two labels on a 0.1 s grid, all sound."""
    from types import SimpleNamespace

    from instrunet_core.timeline import Detection

    act = SimpleNamespace(
        n=len(prob),
        probability=prob,
        sounding=np.ones(len(prob), bool),
        step=0.1,
        labels=("brass", "flute"),
        detection=Detection(),
        other=other,
    )
    return SimpleNamespace(activity=act, settings={"thresholds": {"brass": 0.4, "flute": 0.3}})


def test_nothing_detected_blames_what_held_the_family_off():
    """A paths audit (2026-12-06): a family that reached its threshold but not for long enough
    (1.02 s of a real reed note: brass above 0.40 for part of it) was said to be held off by
    "none of the eight", whose probability was 0.04; a near miss read "peaks at 0.30, its
    threshold is 0.30"."""
    prob = np.zeros((30, 2), np.float32)  # 3 s of sound
    prob[10:14, 0] = 0.46  # brass above its threshold for 0.4 s
    text = service.nothing_detected_text(_activity_of(prob, other=np.full(30, 0.04, np.float32)))
    assert "none of the eight" not in text
    assert "brass reaches its threshold (0.40; it peaks at 0.46) for 0.4 s of the 3.0 s of sound" in text
    assert "holds its threshold for 1 s" in text
    short = prob[8:16]  # 0.8 s of sound: all of it is needed
    assert "for all of a sound shorter than 1 s" in service.nothing_detected_text(_activity_of(short))
    vetoed = service.nothing_detected_text(_activity_of(prob, other=np.full(30, 0.95, np.float32)))
    assert 'answered "none of the eight" (other)' in vetoed
    near = np.zeros((30, 2), np.float32)
    near[:, 1] = 0.2969
    text = service.nothing_detected_text(_activity_of(near))
    assert "The nearest is flute: its smoothed probability peaks at 0.297, its threshold is 0.300." in text


def test_an_upload_costs_what_its_limits_allow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The duration limit was checked after decoding the whole upload when a FLAC's header gives
    no length (a 535 KB upload: 30 s of CPU before the refusal), and a 1 MHz 8-channel FLAC of
    120 KB cost 25 times what 44.1 kHz stereo does (a security audit). Rate x channels is
    checked from the header, and a length-less file is counted only until it passes the limit."""
    import soundfile as sf
    from test_audio import _flac_of_unknown_length

    from instrunet_core import audio

    y = (0.1 * np.sin(2 * np.pi * 440 * np.arange(8000 * 20) / 8000)).astype(np.float32)
    f = _flac_of_unknown_length(tmp_path / "piped.flac", y, 8000)
    counted: list[int] = []
    real = audio._fill

    def fill(sf_: object, buf: np.ndarray) -> np.ndarray:
        out = real(sf_, buf)
        counted.append(out.shape[0])
        return out

    monkeypatch.setattr(audio, "_fill", fill)
    with pytest.raises(
        InputError,
        match=r"piped\.flac: the recording is longer than the limit of 2 s \(its header gives no length",
    ):
        service.check_upload(f.read_bytes(), "piped.flac", limits=service.Limits(max_seconds=2))
    assert counted == [65536]  # one read past the limit's 16,000 frames, not the file's 160,000
    monkeypatch.setattr(audio, "_fill", real)
    assert service.check_upload(f.read_bytes(), "piped.flac", limits=service.Limits(max_seconds=30)) == 20.0
    many = tmp_path / "many.wav"
    sf.write(many, np.zeros((4800, 8), np.float32), 96000)  # 96 kHz x 8 channels
    with pytest.raises(InputError, match=r"many\.wav: 96,000 Hz x 8 channels is more than the app analyses"):
        service.check_upload(many.read_bytes(), "many.wav")
    sf.write(many, np.zeros((4800, 2), np.float32), 192000)  # 192 kHz stereo: accepted
    assert service.check_upload(many.read_bytes(), "many.wav") == 0.025


def test_the_pdf_of_a_model_with_labels_of_its_own_speaks_of_labels(installed_registry, tmp_path):
    """A custom-labels audit: the PDF of a model with its own labels said "None of the eight",
    "Mean probability per family" and, in its glossary, that drums are "none of the eight
    families"; with `--other-veto 0.5` the glossary still said 0.93."""
    import json

    from conftest import build_tiny_onnx, make_manifest
    from test_open_set import OPEN_SET

    d = tmp_path / "band" / "1.0.0"
    d.mkdir(parents=True)
    build_tiny_onnx(d / "model.onnx", open_set=True)
    labels = ["piano", "drums", "bass", "sax", "organ", "synth", "choir", "horns"]
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, name="band", labels=labels, **OPEN_SET)))
    out = tmp_path / "band.pdf"
    args = [
        "analyze",
        str(FLUTE),
        "--model",
        str(d),
        "--other-veto",
        "0.5",
        "--format",
        "pdf",
        "--out",
        str(out),
    ]
    assert core_cli.main(args) == 0
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert "None of the labels (open-set output)" in text and "Mean probability per label" in text
    assert "none of the eight" not in text.lower() and "per family" not in text
    assert "how likely a sound is none of the model's labels" in text
    assert "smoothed probability of 0.5 or more, no label is detected" in text
    # the eight families keep their words
    flute = tmp_path / "flute.pdf"
    assert core_cli.main(["analyze", str(FLUTE), "--format", "pdf", "--out", str(flute)]) == 0
    assert "Mean probability per family" in " ".join(pdf_text(flute.read_bytes()).split())


def test_the_launchers_help_on_a_full_disk_is_said():
    """An environment audit: `instrunet-app --help > /dev/full` exited 0 with the help lost."""
    for name in ("instrunet-app", "instrunet-ray"):  # (the plugins' command lines: HelpSaidParser)
        exe = Path(sys.executable).parent / name
        if not exe.exists():  # pragma: no cover - instrunet-ray not installed
            continue
        with open("/dev/full", "w") as full:
            p = subprocess.run(
                [str(exe), "--help"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
            )
        assert p.returncode == 1 and f"{name}: error: -: cannot write to stdout" in p.stderr
    exe = Path(sys.executable).parent / "instrunet-app"
    p = subprocess.run([str(exe), "--max-mb", "1_0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not a number: '1_0'" in p.stderr
