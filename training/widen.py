"""Grow a trained network into a wider one of the same architecture, keeping what it computes.

The ``compact`` and ``default`` models scale every block's channels with ``width``. A network
trained at one width starts a wider one (``python -m training.train --init-onnx ARTIFACT
--width W``) this way, layer by layer (function-preserving widening, as in Chen et al. 2016,
"Net2Net", with the new units' outgoing weights at zero instead of split copies):

* each convolution's kernel ``[kh, kw, in, out]`` holds the trained one in
  ``[..., :in_old, :out_old]``; the weights from the new input channels into the old output
  channels are zero, so the old channels compute what they did; the new output channels keep
  the wide layer's fresh initialisation (their outgoing weights, the next layer's, are zero);
* a depthwise kernel ``[kh, kw, C, 1]`` and a batch normalisation keep the trained channels
  first and fresh new ones;
* the embedding layer reads the time-statistics head's flattened ``(mel, 1, [mean C, max C])``
  layout, so each trained row moves to where its mel band and channel now sit, and the rows of
  the new channels are zero;
* the output layer is copied as it is.

The wide network's outputs equal the narrow one's at inference (checked by :func:`widen`); the
new channels only start to matter once training moves their outgoing weights off zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["widen"]


def _grow(old: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """``fresh`` with ``old`` in its leading corner."""
    if old.ndim != fresh.ndim or any(o > f for o, f in zip(old.shape, fresh.shape, strict=True)):
        raise ValueError(f"cannot widen a weight of shape {old.shape} into {fresh.shape}")
    out = np.array(fresh, dtype=np.float32, copy=True)
    out[tuple(slice(0, n) for n in old.shape)] = old
    return out


def _head_rows(n_old: int, n_new: int, c_old: int, c_new: int) -> np.ndarray:
    """Where each row of the narrow embedding kernel goes in the wide one: the flattened
    ``(mel, 1, 2·C)`` statistics, mean channels then max channels per mel band."""
    mels = n_old // (2 * c_old)
    if mels * 2 * c_old != n_old or mels * 2 * c_new != n_new:
        raise ValueError(f"embedding rows {n_old} → {n_new} do not fit channels {c_old} → {c_new}")
    m, j = np.divmod(np.arange(n_old), 2 * c_old)
    return m * 2 * c_new + np.where(j < c_old, j, c_new + (j - c_old))


def widen(narrow: Any, wide: Any, *, atol: float = 1e-4, seed: int = 0) -> dict[str, Any]:
    """Copy the trained ``narrow`` Keras model into ``wide`` (built by the same function with a
    larger ``width``) in place, so that ``wide`` computes what ``narrow`` does.

    Raises
    ------
    ValueError
        When the two are not the same architecture at two widths, or their outputs differ by
        more than ``atol`` on random windows afterwards.
    """
    import keras

    kinds = (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.BatchNormalization,
        keras.layers.Dense,
    )
    a = [la for la in narrow.layers if isinstance(la, kinds)]
    b = [la for la in wide.layers if isinstance(la, kinds)]
    if [type(la) for la in a] != [type(la) for la in b]:
        raise ValueError(f"{narrow.name} and {wide.name} are not the same architecture")
    denses = [i for i, la in enumerate(a) if isinstance(la, keras.layers.Dense)]
    channels = (0, 0)  # the last normalisation's channels before the head: (narrow, wide)
    grown = 0
    for i, (la, lb) in enumerate(zip(a, b, strict=True)):
        old = [np.asarray(w) for w in la.get_weights()]
        fresh = [np.asarray(w) for w in lb.get_weights()]
        if isinstance(la, keras.layers.BatchNormalization):
            channels = (len(old[0]), len(fresh[0]))
            new = [_grow(o, f) for o, f in zip(old, fresh, strict=True)]
        elif isinstance(la, keras.layers.DepthwiseConv2D):
            new = [_grow(old[0], fresh[0])]
        elif isinstance(la, keras.layers.Conv2D):
            k = _grow(old[0], fresh[0])
            k[:, :, old[0].shape[2] :, : old[0].shape[3]] = 0.0  # new inputs → old outputs
            new = [k]
        elif i == denses[0] and old[0].shape[0] != fresh[0].shape[0]:
            k = np.zeros_like(fresh[0], dtype=np.float32)
            cols = old[0].shape[1]
            k[_head_rows(old[0].shape[0], fresh[0].shape[0], *channels), :cols] = old[0]
            k[:, cols:] = fresh[0][:, cols:]
            new = [k, _grow(old[1], fresh[1])]
        else:
            if [w.shape for w in old] != [w.shape for w in fresh]:
                raise ValueError(
                    f"{la.name}: {[w.shape for w in old]} does not fit {[w.shape for w in fresh]}"
                )
            new = old
        if [w.shape for w in new] != [w.shape for w in fresh]:
            raise ValueError(
                f"{lb.name}: widened weights {[w.shape for w in new]} != {[w.shape for w in fresh]}"
            )
        lb.set_weights(new)
        grown += int(sum(w.size for w in fresh) - sum(w.size for w in old))
    x = np.random.default_rng(seed).random((4, *narrow.input_shape[1:]), dtype=np.float32)
    diff = float(np.abs(np.asarray(narrow(x, training=False)) - np.asarray(wide(x, training=False))).max())
    if not diff <= atol:
        raise ValueError(f"the widened model differs from the narrow one by {diff:.2e} (> {atol})")
    return {"max_abs_diff": diff, "new_weights": grown}
