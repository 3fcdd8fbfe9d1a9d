"""Anti-aliased max-pooling in the default network (training.models, ``--blur-pool time|both``):
the same weights as plain max-pooling, the max-blur-subsample it claims, less change under a
one-frame shift of real music, and an ONNX export that computes what Keras does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs

needs("keras", "tensorflow")

pytestmark = [pytest.mark.training]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def test_the_same_weights_fit_every_network(keras: Any) -> None:
    from training.models import BLUR_AXES, default

    plain = default(9, channels=(16, 16, 32, 64, 128))
    for axes in BLUR_AXES:
        blur = default(9, channels=(16, 16, 32, 64, 128), blur_pool=axes)
        assert [w.shape for w in blur.get_weights()] == [w.shape for w in plain.get_weights()]
        blur.set_weights(plain.get_weights())  # what --init-keras does
        assert blur.output_shape == plain.output_shape == (None, 9)


def _reference(m: np.ndarray, axes: str) -> np.ndarray:
    """numpy: the max over 2x2 (at every position along the blurred axes, every second along the
    others; windows cut at the end), the [1, 1]/2 mean along the blurred axes twice, the second
    keeping every second position."""
    sh = 1 if axes == "both" else 2
    H, W = m.shape
    mx = np.array([[m[i : i + 2, j : j + 2].max() for j in range(W)] for i in range(0, H, sh)])
    kh = 2 if axes == "both" else 1
    h, w = mx.shape
    avg = np.array([[mx[i : i + kh, j : j + 2].mean() for j in range(w)] for i in range(h)])
    return avg.reshape(h // kh, kh, w // 2, 2).mean(axis=(1, 3))


@pytest.mark.parametrize("axes", ["time", "both"])
def test_max_blur_pool_is_a_max_then_a_binomial_blur_then_every_second(keras: Any, axes: str) -> None:
    from training.models import _max_blur_pool

    inp = keras.Input((8, 12, 1))
    pool = keras.Model(inp, _max_blur_pool(inp, axes))
    x = np.random.default_rng(3).random((1, 8, 12, 1)).astype(np.float32)
    got = pool.predict(x, verbose=0)[0, :, :, 0]
    assert got.shape == (4, 6)  # half the mel bands, half the frames, as plain 2x2 max-pooling
    np.testing.assert_allclose(got, _reference(x[0, :, :, 0], axes), atol=1e-6)


def test_unknown_axes_are_refused(keras: Any) -> None:
    from training.models import _max_blur_pool

    with pytest.raises(ValueError, match="blur axes"):
        _max_blur_pool(keras.Input((8, 8, 1)), "mel")


def test_a_one_frame_shift_of_real_music_changes_blurred_pooling_less(keras: Any) -> None:
    from instrunet_core.audio import load_audio
    from instrunet_core.features import DEFAULT_FRONT_END, batch_features
    from training.models import _max_blur_pool

    fe = DEFAULT_FRONT_END
    inp = keras.Input((fe.n_mels, fe.frames, 1))
    nets = {
        "plain": keras.Model(inp, keras.layers.MaxPooling2D(2)(inp)),
        "time": keras.Model(inp, _max_blur_pool(inp, "time")),
        "both": keras.Model(inp, _max_blur_pool(inp, "both")),
    }
    for name in ("ensemble.flac", "solo_flute.wav"):
        y = load_audio(ROOT / "examples" / name, target_sr=fe.sample_rate)
        # windows one STFT frame apart over the first 40 frames
        x = batch_features(
            np.stack([y[s : s + fe.window_samples] for s in range(0, 40 * fe.hop_length, fe.hop_length)])
        )
        change = {}
        for kind, net in nets.items():
            o = net.predict(x[..., None], verbose=0)
            change[kind] = float(np.abs(np.diff(o, axis=0)).mean() / np.abs(o).mean())
        assert change["time"] < 0.9 * change["plain"] and change["both"] < 0.9 * change["plain"], (
            name,
            change,
        )


def test_the_blurred_network_exports_to_onnx(keras: Any) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from export.convert import to_onnx
    from training.models import default

    model = default(9, channels=(16, 16, 32, 64, 128), blur_pool="time")
    x = np.random.default_rng(1).random((2, 128, 128, 1)).astype(np.float32)
    proto = to_onnx(model)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "default", "--blur-pool", "mel"], "--blur-pool: choose from"),
        (["--model", "compact", "--blur-pool", "time"], "default model only"),
    ],
)
def test_the_training_cli_refuses_blur_pool_where_it_does_not_apply(
    keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from training import train

    with pytest.raises(SystemExit) as e:
        train.main(["--corpus", str(tmp_path), "--out", str(tmp_path / "out"), *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_an_artifact_starts_the_blurred_network_with_its_weights(keras: Any, tmp_path: Path) -> None:
    """``--init-onnx`` with ``--blur-pool`` (training.train.start_model): the artifact's weights,
    as the plain network takes them, in the network whose pooling is anti-aliased."""
    from training.train import Config, start_model

    artifact = ROOT / "instrunet_core" / "models" / "family" / "1.0.0" / "model.onnx"
    x = np.random.default_rng(0).random((96, 128, 128), dtype=np.float32)
    cfg = Config(model="default", corpus=tmp_path, out=tmp_path, init_onnx=artifact)
    plain, init_plain = start_model(cfg, "multilabel", x)
    cfg.blur_pool = "time"
    blurred, init = start_model(cfg, "multilabel", x)
    assert init is not None and init_plain is not None and init["blur_pool"] == "time"
    assert init["max_abs_diff"] < 1e-4  # the artifact was read as before
    assert len(blurred.layers) > len(plain.layers)  # the blur's layers (no weights)
    for a, b in zip(plain.get_weights(), blurred.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the same weights, pooled otherwise: outputs close, not equal
    p, q = plain.predict(x[:8, ..., None], verbose=0), blurred.predict(x[:8, ..., None], verbose=0)
    assert p.shape == q.shape == (8, 8) and 0 < float(np.abs(p - q).max()) < 0.5
