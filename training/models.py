"""Keras definitions of the family models (TensorFlow backend).

* ``baseline`` - the seed's Milestone 2 shape: two conv blocks, softmax.
* ``seed_v3``  - the seed's final model, kept as a reference: Conv 32-64-128 (3x3, ReLU,
  2x2 max-pool each), Flatten, Dense 256 ReLU, Dropout 0.5, softmax (about 8.5 M weights,
  most of them in the Dense layer after Flatten).
* ``default``  - ours: five small conv blocks with batch normalisation (16-32-64-128 channels
  with 2x2 pooling, then 256 channels on the 8x8 map), then statistics pooled over *time
  only* (mean and max), so the frequency layout that carries timbre survives while the model
  stays small (about 1.5 ms per window on one core, docs/models.md); sigmoid outputs so that it can
  say "brass and string" for a mixture (single-note accuracy is the argmax).
* ``compact`` - the same head and outputs on a cheaper body: a 3x3 conv of stride 2
  (16 channels, 128x128 → 64x64), then depthwise-separable blocks (a 3x3 depthwise conv and a
  1x1 pointwise conv, each with batch normalisation and ReLU) of 32-64-128 channels with 2x2
  pooling and 256 channels on the 8x8 map. Measured side by side in one run, in onnxruntime on
  one core with batches of 32: 0.31 ms per window against 1.52 ms for ``default`` (0.41 ms
  with a full-resolution first block instead of the strided one, 0.57 ms for ``default`` at
  half the width); in Keras training on the 2-core CPU 193 vs 156 examples/s (strided vs
  full-resolution first block).

All take ``(128, 128, 1)`` log-mel windows in [0, 1] (mel bands x frames).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from instrunet_core.features import DEFAULT_FRONT_END
from instrunet_core.manifest import INPUT_NAME, OUTPUT_NAME

__all__ = [
    "MODELS",
    "build_model",
    "TASKS",
    "AUDIO_MODELS",
    "EMBEDDING_LAYER",
    "default_channels",
    "check_channels",
]

#: The layer whose activations the runtime returns as the window's embedding (``Model.embed``).
EMBEDDING_LAYER = "embedding"
#: The input window, from the one front end (mel bands x frames).
N_MELS = DEFAULT_FRONT_END.n_mels
FRAMES = DEFAULT_FRONT_END.frames


def _inputs() -> keras.KerasTensor:
    return keras.Input(shape=(N_MELS, FRAMES, 1), name=INPUT_NAME)


def _softmax_head(x: keras.KerasTensor, n_labels: int, *, dense: int, dropout: float) -> keras.KerasTensor:
    """The seed models' head: Flatten, Dense ReLU, Dropout, softmax outputs."""
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_labels, activation="softmax", name=OUTPUT_NAME)(x)


def baseline(n_labels: int = 8) -> keras.Model:
    """The seed's Milestone 2 baseline: Conv 32 → pool → Conv 64 → pool → Dense 128 → softmax."""
    x = inp = _inputs()
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(4)(x)
    return keras.Model(inp, _softmax_head(x, n_labels, dense=128, dropout=0.3), name="baseline")


def seed_v3(n_labels: int = 8) -> keras.Model:
    """The seed's final model (InstruNet v3)."""
    x = inp = _inputs()
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
    return keras.Model(inp, _softmax_head(x, n_labels, dense=256, dropout=0.5), name="seed_v3")


def _block(
    x: keras.KerasTensor,
    filters: int,
    pool: tuple[int, int] | None,
    *,
    strides: int = 1,
    blur: str = "",
) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    if not pool:
        return x
    return _max_blur_pool(x, blur) if blur else layers.MaxPooling2D(pool)(x)


#: Axes :func:`_max_blur_pool` anti-aliases: the frames (time) axis only, or frames and mel bands.
BLUR_AXES = ("time", "both")


