"""End-to-end: the web app in a real headless Chromium (Debian's, driven by Playwright).

Starts ``instrunet-app`` on a free port of 127.0.0.1, uploads bad files (each must show a
clear message while the app keeps running), then the bundled ensemble; checks the labels
shown against the downloaded JSON, and the PDF's text. One browser session, bounded waits;
the server's process group is always killed.

Set ``INSTRUNET_APP_SCREENSHOTS=DIR`` to also save the result page as ``DIR/app_result.png``
and the PDF as ``DIR/app_report.pdf`` (``make app-screenshots`` makes the docs' images).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = ROOT / "examples" / "ensemble.flac"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_SECONDS = 600  # the app's default limit; the "too long" upload is 601 s (at 1 kHz: 1.2 MB)

pytestmark = pytest.mark.slow


def _need(module: str):
    """Import a test tool; missing is a failure on CI (make test installs it), a skip elsewhere."""
    if os.environ.get("CI"):
        return __import__(module, fromlist=["_"])
    return pytest.importorskip(module)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_wav(path: Path, y: np.ndarray, sr: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def server(tmp_path, installed_registry):
    """``instrunet-app`` on a free local port; yields its URL; always killed."""
    _need("streamlit")
    exe = Path(sys.executable).parent / "instrunet-app"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the app plugin (make .venv/.dev)")
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(exe), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"the app exited with {proc.returncode}: {(tmp_path / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the app did not answer /_stcore/health within 90 s")
            time.sleep(0.5)
        yield url
        assert proc.poll() is None, "the app stopped during the test"
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        log.close()


def test_app_in_chromium(server, tmp_path, installed_registry):
    import inspect

    from instrunet_app.service import condition_text
    from streamlit import pyplot as st_pyplot

    sync_api = _need("playwright.sync_api")
    pypdf = _need("pypdf")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: make .venv/.dev installs Debian's chromium")
    sr = 1000
    t = np.arange(int((MAX_SECONDS + 1) * sr)) / sr
    bad = [
        (tmp_path / "empty.wav", "the file is empty"),
        (tmp_path / "notes.wav", "cannot decode audio"),
        (tmp_path / "too_long.wav", "more than the limit of 10 min"),
        (tmp_path / "quiet.wav", "the recording is silent"),
    ]
    bad[0][0].write_bytes(b"")
    bad[1][0].write_text("these are notes about the gig, not audio\n" * 20)
    _write_wav(bad[2][0], 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    _write_wav(bad[3][0], np.zeros(2 * sr), sr)
    # issue 24 row 10: a name that is Markdown (bold, a link, an image the browser would fetch),
    # uploaded as a silent recording (a warning) and as text (an error)
    hostile = "**bold** [x](https://evil.example) ![p](http://127.0.0.1:9/p.png).wav"
    named = [
        (
            {"name": hostile, "mimeType": "audio/wav", "buffer": bad[3][0].read_bytes()},
            "the recording is silent",
        ),
        (
            {"name": "2-" + hostile, "mimeType": "audio/wav", "buffer": b"not audio" * 10},
            "cannot decode audio",
        ),
    ]

    shots = os.environ.get("INSTRUNET_APP_SCREENSHOTS")
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(30_000)
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(server)
            upload = page.locator('input[type="file"]')
            expect(upload).to_have_count(1, timeout=60_000)
            # one upload limit on the page: the label's; Streamlit's own (above it) is not shown
            expect(page.locator('[data-testid="stFileUploaderDropzoneInstructions"]')).to_be_hidden()
            assert not re.search(r"\dMB per file", page.locator("body").inner_text())  # Streamlit's "101MB"

            for path, message in bad:
                upload.set_input_files(str(path))
                alert = page.locator('[data-testid="stAlert"]').filter(has_text=message)
                expect(alert).to_be_visible(timeout=60_000)
                assert path.name in alert.inner_text()
            for payload, message in named:
                upload.set_input_files(payload)
                # shown as typed, not rendered as Markdown
                alert = (
                    page.locator('[data-testid="stAlert"]')
                    .filter(has_text=message)
                    .filter(has_text=payload["name"])
                )
                expect(alert).to_be_visible(timeout=60_000)
                links = 'a[href*="evil.example"], img[src*="127.0.0.1"], strong:has-text("bold")'
                assert alert.locator(links).count() == 0
            assert not [u for u in requested if "evil.example" in u or "127.0.0.1:9/" in u], requested

            upload.set_input_files(str(ENSEMBLE))
            instruments = page.locator(".st-key-instruments")
            expect(instruments.locator("table")).to_be_visible(timeout=180_000)
            expect(page.locator(".st-key-condition")).to_be_visible()

            with page.expect_download() as dl:
                page.get_by_role("button", name="Download JSON").click()
            json_path = tmp_path / "ensemble.json"
            dl.value.save_as(json_path)
            with page.expect_download() as dl:
                page.get_by_role("button", name="Download PDF report").click()
            pdf_path = tmp_path / "ensemble.pdf"
            dl.value.save_as(pdf_path)
            page_instruments = instruments.inner_text()
            rows = instruments.locator("tbody tr").all_inner_texts()
            summary = page.locator(".st-key-summary").inner_text()
            condition = page.locator(".st-key-condition").inner_text()
            # every cell of the condition tables shows something ("-" was an empty Markdown list item)
            cells = page.locator(".st-key-condition tbody td").all_inner_texts()
            assert cells and all(c.strip() for c in cells), cells
            # the timeline and the player are described for screen readers where Streamlit can
            alts = page.locator(".st-key-timeline-wide img").evaluate_all("els => els.map(e => e.alt)")
            if "alt" in inspect.signature(st_pyplot).parameters:
                assert alts and alts[0].startswith("Timeline of each family's probability"), alts
            # the audio player sits with the timeline; "play from" offers every detected range
            expect(page.locator(".st-key-player audio")).to_have_count(1)
            expect(page.locator(".st-key-timeline-wide img")).to_be_visible()
            expect(page.locator(".st-key-timeline-narrow img")).to_be_hidden()
            # every range, in the expander
            page.locator('[data-testid="stExpander"] summary').filter(has_text="Every detected range").click()
            range_rows = page.locator(".st-key-ranges tbody tr").all_inner_texts()
            if shots:  # the whole result page (Streamlit scrolls inside its own container)
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1280, "height": 2900})
                page.wait_for_timeout(1500)
                page.screenshot(path=str(Path(shots) / "app_result.png"))
            # a phone (390 px): the narrow timeline, and nothing wider than the screen
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(1000)
            expect(page.locator(".st-key-timeline-narrow img")).to_be_visible()
            expect(page.locator(".st-key-timeline-wide img")).to_be_hidden()
            too_wide = page.evaluate(
                """() => [...document.querySelectorAll(
                    '[data-testid="stTable"], [data-testid="stImage"] img, [data-testid="stMetric"], audio')]
                  .filter(e => e.offsetParent !== null)
                  .map(e => [e.getAttribute('data-testid') || e.tagName, e.getBoundingClientRect().right])
                  .filter(([_, right]) => right > 391)"""
            )
            assert too_wide == [], too_wide
            # and no table is screens tall (the reasons' column made the condition table 2,100 px)
            tallest = page.evaluate(
                """() => Math.max(0, ...[...document.querySelectorAll('[data-testid="stTable"]')]
                  .filter(e => e.offsetParent !== null).map(e => e.getBoundingClientRect().height))"""
            )
            assert tallest < 900, tallest
            if shots:
                page.set_viewport_size({"width": 390, "height": 3600})
                page.wait_for_timeout(1500)
                page.screenshot(path=str(Path(shots) / "app_phone.png"))
        finally:
            ctx.close()

    if shots:
        shutil.copyfile(pdf_path, Path(shots) / "app_report.pdf")
    an = json.loads(json_path.read_text())
    detected = [i["label"] for i in an["instruments"]]
    assert an["source"] == "ensemble.flac" and abs(an["duration"] - 24.0) < 0.1
    assert detected, "the ensemble has instruments"
    assert len(rows) == len(detected) and all(lab in row for lab, row in zip(detected, rows, strict=True)), (
        rows
    )
    for lab in an["labels"]:
        assert (lab in page_instruments) == (lab in detected), lab
    ranges = [(i["label"], r) for i in an["instruments"] for r in i["ranges"]]
    assert len(range_rows) == len(ranges) > len(detected), range_rows  # every range, none cut
    assert all(re.search(r"\d:\d\d\.\d", row) for row in rows + range_rows), rows
    assert an["label"] in summary and an["model"]["name"] in summary

    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf_path)).pages)
    assert "instrunet report: ensemble.flac" in text
    for lab in detected:
        assert lab in text
    entry = next(
        e
        for e in installed_registry.models
        if e.name == an["model"]["name"] and e.version == an["model"]["version"]
    )
    assert entry.manifest.sha256 in text.replace("\n", "")

    # make test installs plugins/instrunet-condition: its verdict is in the page and the PDF
    assert "condition" in installed_registry.analyzers
    cond = an["extras"]["condition"]
    assert "error" not in cond and cond["label"] in ("healthy", "moderately_aged", "broken_noisy", "unknown")
    shown = condition_text(cond["label"])  # "broken / noisy" for broken_noisy, in the page and the PDF
    assert f"Condition: {shown}" in condition and f"Condition: {shown}" in text
    assert "hnr_db" in condition and "hnr_db" in text
    for lab in cond["instruments"]:
        assert lab in condition
    assert cond["model"]["sha256"] in text.replace("\n", "")
