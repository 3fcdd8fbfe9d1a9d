"""Warm start: a Keras model initialised from the shipped family 1.0.0 artifact computes the same
function at inference, and its batch normalisations pass a calibration batch through unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs

from training.warmstart import init_from_onnx

needs("keras", "tensorflow")

ARTIFACT = (
    Path(__file__).resolve().parent.parent / "instrunet_core" / "models" / "family" / "1.0.0" / "model.onnx"
)


@pytest.fixture(scope="module")
def keras() -> Any:
    """Keras on TensorFlow, imported by the tests that use it (not when the suite is collected)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def build_model(*args: Any, **kwargs: Any) -> Any:
    from training.models import build_model

    return build_model(*args, **kwargs)


def test_init_from_onnx_matches_the_artifact_and_calibrates_batch_norm(keras: Any) -> None:
    rng = np.random.default_rng(0)
    calib = rng.random((96, 128, 128), dtype=np.float32)
    model = build_model("default", 8)
    info = init_from_onnx(model, ARTIFACT, calibration=calib)
    assert info["max_abs_diff"] < 1e-4  # checked against onnxruntime inside, reported here
    # In training mode (batch statistics) the calibration batch gives what inference gives.
    flat = next(la for la in model.layers if isinstance(la, keras.layers.Flatten))
    probe = keras.Model(model.inputs, flat.output)
    x = calib[..., None]
    a, b = np.asarray(probe(x, training=False)), np.asarray(probe(x, training=True))
    assert np.abs(a - b).max() <= 1e-3 * max(1.0, float(np.abs(a).max()))


def test_a_different_architecture_is_refused(keras: Any) -> None:
    with pytest.raises(ValueError, match="conv"):
        init_from_onnx(build_model("default", 8, depth=4), ARTIFACT)


def test_the_compact_model_starts_from_its_artifact_with_a_grown_open_set_head(keras: Any) -> None:
    """The compact model's separable blocks: the depthwise convolutions (whose normalisation the
    exporter leaves as per-channel Mul and Add) and the pointwise ones; a ninth output added."""
    compact = ARTIFACT.parents[2] / "family-compact" / "1.0.0" / "model.onnx"
    calib = np.random.default_rng(1).random((64, 128, 128), dtype=np.float32)
    model = build_model("compact", 9)
    info = init_from_onnx(model, compact, calibration=calib)
    assert info["max_abs_diff"] < 1e-4
    depthwise = [la for la in model.layers if isinstance(la, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 4 and all(np.abs(la.get_weights()[0]).max() > 0 for la in depthwise)
    with pytest.raises(ValueError, match="conv"):  # the compact weights do not fit the default model
        init_from_onnx(build_model("default", 8), compact)


def test_an_open_set_artifact_is_compared_on_its_families_and_other(keras: Any) -> None:
    """family-compact 2.0.0 gives its embedding, "other" and the probabilities as three outputs;
    the nine-output Keras model is checked against probabilities then other."""
    artifact = ARTIFACT.parents[2] / "family-compact" / "2.0.0" / "model.onnx"
    model = build_model("compact", 9)
    info = init_from_onnx(
        model, artifact, calibration=np.random.default_rng(2).random((32, 128, 128), np.float32)
    )
    assert info["max_abs_diff"] < 1e-4


def test_a_trained_network_widens_into_one_that_computes_the_same(keras: Any) -> None:
    from training.warmstart import artifact_width
    from training.widen import widen

    artifact = ARTIFACT.parents[2] / "family-compact" / "2.0.0" / "model.onnx"
    assert artifact_width(artifact) == 16 and artifact_width(ARTIFACT) == 16
    narrow = build_model("compact", 9)
    init_from_onnx(narrow, artifact, calibration=np.random.default_rng(3).random((32, 128, 128), np.float32))
    wide = build_model("compact", 9, width=24)
    info = widen(narrow, wide)
    assert info["max_abs_diff"] < 1e-4
    assert info["new_weights"] == wide.count_params() - narrow.count_params() > 0
    x = np.random.default_rng(4).random((6, 128, 128, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(wide(x)), np.asarray(narrow(x)), atol=1e-5)
    # the new channels are there to learn: their own weights are not all zero, and every
    # pointwise kernel keeps the trained one in its leading corner
    first = [la for la in wide.layers if isinstance(la, keras.layers.Conv2D)][0].get_weights()[0]
    assert first.shape[-1] == 24 and np.abs(first[..., 16:]).max() > 0
    # the default architecture widens the same way (five plain conv blocks)
    d_narrow, d_wide = build_model("default", 8), build_model("default", 8, width=24)
    init_from_onnx(d_narrow, ARTIFACT)
    assert widen(d_narrow, d_wide)["max_abs_diff"] < 1e-4


def test_widening_refuses_another_architecture_or_a_narrower_one(keras: Any) -> None:
    from training.widen import widen

    with pytest.raises(ValueError, match="architecture"):
        widen(build_model("compact", 9), build_model("default", 9))
    with pytest.raises(ValueError, match="cannot widen"):
        widen(build_model("compact", 9, width=24), build_model("compact", 9))


def test_the_bias_ceiling_holds_the_family_biases_through_training(keras: Any) -> None:
    """``--bias-ceiling``: the eight family biases start at or below logit(P) and stay there while
    training pushes every output up; the ninth ("other") bias trains freely. A window whose last
    hidden layer is silent then answers at most P for every family."""
    from training.models import OUTPUT_NAME
    from training.train import _BiasCeiling, family_bias_ceiling

    model = build_model("compact", 9)
    layer = model.get_layer(OUTPUT_NAME)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, 0.5)])  # every family above the ceiling
    cap = float(np.log(0.05 / 0.95))
    callback = _BiasCeiling(model, 0.05)  # clamps at once
    assert np.all(layer.get_weights()[1][:8] <= cap + 1e-6) and layer.get_weights()[1][8] == 0.5
    rng = np.random.default_rng(0)
    x = rng.random((32, 128, 128, 1), dtype=np.float32)
    y = np.ones((32, 9), np.float32)  # every output pushed up
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="binary_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    trained = layer.get_weights()[1]
    assert np.all(trained[:8] <= cap + 1e-6)
    assert trained[8] > 0.5  # "other" is not held
    silent = 1.0 / (1.0 + np.exp(-trained[:8]))  # the answer of a silent hidden layer
    assert np.all(silent <= 0.05 + 1e-6)
    with pytest.raises(ValueError, match="bias ceiling"):
        family_bias_ceiling(model, 1.0)
