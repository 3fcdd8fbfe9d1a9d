"""YAMNet rebuilt in Keras 3: the front end as fixed matrices, the MobileNetV1 backbone, the
weights read from the pinned SavedModel, and the fine-tunable "large" model of issue 21.

The architecture follows Google's published YAMNet (``yamnet.py``, ``params.py``,
``features.py`` in tensorflow/models, Apache-2.0), read as a reference:

* front end: magnitude STFT (periodic Hann, 25 ms window, 10 ms hop, FFT the next power of
  two, frames from sample 0, no centring), projected on 64 HTK-mel bands 125-7500 Hz
  (``tf.signal.linear_to_mel_weight_matrix``), ``log(mel + 0.001)``, patches of 96 frames
  every 48 frames;
* backbone: one 3x3 convolution and 13 depthwise-separable blocks (every convolution without
  bias, followed by batch normalisation with a shift but no scale, epsilon 1e-4, and ReLU),
  global average pooling to the 1024-d embedding, a dense layer to 521 AudioSet logits,
  sigmoid.

:class:`LogMelPatches` computes the front end for a fixed number of samples at any rate with
plain reshapes, slices and one matrix product per frame (the DFT restricted to the FFT bins
that the mel bands use), so that tf2onnx exports it and onnxruntime runs it without STFT or
FFT operators. At 16 kHz it reproduces the SavedModel's own log-mel spectrogram; at
22,050 Hz (the project's rate, :data:`YAMNET_22K`) the window is 551 samples (24.99 ms), the
hop 220 (9.98 ms) and the FFT 1024, and one 2.949 s project window (65,024 samples) gives 294
frames and 5 patches.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from .weights import N_CLASSES, TEACHER_RATE, TeacherError, saved_model_dir, verify_saved_model

__all__ = [
    "FrontEndParams",
    "YAMNET_16K",
    "YAMNET_22K",
    "EMBEDDING_SIZE",
    "BLOCKS",
    "LogMelPatches",
    "FoldPatches",
    "backbone",
    "load_savedmodel",
    "savedmodel_variables",
    "load_yamnet_weights",
    "large_model",
    "set_trainable_blocks",
]

EMBEDDING_SIZE = 1024
PATCH_FRAMES = 96
PATCH_HOP = 48
MEL_BANDS = 64
#: (kind, stride, filters) of YAMNet's 14 blocks, ``layer1`` .. ``layer14``.
BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("conv", 2, 32),
    ("separable", 1, 64),
    ("separable", 2, 128),
    ("separable", 1, 128),
    ("separable", 2, 256),
    ("separable", 1, 256),
    ("separable", 2, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 2, 1024),
    ("separable", 1, 1024),
)
_BN_EPSILON = 1e-4


@dataclasses.dataclass(frozen=True)
class FrontEndParams:
    """YAMNet-style log-mel patches at one sample rate.

    ``scale`` multiplies the magnitude spectrum before the mel projection (1 = none): a
    25 ms window holds more samples at a higher rate, so the same sound has a larger
    magnitude there; ``scale`` can undo that (see docs/teacher.md for what it changes).
    """

    sample_rate: int
    win: int
    hop: int
    n_fft: int
    n_mels: int = MEL_BANDS
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.001
    patch_frames: int = PATCH_FRAMES
    patch_hop: int = PATCH_HOP
    scale: float = 1.0

    @classmethod
    def at(cls, sample_rate: int, *, scale: float = 1.0) -> FrontEndParams:
        win = int(round(sample_rate * 0.025))
        hop = int(round(sample_rate * 0.010))
        n_fft = 2 ** math.ceil(math.log2(win))
        return cls(sample_rate, win, hop, n_fft, scale=scale)

    def frames(self, n_samples: int) -> int:
        return 0 if n_samples < self.win else 1 + (n_samples - self.win) // self.hop

    def patches(self, n_samples: int) -> int:
        f = self.frames(n_samples)
        return 0 if f < self.patch_frames else 1 + (f - self.patch_frames) // self.patch_hop


YAMNET_16K = FrontEndParams.at(TEACHER_RATE)
YAMNET_22K = FrontEndParams.at(22050)


def _mel_matrix(p: FrontEndParams) -> np.ndarray:
    """TensorFlow's ``linear_to_mel_weight_matrix`` (what the SavedModel uses), ``[bins, n_mels]``."""
    import tensorflow as tf

    m = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=p.n_mels,
        num_spectrogram_bins=p.n_fft // 2 + 1,
        sample_rate=float(p.sample_rate),
        lower_edge_hertz=p.fmin,
        upper_edge_hertz=p.fmax,
    )
    return np.asarray(m, dtype=np.float64)


