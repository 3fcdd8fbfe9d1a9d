"""Initialise a Keras model from an exported ONNX artifact of the same architecture.

The exporter folds each batch normalisation into the convolution before it, so the ONNX
graph holds, per conv block, a kernel ``[out, in, kh, kw]`` and a bias. Loaded back, the
kernel goes to the Keras convolution (transposed to ``[kh, kw, in, out]``) and the bias to
the batch normalisation, which must compute ``x + bias`` in both of its modes: at inference
(moving statistics) and in training (the batch's statistics). Given a ``calibration`` batch
of typical inputs, each normalisation gets the mean ``m`` and variance ``v`` of its input
over that batch as moving statistics, ``gamma = sqrt(v + eps)`` and ``beta = m + bias``, so
that a training batch like the calibration one passes through unchanged; without one,
``gamma = 1``, mean 0, variance ``1 - eps`` (exact at inference only: the first training
steps would then see differently scaled activations and lose much of what the artifact
knew). Dense layers are copied as they are, except that the last one may have more outputs
than the artifact's (an open-set model grown from an eight-family one): the artifact's columns
are copied and the extra ones keep their fresh initialisation. :func:`init_from_onnx` checks
the result (on the artifact's outputs) against onnxruntime on random windows and refuses a
model that does not match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.convert import OTHER_OUTPUT
from instrunet_core.manifest import OUTPUT_NAME
from instrunet_core.session import RuntimeOptions, onnx_session
from instrunet_core.verify import REFERENCES_ATOL

__all__ = ["init_from_onnx", "artifact_width"]


def _weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray], list[np.ndarray]]:
    """The artifact's convolutions in graph order as ``(kernel, bias)`` with any batch
    normalisation folded in, then its other matrices and vectors (the dense layers').

    The exporter folds a normalisation into the convolution before it (a bias), except after a
    depthwise convolution, where it stays as ``Mul`` and ``Add`` by per-channel constants: the
    ``Mul`` is folded into the kernel here and the ``Add`` becomes the bias.
    """
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def constant_after(out: str, op: str) -> tuple[str, np.ndarray] | None:
        for node in consumers.get(out, []):
            if node.op_type == op:
                names = [i for i in node.input if i in init]
                if len(names) == 1:
                    return node.output[0], init[names[0]]
        return None

    used: set[str] = set()
    convs = []
    for node in g.node:
        if node.op_type != "Conv":
            continue
        kernel = init[node.input[1]].astype(np.float32)
        used.add(node.input[1])
        if len(node.input) > 2 and node.input[2] in init:
            bias = init[node.input[2]]
            used.add(node.input[2])
        else:
            mul = constant_after(node.output[0], "Mul")
            add = constant_after(mul[0], "Add") if mul else None
            if mul is None or add is None:
                raise ValueError(
                    f"{path}: convolution {node.name!r} has neither a bias nor a folded normalisation"
                )
            kernel = kernel * mul[1].reshape(-1, 1, 1, 1)
            bias = add[1]
            used |= {i for n in consumers[node.output[0]] + consumers[mul[0]] for i in n.input if i in init}
        convs.append((kernel, np.asarray(bias, np.float32).reshape(-1)))
    rest = [w for name, w in init.items() if name not in used]
    return convs, [w for w in rest if w.ndim == 2], [w for w in rest if w.ndim == 1]


def artifact_width(path: Path | str) -> int:
    """The channels of the artifact's first convolution: the ``width`` it was built with
    (``default`` and ``compact`` models)."""
    return int(_weights(Path(path))[0][0][0].shape[0])


def init_from_onnx(
    model: Any, onnx_path: Path | str, *, atol: float = REFERENCES_ATOL, calibration: np.ndarray | None = None
) -> dict[str, Any]:
    """Copy the weights of ``onnx_path`` into the Keras ``model`` in place.

    Parameters
    ----------
    model : keras.Model
        A freshly built model of the artifact's architecture (``training.models.default`` or
        ``compact``).
    onnx_path : Path or str
        The artifact's ``model.onnx`` (taking ``[batch, 128, 128]`` or ``[batch, 128, 128, 1]``).
    atol : float
        Largest allowed difference between the two models' outputs on random windows.
    calibration : np.ndarray [shape=(B, 128, 128) or (B, 128, 128, 1)], optional
        Typical inputs (e.g. 256 training windows) for the normalisations' statistics.

    Returns
    -------
    dict
        ``{"source": path, "max_abs_diff": float}``.

    Raises
    ------
    ValueError
        When the layer shapes differ or the outputs disagree by more than ``atol``.
    """
    import keras

    onnx_path = Path(onnx_path)
    conv_weights, dense, vectors = _weights(onnx_path)
    kernels = [k for k, _ in conv_weights]
    # Convolutions in graph order: plain ones and the depthwise halves of separable blocks
    # (the compact model), each followed by its batch normalisation.
    convs = [la for la in model.layers if isinstance(la, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    denses = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    if len(kernels) != len(convs) or len(dense) != len(denses) or len(bns) != len(convs):
        raise ValueError(
            f"{onnx_path}: {len(kernels)} conv / {len(dense)} dense weights, the model has "
            f"{len(convs)} conv / {len(denses)} dense layers"
        )
    # The dense layers' biases follow their matrices in the initializer list; pick them by size.
    by_size: dict[int, list[np.ndarray]] = {}
    for v in vectors:
        by_size.setdefault(int(v.shape[0]), []).append(v)
    for conv, bn, (k, bias) in zip(convs, bns, conv_weights, strict=True):
        # ONNX [out, in, kh, kw] → Keras [kh, kw, in, out]; a depthwise one (a grouped ONNX
        # convolution, [channels, 1, kh, kw]) → Keras [kh, kw, channels, 1].
        depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        hwio = np.transpose(k, (2, 3, 0, 1) if depthwise else (2, 3, 1, 0))
        if tuple(conv.kernel.shape) != hwio.shape:
            raise ValueError(
                f"{onnx_path}: kernel {hwio.shape} does not fit {conv.name} {tuple(conv.kernel.shape)}"
            )
        conv.set_weights([hwio])
        eps = float(bn.epsilon)
        n = len(bias)
        bn.set_weights(
            [
                np.ones(n, np.float32),
                bias.astype(np.float32),
                np.zeros(n, np.float32),
                np.full(n, 1.0 - eps, np.float32),
            ]
        )
    if calibration is not None:
        xc = np.asarray(calibration, dtype=np.float32)
        xc = xc[..., None] if xc.ndim == 3 else xc
        for conv, bn in zip(convs, bns, strict=True):
            # Layers before this one are already calibrated (and exact at inference).
            probe = keras.Model(model.inputs, conv.output)
            act = np.concatenate(
                [np.asarray(probe(xc[i : i + 64], training=False)) for i in range(0, len(xc), 64)]
            )
            m = act.mean(axis=(0, 1, 2)).astype(np.float32)
            v = act.var(axis=(0, 1, 2)).astype(np.float32)
            gamma, beta, _, _ = bn.get_weights()
            bias = beta  # as set above: the artifact's folded bias
            bn.set_weights(
                [np.sqrt(v + float(bn.epsilon)).astype(np.float32), (m + bias).astype(np.float32), m, v]
            )
    for i, (layer, w) in enumerate(zip(denses, dense, strict=True)):
        b = by_size[w.shape[1]].pop(0)
        shape = tuple(layer.kernel.shape)
        grown = i == len(denses) - 1 and shape[0] == w.shape[0] and shape[1] > w.shape[1]
        if shape != w.shape and not grown:
            raise ValueError(f"{onnx_path}: dense {w.shape} does not fit {layer.name} {shape}")
        if grown:  # an open-set head: the artifact's columns, then the layer's own
            kernel, bias = (np.array(v) for v in layer.get_weights())
            kernel[:, : w.shape[1]] = w
            bias[: w.shape[1]] = b
            w, b = kernel, bias
        layer.set_weights([w, b])
    sess = onnx_session(onnx_path, RuntimeOptions(intra_op_threads=0))
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random((4, 128, 128), dtype=np.float32)
    feed = x if len(inp.shape) == 3 else x[..., None]
    # the family probabilities, then "other" where the artifact has it (an open-set artifact
    # also gives its embedding, which is not compared)
    names = [o.name for o in sess.get_outputs()]
    wanted = [n for n in (OUTPUT_NAME, OTHER_OUTPUT) if n in names] or names[:1]
    ref = np.concatenate(sess.run(wanted, {inp.name: feed}), axis=1)
    got = np.asarray(model(x[..., None], training=False))[:, : ref.shape[1]]
    diff = float(np.abs(ref - got).max())
    if not diff <= atol:
        raise ValueError(
            f"{onnx_path}: the initialised model differs from the artifact by {diff:.2e} (> {atol})"
        )
    return {"source": str(onnx_path), "max_abs_diff": diff}