def _max_blur_pool(x: keras.KerasTensor, axes: str = "both") -> keras.KerasTensor:
    """2x2 max-pooling made shift-tolerant (Zhang 2019, "Making convolutional networks
    shift-invariant again"): the max over 2x2, taken at every position along each blurred axis,
    a [1, 2, 1]/4 blur along it, then every second position. Plain max-pooling keeps every second
    position unblurred, so a shift of one STFT frame can change what a window's features are;
    the blur low-passes before the subsampling. ``axes`` "time": only the frames axis (the one
    the window grid shifts; cheaper), "both": frames and mel bands. No weights: a model built
    with it has the weights of one built without."""
    if axes not in BLUR_AXES:
        raise ValueError(f"blur axes: choose from {BLUR_AXES}, got {axes!r}")
    s = (1, 1) if axes == "both" else (2, 1)  # (mel, frames) strides of the max
    k = (2, 2) if axes == "both" else (1, 2)  # the blur's extent
    x = layers.MaxPooling2D(2, strides=s, padding="same")(x)
    x = layers.AveragePooling2D(k, strides=1, padding="same")(x)  # [1, 1]/2 ...
    return layers.AveragePooling2D(k, strides=k)(x)  # ... and [1, 1]/2 again: [1, 2, 1]/4, then every second


def check_channels(channels: tuple[int, ...]) -> tuple[int, ...]:
    """``channels`` if they can be the ``default`` model's blocks (4 or 5 positive numbers)."""
    if len(channels) not in (4, 5) or min(channels) < 1:
        raise ValueError(f"channels: 4 or 5 positive numbers (one per conv block), got {channels}")
    return channels


def default_channels(width: int = 16, depth: int = 5) -> tuple[int, ...]:
    """The ``default`` model's channels per block: ``width``·(1, 2, 4, 8[, 16])."""
    if depth not in (4, 5):
        raise ValueError(f"depth must be 4 or 5, got {depth}")
    return tuple(width * 2**i for i in range(depth))


def default(
    n_labels: int = 8,
    *,
    width: int = 16,
    depth: int = 5,
    dense: int = 128,
    dropout: float = 0.3,
    channels: tuple[int, ...] | None = None,
    blur_pool: str = "",
) -> keras.Model:
    """Our default: conv blocks (BN, ReLU), time-pooled mean+max statistics, sigmoid outputs.

    ``depth`` 4: four blocks of ``width``·(1, 2, 4, 8) channels, each followed by 2x2 max-pooling
    (128x128 → 8x8); ``depth`` 5 adds a fifth block of ``width``·16 channels on the 8x8 map (no
    pooling), more capacity where it is cheap. Channel counts stay multiples of 16, which
    onnxruntime's CPU kernels run much faster than, say, 20 or 24. ``channels`` gives each
    block's channels instead (4 or 5 numbers; ``width`` and ``depth`` are then ignored): the
    shape a pruned model keeps (:mod:`training.prune`). ``blur_pool`` ("time" or "both"):
    each 2x2 max-pooling anti-aliased along those axes (:func:`_max_blur_pool`; the same weights).
    """
    chans = check_channels(tuple(int(c) for c in channels)) if channels else default_channels(width, depth)
    x = inp = _inputs()
    for c in chans[:4]:
        x = _block(x, c, (2, 2), blur=blur_pool)  # → (8 mel, 8 frames, c)
    if len(chans) == 5:
        x = _block(x, chans[4], None)
    # Statistics over time, keep the mel axis: (8, 1, C) mean and max → flatten.
    out = _time_stats_head(x, n_labels, dense=dense, dropout=dropout)
    return keras.Model(inp, out, name="default")


def _separable(x: keras.KerasTensor, filters: int, pool: tuple[int, int] | None) -> keras.KerasTensor:
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return layers.MaxPooling2D(pool)(x) if pool else x


