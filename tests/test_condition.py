"""Condition analysis: real features on real renders, HNR against Praat, the shipped artifact,
the analyzer's output contract through ``instrunet_core.analyze``, silence, and the manifest
schema for features-input models."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import instrunet_condition
import numpy as np
import pytest
from conftest import SR
from instrunet_condition import classifier as clf_mod
from instrunet_condition.features import FEATURE_NAMES, condition_features, feature_vector, hnr

from instrunet_core import analyze
from instrunet_core import registry as plugins_mod
from instrunet_core.audio import load_audio
from instrunet_core.errors import ModelError
from instrunet_core.manifest import read_manifest, sha256_file, validate_manifest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def flute() -> np.ndarray:
    """4 s of a real clean render (FluidR3 flute, the bundled example), mono 22,050 Hz."""
    y = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=SR)
    return np.ascontiguousarray(y[: 4 * SR], dtype=np.float64)


def _noisy(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(y.size)
    return y + n * np.sqrt(np.mean(y**2) / 10 ** (snr_db / 10))


# --------------------------------------------------------------------------- features


def test_hnr_matches_praat(flute: np.ndarray) -> None:
    parselmouth = pytest.importorskip("parselmouth")  # installed by `make test` (GPL-3, tests only)
    for snr in (None, 20.0, 10.0, 3.0):
        x = flute if snr is None else _noisy(flute, snr)
        snd = parselmouth.Sound(x, sampling_frequency=SR)
        ref = parselmouth.praat.call(snd.to_harmonicity_ac(0.01, 75.0, 0.1, 4.5), "Get mean", 0, 0)
        ours = hnr(x, sr=SR)
        assert abs(ours - ref) < 1.0, (snr, ours, ref)


def test_clean_vs_degraded_ordering(flute: np.ndarray) -> None:
    from training.condition.data import aged, broken

    clean = condition_features(flute, sr=SR)
    hiss = condition_features(_noisy(flute, 25.0), sr=SR)
    noise = condition_features(_noisy(flute, 0.0), sr=SR)
    assert clean and hiss and noise
    assert clean["hnr_db"] > hiss["hnr_db"] > noise["hnr_db"]
    assert clean["spectral_flatness"] < hiss["spectral_flatness"] < noise["spectral_flatness"]
    clipped = condition_features(np.clip(flute, -0.1, 0.1), sr=SR)
    assert clipped and clipped["clipping_ratio"] > 0.05 > clean["clipping_ratio"]
    # the corpus degradations move HNR the same way on the real note
    rng = np.random.default_rng(3)
    for _ in range(3):
        b, log = broken(flute, rng)
        fb = condition_features(b, sr=SR)
        assert fb is not None and np.isfinite(list(fb.values())).all(), log
        assert fb["hnr_db"] < clean["hnr_db"], log
    a, log = aged(flute, rng)
    fa = condition_features(a, sr=SR)
    assert fa is not None and np.isfinite(list(fa.values())).all(), log


def test_features_are_level_independent_and_finite(flute: np.ndarray) -> None:
    f1 = condition_features(flute, sr=SR)
    f2 = condition_features(0.01 * flute, sr=SR)
    assert f1 is not None and f2 is not None and set(f1) == set(FEATURE_NAMES)
    for k in FEATURE_NAMES:
        assert math.isfinite(f1[k]) and f1[k] == pytest.approx(f2[k], rel=1e-6, abs=1e-9), k
    v = feature_vector(f1)
    assert v.shape == (len(FEATURE_NAMES),) and v.dtype == np.float32 and np.isfinite(v).all()


def test_silence_short_and_bad_input() -> None:
    assert condition_features(np.zeros(3 * SR), sr=SR) is None
    assert condition_features(np.full(SR // 10, 0.5), sr=SR) is None  # shorter than MIN_SECONDS
    with pytest.raises(ValueError, match="NaN"):
        condition_features(np.array([0.1, np.nan] * SR), sr=SR)
    with pytest.raises(ValueError, match="mono"):
        condition_features(np.zeros((SR, 2)), sr=SR)
    out = instrunet_condition.condition_of(np.zeros(5 * SR, np.float32), sr=SR)
    assert out["label"] == "unknown" and out["chunks"] == 0
    assert set(out["features"]) == set(FEATURE_NAMES)
    json.dumps(out, allow_nan=False)


def test_corpus_clips_are_seeded_and_labelled(flute: np.ndarray) -> None:
    from training.condition.data import CLASSES, make_clips, rng_for

    other = np.roll(flute, SR)
    a = make_clips(flute, [other], rng_for(1, "note"), siblings=[other])
    b = make_clips(flute, [other], rng_for(1, "note"), siblings=[other])
    assert [c for _, c, _, _ in a] == [0, 1, 2] and len(CLASSES) == 3
    for (xa, ca, la, _), (xb, cb, lb, _) in zip(a, b, strict=True):
        assert ca == cb and la == lb and np.array_equal(xa, xb)
        assert xa.shape == flute.shape and xa.dtype == np.float32 and np.isfinite(xa).all()
        assert 0.29 <= np.abs(xa).max() <= 1.0 + 1e-6
    assert a[1][2] and a[2][2]  # something was applied, and logged


# --------------------------------------------------------------------------- the shipped artifact


def test_shipped_artifact_reproduces_references() -> None:
    dirs = clf_mod.model_dirs()
    assert dirs and dirs[-1].name == "1.0.0"
    man = read_manifest(dirs[-1])
    assert man.name == "condition" and man.input["layout"] == "features" and man.front_end is None
    assert tuple(man.features["names"]) == FEATURE_NAMES
    assert sha256_file(dirs[-1] / man.file) == man.sha256
    c = clf_mod.ConditionModel(dirs[-1])
    with np.load(dirs[-1] / man.references) as z:
        x, y = z["inputs"].astype(np.float32), z["outputs"]
    assert len(x) >= 16
    np.testing.assert_allclose(c.predict(x), y, atol=1e-5)
    np.testing.assert_allclose(c.predict(x).sum(1), 1.0, atol=1e-5)


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    import shutil

    src = clf_mod.model_dirs()[-1]
    dst = tmp_path / "condition" / "1.0.0"
    shutil.copytree(src, dst)
    with open(dst / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        clf_mod.ConditionModel(dst)


# --------------------------------------------------------------------------- manifests with features input


def test_features_manifest_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    good = read_manifest(clf_mod.model_dirs()[-1]).to_dict()
    validate_manifest(good, where="m.json")
    for mutate, msg in [
        (lambda m: m["features"].pop("names"), "features.names"),
        (lambda m: m.update(front_end={"sample_rate": 22050}), "no front_end"),
        (lambda m: m["input"].update(shape=[None, 3]), "disagrees"),
        (lambda m: m["input"].update(layout="NHWC"), "front_end"),
    ]:
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(ModelError, match=msg):
            validate_manifest(bad, where="m.json")
    from instrunet_core.model import Model

    with pytest.raises(ModelError, match="feature vector"):
        Model(clf_mod.model_dirs()[-1])


# --------------------------------------------------------------------------- the analyzer through analyze()


@pytest.fixture
def real_registry(monkeypatch: pytest.MonkeyPatch) -> plugins_mod.Registry:
    """The packaged default model plus the condition plugin (the autouse fixture hides both)."""
    from instrunet_core import default_plugins

    monkeypatch.setattr(default_plugins, "MODELS_DIR", ROOT / "instrunet_core" / "models")
    reg = plugins_mod.build_registry(extra_plugins=[("condition", instrunet_condition)])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    return reg


def _check_verdict(v: dict, *, allow_unknown: bool = False) -> None:
    labels = {"healthy", "moderately_aged", "broken_noisy"} | ({"unknown"} if allow_unknown else set())
    assert v["label"] in labels
    assert set(v["probabilities"]) == {"healthy", "moderately_aged", "broken_noisy"}
    if v["label"] != "unknown":
        assert sum(v["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert v["label"] == max(v["probabilities"], key=v["probabilities"].get)
        for k in ("hnr_db", "spectral_flatness", "decay_rate_db_per_s", "decay_variance"):
            assert math.isfinite(v["features"][k]), k


def test_contract_on_ensemble(real_registry: plugins_mod.Registry) -> None:
    a = analyze(str(EXAMPLES / "ensemble.flac"), registry=real_registry)
    c = a.extras["condition"]
    assert "error" not in c, c
    assert set(c) >= {"label", "probabilities", "features", "instruments", "model", "explanation"}
    _check_verdict(c)
    man = read_manifest(clf_mod.model_dirs()[-1])
    assert c["model"] == {"name": "condition", "version": "1.0.0", "sha256": man.sha256}
    assert set(c["features"]) == set(FEATURE_NAMES)
    assert c["label"] in c["explanation"]
    assert set(c["instruments"]) == {i.label for i in a.instruments} and c["instruments"]
    for v in c["instruments"].values():
        _check_verdict(v, allow_unknown=True)
        assert isinstance(v["explanation"], str) and v["seconds"] > 0
    # a clean render must come out healthy (measured false alarms: docs/condition.md)
    assert c["label"] == "healthy"
    json.dumps(a.to_dict(), allow_nan=False)


def test_silence_is_unknown_without_nan(real_registry: plugins_mod.Registry) -> None:
    a = analyze(np.zeros(3 * 44100, np.float32), 44100, registry=real_registry)
    c = a.extras["condition"]
    assert c["label"] == "unknown" and c["instruments"] == {}
    assert all(v == 0.0 for v in c["probabilities"].values())
    json.dumps(a.to_dict(), allow_nan=False)


@pytest.mark.parametrize(("note", "judged"), [(0.4, False), (0.9, False), (1.5, True)])
def test_too_little_sound_is_unknown(flute: np.ndarray, note: float, judged: bool) -> None:
    """A short note in a 4 s chunk of silence is judged on its own seconds of sound, not the
    chunk's: under 1 s it is "unknown" (it was "healthy, probability 1.00" on 0.4 s)."""
    y = np.zeros(4 * SR)
    y[SR : SR + int(note * SR)] = flute[: int(note * SR)]
    c = instrunet_condition.condition_of(y, sr=SR)
    assert (c["label"] != "unknown") is judged, c["label"]
    if not judged:
        assert all(v == 0.0 for v in c["probabilities"].values())


