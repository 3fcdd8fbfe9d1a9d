"""The writers: every one honours ``-`` (stdout), and the detected ranges as CSV, as an Audacity
label track and as JAMS (read back with the real ``jams`` package); the CLI's ``--csv``,
``--analyzers`` and its one-line summary of analyzer results."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, ModelPlugin, tone

import instrunet_core
from instrunet_core import registry as plugins_mod
from instrunet_core.cli import main, summarize_extra
from instrunet_core.errors import OutputError
from instrunet_core.hookspecs import hookimpl
from instrunet_core.registry import build_registry
from instrunet_core.writers import atomic_path, atomic_write_text

BUILT_IN = ("json", "csv", "ranges", "audacity", "jams", "png")


@pytest.fixture
def two_phrases(tmp_path: Path) -> Path:
    """A tone, 1.5 s of silence, a tone: two brass ranges for the tiny model."""
    p = tmp_path / "two.wav"
    sf.write(p, np.concatenate([tone(4.0), np.zeros(int(1.5 * SR), np.float32), tone(3.0)]), SR)
    return p


@pytest.mark.parametrize("fmt", BUILT_IN)
def test_every_writer_writes_to_stdout_what_it_writes_to_a_file(
    tiny_registry, two_phrases: Path, tmp_path: Path, fmt: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    if fmt == "png":
        pytest.importorskip("matplotlib")
    out = tmp_path / f"a.{fmt}"
    assert main(["analyze", str(two_phrases), "--format", fmt, "--out", str(out)]) == 0
    capsysbinary.readouterr()
    assert main(["analyze", str(two_phrases), "--format", fmt, "--out", "-"]) == 0
    got = capsysbinary.readouterr().out
    assert not Path("-").exists()
    if fmt in ("json", "jams"):  # the same document (the version of the writer's clock aside)
        assert json.loads(got) == json.loads(out.read_bytes())
    elif fmt == "png":
        assert got[:8] == b"\x89PNG\r\n\x1a\n" and abs(len(got) - out.stat().st_size) < 2000
    else:
        assert got == out.read_bytes()  # nothing else on stdout: no text summary


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jams' own use of jsonschema
def test_ranges_audacity_and_jams_hold_the_detected_ranges(
    tiny_model, two_phrases: Path, tmp_path: Path
) -> None:
    jams = pytest.importorskip("jams")
    an = instrunet_core.analyze(two_phrases, model=tiny_model)
    (brass,) = an.instruments
    assert len(brass.ranges) == 2
    reg = plugins_mod.get_registry()
    for fmt in ("ranges", "audacity", "jams"):
        reg.writer(fmt)(an, tmp_path / f"r.{fmt}")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.ranges").read_text())))
    assert [(r["label"], float(r["start"]), float(r["end"])) for r in rows] == [
        ("brass", pytest.approx(a, abs=1e-3), pytest.approx(b, abs=1e-3)) for a, b in brass.ranges
    ]
    assert (
        rows[1]["start_time"] == "0:05.5"
        and float(rows[0]["max_probability"]) >= an.settings["thresholds"]["brass"]
    )
    lines = (tmp_path / "r.audacity").read_text().splitlines()
    assert [tuple(x.split("\t")) for x in lines] == [
        (f"{a:.6f}", f"{b:.6f}", "brass") for a, b in brass.ranges
    ]
    jam = jams.load(str(tmp_path / "r.jams"))  # validates against the JAMS schema and namespace
    (ann,) = jam.annotations
    assert ann.namespace == "tag_open" and jam.file_metadata.duration == pytest.approx(an.duration)
    obs = list(ann.data)
    assert [o.value for o in obs] == ["brass", "brass"]
    assert [(o.time, o.time + o.duration) for o in obs] == [
        (pytest.approx(a, abs=1e-5), pytest.approx(b, abs=1e-5)) for a, b in brass.ranges
    ]
    assert jam.sandbox.instrunet["model"]["name"] == "tiny"


def test_csv_shortcut_and_choosing_analyzers(
    tiny_model_dir: Path,
    two_phrases: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []

    class Two:
        @hookimpl
        def instrunet_register_analyzers(self, register: Any) -> None:
            def judge(ctx: Any) -> dict:
                calls.append("judge")
                return {
                    "label": "moderately_aged",
                    "probabilities": {"healthy": 0.2, "moderately_aged": 0.7},
                    "seconds": 6.96,
                    "instruments": {"brass": {"label": "healthy"}},
                    "features": {"hnr_db": 12.0},
                }

            def count(ctx: Any) -> dict:
                calls.append("count")
                return {"windows": len(ctx.times), "nested": {"a": 1}}

            register("judge", judge)
            register("count", count)

    reg = build_registry(extra_plugins=[("tiny-test", ModelPlugin(tiny_model_dir)), ("two", Two())])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["analyze", str(two_phrases), "--csv", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("start,end,rms_db,silent,brass,") and calls == ["judge", "count"]
    assert main(["analyze", str(two_phrases), "--analyzers", "none"]) == 0
    text = capsys.readouterr().out
    assert calls == ["judge", "count"] and "judge" not in text  # skipped
    assert main(["analyze", str(two_phrases), "--analyzers", "count"]) == 0
    text = capsys.readouterr().out
    assert calls[-1] == "count" and "judge:" not in text
    assert "count: windows " in text
    assert main(["analyze", str(two_phrases)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [x for x in lines if x.startswith("judge:")]
    assert (
        line == "judge: moderately aged; probability 0.70; on 7.0 s of sound; per instrument: brass healthy"
    )
    assert main(["analyze", str(two_phrases), "--analyzers", "nope"]) == 2  # a usage error
    assert "analyzers: unknown 'nope'" in capsys.readouterr().err


def test_summaries_of_analyzer_results() -> None:
    assert summarize_extra("x", {"error": "RuntimeError: boom"}) == "x: failed: RuntimeError: boom"
    assert summarize_extra("c", {"label": "unknown", "probabilities": {}}) == "c: unknown"
    assert summarize_extra("n", {"a": 1.23456, "b": "z", "c": [1, 2]}) == "n: a 1.23, b z"
    assert summarize_extra("m", {"deep": {"k": 1}}) == "m: 1 fields (see the JSON)"


# ---------------------------------------------------------------- what the target is
def _analysis_json(tiny_registry, wav: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> tuple:
    rc = main(["analyze", str(wav), "--json", str(target)])
    return rc, capsys.readouterr().err


def test_a_symlinked_output_is_written_through_and_stays_a_link(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("keep")
    link.symlink_to("real.json")
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to("new.json")
    assert _analysis_json(tiny_registry, two_phrases, link, capsys)[0] == 0
    assert link.is_symlink() and json.loads(real.read_text())["schema"] == "instrunet.analysis/3"
    assert _analysis_json(tiny_registry, two_phrases, dangling, capsys)[0] == 0
    assert dangling.is_symlink() and json.loads((tmp_path / "new.json").read_text())["label"] == "brass"


def test_a_replaced_output_keeps_its_permissions(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    assert _analysis_json(tiny_registry, two_phrases, private, capsys)[0] == 0
    assert private.stat().st_mode & 0o777 == 0o600 and private.read_text().startswith("{\n")
    fresh = tmp_path / "fresh.json"
    assert _analysis_json(tiny_registry, two_phrases, fresh, capsys)[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_fifo_output_is_written_into_not_replaced(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert _analysis_json(tiny_registry, two_phrases, fifo, capsys)[0] == 0
    reader.join(30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(got[0])["schema"] == "instrunet.analysis/3"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_hard_linked_output_is_written_into_so_every_link_sees_it(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old")
    os.link(a, b)
    inode = a.stat().st_ino
    assert _analysis_json(tiny_registry, two_phrases, a, capsys)[0] == 0
    assert a.stat().st_ino == inode and a.stat().st_nlink == 2  # the same file, both links kept
    assert json.loads(b.read_text())["schema"] == "instrunet.analysis/3"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a write that fails leaves the linked file as it was
    with pytest.raises(RuntimeError), atomic_path(a) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("the encoder failed")
    assert json.loads(b.read_text())["schema"] == "instrunet.analysis/3"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_character_device_output_is_written_into_not_replaced(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    null = tmp_path / "null"
    try:  # our own /dev/null: the real one is never the target of a test
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    assert _analysis_json(tiny_registry, two_phrases, null, capsys)[0] == 0
    st = null.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert main(["analyze", str(two_phrases), "--plot", str(null), "--csv", str(tmp_path / "x.csv")]) == 0
    assert stat.S_ISCHR(null.lstat().st_mode)


def test_outputs_that_cannot_be_written_sensibly_are_refused(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    rc, err = _analysis_json(tiny_registry, two_phrases, folder, capsys)
    assert rc == 1 and err == f"instrunet: error: {folder}: cannot write: it is a directory, " + (
        "not a regular file, a FIFO or a character device\n"
    )
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        rc, err = _analysis_json(tiny_registry, two_phrases, sock_path, capsys)
    assert rc == 1 and "cannot write: it is a socket" in err and stat.S_ISSOCK(sock_path.lstat().st_mode)
    # a file where a folder of the path should be: named, not "File exists"
    under_a_file = two_phrases / "x.json"
    rc, err = _analysis_json(tiny_registry, two_phrases, under_a_file, capsys)
    assert (
        rc == 1
        and err == f"instrunet: error: {under_a_file}: cannot write: {two_phrases} is not a directory\n"
    )
    with pytest.raises(OutputError, match="is not a directory"):
        atomic_write_text(under_a_file, "x")


def test_an_output_name_of_up_to_255_bytes_is_written(tmp_path: Path) -> None:
    """The temporary file next to it took the whole name plus 15 characters: names of 241-255
    bytes failed with "File name too long" (a CLI audit)."""
    from instrunet_core.writers import atomic_write_text

    for name in ("b" * 250 + ".json", "é" * 125 + ".csv"):  # 255 and 254 bytes
        target = tmp_path / name
        atomic_write_text(target, "{}\n")
        assert target.read_text() == "{}\n"
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_format_png_writes_png_whatever_the_name_and_plot_follows_it(tiny_registry, tmp_path: Path) -> None:
    """`--format png --out x.pdf` wrote a PDF (a CLI audit)."""
    pytest.importorskip("matplotlib")
    import soundfile as sf
    from conftest import SR, tone

    from instrunet_core.cli import main

    f = tmp_path / "t.wav"
    sf.write(f, tone(3.0), SR)
    assert main(["analyze", str(f), "--format", "png", "--out", str(tmp_path / "a.pdf")]) == 0
    assert (tmp_path / "a.pdf").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", str(f), "--plot", str(tmp_path / "b.pdf")]) == 0
    assert (tmp_path / "b.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_plot_without_matplotlib_is_refused_before_the_file_is_read(
    tiny_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole analysis ran (and printed) before the plot writer said matplotlib is missing. A
    matplotlib that is installed but cannot import (3.7.0 beside numpy 2) passed that check and
    was then called "not installed"; ``plots.timeline`` and ``plots.probabilities`` raised a bare
    ``ModuleNotFoundError`` (packaging audit). Each case is said for what it is, up front."""
    import importlib
    import sys

    from instrunet_core import plots
    from instrunet_core.errors import InstrunetError

    wav = tmp_path / "a.wav"
    sf.write(wav, tone(3.0), SR)
    an = instrunet_core.analyze(wav, analyzers=False, registry=tiny_registry)
    real = importlib.import_module

    def broken(name: str, *a: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("numpy.core.multiarray failed to import")
        return real(name, *a)

    for case, said in (
        ("missing", "plots need matplotlib, which is not installed (pip install 'instrunet[plot]')"),
        ("broken", "plots need matplotlib, which is installed but cannot be imported: numpy.core.multiarray"),
    ):
        with monkeypatch.context() as m:
            if case == "missing":
                for mod in ("matplotlib", "matplotlib.figure", "matplotlib.patches"):
                    m.setitem(sys.modules, mod, None)  # an import of it fails: not there
            else:
                m.setattr(importlib, "import_module", broken)
            for args in (
                ["--plot", str(tmp_path / "p.png")],
                ["--format", "png", "--out", str(tmp_path / "q.png")],
            ):
                assert main(["analyze", str(wav), *args]) == 1
                cap = capsys.readouterr()
                assert said in cap.err and "Traceback" not in cap.err
                assert cap.out == ""  # nothing analysed
            for draw in (plots.timeline, plots.probabilities, plots.levels):
                with pytest.raises(InstrunetError, match=re.escape(said)):
                    draw(an)


def test_audit_outputs_of_an_outputs_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outputs audit (2026-12-06): a hop longer than a window left the end of a file unread
    while ranges were reported over it; silence with an open-set model had no `other` in the
    JSON while the CSV had the column; a 0.05 s range read 0:00.0-0:00.0; a read-only output
    file was replaced; an unknown condition's summary line did not say why; the plot's time
    axis ticked at 1:40, 3:20 and 0:00.2 for 0.15 s."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from test_open_set import _open_set_dir

    from instrunet_core import plots
    from instrunet_core.timeline import format_ranges
    from instrunet_core.writers import atomic_write_text

    model = instrunet_core.load_model(_open_set_dir(tmp_path / "m"))
    y = np.concatenate([tone(4.0), np.zeros(SR * 16, np.float32) + tone(16.0, amp=0.05)])
    for hop in (10.0, 30.0):
        with pytest.warns(RuntimeWarning, match="is longer than a window"):
            an = instrunet_core.analyze(y, SR, model=model, hop=hop, analyzers=False, refine=False)
        assert an.times[-1][1] == pytest.approx(20.0)  # a window ends at the end: nothing unread
        assert an.times[-1][0] == pytest.approx(20.0 - 2.949, abs=0.05)
    silent = instrunet_core.analyze(np.zeros(SR * 3, np.float32), SR, model=model, analyzers=False)
    d = silent.to_dict()
    assert d["label"] == "silence" and d["other"] == {
        "probability": 0.0,
        "threshold": d["settings"]["other_threshold"],
        "ranges": [],
    }
    assert format_ranges([[0.0, 0.05], [3.994, 4.005]]) == "0:00.0-0:00.1, 0:03.99-0:04.00"

    out = tmp_path / "ro.json"
    out.write_text("keep")
    monkeypatch.setattr("instrunet_core.writers.os.access", lambda p, mode: False)  # as a user, not root
    with pytest.raises(OutputError, match=r"ro\.json: cannot write: Permission denied"):
        atomic_write_text(out, "new")
    assert out.read_text() == "keep"
    monkeypatch.undo()

    assert summarize_extra("condition", {"label": "unknown", "reason": "too_short", "seconds": 0.0}) == (
        "condition: unknown (too short)"
    )
    for d_s, want in ((1.0, "0:00.2"), (600, "2:00"), (3600, "10:00"), (0.05, "0:00.01")):
        fig = Figure()
        ax = fig.subplots()
        plots.time_axis(ax, duration=d_s)
        FigureCanvasAgg(fig).draw()
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert want in labels and len(set(labels)) == len(labels), (d_s, labels)


def test_timeline_outlines_thin_on_long_recordings(tiny_registry) -> None:
    """On a 9.5-minute file the detected ranges' 1.6-point outlines made solid bars of whole rows
    (a web-app audit): they thin from two minutes on."""
    pytest.importorskip("matplotlib")
    import numpy as np

    import instrunet_core
    from instrunet_core import plots

    assert plots.outline_width(24.0) == 1.6 and plots.outline_width(120.0) == 1.6
    assert plots.outline_width(240.0) == pytest.approx(0.8) and plots.outline_width(600.0) == 0.5
    t = np.arange(8 * 22050) / 22050
    an = instrunet_core.analyze(  # a tone: the tiny model hears "brass" in it
        (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, model=instrunet_core.load_model("tiny")
    )
    assert an.instruments, "the tone is detected: its range is outlined"
    fig = plots.new_figure(9.0, 4.0)
    ax = plots.timeline(an, ax=fig.subplots(), other_name="none of the eight")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[: len(an.labels)] == list(an.labels)
    assert ax.patches and all(p.get_linewidth() == 1.6 for p in ax.patches)


def test_labels_and_names_are_drawn_as_text_that_fits(tiny_registry) -> None:
    """An outputs audit: a label `$\\frac{a}{$` (labels may be any printable text) failed the plot
    and the PDF with matplotlib's mathtext error, `$5 and $10` was drawn as a formula; a 255-byte
    file name pushed the overall answer out of the title, which ran into the legend; characters
    the font lacks were boxes with two warnings each."""
    pytest.importorskip("matplotlib")
    import dataclasses
    import warnings

    import numpy as np

    import instrunet_core
    from instrunet_core import plots
    from instrunet_core.writers import figure_bytes

    assert plots.plot_text("$5 and $10") == r"\$5 and \$10"
    assert plots.plot_text("名前 flûte.wav") == r"\u540d\u524d flûte.wav"  # DejaVu has û, no CJK
    short = plots.plot_text("a" * 251 + ".wav", plots.NAME_CHARS)
    assert len(short) == plots.NAME_CHARS and short.endswith("a.wav") and "…" in short
    assert len(plots.plot_text("名前" * 60 + ".wav", plots.NAME_CHARS)) <= plots.NAME_CHARS  # escapes count
    t = np.arange(4 * 22050) / 22050
    an = instrunet_core.analyze(
        (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, model=instrunet_core.load_model("tiny")
    )
    odd = dataclasses.replace(an, source="/x/" + "$\\frac{a}{$ 名" * 20 + ".wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing-glyph warning
        fig = plots.activity_figure(odd)
        assert figure_bytes(fig, "png").startswith(b"\x89PNG")
    title = fig.texts[0].get_text()
    assert len(title) < 120 and title.endswith(f": {an.label} (mean probability {an.confidence:.2f})")
    fig = plots.new_figure(9.0, 4.0)
    ax = plots.probabilities(an, ax=fig.subplots())
    assert {t.get_text() for t in ax.get_yticklabels()} == set(an.labels)


def test_an_output_that_cannot_be_written_is_said_before_the_audio_is_read(
    tiny_registry, two_phrases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outputs audit: an output that could not be written was found only after the whole
    analysis (minutes for hours of audio with the condition analyzer); it is said first, and
    nothing is created."""
    from instrunet_core.writers import check_writable

    missing = tmp_path / "not-there.wav"  # never read: the output's error comes first
    for bad, why in (
        (two_phrases / "x.json", f"{two_phrases} is not a directory"),
        (tmp_path, "it is a directory, not a regular file, a FIFO or a character device"),
    ):
        assert main(["analyze", str(missing), "--json", str(bad), "--model", "tiny"]) == 1
        assert capsys.readouterr().err == f"instrunet: error: {bad}: cannot write: {why}\n"
    check_writable(tmp_path / "new" / "deeper" / "x.json")  # folders made when written: fine
    assert not (tmp_path / "new").exists()
    check_writable("-")


def test_a_hard_linked_output_is_never_left_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption audit (2026-12-06): a file with a second hard link is written into (so
    the other name sees the new content), and it was emptied first: a full disk or a SIGTERM in
    the middle of the copy left both names holding a torn JSON."""
    import errno
    import shutil
    import signal

    from instrunet_core.writers import atomic_write_text

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"old": 1}')
    os.link(a, b)
    new = json.dumps({"new": list(range(3000))})

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_text(a, new)
    assert b.read_text() == '{"old": 1}' and os.stat(a).st_nlink == 2
    monkeypatch.undo()

    got: list[int] = []
    real = shutil.copyfileobj

    def copy_then_signal(src: Any, dst: Any, *args: Any) -> None:
        data = src.read()
        dst.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGTERM)  # held back until the file is whole
        dst.write(data[len(data) // 2 :])

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    monkeypatch.setattr(shutil, "copyfileobj", copy_then_signal)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(a, new)
    finally:
        signal.signal(signal.SIGTERM, old)
        monkeypatch.setattr(shutil, "copyfileobj", real)
    assert got == [signal.SIGTERM] and json.loads(b.read_text()) == json.loads(new)
    atomic_write_text(a, "short")  # a shorter content is cut to its length
    assert b.read_text() == "short" and os.stat(a).st_nlink == 2


def _linked(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"old": 1}')
    os.link(a, b)
    return a, b


@pytest.mark.skipif(sys.platform != "linux", reason="sigaction, wakeup fd")
def test_holding_signals_leaves_handlers_it_cannot_put_back_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host audit (2026-12-06): in an application embedding Python without its signal
    handlers, `signal.getsignal` is None; the handler swapped in could not be put back (the
    write raised TypeError) and the host's handlers were lost for good. A SIG_IGN set natively,
    behind Python's back, was undone the same way."""
    import ctypes
    import signal

    from instrunet_core import writers

    a, b = _linked(tmp_path)
    real = signal.getsignal
    monkeypatch.setattr(signal, "getsignal", lambda s: None if s == signal.SIGHUP else real(s))
    swapped: list[int] = []
    real_signal = signal.signal
    monkeypatch.setattr(signal, "signal", lambda s, h: swapped.append(s) or real_signal(s, h))
    writers.atomic_write_text(a, '{"new": 1}')
    assert signal.SIGHUP not in swapped and b.read_text() == '{"new": 1}'
    monkeypatch.undo()

    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    before = signal.getsignal(signal.SIGTERM)
    libc.signal(int(signal.SIGTERM), ctypes.c_void_p(1))  # SIG_IGN, natively
    try:
        assert writers._ignored_natively(signal.SIGTERM)
        writers.atomic_write_text(a, '{"newer": 1}')
        assert writers._ignored_natively(signal.SIGTERM)  # still ignored
        assert b.read_text() == '{"newer": 1}'
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not writers._ignored_natively(signal.SIGTERM)

    # a native handler installed after Python started (a host's sigaction): Python's record
    # still says SIG_DFL, and swapping it lost the host's handler for good (a review)
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_int)
    native = handler_type(lambda n: None)  # never called: no signal is sent
    libc.signal.argtypes = (ctypes.c_int, handler_type)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (an earlier test's library may have set one)
    libc.signal(int(signal.SIGTERM), native)
    address = ctypes.cast(native, ctypes.c_void_p).value
    try:
        assert (
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            and writers._native_action(signal.SIGTERM) == address
        )
        writers.atomic_write_text(a, '{"newest": 1}')
        assert writers._native_action(signal.SIGTERM) == address  # still the host's
        assert b.read_text() == '{"newest": 1}'
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.skipif(sys.platform != "linux", reason="wakeup fd")
def test_a_held_signal_wakes_an_event_loop_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host audit (2026-12-06): a signal held during a hard-linked write was raised again
    afterwards, so a host woken through `signal.set_wakeup_fd` (asyncio's
    `loop.add_signal_handler`) got one Ctrl-C twice: its handler is now called, not raised."""
    import shutil
    import signal
    import socket

    from instrunet_core import writers

    a, b = _linked(tmp_path)
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    calls: list[int] = []
    old = signal.signal(signal.SIGINT, lambda n, f: calls.append(n))
    old_fd = signal.set_wakeup_fd(w.fileno())
    real = shutil.copyfileobj

    def copy_then_signal(src: Any, dst: Any, *args: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # arrives during the copy
        real(src, dst, *args)

    monkeypatch.setattr(shutil, "copyfileobj", copy_then_signal)
    try:
        writers.atomic_write_text(a, '{"new": 1}')
    finally:
        monkeypatch.undo()
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGINT, old)
    woken = r.recv(64)
    r.close()
    w.close()
    assert woken == bytes([signal.SIGINT]) and calls == [signal.SIGINT]
    assert b.read_text() == '{"new": 1}'