def _dft_matrices(p: FrontEndParams) -> tuple[np.ndarray, np.ndarray]:
    """``(dft [win, 2 * nb], mel [nb, n_mels])`` over the FFT bins the mel bands use.

    The periodic Hann window is folded into the DFT rows; columns ``:nb`` give the real parts,
    ``nb:`` the imaginary parts, of bins ``b0 .. b0 + nb - 1``.
    """
    mel = _mel_matrix(p)
    used = np.flatnonzero(np.abs(mel).sum(axis=1) > 0)
    b0, b1 = int(used[0]), int(used[-1]) + 1
    n = np.arange(p.win)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / p.win)
    k = np.arange(b0, b1)
    phase = 2 * np.pi * np.outer(n, k) / p.n_fft
    dft = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1) * window[:, None] * p.scale
    return dft.astype(np.float32), mel[b0:b1].astype(np.float32)


@keras.saving.register_keras_serializable(package="instrunet_teacher")
class LogMelPatches(keras.layers.Layer):
    """Samples ``[batch, window_samples]`` → log-mel patches ``[batch, P, 96, 64]``.

    Framing without a gather: the signal (zero-padded by less than one hop) is reshaped
    into hop-sized blocks and each frame is the concatenation of ``ceil(win / hop)``
    consecutive blocks, cut to ``win`` samples. Patches are built the same way from
    48-frame blocks of the spectrogram.
    """

    def __init__(self, sample_rate: int, window_samples: int, scale: float = 1.0, **kw: Any) -> None:
        kw["trainable"] = False  # fixed matrices (also when loaded from a saved config)
        super().__init__(**kw)
        self.p = FrontEndParams.at(int(sample_rate), scale=float(scale))
        self.window_samples = int(window_samples)
        self.n_frames = self.p.frames(self.window_samples)
        self.n_patches = self.p.patches(self.window_samples)
        if self.n_patches < 1:
            raise ValueError(f"{window_samples} samples at {sample_rate} Hz make no 0.96 s patch")
        if self.p.patch_frames != 2 * self.p.patch_hop:
            raise ValueError("patches are built from two blocks of patch_hop frames")
        dft, mel = _dft_matrices(self.p)
        self.dft = self.add_weight(
            name="dft", shape=dft.shape, initializer=keras.initializers.Constant(dft), trainable=False
        )
        self.mel = self.add_weight(
            name="mel", shape=mel.shape, initializer=keras.initializers.Constant(mel), trainable=False
        )
        self.nb = mel.shape[0]

    def call(self, x: Any) -> Any:
        p, f = self.p, self.n_frames
        k = -(-p.win // p.hop)
        need = (f + k - 1) * p.hop
        x = (
            x[:, :need]
            if need <= self.window_samples
            else ops.pad(x, [[0, 0], [0, need - self.window_samples]])
        )
        blocks = ops.reshape(x, (-1, f + k - 1, p.hop))
        frames = ops.concatenate([blocks[:, j : j + f] for j in range(k)], axis=-1)[:, :, : p.win]
        spec = ops.matmul(frames, self.dft)
        re, im = spec[..., : self.nb], spec[..., self.nb :]
        mag = ops.sqrt(re * re + im * im)
        logmel = ops.log(ops.matmul(mag, self.mel) + p.log_offset)
        n = self.n_patches
        half = ops.reshape(logmel[:, : (n + 1) * p.patch_hop], (-1, n + 1, p.patch_hop, p.n_mels))
        return ops.concatenate([half[:, :-1], half[:, 1:]], axis=2)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.n_patches, self.p.patch_frames, self.p.n_mels)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "sample_rate": self.p.sample_rate,
            "window_samples": self.window_samples,
            "scale": self.p.scale,
        }


