"""The installed product, as a user meets it: real entry points, shipped models, the CLI.

These run ``instrunet`` in subprocesses of the project environment (``make test`` installs the
runtime and the ``instrunet-baseline`` plugin), so nothing in-process is patched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from instrunet_core.labels import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent / "instrunet"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = str(BIN) if BIN.exists() else shutil.which("instrunet")
    assert exe, "the instrunet console script is not installed"
    e = {k: v for k, v in os.environ.items() if k != "INSTRUNET_PLUGINS"}
    e.update(env or {})
    return subprocess.run([exe, *args], capture_output=True, text=True, env=e, timeout=300)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_plugins_lists_builtin_and_installed_baseline() -> None:
    rows = as_json(run("plugins", "--json"))
    names = {r["name"]: r for r in rows}
    assert "baseline" in names, rows
    assert "instrunet_register_models" in names["baseline"]["hooks"]
    assert not names["baseline"].get("error")
    assert names["baseline"]["version"]


def test_env_var_restricts_entry_points() -> None:
    rows = as_json(run("plugins", "--json", env={"INSTRUNET_PLUGINS": ""}))
    assert "baseline" not in {r["name"] for r in rows}
    models = as_json(run("models", "--json", env={"INSTRUNET_PLUGINS": ""}))
    assert {m["name"] for m in models} == {"family", "family-compact", "family-open"}  # the built-in ones


def test_models_json_lists_checked_artifacts() -> None:
    models = {m["name"]: m for m in as_json(run("models", "--json"))}
    assert {"family", "baseline"} <= set(models)
    assert models["family"]["default"] is True
    for m in models.values():
        assert m["labels"] == list(FAMILIES)
        onnx = (
            Path(m["path"]) / "model.onnx"
            if Path(m["path"]).is_dir()
            else Path(m["path"]).parent / "model.onnx"
        )
        assert m["sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
        assert m["sha256_ok"] is True
        assert m["parity"]["n"] >= 200 and m["parity"]["max_abs_diff"] <= 1e-4
        assert m["parity"]["top1_agreement"] == 1.0
        assert 0.0 < m["metrics"]["test"]["single"]["accuracy"] <= 1.0
    assert models["family"]["task"] == "multilabel"
    assert models["baseline"]["task"] == "multiclass"
    # the fast model is packaged beside the default, never chosen over it
    assert models["family-compact"]["default"] is False and models["family-compact"]["task"] == "multilabel"


def test_classify_examples_with_default_and_baseline(tmp_path: Path) -> None:
    files = [str(EXAMPLES / "solo_flute.wav"), str(EXAMPLES / "ensemble.flac")]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    proc = run("classify", "--json", files[0], str(bad), files[1])
    assert proc.returncode != 0  # one file failed ...
    rows = json.loads(proc.stdout)  # ... and the others were still classified
    assert [r["path"] for r in rows] == [files[0], str(bad), files[1]]
    assert "error" in rows[1] and str(bad) in proc.stderr
    for r in (rows[0], rows[2]):
        assert r["label"] in FAMILIES
        assert set(r["probabilities"]) == set(FAMILIES)
        assert r["confidence"] == pytest.approx(r["probabilities"][r["label"]])
    assert rows[0]["label"] == "flute"  # the solo is a FluidR3 flute phrase
    base = as_json(run("classify", "--model", "baseline", "--json", files[0]))
    assert base[0]["label"] in FAMILIES
    assert abs(sum(base[0]["probabilities"].values()) - 1.0) < 1e-3  # softmax


def test_analyze_demo_outputs(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "ensemble.json", tmp_path / "ensemble.png"
    proc = run("analyze", str(EXAMPLES / "ensemble.flac"), "--json", str(out_json), "--plot", str(out_png))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    assert data["timeline"] and data["timeline"][-1]["end"] == pytest.approx(24.0, abs=0.05)
    # the rendering ends in 2 s of silence: the last window (partly in it) is >6 dB below the middle
    levels = [s["rms_db"] for s in data["timeline"]]
    assert levels[-1] < levels[len(levels) // 2] - 6
    truth = json.loads((EXAMPLES / "ground_truth.json").read_text())["ensemble.flac"]
    # The strongest detection is an instrument of the score, found while it plays.
    top = max(data["instruments"], key=lambda i: i["intensity"])
    assert top["label"] in truth, (top, truth)
    assert any(a < tb and ta < b for a, b in top["ranges"] for ta, tb in truth[top["label"]]), (top, truth)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
