"""Keras → ONNX conversion (tf2onnx) and a canonical, reproducible form of the result.

TensorFlow and Keras are imported inside the functions that need them, so that
:func:`canonicalize` and :func:`onnx_predict` stay usable without them. Sessions come from
:func:`instrunet_core.session.onnx_session`, as everywhere.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.manifest import INPUT_NAME, OUTPUT_NAME

from . import ExportError

__all__ = [
    "OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "load_keras",
    "model_activation",
    "keras_predict",
    "to_onnx",
    "canonicalize",
    "onnx_predict",
    "versions",
]

OPSET = 17


def _tf_env() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_keras(path: str | Path) -> Any:
    """Load a ``.keras`` file (Keras 3, TensorFlow backend) without its optimizer state."""
    _tf_env()
    import keras

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such model file")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras itself says "File not found"
        what = "empty" if path.stat().st_size == 0 else "damaged or of another format"
        raise ExportError(
            f"{path}: not a readable .keras file (a .keras file is a zip archive; this one is {what})"
        )
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"Keras backend is {keras.backend.backend()!r}; export needs KERAS_BACKEND=tensorflow"
        )
    try:  # the large model's layers (YAMNet's front end and patching) register themselves on import
        import training.teacher.keras_port  # noqa: F401
    except ImportError:
        pass
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - keras raises many kinds; name the file
        raise ExportError(f"{path}: cannot load Keras model: {e}") from None


def model_activation(model: Any) -> str | None:
    """``"softmax"``, ``"sigmoid"`` or ``None``: the activation that ends the model."""
    name = activation_name(model)
    return name if name in ("softmax", "sigmoid") else None


def activation_name(model: Any) -> str | None:
    """The name of the last layer's activation (``"relu"``, ``"linear"``, ``"sigmoid"``...), or
    ``None`` when the last layer has none (a concatenation, a custom layer)."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", None) or (act if isinstance(act, str) else None)


#: Name of the layer whose activations become the artifact's ``embedding`` output
#: (``training.models.EMBEDDING_LAYER``, ``training.large``).
EMBEDDING_LAYER = "embedding"
OTHER_OUTPUT = "other"
EMBEDDING_OUTPUT = "embedding"


#: What an artifact's ``embedding`` output can be: the layer :data:`EMBEDDING_LAYER` (``dense``)
#: or the pooled features its dense layer reads, averaged over the frequency bands (``timbre``:
#: each channel's mean and maximum over time, wherever in frequency it sounds; the embedding
#: :mod:`export.openhead` grafts onto an exported graph).
EMBEDDING_KINDS = ("dense", "timbre")


def output_view(model: Any, n_labels: int, *, embedding: str = "dense") -> tuple[Any, list[str]]:
    """A Keras model with the outputs the artifact will have, and their names in order:
    ``probabilities`` [batch, n_labels]; ``other`` [batch, 1] when the network has one more
    sigmoid than labels (the open-set output); ``embedding`` [batch, dim] when it has a layer
    named :data:`EMBEDDING_LAYER`, of the kind ``embedding`` (:data:`EMBEDDING_KINDS`)."""
    import keras

    if embedding not in EMBEDDING_KINDS:
        raise ExportError(f"unknown embedding {embedding!r} (one of {', '.join(EMBEDDING_KINDS)})")
    n_out = int(model.output_shape[-1])
    has_embedding = any(layer.name == EMBEDDING_LAYER for layer in model.layers)
    if embedding == "timbre" and not has_embedding:
        raise ExportError(f"a timbre embedding needs a layer named {EMBEDDING_LAYER!r}; the model has none")
    if n_out == n_labels and not has_embedding:
        return model, [OUTPUT_NAME]
    y = model.output
    outs = [y[:, :n_labels] if n_out > n_labels else y]
    names = [OUTPUT_NAME]
    if n_out == n_labels + 1:
        outs.append(y[:, n_labels:])
        names.append(OTHER_OUTPUT)
    if has_embedding:
        if embedding == "timbre":
            # the dense layer reads [batch, bands, 1, channels] flattened (then dropout)
            flats = [la for la in model.layers if isinstance(la, keras.layers.Flatten)]
            if len(flats) != 1 or len(flats[0].input.shape) != 4 or flats[0].input.shape[2] != 1:
                raise ExportError(
                    f"a timbre embedding needs the {EMBEDDING_LAYER!r} layer to read flattened "
                    "[bands, 1, channels] features (one Flatten layer)"
                )
            outs.append(keras.ops.mean(flats[0].input, axis=(1, 2)))
        else:
            outs.append(model.get_layer(EMBEDDING_LAYER).output)
        names.append(EMBEDDING_OUTPUT)
    return keras.Model(model.input, outs), names