@keras.saving.register_keras_serializable(package="instrunet_teacher")
class FoldPatches(keras.layers.Layer):
    """``[batch, P, ...]`` → ``[batch * P, ...]`` (and back with ``unfold=P``)."""

    def __init__(self, unfold: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.unfold = int(unfold)

    def call(self, x: Any) -> Any:
        shape = tuple(x.shape)
        if self.unfold:
            return ops.reshape(x, (-1, self.unfold, *shape[1:]))
        return ops.reshape(x, (-1, *shape[2:]))

    def compute_output_shape(self, s: Any) -> tuple[Any, ...]:
        return (None, self.unfold, *s[1:]) if self.unfold else (None, *s[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "unfold": self.unfold}


@keras.saving.register_keras_serializable(package="instrunet_teacher")
class PeakNormalise(keras.layers.Layer):
    """Each window scaled to peak ``peak`` (windows quieter than ``floor`` peak are scaled as if
    at the floor): the large model hears a quiet take like a loud one, as the log-mel models
    do through their per-window dB reference."""

    def __init__(self, peak: float = 0.9, floor: float = 1e-4, **kw: Any) -> None:
        kw["trainable"] = False
        super().__init__(**kw)
        self.peak, self.floor = float(peak), float(floor)

    def call(self, x: Any) -> Any:
        m = ops.max(ops.abs(x), axis=-1, keepdims=True)
        return x * (self.peak / ops.maximum(m, self.floor))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "peak": self.peak, "floor": self.floor}


def _bn(name: str) -> Any:
    return keras.layers.BatchNormalization(center=True, scale=False, epsilon=_BN_EPSILON, name=name)


def backbone(*, name: str = "yamnet") -> Any:
    """Patches ``[batch, 96, 64]`` → ``{"scores": [batch, 521], "embeddings": [batch, 1024]}``.

    Layer names follow the SavedModel's variables with ``/`` written ``_`` (Keras 3 forbids
    ``/``): ``layer3_depthwise_conv``, ``layer3_depthwise_conv_bn``, ..., ``logits``.
    """
    L = keras.layers
    x_in = keras.Input((PATCH_FRAMES, MEL_BANDS), name="patches")
    x = L.Reshape((PATCH_FRAMES, MEL_BANDS, 1), name="reshape")(x_in)
    for i, (kind, stride, filters) in enumerate(BLOCKS, start=1):
        s = f"layer{i}"
        if kind == "conv":
            x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{s}_conv")(x)
            x = L.ReLU(name=f"{s}_relu")(_bn(f"{s}_conv_bn")(x))
            continue
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{s}_depthwise_conv")(
            x
        )
        x = L.ReLU(name=f"{s}_depthwise_conv_relu")(_bn(f"{s}_depthwise_conv_bn")(x))
        x = L.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{s}_pointwise_conv")(x)
        x = L.ReLU(name=f"{s}_pointwise_conv_relu")(_bn(f"{s}_pointwise_conv_bn")(x))
    emb = L.GlobalAveragePooling2D(name="embeddings")(x)
    logits = L.Dense(N_CLASSES, name="logits")(emb)
    scores = L.Activation("sigmoid", name="scores")(logits)
    return keras.Model(x_in, {"scores": scores, "embeddings": emb}, name=name)


def load_savedmodel(cache: Path | None = None) -> Any:
    """The SavedModel's YAMNet module (TensorFlow), after checking every file against its pin.

    The returned object is callable on a 16 kHz waveform ``[n]`` and returns
    ``(scores [P, 521], embeddings [P, 1024], log_mel [F, 64])`` (the published signature).
    """
    import tensorflow as tf

    folder = saved_model_dir(cache)
    verify_saved_model(folder)
    outer = tf.saved_model.load(str(folder))
    try:
        module = getattr(outer, "layer-1").layer._func
    except AttributeError:
        raise TeacherError(f"{folder}: the YAMNet module is not where the pinned SavedModel has it") from None
    module._outer = outer  # keep the loaded object (and its variables) alive with the module
    return module


def savedmodel_variables(module: Any) -> dict[str, np.ndarray]:
    """``{variable name: value}`` of YAMNet in the SavedModel (``layer1/conv/kernel``, ...)."""
    out = {v.name.removesuffix(":0"): v.numpy() for v in module._yamnet.variables}
    if len(out) != len(module._yamnet.variables):
        raise TeacherError("the SavedModel has two YAMNet variables with one name")
    return out


def _tf_scope(layer_name: str) -> str:
    """Keras layer name → the SavedModel's variable scope (``layer2_depthwise_conv_bn`` →
    ``layer2/depthwise_conv/bn``, ``logits`` → ``dense``)."""
    if layer_name == "logits":
        return "dense"
    m = re.fullmatch(r"(layer\d+)_(conv|depthwise_conv|pointwise_conv)(_bn)?", layer_name)
    if m is None:
        raise TeacherError(f"Keras layer {layer_name!r} has weights but no SavedModel scope")
    return f"{m[1]}/{m[2]}" + ("/bn" if m[3] else "")


