"""Structured pruning: a narrower ``default`` network started from a trained one.

The ``default`` architecture (:func:`training.models.default`) costs about 1.1 ms per window on
one core; most of it is channels, and a network with half the channels after the first block
(16-16-32-64-128 instead of 16-32-64-128-256) runs in about 0.45 ms. Trained from scratch such
a network forgets what the trained one learnt from the real libraries; started from the trained
network's most useful channels it begins close to it and fine-tunes (with the teachers'
targets, :mod:`training.train`).

Which channels are kept, block by block: each output channel of a conv block scores its mean
activation after the block (ReLU and pooling) on a calibration batch of typical windows, times
the norm of the weights that read it in the next layer (the next convolution, or the dense
layer over the time statistics); the highest scores are kept, in their original order. The
kept channels' kernels (over the kept input channels), normalisation parameters and the dense
rows of their time statistics are copied. Then (the default, ``refit=True``) each kept
convolution after the first, and the dense layer over the time statistics, is refitted by ridge
least squares on the calibration batch so that, fed what the pruned layers before it give, it
reproduces what the original layer computed for its kept channels; each normalisation keeps
the original's parameters and statistics, since it sees what the original saw. Without the
refit, the copied weights stay and each normalisation's moving statistics are measured again on
the calibration batch, in order (its inputs lost the pruned channels' contributions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .models import EMBEDDING_LAYER, default

__all__ = ["block_layers", "channel_scores", "prune_default"]


def block_layers(model: Any) -> list[tuple[Any, Any, Any]]:
    """``(conv, batch normalisation, block output)`` per conv block of a ``default`` model, in
    order; the block output is the tensor after its ReLU and pooling."""
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    if len(convs) != len(bns) or len(convs) not in (4, 5):
        raise ValueError(
            f"{model.name}: not a default model ({len(convs)} convolutions, {len(bns)} normalisations)"
        )
    layers = list(model.layers)
    outs = []
    for bn in bns:
        i = layers.index(bn)
        if not isinstance(layers[i + 1], keras.layers.ReLU):
            raise ValueError(f"{model.name}: {bn.name} is not followed by a ReLU")
        last = layers[i + 1]
        if i + 2 < len(layers) and isinstance(layers[i + 2], keras.layers.MaxPooling2D):
            last = layers[i + 2] if layers[i + 2].name != "time_max" else last
        outs.append(last.output)
    return list(zip(convs, bns, outs, strict=True))


def _activations(model: Any, tensors: Sequence[Any], x: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    probe = keras.Model(model.inputs, list(tensors))
    parts: list[list[np.ndarray]] = [[] for _ in tensors]
    for i in range(0, len(x), batch):
        got = probe(x[i : i + batch], training=False)
        got = got if isinstance(got, (list, tuple)) else [got]
        for p, g in zip(parts, got, strict=True):
            p.append(np.asarray(g))
    return [np.concatenate(p) for p in parts]


def _dense_rows(channels: int, bands: int) -> np.ndarray:
    """Row index of (band, statistic, channel) in the dense layer over the time statistics:
    the flattened ``(bands, 1, [mean of channels, max of channels])`` map."""
    return np.arange(bands * 2 * channels).reshape(bands, 2, channels)


def channel_scores(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """Per conv block, one score per output channel (higher: more useful); see the module
    docstring."""
    blocks = block_layers(model)
    acts = _activations(model, [o for _, _, o in blocks], x)
    dense = model.get_layer(EMBEDDING_LAYER)
    scores = []
    for i, a in enumerate(acts):
        mean_act = np.abs(a).mean(axis=(0, 1, 2))
        if i + 1 < len(blocks):
            k = np.asarray(blocks[i + 1][0].kernel)  # [kh, kw, in, out]
            reads = np.sqrt(np.square(k).sum(axis=(0, 1, 3)))
        else:
            w = np.asarray(dense.kernel)  # [bands * 2 * C, units]
            c = a.shape[-1]
            rows = _dense_rows(c, a.shape[1])
            norms = np.sqrt(np.square(w).sum(axis=1))
            reads = norms[rows].transpose(2, 0, 1).reshape(c, -1).sum(axis=1)
        scores.append(mean_act * reads)
    return scores


def prune_default(
    model: Any, channels: Sequence[int], x: np.ndarray, *, refit: bool = True, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """A ``default`` model with ``channels`` per block, started from ``model``'s most useful
    channels (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        A trained ``default`` model (e.g. initialised from an artifact by
        :func:`training.warmstart.init_from_onnx`).
    channels : sequence of int
        The new model's channels per block (as many blocks as ``model``; each at most the
        original's).
    x : np.ndarray [shape=(B, 128, 128, 1)]
        Calibration windows (a few hundred training windows).
    refit : bool
        Refit each kept layer by least squares so that, on ``x``, it reproduces what the
        original layer computed for the kept channels from what the pruned network feeds it
        (:func:`_refit`); otherwise copy the weights and measure the normalisations again.
    seed : int
        Which positions of the calibration maps the least squares sample.

    Returns
    -------
    (keras.Model, dict)
        The pruned model (same outputs and layer names) and what was kept: per block the
        original channel count, the kept indices and the share of the summed score they hold.
    """
    x = np.asarray(x, np.float32)
    x = x[..., None] if x.ndim == 3 else x
    blocks = block_layers(model)
    old = [int(c.filters) for c, _, _ in blocks]
    channels = [int(c) for c in channels]
    if len(channels) != len(old) or any(n > o or n < 1 for n, o in zip(channels, old, strict=True)):
        raise ValueError(f"channels {channels}: one per block, each between 1 and the original {old}")
    denses = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    if denses[0].name != EMBEDDING_LAYER:
        raise ValueError(f"{model.name}: the first dense layer is not {EMBEDDING_LAYER!r}")
    new = default(int(denses[-1].units), channels=tuple(channels), dense=int(denses[0].units))
    scores = channel_scores(model, x)
    keep = [np.sort(np.argsort(-s, kind="stable")[:n]) for s, n in zip(scores, channels, strict=True)]
    new_blocks = block_layers(new)
    prev = np.arange(1)
    for (conv, bn, _), (nconv, nbn, _), k in zip(blocks, new_blocks, keep, strict=True):
        kern = np.asarray(conv.kernel)[:, :, prev][:, :, :, k]
        nconv.set_weights([kern])
        nbn.set_weights([np.asarray(w)[k] for w in bn.get_weights()])
        prev = k
    bands = int(blocks[-1][2].shape[1])
    rows = _dense_rows(old[-1], bands)[:, :, keep[-1]].reshape(-1)
    w, b = (np.asarray(v) for v in denses[0].get_weights())
    ndenses = [la for la in new.layers if isinstance(la, keras.layers.Dense)]
    ndenses[0].set_weights([w[rows], b])
    for src, dst in zip(denses[1:], ndenses[1:], strict=True):
        dst.set_weights([np.asarray(v) for v in src.get_weights()])
    if refit:
        _refit(model, new, x, keep, rng=np.random.default_rng(seed))
    else:  # moving statistics measured again, block by block (earlier blocks already exact)
        for nconv, nbn, _ in new_blocks:
            (act,) = _activations(new, [nconv.output], x)
            gamma, beta, _, _ = nbn.get_weights()
            nbn.set_weights([gamma, beta, act.mean(axis=(0, 1, 2)), act.var(axis=(0, 1, 2))])
    info = {
        "channels_before": old,
        "channels_after": channels,
        "kept": [k.tolist() for k in keep],
        "score_share_kept": [
            float(s[k].sum() / max(s.sum(), 1e-12)) for s, k in zip(scores, keep, strict=True)
        ],
    }
    return new, info


def _patches(a: np.ndarray, idx: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The 3x3 "same"-padded neighbourhoods of ``a`` [N, H, W, C] at positions ``idx`` (n, y,
    x) as rows [len, 9·C], in the order of a Keras kernel ``[kh, kw, in]`` flattened."""
    n, y, x = idx
    p = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return np.stack([p[n, y + dy, x + dx] for dy in range(3) for dx in range(3)], axis=1).reshape(len(n), -1)


def _lstsq(a: np.ndarray, b: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Ridge least squares ``argmin |a w - b|² + ridge·tr(a'a)/cols·|w|²`` in float64."""
    a = a.astype(np.float64)
    g = a.T @ a
    g[np.diag_indices_from(g)] += ridge * np.trace(g) / len(g)
    return np.linalg.solve(g, a.T @ b.astype(np.float64)).astype(np.float32)


def _refit(
    model: Any,
    new: Any,
    x: np.ndarray,
    keep: Sequence[np.ndarray],
    *,
    rng: np.random.Generator,
    rows: int = 60_000,
) -> None:
    """Layer by layer, in order: each convolution of ``new`` (after the first, whose input is
    the window itself) gets the kernel that best reproduces, by least squares over ``rows``
    sampled positions of the calibration maps, the original convolution's output for the kept
    channels from the pruned previous block's output; its normalisation keeps the original's
    parameters and statistics (it sees what the original saw). Then the dense layer over the
    time statistics (the embedding; weights and bias) the same way from the pruned statistics.
    Layers after it are unchanged."""
    old_blocks, new_blocks = block_layers(model), block_layers(new)
    for i in range(1, len(new_blocks)):
        (ref,) = _activations(model, [old_blocks[i][0].output], x)  # the original's conv output
        (inp,) = _activations(new, [new_blocks[i - 1][2]], x)  # what the pruned block feeds it
        n, h, w, _ = inp.shape
        m = min(rows, n * h * w)
        flat = rng.choice(n * h * w, size=m, replace=False)
        idx = np.unravel_index(flat, (n, h, w))
        k = _lstsq(_patches(inp, idx), ref[idx][:, keep[i]])
        conv = new_blocks[i][0]
        conv.set_weights([k.reshape(tuple(conv.kernel.shape))])
    old_d, new_d = model.get_layer(EMBEDDING_LAYER), new.get_layer(EMBEDDING_LAYER)
    (ref,) = _activations(model, [_pre_activation(model, old_d)], x)
    (feat,) = _activations(new, [new_d.input], x)
    a = np.concatenate([feat, np.ones((len(feat), 1), np.float32)], axis=1)
    wb = _lstsq(a, ref, ridge=1e-2)
    new_d.set_weights([wb[:-1], wb[-1]])


def _pre_activation(model: Any, dense: Any) -> Any:
    """``dense``'s output before its activation, as a tensor of ``model``'s graph."""
    return keras.ops.add(keras.ops.matmul(dense.input, dense.kernel), dense.bias)