def keras_predict(model: Any, x: np.ndarray, batch: int = 64) -> Any:
    """Keras outputs for ``x`` (inference mode: dropout off, batch-norm moving statistics): an
    array, or a list of arrays for a model with several outputs (an :func:`output_view`)."""
    outs = [model(x[i : i + batch], training=False) for i in range(0, len(x), batch)]
    if isinstance(outs[0], (list, tuple)):
        return [np.concatenate([np.asarray(o[j], np.float32) for o in outs]) for j in range(len(outs[0]))]
    return np.concatenate([np.asarray(o, np.float32) for o in outs], axis=0)


def to_onnx(
    model: Any,
    *,
    opset: int = OPSET,
    input_name: str = INPUT_NAME,
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> Any:
    """Convert through a ``tf.function`` with a dynamic batch dimension.

    The graph has one input ``input_name`` (``mel`` [batch, n_mels, frames, 1] for the
    spectrogram models, ``audio`` [batch, window_samples] for a waveform-input model,
    ``features`` [batch, n_features] for a features-input model) float32, and one float32
    output per name of ``output_names`` (``probabilities`` [batch, n_labels], then ``other``
    and ``embedding`` for an :func:`output_view`).
    (``tf2onnx.convert.from_keras`` expects tf.keras 2 models; tracing the Keras 3 model in
    a ``tf.function`` works for both.)
    """
    _tf_env()
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.input_shape)
    spec = (tf.TensorSpec((None, *shape[1:]), tf.float32, name=input_name),)
    names = list(output_names)

    @tf.function(input_signature=spec)
    def serve(x: Any) -> dict[str, Any]:
        y = model(x, training=False)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        return dict(zip(names, ys, strict=True))

    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"tf2onnx could not convert the model (opset {opset}): {e}") from None
    return proto


def _has_subgraphs(graph: Any) -> bool:
    import onnx

    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in kinds for node in graph.node for a in node.attribute)


def canonicalize(proto: Any, *, graph_name: str) -> Any:
    """Rename what tf2onnx names from process-global counters, so re-exports are byte-identical.

    tf2onnx numbers the nodes it creates (``new_shape__10``), Keras numbers layer scopes
    (``functional_1/conv2d_1``), TensorFlow numbers traced functions (``doc_string``
    "converted from __inference_f_111") and the batch dimension gets a ``unk__13``
    symbol: all depend on what ran before in the process. This pass, which changes names
    only (never the computation), sets

    * node names to ``<op_type>_<index>`` and node outputs to ``<node name>:<k>`` (in graph
      order), except the graph's own inputs and outputs, which keep their names;
    * initializer names to ``w<k>`` in order of first use (and orders the initializers so);
    * the batch dimension of the graph's inputs and outputs to ``batch``;
    * the graph name to ``graph_name`` and the doc strings to empty; ``value_info``
      (optional shape hints, re-inferred by onnxruntime) is dropped.

    Graphs with sub-graphs (If/Loop) are left as converted, apart from the names and doc
    strings of the model and graph.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    m.doc_string = ""
    g.doc_string = ""
    g.name = graph_name
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    if _has_subgraphs(g):
        return m
    keep = {vi.name for vi in g.input} | {vi.name for vi in g.output}
    rename: dict[str, str] = {}
    inits = {t.name: t for t in g.initializer}
    order: list[str] = []
    for node in g.node:
        for name in node.input:
            if name in inits and name not in rename and name not in keep:
                rename[name] = f"w{len(order)}"
                order.append(name)
    for name in sorted(set(inits) - set(order)):
        if name not in keep:
            rename[name] = f"w{len(order)}"
        order.append(name)
    for i, node in enumerate(g.node):
        node.name = f"{node.op_type}_{i}"
        node.doc_string = ""
        for k, out in enumerate(node.output):
            if out and out not in keep:
                rename[out] = f"{node.name}:{k}"
    for node in g.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
    ordered = [inits[name] for name in order]
    for t in ordered:
        t.name = rename.get(t.name, t.name)
    new_inits = [onnx.TensorProto() for _ in ordered]
    for dst, src in zip(new_inits, ordered, strict=True):
        dst.CopyFrom(src)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.value_info[:]
    return m


def onnx_predict(session: Any, x: np.ndarray, batch: int = 64, *, names: Sequence[str] | None = None) -> Any:
    """onnxruntime outputs for ``x`` (float32): the first output, or the list of the outputs
    called ``names``, in that order."""
    name = session.get_inputs()[0].name
    wanted = None if names is None else list(names)
    runs = [
        session.run(wanted, {name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})
        for i in range(0, len(x), batch)
    ]
    outs = [
        np.concatenate([r[j] for r in runs], axis=0).astype(np.float32, copy=False)
        for j in range(len(runs[0]))
    ]
    return outs[0] if names is None else outs


def versions(opset: int = OPSET) -> dict[str, Any]:
    """Versions of the tools that made the artifact (the manifest's ``exporter``)."""
    _tf_env()
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "tf2onnx": tf2onnx.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": opset,
        "numpy": np.__version__,
    }