def load_yamnet_weights(model: Any, variables: dict[str, np.ndarray]) -> list[str]:
    """Copy SavedModel variables into the Keras backbone ``model`` by name; returns the names used.

    Every backbone weight must find its variable with the same shape, and every variable must
    be used, or :class:`TeacherError` says which did not.
    """
    used: list[str] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        src = _tf_scope(layer.name)
        values = []
        for w in layer.weights:
            leaf = w.name.split("/")[-1]
            if layer.name.endswith("depthwise_conv") and leaf == "kernel":
                leaf = "depthwise_kernel"
            key = f"{src}/{leaf}"
            if key not in variables:
                raise TeacherError(f"Keras weight {layer.name}/{w.name}: no SavedModel variable {key}")
            if tuple(variables[key].shape) != tuple(w.shape):
                raise TeacherError(f"{key}: shape {variables[key].shape} is not the Keras {tuple(w.shape)}")
            values.append(variables[key])
            used.append(key)
        layer.set_weights(values)
    unused = sorted(set(variables) - set(used))
    if unused:
        raise TeacherError(f"SavedModel variables the Keras port did not use: {unused[:8]}")
    return used


def large_model(
    n_outputs: int = 9,
    *,
    variables: dict[str, np.ndarray] | None = None,
    cache: Path | None = None,
    sample_rate: int = 22050,
    window_samples: int = 65024,
    scale: float = 0.5,
    dropout: float = 0.2,
    pooling: str = "mean",
    name: str = "yamnet_large",
) -> Any:
    """Our window → YAMNet front end → backbone (YAMNet weights) → pooled embedding → sigmoid head.

    Parameters
    ----------
    n_outputs : int
        Head width (default 9: the eight families and "none of the eight").
    variables : dict, optional
        SavedModel variables (:func:`savedmodel_variables`); read from the pinned SavedModel
        (needs TensorFlow) when not given.
    sample_rate, window_samples : int
        The input: one project window (65,024 samples at 22,050 Hz by default).
    scale : float
        Magnitude scale of the front end (:class:`FrontEndParams`); 0.5 brought the 22,050 Hz
        path closest to the original 16 kHz one (docs/teacher.md).
    pooling : {"mean", "max"}
        How the patches' embeddings become one per window.

    Returns
    -------
    keras.Model
        Input ``audio [batch, window_samples]``, output ``probabilities [batch, n_outputs]``.
        The backbone is the nested model ``yamnet`` (see :func:`set_trainable_blocks`).
    """
    L = keras.layers
    if variables is None:
        variables = savedmodel_variables(load_savedmodel(cache))
    core = backbone()
    load_yamnet_weights(core, variables)
    emb_model = keras.Model(core.input, core.get_layer("embeddings").output, name="yamnet")
    audio = keras.Input((window_samples,), name="audio")
    fe = LogMelPatches(sample_rate, window_samples, scale, name="logmel_patches")
    patches = fe(audio)
    flat = FoldPatches(name="fold")(patches)
    emb = FoldPatches(unfold=fe.n_patches, name="unfold")(emb_model(flat))
    if pooling == "mean":
        pooled = L.GlobalAveragePooling1D(name="pool")(emb)
    elif pooling == "max":
        pooled = L.GlobalMaxPooling1D(name="pool")(emb)
    else:
        raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
    if dropout:
        pooled = L.Dropout(dropout, name="dropout")(pooled)
    out = L.Dense(n_outputs, activation="sigmoid", name="probabilities")(pooled)
    return keras.Model(audio, out, name=name)


def set_trainable_blocks(model: Any, n_blocks: int | None) -> int:
    """Make only the last ``n_blocks`` of YAMNet's 14 blocks (and the head) trainable.

    ``None`` makes the whole backbone trainable. Frozen blocks' batch normalisations run on
    their moving statistics (Keras 3 does so for a layer with ``trainable=False``). Returns
    the number of trainable weights.
    """
    core = model.get_layer("yamnet")
    core.trainable = True
    first = 1 if n_blocks is None else len(BLOCKS) - int(n_blocks) + 1
    for layer in core.layers:
        if layer.name.startswith("layer"):
            block = int(layer.name[5:].split("_", 1)[0])
            layer.trainable = block >= first
    return len(model.trainable_weights)
