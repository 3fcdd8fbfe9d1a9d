"""Condition analysis: real features on real renders, HNR against Praat, the shipped artifact,
the streaming analyzer through ``instrunet_core.analyze`` (output contract, "unknown" for too
short, too quiet and too mixed audio, bounded memory, sampling of long files, explanations),
and the manifest schema for features-input models."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import instrunet_condition
import numpy as np
import pytest
from conftest import SR
from instrunet_condition import classifier as clf_mod
from instrunet_condition import stream as stream_mod
from instrunet_condition.features import (
    FAMILY_INPUTS,
    FEATURE_NAMES,
    INPUT_NAMES,
    condition_features,
    feature_vector,
    features_and_power,
    hnr,
)

from instrunet_core import analyze
from instrunet_core import registry as plugins_mod
from instrunet_core.audio import load_audio
from instrunet_core.errors import InputError, ModelError
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
    a, log = aged(flute, rng, "flute")
    fa = condition_features(a, sr=SR)
    assert fa is not None and np.isfinite(list(fa.values())).all(), log


def test_features_are_level_independent_and_finite(flute: np.ndarray) -> None:
    f1 = condition_features(flute, sr=SR)
    f2 = condition_features(0.01 * flute, sr=SR)
    assert f1 is not None and f2 is not None and set(f1) == set(FEATURE_NAMES)
    for k in FEATURE_NAMES:
        assert math.isfinite(f1[k]) and f1[k] == pytest.approx(f2[k], rel=1e-4, abs=1e-6), (
            k
        )  # float32 spectra
    v = feature_vector(f1, "flute")
    assert v.shape == (len(INPUT_NAMES),) and v.dtype == np.float32 and np.isfinite(v).all()
    assert (
        v[len(FEATURE_NAMES) + FAMILY_INPUTS.index("family_flute")] == 1.0
        and v[len(FEATURE_NAMES) :].sum() == 1
    )
    assert not feature_vector(f1, "none of these")[len(FEATURE_NAMES) :].any()


def test_wow_and_flutter_measure_pitch_wobble() -> None:
    """A tone whose pitch wobbles slowly (wow) or fast (flutter) raises the matching feature only;
    a player's vibrato (5.5 Hz) and note changes raise neither much."""
    t = np.arange(65024) / SR

    def tone(cents: np.ndarray, f0: float = 440.0) -> np.ndarray:
        ph = 2 * np.pi * np.cumsum(f0 * 2 ** (cents / 1200)) / SR
        return sum(np.sin(k * ph) / k for k in range(1, 6)).astype(np.float32)

    def wobble(y: np.ndarray) -> tuple[float, float]:
        f = condition_features(y, sr=SR)
        assert f is not None
        return f["wow_cents"], f["flutter_cents"]

    clean = wobble(tone(0 * t))
    wow = wobble(tone(8 * np.sin(2 * np.pi * 1.5 * t)))
    flutter = wobble(tone(4 * np.sin(2 * np.pi * 12 * t)))
    steps = np.concatenate([tone(0 * t, 440)[:SR], tone(0 * t, 523)[:SR], tone(0 * t, 392)[: 65024 - 2 * SR]])
    assert max(clean) < 0.5 and max(wobble(steps)) < 1.5
    assert wow[0] == pytest.approx(8 / np.sqrt(2), rel=0.15) and wow[1] < 0.5
    assert flutter[1] > 1.0 > flutter[0]


