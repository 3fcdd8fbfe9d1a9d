"""Structured pruning (training.prune): a narrower default network started from the shipped
family 2.0.0 network; what it keeps, and that the least-squares refit brings it closer to the
original than copying the kept weights does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs

from instrunet_core.audio import load_audio
from instrunet_core.features import DEFAULT_FRONT_END, batch_features

needs("keras", "tensorflow")

pytestmark = [pytest.mark.training, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "instrunet_core" / "models" / "family" / "2.0.0" / "model.onnx"


@pytest.fixture(scope="module")
def keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    """Model inputs of the bundled examples' windows, every 0.25 s (96 windows of real music)."""
    fe = DEFAULT_FRONT_END
    out = []
    for name in ("ensemble.flac", "solo_flute.wav"):
        y = load_audio(ROOT / "examples" / name, target_sr=fe.sample_rate)
        hop = fe.sample_rate // 4
        starts = range(0, max(1, len(y) - fe.window_samples), hop)
        out.append(batch_features(np.stack([y[s : s + fe.window_samples] for s in starts][:48])))
    return np.concatenate(out)[..., None]


@pytest.fixture(scope="module")
def original(keras: Any, windows: np.ndarray) -> Any:
    from training.models import build_model
    from training.warmstart import init_from_onnx

    model = build_model("default", 9)
    init_from_onnx(model, ARTIFACT, calibration=windows)
    return model


def test_channels_build_the_default_model_block_by_block(keras: Any) -> None:
    from training.models import build_model, default_channels

    assert default_channels(16, 5) == (16, 32, 64, 128, 256)
    assert default_channels(8, 4) == (8, 16, 32, 64)
    m = build_model("default", 9, channels=(16, 16, 32, 64, 128))
    convs = [la.filters for la in m.layers if isinstance(la, keras.layers.Conv2D)]
    assert convs == [16, 16, 32, 64, 128]
    assert m.get_layer("embedding").kernel.shape == (8 * 2 * 128, 128)
    with pytest.raises(ValueError, match="4 or 5"):
        build_model("default", 9, channels=(16, 32, 64))


def test_channels_option_is_parsed_and_checked() -> None:
    from training.train import channels_of

    assert channels_of("16,16,32,64,128") == (16, 16, 32, 64, 128)
    for bad in ("16,x,32,64", "16,32", "16,0,32,64"):
        with pytest.raises(ValueError, match="--channels"):
            channels_of(bad)


def test_keeping_every_channel_reproduces_the_original(original: Any, windows: np.ndarray) -> None:
    from training.prune import prune_default

    same, info = prune_default(original, (16, 32, 64, 128, 256), windows, refit=False)
    assert info["score_share_kept"] == pytest.approx([1.0] * 5)
    a = np.asarray(original(windows, training=False))
    b = np.asarray(same(windows, training=False))
    assert np.abs(a - b).max() < 1e-4


def test_pruning_keeps_the_strongest_channels_and_the_refit_brings_it_closer(
    original: Any, windows: np.ndarray
) -> None:
    from training.prune import channel_scores, prune_default

    channels = (16, 16, 32, 64, 128)
    scores = channel_scores(original, windows)
    copied, info = prune_default(original, channels, windows, refit=False)
    refit, _ = prune_default(original, channels, windows, refit=True)
    for s, kept, n in zip(scores, info["kept"], channels, strict=True):
        assert len(kept) == n and kept == sorted(kept)
        assert s[kept].min() >= np.delete(s, kept).max() if n < len(s) else True
    assert refit.count_params() < 0.45 * original.count_params()
    a = np.asarray(original(windows, training=False))[:, :8]
    err = {
        name: float(np.abs(np.asarray(m(windows, training=False))[:, :8] - a).mean())
        for name, m in (("copied", copied), ("refit", refit))
    }
    assert err["refit"] < 0.7 * err["copied"], err
    assert np.isfinite(np.asarray(refit(windows, training=False))).all()
