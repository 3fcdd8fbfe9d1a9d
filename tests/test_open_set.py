"""The open-set output ("none of the labels") and embeddings, through the whole runtime.

A real tiny ONNX graph (tests/conftest.py, ``open_set=True``) answers brass for a tone and
"other" for broadband noise, and embeds each window as three band means.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, ModelPlugin, build_tiny_onnx, make_manifest, tone

import instrunet_core as inet
from instrunet_core import ModelError
from instrunet_core.cli import main as cli_main
from instrunet_core.errors import InputError
from instrunet_core.registry import build_registry

OPEN_SET = {
    "other": {
        "name": "other",
        "shape": [None, 1],
        "dtype": "float32",
        "activation": "sigmoid",
        "threshold": 0.6,
    },
    "embedding": {"name": "embedding", "shape": [None, 3], "dtype": "float32"},
}


def _open_set_dir(root: Path, **overrides: Any) -> Path:
    d = root / "openset" / "1.0.0"
    d.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(d / "model.onnx", open_set=True)
    manifest = make_manifest(d, name="openset", **{**OPEN_SET, **overrides})
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture
def open_model(tmp_path: Path) -> inet.Model:
    return inet.load_model(_open_set_dir(tmp_path))


def _noise(seconds: float) -> np.ndarray:
    return (0.3 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


def test_manifest_describes_the_extra_outputs(tmp_path: Path, open_model: inet.Model) -> None:
    assert open_model.other_threshold == pytest.approx(0.6) and open_model.embedding_dim == 3
    # the extra outputs need schema /3, the right shapes, and a graph that has them
    for bad, msg in (
        ({"schema": "instrunet.manifest/2"}, "needs schema"),
        ({"other": {**OPEN_SET["other"], "shape": [None, 2]}}, r"other.shape"),
        ({"other": {**OPEN_SET["other"], "threshold": 1.5}}, "other.threshold"),
        ({"embedding": {**OPEN_SET["embedding"], "shape": [None, 0]}}, "embedding.shape"),
        ({"embedding": {**OPEN_SET["embedding"], "name": "probabilities"}}, "already"),
    ):
        d = _open_set_dir(tmp_path / str(len(msg)), **bad)
        with pytest.raises(ModelError, match=msg):
            inet.load_model(d)
    d = _open_set_dir(tmp_path / "wrong", embedding={**OPEN_SET["embedding"], "name": "nope"})
    with pytest.raises(ModelError, match="not among the ONNX outputs"):
        inet.load_model(d)


def test_windows_and_overall_answer_other_for_noise(open_model: inet.Model) -> None:
    from instrunet_core.features import batch_features

    x = batch_features(np.stack([tone(2.949)[:65024], _noise(2.949)[:65024]]))
    out = open_model.outputs_features(x, embedding=True)
    assert out.other is not None and out.other[0] < 0.01 < 0.99 < out.other[1]
    np.testing.assert_array_equal(open_model.predict_features(x), out.probabilities)
    assert out.embedding is not None and out.embedding.shape == (2, 3)
    assert open_model.outputs_features(x).embedding is None  # only when asked for

    p_tone = open_model.predict(tone(6.0), SR)
    assert p_tone.label == "brass" and p_tone.other is not None and p_tone.other < 0.05
    p_noise = open_model.predict(_noise(6.0), SR)
    assert p_noise.label == inet.OTHER_LABEL == "other"
    assert p_noise.confidence == pytest.approx(p_noise.other) and p_noise.other > 0.99
    # a recording of tone then noise: each window is answered, and the noise is a range of "other"
    an = inet.analyze(np.concatenate([tone(9.0), _noise(9.0)]), SR, model=open_model)
    assert an.other is not None and len(an.other) == len(an.timeline)
    ranges = an.other_ranges()
    assert ranges and ranges[0][0] >= 6.0 and ranges[-1][1] == pytest.approx(an.duration, abs=0.01)
    assert [i.label for i in an.instruments] == ["brass"]
    d = an.to_dict()
    assert d["schema"] == "instrunet.analysis/3" and d["other"]["threshold"] == pytest.approx(0.6)
    assert all("other" in seg for seg in d["timeline"])
    # a closed-set model writes none of it
    closed = inet.analyze(tone(4.0), SR, model="tiny", registry=_tiny_only())
    assert "other" not in closed.to_dict() and closed.prediction.other is None and closed.other_ranges() == []


def _tiny_only() -> Any:
    import tempfile

    from conftest import write_model_dir

    return build_registry(
        extra_plugins=[ModelPlugin(write_model_dir(Path(tempfile.mkdtemp())))], entry_points=False
    )


def test_threshold_decides_other() -> None:
    from instrunet_core.analysis import aggregate

    labels = ("brass", "flute")
    probs = np.array([[0.7, 0.1], [0.2, 0.1]], np.float32)
    rms, silent = np.array([-10.0, -10.0]), np.zeros(2, bool)
    other = np.array([0.5, 0.95], np.float32)  # mean 0.725 beats brass's mean 0.45
    got = {
        t: aggregate(labels, probs, rms, silent, sounding_seconds=5, other=other, other_threshold=t)
        for t in (0.6, 0.8)
    }
    assert got[0.6].label == "other" and got[0.6].confidence == pytest.approx(0.725)
    assert got[0.8].label == "brass" and got[0.8].other == pytest.approx(0.725)
    assert got[0.8].top[0][0] == "brass"  # top lists the labels only
    # a closed-set model (no other) is answered as before
    assert aggregate(labels, probs, rms, silent, sounding_seconds=5).other is None


def test_embed(open_model: inet.Model) -> None:
    y = np.concatenate([tone(6.0), np.zeros(4 * SR, np.float32), _noise(6.0)])
    e = open_model.embed(y, SR)
    assert e.dim == 3 and e.windows.shape == (len(e.times), 3) and e.silent.any()
    np.testing.assert_allclose(np.linalg.norm(e.vector), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(e.windows[~e.silent], axis=1), 1.0, rtol=1e-5)
    again = open_model.embed(y, SR)
    np.testing.assert_array_equal(e.vector, again.vector)  # deterministic
    # tone and noise windows point different ways; two tones the same way
    t1, t2, nz = (open_model.embed(a, SR).vector for a in (tone(4.0), tone(4.0, freq=330.0), _noise(4.0)))
    assert float(t1 @ t2) > 0.99 > float(t1 @ nz)
    with pytest.raises(InputError, match="no embedding output"):
        inet.Classifier("tiny", registry=_tiny_only(), embeddings=True)


def test_cli_embed_and_analyze_json(
    open_model: inet.Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "noise.wav"
    sf.write(f, _noise(5.0), SR)
    g = tmp_path / "tone.wav"
    sf.write(g, tone(5.0), SR)
    folder = str(open_model.path)
    assert cli_main(["embed", str(f), str(g), "--model", folder, "--windows"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == [str(f), str(g)] and all(r["dim"] == 3 for r in rows)
    assert len(rows[0]["windows"]) >= 2 and len(rows[0]["vector"]) == 3
    assert cli_main(["analyze", str(f), "--model", folder, "--embed", "--json", "-"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["label"] == "other" and d["embedding"]["dim"] == 3 and d["other"]["ranges"]
    out = tmp_path / "t.csv"
    assert cli_main(["analyze", str(f), "--model", folder, "--format", "csv", "--out", str(out)]) == 0
    header = out.read_text().splitlines()[0].split(",")
    assert header[-1] == "other"


def test_cli_timeline_says_other_first_where_a_window_is_answered_other(
    open_model: inet.Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "tone_then_noise.wav"
    sf.write(f, np.concatenate([tone(6.0), _noise(6.0)]), SR)
    assert cli_main(["analyze", str(f), "--model", str(open_model.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert '"other": none of them' in next(line for line in out if line.startswith("timeline"))
    rows = [line.split("dB", 1)[1].split(",")[0].split() for line in out if line.startswith("  0:")]
    leading = [r[0] for r in rows]
    assert leading[0] == "brass" and leading[-1] == "other", leading
    an = inet.analyze(str(f), model=open_model, analyzers=False)
    # "other" leads exactly where the window's sound is none of the labels by the runtime's rule
    thr = an.settings["other_threshold"]
    expect = [
        "other" if s.other >= thr and s.other > max(s.probabilities.values()) else "family"
        for s in an.timeline
        if not s.silent
    ]
    assert ["other" if x == "other" else "family" for x in leading] == expect


def test_open_set_outputs_validate_against_the_schemas(
    open_model: inet.Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_output import _valid

    an = inet.analyze(np.concatenate([tone(6.0), _noise(6.0)]), SR, model=open_model, embeddings=True)
    _valid("analysis.json", an.to_dict())
    f = tmp_path / "n.wav"
    sf.write(f, _noise(4.0), SR)
    assert cli_main(["classify", "--json", str(f), "--model", str(open_model.path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["label"] == "other" and row["other"] > 0.9
    _valid("classification.json", row)
    assert cli_main(["embed", str(f), "--model", str(open_model.path), "--windows"]) == 0
    _valid("embedding.json", json.loads(capsys.readouterr().out))


def test_the_router_has_a_route_for_other(open_model: inet.Model) -> None:
    """Pedalboard's Router sends sound that is none of the labels to its "other" board, where the
    core's detection finds it (the same ranges as analyze's other_ranges)."""
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import Router
    from pedalboard import Gain, Pedalboard

    y = np.concatenate([tone(8.0), _noise(8.0)])
    router = Router({"brass": Pedalboard([Gain(-6.0)]), "other": Pedalboard([Gain(-20.0)])}, model=open_model)
    out = router(y, SR)
    (b0, b1, brass), (o0, o1, other) = router.regions
    assert (brass, other) == ("brass", "other") and b0 == 0.0 and o1 == pytest.approx(16.0, abs=1e-3)
    an = inet.analyze(y, SR, model=open_model, hop=router.hop_seconds, analyzers=False)
    ((r0, r1),) = an.other_ranges()
    assert abs(o0 - r0) < 0.1 and r1 == pytest.approx(16.0, abs=0.05)
    # in each region the output is its board's: -6 dB on the tone, -20 dB on the noise
    np.testing.assert_allclose(out[: int(6 * SR)], y[: int(6 * SR)] * 10 ** (-6 / 20), atol=1e-5)
    np.testing.assert_allclose(out[int(10 * SR) :], y[int(10 * SR) :] * 10 ** (-20 / 20), atol=1e-5)
    with pytest.raises(InputError, match="no open-set output"):
        Router({"other": Pedalboard([])}, model=inet.load_model("tiny", registry=_tiny_only()))


def test_the_default_model_lists_no_instrument_on_noise() -> None:
    """White and brown noise through the shipped default: "other" overall and over the whole
    recording, and no family detected beside it. On a clip shorter than a window (one window,
    zero-padded) the guitar curve runs high: the veto,
    :attr:`~instrunet_core.timeline.Detection.other_veto`, is what takes it off. On ten seconds
    the last window is aligned to the end, not padded, and guitar stays off without the veto
    (the padded last window read noise stopping into silence as guitar 0.49)."""
    from instrunet_core import default_plugins

    models = Path(default_plugins.__file__).resolve().parent.parent / "models" / "family"
    versions = sorted(models.iterdir(), key=lambda p: tuple(int(x) for x in p.name.split(".")))
    model = inet.load_model(versions[-1])  # what load_model() loads when installed
    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(10 * SR)).astype(np.float32)
    brown = np.cumsum(rng.standard_normal(10 * SR)).astype(np.float32)
    brown = 0.1 * (brown - brown.mean()) / brown.std()
    for y in (white, brown):
        an = inet.analyze(y, SR, model=model, analyzers=False)
        assert an.label == "other" and an.instruments == []
        assert an.other_ranges() == [[0.0, pytest.approx(10.0)]]
    assert inet.analyze(white, SR, model=model, analyzers=False, other_veto=1.0).instruments == []
    short = white[: int(2.5 * SR)]
    assert inet.analyze(short, SR, model=model, analyzers=False).instruments == []
    off = inet.analyze(short, SR, model=model, analyzers=False, other_veto=1.0)
    assert [i.label for i in off.instruments] == ["guitar"]