def _time_stats_head(x: keras.KerasTensor, n_labels: int, *, dense: int, dropout: float) -> keras.KerasTensor:
    """Mean and max over the remaining frames (the mel axis is kept), dense, sigmoid outputs."""
    frames_left = int(x.shape[2])
    mean = layers.AveragePooling2D((1, frames_left), name="time_mean")(x)
    peak = layers.MaxPooling2D((1, frames_left), name="time_max")(x)
    x = layers.Concatenate()([mean, peak])
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense, activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_labels, activation="sigmoid", name=OUTPUT_NAME)(x)


def compact(n_labels: int = 8, *, width: int = 16, dense: int = 128, dropout: float = 0.3) -> keras.Model:
    """The fast family model: a 3x3 conv of ``width`` channels and stride 2 (128x128 → 64x64),
    depthwise-separable blocks of ``width``·(2, 4, 8) channels with 2x2 pooling (→ 8x8) and one
    of ``width``·16 channels on the 8x8 map, then the ``default`` model's time-statistics head.
    The stride-2 kernel still covers every input cell (3 > 2), so no mel band is skipped."""
    x = inp = _inputs()
    x = _block(x, width, None, strides=2)
    for i in (1, 2, 3):
        x = _separable(x, width * 2**i, (2, 2))
    x = _separable(x, width * 16, None)
    out = _time_stats_head(x, n_labels, dense=dense, dropout=dropout)
    return keras.Model(inp, out, name="compact")


def large(
    n_labels: int = 9, *, dense: int = 128, dropout: float = 0.3, blocks: int | None = 4, **_: object
) -> keras.Model:
    """The large model: YAMNet (AudioSet, Apache-2.0; :mod:`training.teacher`) on our window.

    Audio ``[batch, 65024]`` at 22,050 Hz → peak-normalised → YAMNet's log-mel patches (five
    0.96 s patches) → its MobileNetV1 backbone with the published weights → mean and max of
    the patches' 1024-d embeddings → dropout → ``embedding`` (``dense`` units, ReLU) →
    dropout → sigmoid outputs. Only the last ``blocks`` of the backbone's 14 blocks (and the
    head) train (``None``: all of it). Needs the prepared teacher (``python -m training.teacher
    prepare``) and TensorFlow.
    """
    from .teacher.keras_port import PeakNormalise, large_model, set_trainable_blocks

    base = large_model(n_outputs=n_labels, pooling="mean", dropout=0.0)
    audio = keras.Input(tuple(base.input_shape[1:]), name="audio")
    x = PeakNormalise(name="peak")(audio)
    for name in ("logmel_patches", "fold", "yamnet", "unfold"):
        x = base.get_layer(name)(x)
    pooled = layers.Concatenate(name="patch_stats")(
        [layers.GlobalAveragePooling1D(name="patch_mean")(x), layers.GlobalMaxPooling1D(name="patch_max")(x)]
    )
    h = layers.Dropout(dropout)(pooled)
    h = layers.Dense(dense, activation="relu", name=EMBEDDING_LAYER)(h)
    h = layers.Dropout(dropout)(h)
    out = layers.Dense(n_labels, activation="sigmoid", name=OUTPUT_NAME)(h)
    model = keras.Model(audio, out, name="large")
    set_trainable_blocks(model, blocks)
    return model


MODELS: dict[str, Callable[..., keras.Model]] = {
    "baseline": baseline,
    "seed_v3": seed_v3,
    "default": default,
    "compact": compact,
    "large": large,
}
#: multiclass → softmax over single notes; multilabel → sigmoid, trained with mixtures.
TASKS: dict[str, str] = {
    "baseline": "multiclass",
    "seed_v3": "multiclass",
    "default": "multilabel",
    "compact": "multilabel",
    "large": "multilabel",
}
#: What each model takes: log-mel windows (the runtime's front end), or window audio.
AUDIO_MODELS = frozenset({"large"})


def build_model(name: str, n_labels: int = 8, **kwargs: object) -> keras.Model:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](n_labels, **kwargs)
