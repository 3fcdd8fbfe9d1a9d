"""The writers: every one honours ``-`` (stdout), and the detected ranges as CSV, as an Audacity
label track and as JAMS (read back with the real ``jams`` package); the CLI's ``--csv``,
``--analyzers`` and its one-line summary of analyzer results."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, ModelPlugin, tone

import instrunet_core
from instrunet_core import registry as plugins_mod
from instrunet_core.cli import main, summarize_extra
from instrunet_core.hookspecs import hookimpl
from instrunet_core.registry import build_registry

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
    assert main(["analyze", str(two_phrases), "--analyzers", "nope"]) == 1
    assert "analyzers: unknown 'nope'" in capsys.readouterr().err


def test_summaries_of_analyzer_results() -> None:
    assert summarize_extra("x", {"error": "RuntimeError: boom"}) == "x: failed: RuntimeError: boom"
    assert summarize_extra("c", {"label": "unknown", "probabilities": {}}) == "c: unknown"
    assert summarize_extra("n", {"a": 1.23456, "b": "z", "c": [1, 2]}) == "n: a 1.23, b z"
    assert summarize_extra("m", {"deep": {"k": 1}}) == "m: 1 fields (see the JSON)"
