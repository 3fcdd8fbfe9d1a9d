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