# --------------------------------------------------------------------------- export of a features-input model


@pytest.mark.training
@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_export_features_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    import keras

    from export.__main__ import main
    from export.artifact import check_artifact

    keras.utils.set_random_seed(0)
    n = len(FEATURE_NAMES)
    model = keras.Sequential(
        [
            keras.Input((n,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(tmp_path / "c.keras")
    x = np.random.default_rng(0).normal(size=(40, n)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=x, names=np.asarray(FEATURE_NAMES))
    report = {
        "labels": list(clf_mod.CLASSES),
        "model": "condition",
        "version": "9.9.9",
        "features_manifest": {"sample_rate": SR, "healthy_median": {"hnr_db": 25.0}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    args = [
        "c.keras",
        "--name",
        "condition",
        "--version",
        "9.9.9",
        "--out",
        "out",
        "--features",
        "inputs.npz",
        "--report",
        "metrics.json",
        "--n-parity",
        "40",
        "--n-references",
        "8",
    ]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    folder = tmp_path / "out" / "condition" / "9.9.9"
    assert check_artifact(folder)["n"] == 8
    man = read_manifest(folder)
    assert man.input == {"name": "features", "shape": [None, n], "dtype": "float32", "layout": "features"}
    assert man.features["names"] == list(FEATURE_NAMES) and man.features["sample_rate"] == SR
    c = clf_mod.ConditionModel(folder)
    np.testing.assert_allclose(c.predict(x), np.asarray(model(x, training=False)), atol=1e-5)
    # a features file that does not fit the model is refused, nothing written
    np.savez(tmp_path / "bad.npz", x=x[:, :3], names=np.asarray(FEATURE_NAMES[:3]))
    assert main([*args[:8], "bad.npz", *args[9:], "--force"]) == 1


def test_cli_json_through_the_installed_entry_point(tmp_path: Path) -> None:
    """`instrunet analyze --json` in a subprocess: the real entry point, nothing patched."""
    import os
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "instrunet"
    cmd = str(exe) if exe.exists() else shutil.which("instrunet")
    assert cmd, "the instrunet console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "INSTRUNET_PLUGINS"}
    out = tmp_path / "flute.json"
    proc = subprocess.run(
        [cmd, "analyze", str(EXAMPLES / "solo_flute.wav"), "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    c = json.loads(out.read_text())["extras"]["condition"]
    _check_verdict(c)
    assert c["label"] == "healthy" and c["model"]["name"] == "condition"
    assert set(c["instruments"]) >= {"flute"}