def test_silence_short_and_bad_input() -> None:
    assert condition_features(np.zeros(3 * SR), sr=SR) is None
    assert condition_features(np.full(SR // 10, 0.5), sr=SR) is None  # shorter than MIN_SECONDS
    with pytest.raises(ValueError, match="NaN"):
        condition_features(np.array([0.1, np.nan] * SR), sr=SR)
    with pytest.raises(ValueError, match="mono"):
        condition_features(np.zeros((SR, 2)), sr=SR)
    out = instrunet_condition.condition_of(np.zeros(5 * SR, np.float32), sr=SR)
    assert out["label"] == "unknown" and out["reason"] == "silent" and out["chunks"] == 0
    assert out["window_shares"] == {c: 0.0 for c in out["probabilities"]}  # every documented key
    assert set(out["features"]) == set(FEATURE_NAMES)
    json.dumps(out, allow_nan=False)


def test_condition_of_checks_and_mixes_its_input_as_the_core_does(flute: np.ndarray) -> None:
    """Channels in either layout are mixed down as the core mixes them; strings, NaN, lists,
    other ranks and bad rates are an InputError naming condition_of, not a raw ValueError or a
    silent "unknown"."""
    y = flute[: 3 * SR].astype(np.float32)
    mono = instrunet_condition.condition_of(y)
    assert mono["label"] != "unknown" and mono["chunks"] == 1
    for layout in (np.stack([y, y], axis=1), np.stack([y, y]), y[None, :]):
        out = instrunet_condition.condition_of(layout)
        assert out["label"] == mono["label"], layout.shape
        assert out["probabilities"] == pytest.approx(mono["probabilities"], abs=1e-6), layout.shape
    for bad, match in [
        (np.full(5 * SR, np.nan), "NaN"),
        (np.array(["a"] * 100), "dtype"),
        (y.tolist(), "numpy array"),
        (np.zeros((2, 2, SR)), "shape"),
        (np.zeros(0), "empty"),
    ]:
        with pytest.raises(InputError, match=f"condition_of: .*{match}"):
            instrunet_condition.condition_of(bad)
    with pytest.raises(InputError, match="sample rate"):
        instrunet_condition.condition_of(y, sr=0)


def test_condition_of_fuses_the_spectrogram_network_as_analyze_does(
    real_registry: plugins_mod.Registry,
) -> None:
    """A steady sine: the features alone call it broken, the fused model (and analyze) healthy;
    condition_of with the default predict now agrees with analyze."""
    t = np.arange(30 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    model = clf_mod.load_condition_model()
    fused = instrunet_condition.condition_of(y, model=model)
    alone = instrunet_condition.condition_of(y, model=model, predict=model.predict)
    via_analyze = analyze(y, SR, registry=real_registry).extras["condition"]
    assert fused["label"] == via_analyze["label"] == "healthy"
    assert alone["label"] == "broken_noisy"  # why the two used to disagree
    assert fused["probabilities"]["healthy"] == pytest.approx(
        via_analyze["probabilities"]["healthy"], abs=0.05
    )


def test_condition_of_judges_the_same_sound_alike_at_any_rate() -> None:
    """It cut windows by sample count and computed the features at the rate given: a clean tone
    at 44.1 kHz was broken_noisy 0.999, at 192 kHz every window too short, at 4 kHz the 4-10 kHz
    band empty and every probability NaN, labelled healthy (an audit). Now it resamples to
    22,050 Hz first, as analyze does."""
    model = clf_mod.load_condition_model()
    base = None
    for sr in (SR, 4000, 16000, 44100, 192000):
        t = np.arange(20 * sr) / sr
        got = instrunet_condition.condition_of(
            (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr=sr, model=model
        )
        assert got["label"] == "healthy" and all(math.isfinite(v) for v in got["probabilities"].values())
        base = base or got
        assert got["chunks"] == base["chunks"]
        if sr > 8400:  # (at 4 kHz nothing above 4 kHz is judged: its band features are left out)
            assert got["probabilities"]["healthy"] == pytest.approx(
                base["probabilities"]["healthy"], abs=0.05
            )
        else:
            assert got["features"]["hf_flatness"] is None
    # the features themselves, at a rate with no 4-10 kHz band, stay finite
    low = condition_features(
        (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 4000) / 4000)).astype(np.float32), sr=4000
    )
    assert all(math.isfinite(v) for v in low.values())


def test_assess_refuses_what_is_not_finite(flute: np.ndarray) -> None:
    """NaN features or probabilities came out "healthy" with NaN probabilities (the arg-max of
    NaN is 0); a predict of the wrong shape raised an IndexError (an audit)."""
    model = clf_mod.load_condition_model()
    row = condition_features(flute, sr=SR)
    with pytest.raises(InputError, match=r"not finite numbers: \['hnr_db'\]"):
        clf_mod.assess([{**row, "hnr_db": float("nan")}], [1.0], predict=model.predict)
    for bad in (
        lambda x: np.full((len(x), 3), np.nan),
        lambda x: np.zeros((len(x), 2)),
        lambda x: np.zeros((len(x), 3)),
    ):
        with pytest.raises(InputError, match="assess: predict"):
            clf_mod.assess([row], [1.0], predict=bad)
    with pytest.raises(InputError, match="1 rows need 1 families, got 2"):
        clf_mod.assess([row], [1.0], families=["flute", "reed"], predict=model.predict)


def test_public_helpers_refuse_what_they_would_misread() -> None:
    """An audit found KeyError, AttributeError, TypeError and a NaN window called "too short"."""
    cases = [
        (lambda: instrunet_condition.unknown("bogus"), "unknown: reason must be one of"),
        (
            lambda: instrunet_condition.not_judgeable(np.zeros(SR, np.float32), 0),
            "not_judgeable: sample rate 0 Hz",
        ),
        (lambda: instrunet_condition.not_judgeable(np.full(SR, np.nan, np.float32), SR), "NaN or infinite"),
        (lambda: instrunet_condition.not_judgeable(np.zeros(SR, np.int16), SR), "expected mono float audio"),
        (lambda: instrunet_condition.load_condition_model(5), "path must be a folder path, got int"),  # type: ignore[arg-type]
        (
            lambda: instrunet_condition.condition_of(np.zeros(SR, np.float32), model="x"),
            "model must be a ConditionModel",
        ),  # type: ignore[arg-type]
        (
            lambda: instrunet_condition.condition_of(np.zeros(SR, np.float32), predict=5),
            "predict must be callable",
        ),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_assess_refuses_weights_that_cannot_average(flute: np.ndarray) -> None:
    model = clf_mod.load_condition_model()
    f = condition_features(flute[: 3 * SR], sr=SR)
    assert f is not None
    for rows, weights, match in [
        ([f], [0.0], "not all 0"),
        ([f, f], [0.0, 0.0], "not all 0"),
        ([f], [float("nan")], "finite"),
        ([f], [-1.0], ">= 0"),
        ([f], [1.0, 1.0], "1 weights"),
        ([], [], "no windows"),
    ]:
        with pytest.raises(InputError, match=match):
            clf_mod.assess(rows, weights, predict=model.predict)
    v = clf_mod.assess([f, f], [0.0, 2.0], predict=model.predict)
    assert all(math.isfinite(p) for p in v["probabilities"].values())


def test_corpus_clips_are_seeded_and_labelled(flute: np.ndarray) -> None:
    from training.condition.data import CLASSES, N, make_base, make_clips, rng_for

    other = np.roll(flute, SR)

    def clips(seed: int) -> list:
        rng = rng_for(seed, "note")
        base, kind = make_base(flute, [other], rng)
        assert base.shape == (N,) and kind in ("note", "phrase")
        return make_clips(base, "flute", [make_base(other, (), rng)[0]], rng)

    a, b = clips(1), clips(1)
    assert [c for _, c, _, _ in a] == [0, 1, 2] and len(CLASSES) == 3
    for (xa, ca, la, _), (xb, cb, lb, _) in zip(a, b, strict=True):
        assert ca == cb and la == lb and np.array_equal(xa, xb)
        assert xa.shape == (N,) and xa.dtype == np.float32 and np.isfinite(xa).all()
        assert 0.29 <= np.abs(xa).max() <= 1.0 + 1e-6
    assert a[1][2] and a[2][2]  # something was applied, and logged
    assert not np.array_equal(clips(2)[1][0], a[1][0])


def test_looped_sustain_keeps_the_attack_and_repeats_one_short_stretch(flute: np.ndarray) -> None:
    """``build --loops``: a note played as an old sample-based instrument plays it. The attack is
    the recording's own; after the loop point the audio is one stretch of 4-60 ms repeated under
    the note's envelope, joined where the waveform matches (no click), seeded; a note too short
    to loop is left alone (``None``)."""
    from training.condition.data import looped_sustain, rng_for

    note = flute[: 2 * SR]
    a, b = looped_sustain(note, rng_for(3, "loop")), looped_sustain(note, rng_for(3, "loop"))
    assert a is not None and b is not None and np.array_equal(a[0], b[0]) and a[1] == b[1]
    y, ms = a
    assert y.shape == note.shape and np.isfinite(y).all() and 4.0 * 0.7 <= ms <= 60.0 * 1.3 + 1
    n = round(ms * SR / 1000)
    start = int(np.flatnonzero(~np.isclose(y, note, atol=0, rtol=0))[0])
    assert start >= int(0.03 * SR)  # the attack as recorded
    assert np.array_equal(y[:start], note[:start])
    seg = y[start + n : start + 5 * n]
    # one stretch repeated: the waveform a loop later is the same, up to the envelope's slow change
    assert np.max(np.abs(seg - y[start : start + 4 * n])) < 0.2 * np.max(np.abs(seg))
    steps = np.abs(np.diff(y[start:]))
    assert steps.max() < 1.5 * np.abs(np.diff(note)).max()  # no seam click beyond the note's own steps
    lengths = {round(looped_sustain(note, rng_for(s, "loop"))[1]) for s in range(20)}  # type: ignore[index]
    assert len(lengths) > 5 and min(lengths) < 20 < max(lengths)  # short loops and long ones
    assert looped_sustain(note[: int(0.3 * SR)], rng_for(3, "loop")) is None
    assert looped_sustain(np.zeros(SR), rng_for(3, "loop")) is None


def test_more_bases_per_real_instrument_keep_the_default_draw() -> None:
    """``build --real-train-bases N``: each real train instrument gives up to N bases (all its
    clips when it has fewer), the default 120 among them; SoundFont programs are unchanged."""
    from training.condition.data import _plan, build

    def note(inst: str, i: int, real: bool) -> SimpleNamespace:
        extra = {"library": "lib", "duration_s": 1.0} if real else {}
        return SimpleNamespace(instrument_str=inst, note_str=f"{inst}-{i}", extra=extra)

    notes = [note("real_a", i, True) for i in range(300)] + [note("real_b", i, True) for i in range(150)]
    notes += [note("font_c", i, False) for i in range(60)]
    default = _plan(notes, "train", 7)
    more = _plan(notes, "train", 7, 250)
    assert [len(default[k]) for k in ("real_a", "real_b", "font_c")] == [120, 120, 24]
    assert [len(more[k]) for k in ("real_a", "real_b", "font_c")] == [250, 150, 24]
    for k in default:
        assert {n.note_str for n in default[k]} <= {n.note_str for n in more[k]}
    assert more["font_c"] == default["font_c"]
    with pytest.raises(ValueError, match="real_train_bases"):
        build(Path("nowhere"), Path("nowhere"), real_train_bases=0)


def test_corpus_rows_can_keep_the_family_classifiers_log_mel(flute: np.ndarray, tmp_path: Path) -> None:
    """``build --mel``: each row carries the family classifier's own input of its window (float16),
    saved and loaded beside the features."""
    from instrunet_core.features import batch_features
    from training.condition.data import N, _mels, _row, _save_rows, load

    windows = np.stack([flute[:N], _noisy(flute, 5.0)[:N]]).astype(np.float32)
    mels = _mels(windows)
    assert mels.dtype == np.float16 and mels.shape == (2, 128, 128)
    assert np.allclose(mels, batch_features(windows), atol=1e-3)  # float16 of [0, 1] values
    assert not np.allclose(mels[0], mels[1], atol=0.05)  # the noise shows in the spectrogram
    note = SimpleNamespace(instrument_str="flute_x", family_str="flute", extra={}, note_str="n")
    probs = np.eye(8, dtype=np.float32)[1]
    labels = ("brass", "flute", "guitar", "keyboard", "mallet", "reed", "string", "vocal")
    rows = [
        _row(w, probs, labels, c, log, note, {"note": f"n{c}"}, {"mel": m})
        for c, (w, m, log) in enumerate(zip(windows, mels, (["clean"], ["noise 5 dB"]), strict=True))
    ]
    _save_rows(tmp_path / "dev.npz", rows)
    d = load(tmp_path, "dev")
    assert d["mel"].shape == (2, 128, 128) and np.array_equal(d["mel"], mels)
    assert d["v"].shape[0] == 2 and list(d["clean"]) == [True, False]


def test_spectrogram_network_reads_log_mel_windows_and_refuses_corpora_without_them() -> None:
    pytest.importorskip("keras")
    from training.condition.spectro import _mel, build_cnn

    with pytest.raises(SystemExit, match="--mel"):
        _mel({"x": np.zeros((1, 19))})
    net = build_cnn()
    p = np.asarray(net(np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32), training=False))
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_an_ensemble_of_spectrogram_networks_is_one_network_averaging_them(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from training.condition.spectro import build_cnn, build_ensemble

    members = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        members.append(build_cnn(32, 32))
    x = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    each = [np.asarray(m(x, training=False)) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # two different members
    ens = build_ensemble(members)
    assert ens.count_params() == sum(m.count_params() for m in members)
    np.testing.assert_allclose(np.asarray(ens(x, training=False)), (each[0] + each[1]) / 2, atol=1e-6)
    ens.save(tmp_path / "e.keras")  # members keep their own names: the file loads back whole
    back = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(np.asarray(back(x, training=False)), (each[0] + each[1]) / 2, atol=1e-6)


def test_a_spectrogram_network_starts_from_a_saved_one_of_its_shape_only(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from training.condition.spectro import build_cnn, start_from

    keras.utils.set_random_seed(0)
    saved = build_cnn(32, 32)
    saved.save(tmp_path / "a.keras")
    keras.utils.set_random_seed(1)
    model = build_cnn(32, 32)
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    assert not np.allclose(
        np.asarray(model(x, training=False)), np.asarray(saved(x, training=False)), atol=1e-4
    )
    start_from(model, tmp_path / "a.keras")
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(saved(x, training=False)))
    build_cnn(32, 32, channels=(8, 16)).save(tmp_path / "narrow.keras")
    with pytest.raises(ValueError, match=r"narrow\.keras: not a spectrogram network of this shape"):
        start_from(model, tmp_path / "narrow.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.keras: not a saved Keras network"):
        start_from(model, tmp_path / "junk.keras")


def test_networks_are_fused_with_the_shipped_features_or_with_a_feature_classifier_given(
    tmp_path: Path,
) -> None:
    keras = pytest.importorskip("keras")
    from instrunet_condition.classifier import MODEL_NAME, MODELS_DIR, load_condition_model
    from instrunet_condition.features import INPUT_NAMES

    from training.condition.spectro import features_predictor

    x = np.random.default_rng(0).random((5, len(INPUT_NAMES)), dtype=np.float32)
    folder = MODELS_DIR / MODEL_NAME / "2.0.0"
    shipped = load_condition_model(str(folder))
    predict, name = features_predictor(None)
    assert name == "shipped 2.0.0"
    np.testing.assert_allclose(predict(x), shipped.predict(x), atol=1e-7)
    predict, name = features_predictor(folder)
    assert name == str(folder)
    np.testing.assert_allclose(predict(x), shipped.predict(x), atol=1e-7)
    keras.utils.set_random_seed(0)
    trained = keras.Sequential(
        [keras.Input((len(INPUT_NAMES),)), keras.layers.Dense(3, activation="softmax")], name="condition"
    )
    trained.save(tmp_path / "condition.keras")  # what `python -m training.condition train` saves
    predict, name = features_predictor(tmp_path / "condition.keras")
    assert name.endswith("condition.keras")
    np.testing.assert_allclose(predict(x), np.asarray(trained(x)), atol=1e-6)


def test_an_empty_split_is_a_clear_error_not_an_index_error(tmp_path: Path) -> None:
    from training.condition.data import _save_rows

    with pytest.raises(ValueError, match=r"dev\.npz: no rows"):
        _save_rows(tmp_path / "dev.npz", [])
    assert not (tmp_path / "dev.npz").exists()


def test_family_cues_follow_the_family(flute: np.ndarray) -> None:
    """Leaking pads only on blown instruments, worn hammers only on struck ones, detuned unisons
    only on strung ones; the generic cues everywhere."""
    from training.condition.data import aged, rng_for

    seen: dict[str, set[str]] = {}
    for fam in ("flute", "mallet", "string", "vocal"):
        for i in range(40):
            _, log = aged(flute.copy(), rng_for(i, fam), fam)
            seen.setdefault(fam, set()).update(w.split(" (")[0].split(" ")[0] for w in log)
    assert "leaky" in seen["flute"] and "leaky" not in seen["mallet"] | seen["string"] | seen["vocal"]
    assert "worn" in seen["mallet"] and "worn" not in seen["flute"] | seen["string"] | seen["vocal"]
    assert "detuned" in seen["string"] and "detuned" not in seen["flute"] | seen["mallet"] | seen["vocal"]
    assert {"wow", "flutter"} & seen["vocal"] and "hum" in seen["vocal"]


# --------------------------------------------------------------------------- the shipped artifact


def test_shipped_artifact_reproduces_references() -> None:
    dirs = clf_mod.model_dirs()
    assert dirs and dirs[-1].name == "3.2.0"
    man = read_manifest(dirs[-1])
    assert man.name == "condition" and man.input["layout"] == "features" and man.front_end is None
    assert tuple(man.features["names"]) == INPUT_NAMES
    ref = man.features["reference"]
    for k in FEATURE_NAMES:  # clean ranges and class medians for the explanations
        assert ref["healthy"]["low"][k] <= ref["healthy"]["median"][k] <= ref["healthy"]["high"][k]
        assert math.isfinite(ref["moderately_aged"]["median"][k]) and math.isfinite(
            ref["broken_noisy"]["median"][k]
        )
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
    assert set(c) >= {
        "label",
        "reason",
        "probabilities",
        "features",
        "instruments",
        "model",
        "explanation",
        "reasons",
    }
    _check_verdict(c)
    man = read_manifest(clf_mod.model_dirs()[-1])
    net = read_manifest(clf_mod.load_condition_model().spectrogram.path)
    assert c["model"] == {
        "name": "condition",
        "version": "3.2.0",
        "sha256": man.sha256,
        "spectrogram": {"name": "condition-spectrogram", "version": "1.2.0", "sha256": net.sha256},
    }
    # a sample of the classifier's own windows, none judged twice
    sp = c["sampling"]
    assert sp["windows"] == len(a.timeline) and 0 < sp["judged"] == c["chunks"] <= sp["windows"]
    assert sp["judged"] + sum(sp["skipped"].values()) <= sp["windows"]
    assert set(c["features"]) == set(FEATURE_NAMES)
    assert c["label"] in c["explanation"]
    assert set(c["instruments"]) == {i.label for i in a.instruments} and c["instruments"]
    for v in c["instruments"].values():
        _check_verdict(v, allow_unknown=True)
        assert isinstance(v["explanation"], str)
        assert (v["seconds"] > 0) == (v["label"] != "unknown") and (v["reason"] is None) == (
            v["label"] != "unknown"
        )
    # a clean render must come out healthy (measured false alarms: docs/condition.md)
    assert c["label"] == "healthy"
    json.dumps(a.to_dict(), allow_nan=False)


def test_silence_is_unknown_without_nan(real_registry: plugins_mod.Registry) -> None:
    a = analyze(np.zeros(3 * 44100, np.float32), 44100, registry=real_registry)
    c = a.extras["condition"]
    assert c["label"] == "unknown" and c["reason"] == "silent" and c["instruments"] == {}
    assert all(v == 0.0 for v in c["probabilities"].values())
    json.dumps(a.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("what", "y", "sr"),
    [
        ("DC at 0.999", np.full(5 * 44100, 0.999, np.float32), 44100),
        (
            "1 s of silence, then DC at 0.3",
            np.r_[np.zeros(44100), np.full(4 * 44100, 0.3)].astype(np.float32),
            44100,
        ),
        ("a slow full-range ramp", np.linspace(-1, 1, 6 * 44100).astype(np.float32), 44100),
    ],
)
def test_dc_and_slow_ramps_are_no_sound_to_judge(
    real_registry: plugins_mod.Registry, what: str, y: np.ndarray, sr: int
) -> None:
    """The condition measures sound as the core measures levels (each block about its own
    straight line): DC or a ramp is "unknown" with a reason, never a verdict."""
    a = analyze(y, sr, registry=real_registry)
    c = a.extras["condition"]
    assert c["label"] == "unknown" and c["reason"] in {"silent", "too_short"}, (what, c)
    assert all(v == 0.0 for v in c["probabilities"].values())
    assert instrunet_condition.condition_of(np.full(3 * SR, 1.0))["label"] == "unknown"


def test_audio_the_core_accepts_is_judged_even_when_resampling_overshoots_its_limit(
    real_registry: plugins_mod.Registry,
) -> None:
    """Noise peaking at 9e9 (within the core's 1e10) at 44.1 kHz: the resampler overshoots
    1e10, and the condition used to fail with an InputError the core never raised."""
    rng = np.random.default_rng(0)
    for peak in (9e9, 1e10):
        y = (peak * rng.uniform(-1, 1, 5 * 44100)).astype(np.float32)
        y = np.clip(y, -peak, peak)
        c = analyze(y, 44100, registry=real_registry).extras["condition"]
        assert "error" not in c, (peak, c)
        assert c["label"] in {*clf_mod.CLASSES, "unknown"}
        assert all(math.isfinite(p) for p in c["probabilities"].values())
        json.dumps(c, allow_nan=False)


def test_a_model_of_windows_shorter_than_a_verdict_needs_is_said(
    real_registry: plugins_mod.Registry, tmp_path: Path
) -> None:
    """A custom-labels audit: with a model reading windows of about 1 s (as YAMNet-like models
    do), twenty seconds of steady sound were "too little sound to judge": no window can hold the
    1 s of sound a verdict needs. The explanation says why; a model of longer windows is judged."""
    from conftest import build_tiny_onnx, make_manifest

    from instrunet_core import load_model
    from instrunet_core.features import FrontEnd

    y = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=SR)[: 6 * SR]
    seen = {}
    for frames in (44, 64):
        d = tmp_path / f"short{frames}" / "1.0.0"
        d.mkdir(parents=True)
        build_tiny_onnx(d / "model.onnx", frames=frames)
        manifest = make_manifest(
            d,
            name=f"short{frames}",
            front_end=FrontEnd(frames=frames).to_dict(),
            input={"name": "mel", "shape": [None, 128, frames, 1], "dtype": "float32", "layout": "NHWC"},
        )
        (d / "manifest.json").write_text(json.dumps(manifest))
        seen[frames] = analyze(np.tile(y, 3), SR, model=load_model(d), registry=real_registry).extras[
            "condition"
        ]
    c = seen[44]
    assert c["label"] == "unknown" and c["reason"] == "too_short", c
    assert c["explanation"].startswith(
        "unknown: the model's windows (0.998 s) are shorter than the 1 s of sound a verdict needs"
    )
    assert seen[64]["label"] != "unknown", seen[64]  # 1.46 s windows: judged


def test_too_short_and_too_quiet_are_unknown(real_registry: plugins_mod.Registry) -> None:
    """0.4 s of sound (a clean flute note, then silence) and a tone at -55 dBFS: "unknown", with
    the reason, never a confident verdict on too little evidence."""
    y = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=SR)
    short = np.zeros(4 * SR, np.float32)
    short[SR : SR + int(0.4 * SR)] = y[: int(0.4 * SR)] * np.hanning(int(0.4 * SR))
    c = analyze(short, SR, registry=real_registry).extras["condition"]
    assert c["label"] == "unknown" and c["reason"] == "too_short", c
    assert all(v == 0.0 for v in c["probabilities"].values()) and "too little sound" in c["explanation"]
    # the words the command line's summary, the app and the PDF all write (an audit: the CLI
    # said "unknown (too short)" where the page said "too little sound to judge")
    assert (c["label_text"], c["reason_text"]) == ("unknown", "too little sound to judge")
    from instrunet_app.service import condition_text

    from instrunet_core.cli import summarize_extra

    assert summarize_extra("condition", c).startswith("condition: unknown (too little sound to judge)")
    assert [stream_mod.LABEL_TEXT[k] for k in clf_mod.CLASSES] == [condition_text(k) for k in clf_mod.CLASSES]
    quiet = y[: 6 * SR] / np.sqrt(np.mean(y[: 6 * SR] ** 2)) * 10 ** (-55 / 20)
    c = analyze(quiet.astype(np.float32), SR, registry=real_registry).extras["condition"]
    assert c["label"] == "unknown" and c["reason"] == "too_quiet", c
    louder = analyze((quiet * 10 ** (15 / 20)).astype(np.float32), SR, registry=real_registry).extras[
        "condition"
    ]
    assert louder["label"] != "unknown"  # the same sound, 15 dB up, is judged
    assert louder["reason_text"] is None and louder["label_text"]  # keys of every verdict (a docs audit)


def test_long_file_is_sampled_in_bounded_memory(real_registry: plugins_mod.Registry) -> None:
    """Ten minutes of the real ensemble through ``analyze``: a sample of the classifier's windows is
    judged (about FILE_WINDOWS, plus each instrument's first windows), the audio kept waiting for
    windows stays far below the file, and the clean render stays healthy."""
    y = load_audio(str(EXAMPLES / "ensemble.flac"), None, target_sr=SR)
    long = np.resize(y, 600 * SR).astype(np.float32)
    a = analyze(long, SR, registry=real_registry)
    c = a.extras["condition"]
    sp = c["sampling"]
    n_labels = len(a.instruments)
    assert sp["windows"] == len(a.timeline) > 300
    assert (
        stream_mod.FILE_WINDOWS
        <= sp["judged"]
        <= stream_mod.FILE_WINDOWS + n_labels * stream_mod.LABEL_WINDOWS
    )
    assert sp["stride"] >= 10 and sp["buffer_seconds"] <= stream_mod.MAX_BUFFER_SECONDS < 600 / 3
    assert c["label"] == "healthy", c["explanation"]


def test_windows_that_arrive_late_keep_their_audio(
    real_registry: plugins_mod.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A condition audit (2026-12-06): with ``--hop 5`` or ``batch_size=64`` windows reached the
    analyzer minutes after their audio, which a fixed 180 s buffer had dropped: a file whose
    first half was noisy came out "healthy 0.94" from its second half, saying nothing. The
    analyzer keeps the lag the classifier announces (``context.lag_seconds``); windows lost
    nevertheless are said in the explanation."""
    from instrunet_core import Classifier

    monkeypatch.setattr(stream_mod, "MAX_BUFFER_SECONDS", 20.0)  # the same case in a 90 s file
    y = load_audio(str(EXAMPLES / "ensemble.flac"), None, target_sr=SR)
    long = np.resize(y, 90 * SR).astype(np.float32)
    c = analyze(long, SR, registry=real_registry, batch_size=64).extras["condition"]
    assert c["sampling"]["skipped"]["lost"] == 0 and c["sampling"]["buffer_seconds"] > 60
    assert c["label"] != "unknown" and "not judged" not in c["explanation"]
    assert Classifier("family", batch_size=64, workers=1).lag_seconds > 64 * 1.5
    # a classifier that announces no lag: the windows whose audio went are said
    monkeypatch.setattr(Classifier, "lag_seconds", property(lambda self: 0.0))
    c = analyze(long, SR, registry=real_registry, batch_size=64).extras["condition"]
    lost = c["sampling"]["skipped"]["lost"]
    assert lost > 0 and c["label"] != "unknown"
    assert (
        f"; {lost} of {c['sampling']['windows']} windows were not judged (the analysis fell behind"
        in (c["explanation"])
    )


def _fake_context(labels: tuple[str, ...], expected: float | None) -> SimpleNamespace:
    return SimpleNamespace(
        sample_rate=SR,
        labels=labels,
        thresholds=dict.fromkeys(labels, 0.5),
        hop_seconds=65 * 512 / SR,
        window_seconds=65024 / SR,
        expected_duration=expected,
        instruments=[],
    )


def _fake_pass(
    st: stream_mod.ConditionStream,
    seconds: float,
    probs: np.ndarray,
    lag_windows: int = 40,
    label: str = "x",
) -> None:
    """Blocks of 20 s of a real note repeated, and windows arriving ``lag_windows`` behind, as
    the classifier's pipeline delivers them."""
    from instrunet_core.analysis import WindowResult

    note = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=SR)[: 3 * SR]
    hop = 65 * 512
    total = int(seconds * SR)
    pushed, k, block = 0, 0, 20 * SR
    while pushed < total or k * hop + 65024 <= total:
        if pushed < total:
            n = min(block, total - pushed)
            st.push(np.resize(note, n).astype(np.float32), pushed)
            pushed += n
        ready = []
        while k * hop + 65024 <= pushed - (lag_windows * hop if pushed < total else 0):
            ready.append(
                WindowResult(k, k * hop / SR, (k * hop + 65024) / SR, probs, -20.0, False, label, 65024)
            )
            k += 1
        st.windows(ready)
        assert st._kept <= (block + (lag_windows + 3) * hop), st._kept / SR  # bounded by the lag


def test_stream_sampling_mixing_and_memory() -> None:
    labels = ("brass", "flute", "guitar", "keyboard")
    one = np.array([0.1, 0.9, 0.1, 0.1], np.float32)
    st = stream_mod.ConditionStream(_fake_context(labels, 600.0))
    _fake_pass(st, 600.0, one)
    # about FILE_WINDOWS for the file, plus each label's first windows; never the whole file
    assert (
        stream_mod.FILE_WINDOWS <= len(st.sampled) <= stream_mod.FILE_WINDOWS + stream_mod.LABEL_WINDOWS + 1
    )
    assert st.windows_seen == (600 * SR - 65024) // (65 * 512) + 1
    lag_bound = (2 * 20 * SR + 43 * 65 * 512) / SR  # two blocks and the windows' lag, whatever the length
    assert st.peak_buffer_seconds <= lag_bound
    # duration unknown: the stride doubles, later windows weigh more; still bounded
    st2 = stream_mod.ConditionStream(_fake_context(labels, None))
    _fake_pass(st2, 900.0, one)
    assert len(st2.sampled) <= 4 * stream_mod.FILE_WINDOWS and st2.stride > 2
    assert st2.sampled[-1].weight > st2.sampled[0].weight and st2.peak_buffer_seconds <= lag_bound
    out = st2.finish(SimpleNamespace(instruments=[]))
    assert out["label"] in clf_mod.CLASSES and out["sampling"]["judged"] == len(st2.sampled)
    # four labels at once everywhere: too mixed to judge
    st3 = stream_mod.ConditionStream(_fake_context(labels, 60.0))
    _fake_pass(st3, 60.0, np.full(4, 0.9, np.float32))
    out = st3.finish(SimpleNamespace(instruments=[]))
    assert out["label"] == "unknown" and out["reason"] == "too_mixed" and not st3.sampled
    # an open-set classifier's "other" (none of its labels): judged with no family input
    st4 = stream_mod.ConditionStream(_fake_context(labels, 60.0))
    _fake_pass(st4, 60.0, one, label="other")
    assert st4.sampled and all(w.leading is None for w in st4.sampled)
    assert all(w.leading == "flute" for w in st.sampled)
    assert st4.finish(SimpleNamespace(instruments=[]))["label"] in clf_mod.CLASSES


def test_explanations_cite_what_drove_the_verdict(flute: np.ndarray) -> None:
    """The cited features are the ones whose clean value changes the verdict's log-odds most
    (checked by recomputing it), quoted with their clean range; "healthy" never rests on a feature
    outside its clean range, and an aged or broken verdict never on one inside it."""
    model = clf_mod.load_condition_model()
    lo, hi = model.reference["healthy"]["low"], model.reference["healthy"]["high"]
    for y in (flute, _noisy(flute, 0.0)):
        rows = [condition_features(y[a : a + 65024], sr=SR) for a in (0, SR // 2)]
        v = clf_mod.assess(
            rows, [1.0, 1.0], families=["flute", "flute"], predict=model.predict, reference=model.reference
        )
        assert v["label"] in v["explanation"].replace(" / ", "_").replace(" ", "_") or v["label"] == "healthy"
        for r in v["reasons"]:
            assert r["clean_range"] == [lo[r["feature"]], hi[r["feature"]]]
            assert f"{r['value']:.3g}" in v["explanation"]
            inside = lo[r["feature"]] <= r["value"] <= hi[r["feature"]]
            assert r["outside_clean_range"] == (not inside)
        if v["label"] == "healthy":
            cited = [r for r in v["reasons"] if not r["outside_clean_range"]]
            assert all(r["effect"] > 0 for r in cited)
        else:
            top = v["reasons"][0]
            j = FEATURE_NAMES.index(top["feature"])
            x = np.stack([feature_vector(r, "flute") for r in rows])
            k = clf_mod.CLASSES.index(v["label"])
            xo = x.copy()
            xo[:, j] = feature_vector(
                {**rows[0], top["feature"]: model.reference["healthy"]["median"][top["feature"]]}
            )[j]

            def logit(q: float) -> float:
                return float(np.log(q / (1 - q)))

            drop = logit(model.predict(x)[:, k].mean()) - logit(model.predict(xo)[:, k].mean())
            assert drop == pytest.approx(top["effect"], abs=2e-3) and drop > clf_mod.MIN_EFFECT
            assert all(r["outside_clean_range"] for r in v["reasons"]), v["reasons"]
    assert (
        clf_mod.assess(rows, [1, 1], predict=model.predict, reference=model.reference)["label"]
        == "broken_noisy"
    )


def test_fused_model_combines_its_spectrogram_network_as_the_manifest_says(flute: np.ndarray) -> None:
    """The shipped model fuses the features' classifier with a CNN on the family classifier's
    log-mel window: ``softmax((a log p_f + (1 - a) log p_s) / T + c)`` with the manifest's numbers;
    without the network's probabilities it is the features' classifier alone."""
    model = clf_mod.load_condition_model()
    fusion = read_manifest(model.path).features["fusion"]
    assert model.spectrogram is not None and tuple(model.spectrogram.labels) == clf_mod.CLASSES
    assert fusion["spectrogram"]["sha256"] == model.spectrogram.manifest.sha256
    a, t, c = fusion["weight"], fusion["temperature"], np.asarray(fusion["offsets"])
    assert 0.0 <= a < 1.0 and t > 0  # the network has a say
    windows = np.stack([flute[:65024], _noisy(flute, 0.0)[:65024]]).astype(np.float32)
    x = np.stack([feature_vector(condition_features(w, sr=SR), "flute") for w in windows])
    spec = model.spectrogram_probabilities(windows)
    assert spec is not None and spec.shape == (2, 3) and np.allclose(spec.sum(1), 1.0, atol=1e-5)
    alone, fused = model.predict(x), model.predict(x, spec)
    z = (a * np.log(alone) + (1 - a) * np.log(spec)) / t + c
    expect = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(fused, expect / expect.sum(1, keepdims=True), atol=1e-5)
    assert spec[1, 2] > spec[0, 2]  # white noise at 0 dB SNR: the network hears it as broken
    assert fused[1].argmax() == 2 and fused[0].argmax() == 0
    with pytest.raises(ValueError, match="spectrogram probabilities"):
        model.predict(x, spec[:1])


def test_the_stream_feeds_its_network_from_the_features_stft(flute: np.ndarray) -> None:
    """The analyzer takes a judged window's STFT once: its features and the spectrogram
    network's input come from it, and the network answers as it does on the window's audio."""
    from instrunet_core.features import power_features, window_features

    y = np.ascontiguousarray(flute[:65024], dtype=np.float32)
    feats, power = features_and_power(y, sr=SR)
    assert feats == condition_features(y, sr=SR)
    assert power is not None and power.dtype == np.float32
    np.testing.assert_allclose(power_features(power), window_features(y), atol=1e-5)
    assert features_and_power(np.zeros(65024, np.float32), sr=SR) == (None, None)

    ctx = SimpleNamespace(
        sample_rate=SR, labels=("flute",), thresholds={}, hop_seconds=1.5, expected_duration=None
    )
    stream = stream_mod.ConditionStream(ctx)
    net = stream.model.spectrogram
    assert net is not None and stream._net_window == net.front_end.window_samples == y.size
    windows = (y, y[:40000], _noisy(y, 0.0).astype(np.float32))
    expected = [net.predict_windows(w[None, :])[0] for w in windows]  # from the window's audio
    calls: list[str] = []

    def counted(name: str) -> Any:
        method = getattr(net, name)
        return lambda x, **kw: calls.append(name) or method(x, **kw)

    net.predict_features, net.predict_windows = counted("predict_features"), counted("predict_windows")
    try:
        for w, want in zip(windows, expected, strict=True):
            f, p = stream._judge(w)
            assert f == condition_features(w, sr=SR) and p is not None
            np.testing.assert_allclose(p, want, atol=1e-5)
    finally:
        del net.predict_features, net.predict_windows  # the class's methods again
        stream.close()
    # whole windows from the features' STFT; a shorter one (the last, padded) the usual way
    assert calls == ["predict_features", "predict_windows", "predict_features"]


def test_judging_leaves_the_hosts_blas_setting_alone(flute: np.ndarray) -> None:
    """The analyzer limited numpy's BLAS to one thread while it judged a window: process-wide,
    so the host's threads were limited too, and a limit the host set meanwhile could be undone.
    Its products are now numpy's own loops (features._dot), and nothing touches the setting."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading

    from instrunet_condition import features as feat_mod

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((130, 1025)).astype(np.float32), rng.standard_normal(1025).astype(np.float32)
    np.testing.assert_allclose(feat_mod._dot(a, b), a @ b, rtol=1e-4, atol=1e-3)
    assert feat_mod._dot(b, b) == pytest.approx(float(b @ b), rel=1e-5)

    ctl = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not ctl.lib_controllers:
        pytest.skip("numpy has no BLAS thread pool here")
    ctx = SimpleNamespace(
        sample_rate=SR, labels=("flute",), thresholds={}, hop_seconds=1.5, expected_duration=None
    )
    stream = stream_mod.ConditionStream(ctx)
    seen: list[set[int]] = []
    real = stream_mod.features_and_power

    def spy(y: np.ndarray, **kw: Any) -> Any:
        seen.append({c.num_threads for c in ctl.lib_controllers})
        out = real(y, **kw)
        seen.append({c.num_threads for c in ctl.lib_controllers})
        return out

    y = np.ascontiguousarray(flute[:65024], dtype=np.float32)
    stream_mod.features_and_power = spy  # type: ignore[assignment]
    try:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            t = threading.Thread(target=stream._judge, args=(y,))  # the analyzer's own thread
            t.start()
            t.join()
            assert seen and all(s == {2} for s in seen)
            assert {c.num_threads for c in ctl.lib_controllers} == {2}
    finally:
        stream_mod.features_and_power = real  # type: ignore[assignment]
        stream.close()


def test_fused_verdicts_cite_the_spectrogram_network_when_it_decides(flute: np.ndarray) -> None:
    model = clf_mod.load_condition_model()
    rows = [condition_features(flute[a : a + 65024], sr=SR) for a in (0, SR // 2)]
    loud = np.array([[0.01, 0.01, 0.98]] * 2, np.float32)  # the network alone says broken
    v = clf_mod.assess(
        rows,
        [1, 1],
        families=["flute"] * 2,
        predict=model.predict,
        reference=model.reference,
        spectrogram=loud,
    )
    alone = clf_mod.assess(
        rows, [1, 1], families=["flute"] * 2, predict=model.predict, reference=model.reference
    )
    assert alone["label"] == "healthy"
    assert v["probabilities"]["broken_noisy"] > alone["probabilities"]["broken_noisy"] + 0.05
    net = [r for r in v["reasons"] if r["feature"] == clf_mod.SPECTROGRAM]
    if v["label"] == "broken_noisy":
        assert (
            net and net[0]["effect"] > 0 and "spectrogram network (broken noisy p=0.98)" in v["explanation"]
        )
    assert all(r["feature"] != clf_mod.SPECTROGRAM for r in alone["reasons"])


def test_a_fusion_naming_another_network_is_refused(tmp_path: Path) -> None:
    import shutil

    from export.artifact import reseal_artifact

    src = clf_mod.load_condition_model()
    net = src.spectrogram.path
    shutil.copytree(net, tmp_path / net.parent.name / net.name)
    dst = tmp_path / "condition" / src.path.name
    shutil.copytree(src.path, dst)
    assert clf_mod.ConditionModel(dst).spectrogram is not None  # a copy beside its network loads
    m = json.loads((dst / "manifest.json").read_text())
    for mutate, msg in [
        (lambda f: f["spectrogram"].update(sha256="0" * 64), "features.fusion names"),
        (lambda f: f.update(weight=1.5), "weight in"),
        (lambda f: f.pop("temperature"), "malformed"),
        (lambda f: f["spectrogram"].update(version="9.9.9"), "9.9.9"),
    ]:
        bad = copy.deepcopy(m)
        mutate(bad["features"]["fusion"])
        bad.pop("manifest_sha256", None)
        (dst / "manifest.json").write_text(json.dumps(bad))
        reseal_artifact(dst)
        with pytest.raises(ModelError, match=msg):
            clf_mod.ConditionModel(dst)


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
    n = len(INPUT_NAMES)
    model = keras.Sequential(
        [
            keras.Input((n,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(tmp_path / "c.keras")
    x = np.random.default_rng(0).normal(size=(40, n)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=x, names=np.asarray(INPUT_NAMES))
    report = {
        "labels": list(clf_mod.CLASSES),
        "model": "condition",
        "version": "9.9.9",
        "features_manifest": {"sample_rate": SR, "reference": {"healthy": {"median": {"hnr_db": 25.0}}}},
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
    assert man.features["names"] == list(INPUT_NAMES) and man.features["sample_rate"] == SR
    c = clf_mod.ConditionModel(folder)
    np.testing.assert_allclose(c.predict(x), np.asarray(model(x, training=False)), atol=1e-5)
    # a features file that does not fit the model is refused, nothing written
    np.savez(tmp_path / "bad.npz", x=x[:, :3], names=np.asarray(INPUT_NAMES[:3]))
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


# ------------------------------------------------------------ a user audit of the explanations (2026-12-06)


def _reference() -> dict:
    return {
        "healthy": {
            "median": {"hnr_db": 20.0, "spectral_flatness": 0.01, "crest_factor_db": 12.0},
            "low": {"hnr_db": 5.0, "spectral_flatness": 0.001, "crest_factor_db": 8.0},
            "high": {"hnr_db": 35.0, "spectral_flatness": 0.3, "crest_factor_db": 18.0},
        },
        "broken_noisy": {"median": {"hnr_db": 2.0, "spectral_flatness": 0.5, "crest_factor_db": 6.0}},
    }


def test_an_aged_or_broken_verdict_rests_only_on_damage_it_can_show() -> None:
    """Noise at 20 dB SNR was "broken" resting on three features inside their clean ranges, white
    noise on an envelope *below* its range: evidence of damage is outside the clean range on the
    damaged side (the class median's), else the sentence says none alone is damaged."""
    feats = {"hnr_db": 1.0, "spectral_flatness": 0.2, "crest_factor_db": 30.0}
    effects = {"hnr_db": 0.5, "spectral_flatness": 2.0, "crest_factor_db": 1.0}
    text, reasons = clf_mod.explain("broken_noisy", 0.9, feats, effects, _reference())
    # flatness (inside) and crest factor (outside, but on the clean side: high) are not evidence
    assert [r["feature"] for r in reasons] == ["hnr_db"] and "spectral flatness" not in text
    assert text.startswith("broken / noisy (p=0.90): the verdict rests most on harmonics-to-noise ratio 1 dB")
    text, reasons = clf_mod.explain(
        "broken_noisy", 0.52, {**feats, "hnr_db": 10.0}, effects, _reference(),
        probabilities={"healthy": 0.46, "moderately_aged": 0.02, "broken_noisy": 0.52},
        window_shares={"healthy": 0.48, "moderately_aged": 0.0, "broken_noisy": 0.52},
    )  # fmt: skip
    assert reasons == [] and "no feature is outside its clean range on the damaged side" in text
    assert "a close call, healthy p=0.46" in text
    assert "the judged windows disagree: 52% broken / noisy, 48% healthy" in text


def test_a_healthy_verdict_names_the_farthest_outweighed_features_first() -> None:
    feats = {"hnr_db": 60.0, "spectral_flatness": 0.01, "crest_factor_db": -10.0}
    text, reasons = clf_mod.explain("healthy", 0.93, feats, {"spectral_flatness": 1.0}, _reference())
    # crest factor is 1.8 range widths below its range, HNR 0.83 above: crest factor first
    assert text.index("crest factor") < text.index("harmonics-to-noise")
    assert [r["feature"] for r in reasons] == ["spectral_flatness", "crest_factor_db", "hnr_db"]


def test_unknown_counts_what_kept_the_windows_out() -> None:
    """A mostly quiet file was "too mixed ... everywhere"; a file of lost windows would have been
    "too mixed" too; condition_of said "too_short" (a remainder) where analyze said "silent"."""
    from instrunet_condition import condition_of
    from instrunet_condition.stream import reason_of, unknown

    assert reason_of({"silent": 4, "too_quiet": 5, "too_mixed": 6}) == "too_mixed"
    assert reason_of({"silent": 3}) == "silent" and reason_of({}) == "silent"
    assert reason_of({"silent": 3, "lost": 2, "too_mixed": 0}) == "lost"
    v = unknown("too_mixed", {"silent": 4, "too_quiet": 5, "too_mixed": 6, "lost": 0})
    assert v["explanation"].endswith("(windows: 6 too mixed, 5 too quiet, 4 silent).")
    assert "everywhere" not in v["explanation"]
    t = np.arange(60 * SR) / SR
    quiet = (10 ** (-70 / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert condition_of(quiet, sr=SR)["reason"] == "silent"


def test_a_band_limited_source_is_not_judged_on_what_it_cannot_hold(tmp_path, real_registry) -> None:
    """An 8 kHz telephone recording was judged on 'flatness above 4 kHz' measured on the
    resampler's leftovers (0.63 to 0.92 by the path taken): those features take their clean
    medians in the verdict, are reported as None, and the explanation says what cannot be judged."""
    import soundfile as sf
    from instrunet_condition import condition_of
    from instrunet_condition.stream import BAND_FEATURES, band_limited

    assert band_limited(8000) and band_limited(8400) and not band_limited(11025) and not band_limited(None)
    sr = 8000
    t = np.arange(8 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    path = tmp_path / "phone.wav"
    sf.write(path, y, sr)
    c = analyze(str(path), registry=real_registry).extras["condition"]
    assert c["label"] != "unknown", c
    assert all(c["features"][k] is None for k in BAND_FEATURES)
    assert "nothing above 4 kHz (its source rate is 8 kHz)" in c["explanation"]
    assert not any(r["feature"] in BAND_FEATURES for r in c["reasons"])
    v = condition_of(y, sr=sr)
    assert v["features"]["hf_flatness"] is None and "nothing above 4 kHz" in v["explanation"]
    # never cited, as evidence or as clean (a review found "flatness above 4 kHz 0.11 ... looks as
    # clean recordings do" in the same sentence that said it cannot be judged)
    from instrunet_condition.classifier import _WORDS

    for verdict in (c, v):
        said = verdict["explanation"].split("; the recording holds nothing above 4 kHz")[0]
        assert not any(_WORDS[k] in said for k in BAND_FEATURES), verdict["explanation"]
    wide = analyze(np.repeat(y, 4), 32000, registry=real_registry).extras[
        "condition"
    ]  # (the same tone at 32 kHz)
    assert wide["features"]["hf_flatness"] is not None and "nothing above 4 kHz" not in wide["explanation"]


def test_a_source_below_the_front_ends_rate_is_judged_within_its_own_band(
    real_registry: plugins_mod.Registry,
) -> None:
    """A condition audit (2026-12-06): white noise at 16 kHz was "healthy (p=0.65): no sign of
    damage": its flatness was measured over the empty band above 8 kHz (every frame's geometric
    mean at the floor), so the explanation cited a noise's flatness as clean. The flatness
    features are measured within the source's band: the feature model sees the noise, and the
    sentence says what lies outside the clean range (the spectrogram network, whose input is
    empty above the band too, still outweighs it: a documented limitation)."""
    import soxr

    rng = np.random.default_rng(3)
    noise = (0.1 * rng.standard_normal(16000 * 8)).astype(np.float32)
    up = soxr.resample(noise, 16000, SR).astype(np.float32)
    window = up[SR : SR + 65024]
    over_all = condition_features(window, sr=SR)
    within = condition_features(window, sr=SR, band_hz=stream_mod.source_band_hz(16000, SR))
    assert over_all is not None and within is not None
    assert over_all["spectral_flatness"] < 0.01 < 0.3 < within["spectral_flatness"]
    assert stream_mod.source_band_hz(22050, SR) is None and stream_mod.source_band_hz(44100, SR) is None
    c = analyze(noise, 16000, registry=real_registry).extras["condition"]
    assert c["features"]["spectral_flatness"] > 0.3, c["features"]
    assert "no sign of damage" not in c["explanation"]
    assert "spectral flatness 0.5" in c["explanation"] and "outside the clean range" in c["explanation"]
    of = instrunet_condition.condition_of(noise, sr=16000)
    assert of["features"]["spectral_flatness"] == pytest.approx(c["features"]["spectral_flatness"], rel=0.2)
    # the clean flute at 16 kHz stays healthy
    y = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=16000)
    assert analyze(y, 16000, registry=real_registry).extras["condition"]["label"] == "healthy"


def test_a_healthy_close_call_does_not_say_no_sign_of_damage() -> None:
    """A condition audit (2026-12-06): "healthy (p=0.53; a close call ...): no sign of damage;
    ... outside the clean range but outweighed: wow 10.2 cents ...; the judged windows
    disagree: 55% moderately aged" contradicted itself."""
    names = FEATURE_NAMES
    reference = {
        "healthy": {
            "low": dict.fromkeys(names, 0.0),
            "high": dict.fromkeys(names, 1.0),
            "median": dict.fromkeys(names, 0.5),
        },
        "moderately_aged": {"median": {**dict.fromkeys(names, 0.5), "wow_cents": 2.0}},
        "broken_noisy": {"median": dict.fromkeys(names, 0.5)},
    }
    feats = dict.fromkeys(names, 0.5)
    effects = {"spectral_flatness": 1.0, "crest_factor_db": 0.8}

    def sentence(p: float, shares: dict[str, float], wow: float) -> str:
        text, _ = clf_mod.explain(
            "healthy",
            p,
            {**feats, "wow_cents": wow},
            effects,
            reference,
            probabilities={"healthy": p, "moderately_aged": 1 - p, "broken_noisy": 0.0},
            window_shares=shares,
        )
        return text

    calm = {"healthy": 0.9, "moderately_aged": 0.1, "broken_noisy": 0.0}
    assert "no sign of damage" in sentence(0.9, calm, 0.5)
    assert "no sign of damage" not in sentence(0.53, calm, 0.5)  # a close call
    split = {"healthy": 0.45, "moderately_aged": 0.55, "broken_noisy": 0.0}
    assert "no sign of damage" not in sentence(0.9, split, 0.5)  # the windows disagree
    assert "no sign of damage" not in sentence(0.9, calm, 3.0)  # wow beyond the clean range, the aged side
    assert "no sign of damage" in sentence(0.9, calm, -1.0)  # beyond it on the clean side: no sign


def test_a_quiet_note_through_analyze_gets_condition_ofs_reason() -> None:
    """A condition audit (2026-12-06): a flute at -62 dBFS RMS whose peaks pass -60 dBFS was
    "silent" through analyze (the window's level) but "too_short" through condition_of."""
    y = load_audio(str(EXAMPLES / "solo_flute.wav"), None, target_sr=SR)[: 8 * SR]
    quiet = (y / np.sqrt(np.mean(y**2)) * 10 ** (-62 / 20)).astype(np.float32)
    from instrunet_core import registry as reg_mod

    reg = reg_mod.build_registry(extra_plugins=[("condition", instrunet_condition)])
    via_analyze = analyze(
        quiet, SR, registry=reg, model=str(ROOT / "instrunet_core" / "models" / "family" / "2.1.0")
    )
    a = via_analyze.extras["condition"]
    b = instrunet_condition.condition_of(quiet, sr=SR)
    assert a["label"] == b["label"] == "unknown" and a["reason"] == b["reason"] != "silent"


def test_the_hum_windows_kept_are_few_whatever_the_lengths_met() -> None:
    """A dict kept one Hann window for every stretch length the hum feature met, for the life of
    the process: clips shorter than a window and files' last windows come in any length (500
    analyses of random lengths held 83.5 MB; a long-running host audit). A few are kept now, and
    the feature's values do not depend on which are."""
    from instrunet_condition import features as feat

    rng = np.random.default_rng(3)
    feat._hann_kept.cache_clear()
    xs = [(0.1 * rng.standard_normal(int(n))).astype(np.float32) for n in rng.integers(22050, 65024, size=40)]
    first = [feat._hum_db(x, SR) for x in xs]
    assert feat._hann_kept.cache_info().currsize <= 4
    feat._hann_kept.cache_clear()
    assert [feat._hum_db(x, SR) for x in xs[::-1]] == first[::-1]
    for x in xs[:3]:
        assert np.array_equal(feat._hann(x.size), np.hanning(x.size).astype(np.float32))
    assert not feat._hann(100).flags.writeable  # shared: nobody writes into it
    kept = feat._hann_kept.cache_info()
    assert feat._hann(10 * 65536).size == 10 * 65536  # a whole long clip's window is not kept
    assert feat._hann_kept.cache_info() == kept
