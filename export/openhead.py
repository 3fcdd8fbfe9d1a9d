"""An open-set head and an embedding output grafted onto an exported family model.

The family network is left exactly as it is: its eight outputs are the same numbers to the
last bit. The graft reads what the network already computes:

* the **pooled features** (the input of the first dense layer: global average and max pooling of
  the last convolution block),
* each **convolution block's output** (after its max pooling, where it has one), averaged and
  maximised over frequency and time,
* the **input's** mean and standard deviation over time in each mel band (how flat and how
  steady the sound is),

concatenated as the head input (:func:`head_input`, :data:`HEAD_INPUT`), and adds

* ``other`` [null, 1]: the head, standardised, then ``sigmoid(x W + b)`` (or with one hidden
  ReLU layer): the probability that no family plays, though something sounds;
* ``embedding`` [null, dim]: by default the **timbre** embedding, the pooled features averaged
  over the frequency bands (each channel's mean and maximum over time, wherever in frequency
  it sounds), or the dense layer before the output (:data:`EMBEDDINGS`).

:func:`graph_tensors` finds those tensors in a tf2onnx graph of the shape
``... Conv → Relu ... → MatMul → Add → Relu → MatMul → Add → Sigmoid → probabilities`` (or
``Sigmoid → Slice → probabilities``, a network with its own open-set sigmoid, whose ``other``
and ``embedding`` outputs :func:`without_outputs` removes first) and refuses any other shape;
:func:`graft` builds the new graph; :func:`features` runs the network and the head input's nodes (the same nodes the graft keeps). The head is fitted by
:mod:`training.openhead`, which writes the artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from instrunet_core.session import RuntimeOptions, onnx_session

from . import ExportError
from .convert import EMBEDDING_KINDS

__all__ = [
    "EMBEDDINGS",
    "HEAD_INPUT",
    "Head",
    "embedding_dim",
    "timbre_embedding",
    "GraphTensors",
    "graph_tensors",
    "without_outputs",
    "head_input",
    "graft",
    "features",
]

#: Prefix of every node, initializer and tensor the graft adds.
PREFIX = "openhead/"


@dataclasses.dataclass(frozen=True)
class Head:
    """A fitted open-set head: standardisation, then dense layers (ReLU between), then a sigmoid.

    ``layers``: ``[(W [d_in, d_out], b [d_out]), ...]``, the last with ``d_out == 1``.
    """

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __post_init__(self) -> None:
        d = int(np.shape(self.mean)[0])
        if np.shape(self.scale) != (d,):
            raise ValueError(f"scale has shape {np.shape(self.scale)}, expected ({d},)")
        if not self.layers:
            raise ValueError("a head needs at least one layer")
        for w, b in self.layers:
            if w.ndim != 2 or w.shape[0] != d or b.shape != (w.shape[1],):
                raise ValueError(f"layer shapes {w.shape} / {b.shape} do not follow input width {d}")
            d = int(w.shape[1])
        if d != 1:
            raise ValueError(f"the last layer has {d} outputs, expected 1")
        if not all(
            np.all(np.isfinite(a)) for a in (self.mean, self.scale, *(x for wb in self.layers for x in wb))
        ):
            raise ValueError("the head's weights contain NaN or infinite values")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The head in numpy: ``x [n, d]`` → probabilities ``[n]`` (float64)."""
        h = (np.asarray(x, np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))


@dataclasses.dataclass(frozen=True)
class GraphTensors:
    """Names in the family graph: its input and output, the pooled features, the embedding,
    and the convolution blocks' outputs ``(name, channels)`` (each block's max pooling, or its
    ReLU where none follows alone), in graph order."""

    input: str
    output: str
    pooled: str
    embedding: str
    pooled_dim: int
    embedding_dim: int
    blocks: tuple[tuple[str, int], ...]
    n_mels: int
    timbre_channels: int = 0  # values per frequency band of the pooled features (0: layout unknown)

    @property
    def head_dim(self) -> int:
        """Width of the head's input (:func:`head_input`)."""
        return self.pooled_dim + 2 * sum(c for _, c in self.blocks) + 2 * self.n_mels


def _producers(graph: Any) -> dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def graph_tensors(model: Any, output_name: str = "probabilities", input_name: str = "mel") -> GraphTensors:
    """The tensors the head reads in a family graph ending
    ``MatMul → Add → Relu → MatMul → Add → Sigmoid → output_name`` (or ``... → Sigmoid → Slice
    → output_name``, the slice keeping the first sigmoids) whose input is a log-mel window
    ``[batch, n_mels, frames, 1]``.

    Raises
    ------
    ExportError
        The graph is not of that shape (it is not a network this graft knows).
    """
    g = model.graph
    prod = _producers(g)
    inits = {t.name: t for t in g.initializer}
    chain = ["Sigmoid", "Add", "MatMul", "Relu", "Add", "MatMul"]
    t, nodes = output_name, []
    first = prod.get(t)
    if first is not None and first.op_type == "Slice":
        # a network with more sigmoids than labels (its own open-set output trained in, see
        # :func:`without_outputs`): the labels are the first sigmoids, sliced on the last axis
        _check_label_slice(first, inits)
        t = first.input[0]
    for op in chain:
        n = prod.get(t)
        if n is None or n.op_type != op:
            got = "nothing" if n is None else n.op_type
            raise ExportError(
                f"the graph does not end MatMul → Add → Relu → MatMul → Add → Sigmoid: found {got} where "
                f"{op} was expected (tensor {t!r})"
            )
        nodes.append(n)
        data = [i for i in n.input if i not in inits]  # the data input: not an initializer
        if len(data) != 1:
            raise ExportError(f"{op} node {n.name!r} has {len(data)} non-constant inputs, expected 1")
        t = data[0]
    w1 = inits[next(i for i in nodes[-1].input if i in inits)]
    w2 = inits[next(i for i in nodes[2].input if i in inits)]
    if len(w1.dims) != 2 or len(w2.dims) != 2 or w1.dims[1] != w2.dims[0]:
        raise ExportError(f"dense weights {list(w1.dims)} and {list(w2.dims)} do not chain")
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    blocks = []
    for n in g.node:
        src = prod.get(n.input[0]) if n.input else None
        if n.op_type == "Relu" and src is not None and src.op_type == "Conv" and src.input[1] in inits:
            # the block's output as the next block sees it: its MaxPool (a quarter of the values
            # to reduce; reading the full-size ReLU output costs a fifth of the network's time)
            after = consumers.get(n.output[0], [])
            out = after[0].output[0] if len(after) == 1 and after[0].op_type == "MaxPool" else n.output[0]
            blocks.append((out, int(inits[src.input[1]].dims[0])))
    if not blocks:
        raise ExportError("the graph has no Conv → Relu blocks")
    inputs = {i.name: i for i in g.input if i.name not in inits}
    if input_name not in inputs:
        raise ExportError(f"the graph has no input {input_name!r} (it has {sorted(inputs)})")
    dims = inputs[input_name].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].dim_value or dims[3].dim_value != 1:
        raise ExportError(f"input {input_name!r} is not [batch, n_mels, frames, 1]")
    # the pooled features are [bands, 1, channels] flattened (tf2onnx: Transpose [0, 2, 3, 1], Reshape)
    timbre = 0
    flat = prod.get(t)
    if flat is not None and flat.op_type == "Reshape":
        tr = prod.get(flat.input[0])
        perm = (
            next((list(a.ints) for a in tr.attribute if a.name == "perm"), None) if tr is not None else None
        )
        if tr is not None and tr.op_type == "Transpose" and perm == [0, 2, 3, 1]:
            c = 2 * blocks[-1][1]  # mean and maximum over time of the last block's channels
            timbre = c if int(w1.dims[0]) % c == 0 else 0
    return GraphTensors(
        input=input_name,
        output=output_name,
        pooled=t,
        embedding=nodes[3].output[0],
        pooled_dim=int(w1.dims[0]),
        embedding_dim=int(w2.dims[0]),
        blocks=tuple(blocks),
        n_mels=int(dims[1].dim_value),
        timbre_channels=timbre,
    )


def _check_label_slice(node: Any, inits: dict[str, Any]) -> None:
    from onnx import numpy_helper

    def const(i: int) -> list[int] | None:
        if len(node.input) <= i or not node.input[i]:
            return None
        if node.input[i] not in inits:
            raise ExportError(f"Slice node {node.name!r}: input {i} is not a constant")
        return [int(v) for v in numpy_helper.to_array(inits[node.input[i]]).ravel()]

    starts, ends, axes, steps = const(1), const(2), const(3), const(4)
    axes = axes if axes is not None else list(range(len(starts or [])))
    whole = [e for a, e in zip(axes, ends or [], strict=False) if a not in (1, -1)]
    if (
        not starts
        or any(starts)
        or steps not in (None, [1] * len(starts))
        or not ({1, -1} & set(axes))
        or any(e < 2**31 - 1 for e in whole)  # the batch axis (tf2onnx slices it too) kept whole
    ):
        raise ExportError(
            f"Slice node {node.name!r} does not keep the first sigmoids on the last axis "
            f"(starts {starts}, ends {ends}, axes {axes}, steps {steps})"
        )


#: Where :func:`without_outputs` moves a removed output's tensor that the network still reads.
BASE_PREFIX = "base/"


def without_outputs(model: Any, names: Sequence[str]) -> Any:
    """A copy of ``model`` without the graph outputs ``names`` (a network's own ``other`` and
    ``embedding``, which a graft replaces): the outputs removed, a tensor of such a name that
    the network still reads renamed ``base/<name>:0`` (its dense layer, when it was the
    embedding), and the nodes and initializers nothing reads any more removed. The remaining
    outputs are the same numbers."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    have = [o.name for o in g.output]
    missing = [n for n in names if n not in have]
    if missing:
        raise ExportError(f"the graph has no outputs {missing} (it has {have})")
    kept = [o for o in g.output if o.name not in names]
    if not kept:
        raise ExportError("removing those outputs would leave the graph none")
    del g.output[:]
    g.output.extend(kept)
    rename = {n: f"{BASE_PREFIX}{n}:0" for n in names}
    for node in g.node:
        for seq in (node.input, node.output):
            for i, v in enumerate(seq):
                if v in rename:
                    seq[i] = rename[v]
    # keep the nodes an output still needs (the graph is in topological order)
    needed = {o.name for o in g.output}
    keep = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(out, full_check=True)
    return out


#: The head's input tensor in a grafted graph.
HEAD_INPUT = PREFIX + "input"


def head_input(model: Any, tensors: GraphTensors) -> Any:
    """A copy of ``model`` that also computes :data:`HEAD_INPUT` ``[batch, head_dim]``: the
    pooled features, then each convolution block's output averaged and maximised over
    frequency and time (``[mean, max]`` per block, channels each), then the input's mean and
    standard deviation over time per mel band."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    parts = [tensors.pooled]

    def node(op: str, ins: list[str], name: str, **attrs: Any) -> str:
        o = f"{PREFIX}{name}:0"
        g.node.append(helper.make_node(op, ins, [o], name=f"{PREFIX}{name}", **attrs))
        return o

    for i, (relu, _) in enumerate(tensors.blocks):
        parts.append(node("ReduceMean", [relu], f"block{i}_mean", axes=[2, 3], keepdims=0))
        parts.append(node("ReduceMax", [relu], f"block{i}_max", axes=[2, 3], keepdims=0))
    x = tensors.input  # [batch, n_mels, frames, 1]
    mean_k = node("ReduceMean", [x], "input_mean_k", axes=[2, 3], keepdims=1)
    diff = node("Sub", [x, mean_k], "input_diff")
    var = node("ReduceMean", [node("Mul", [diff, diff], "input_sq")], "input_var", axes=[2, 3], keepdims=0)
    parts.append(node("ReduceMean", [x], "input_mean", axes=[2, 3], keepdims=0))
    parts.append(node("Sqrt", [var], "input_std"))
    g.node.append(helper.make_node("Concat", parts, [HEAD_INPUT], name=HEAD_INPUT, axis=1))
    return out


#: What the ``embedding`` output can be: ``"timbre"``, the pooled features averaged over the
#: frequency bands (each channel's mean and maximum over time, wherever in frequency: 512 values
#: for family 2.0.0), or ``"dense"``, the dense layer before the output (128); the same kinds
#: ``python -m export --embedding`` writes from a Keras model (:data:`export.convert.EMBEDDING_KINDS`).
EMBEDDINGS = EMBEDDING_KINDS


def embedding_dim(tensors: GraphTensors, kind: str) -> int:
    """Width of the ``embedding`` output of kind ``kind`` (:data:`EMBEDDINGS`)."""
    if kind == "dense":
        return tensors.embedding_dim
    if kind == "timbre":
        if not tensors.timbre_channels:
            raise ExportError("the pooled features' layout is not [bands, 1, channels]: no timbre embedding")
        return tensors.timbre_channels
    raise ExportError(f"unknown embedding {kind!r} (one of {', '.join(EMBEDDINGS)})")


def timbre_embedding(pooled: np.ndarray, tensors: GraphTensors) -> np.ndarray:
    """The ``"timbre"`` embedding in numpy, from the pooled features ``[n, pooled_dim]``."""
    c = embedding_dim(tensors, "timbre")
    return np.asarray(pooled).reshape(len(pooled), -1, c).mean(1)


def graft(
    model: Any, head: Head, tensors: GraphTensors, *, graph_name: str, embedding: str = "timbre"
) -> Any:
    """A copy of ``model`` with the outputs ``other`` (the head on :func:`head_input`) and
    ``embedding`` (of kind ``embedding``, :data:`EMBEDDINGS`) after its own output.

    The family network's nodes and initializers are untouched; the standardisation is folded
    into the head's first layer.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if head.mean.shape[0] != tensors.head_dim:
        raise ExportError(f"the head takes {head.mean.shape[0]} features, the graph gives {tensors.head_dim}")
    taken = {o.name for o in model.graph.output}
    if {"other", "embedding"} & taken:
        raise ExportError(f"the graph already has the outputs {sorted({'other', 'embedding'} & taken)}")
    out = head_input(model, tensors)
    g = out.graph
    # fold (x - mean) / scale into the first layer: x W' + b' with W' = W / scale, b' = b - (mean / scale) W
    (w0, b0), *rest = head.layers
    layers = [(w0 / head.scale[:, None], b0 - (head.mean / head.scale) @ w0), *rest]
    x = HEAD_INPUT
    for i, (w, b) in enumerate(layers):
        wn, bn = f"{PREFIX}w{i}", f"{PREFIX}b{i}"
        g.initializer.extend(
            [
                numpy_helper.from_array(w.astype(np.float32), wn),
                numpy_helper.from_array(b.astype(np.float32), bn),
            ]
        )
        mm, add = f"{PREFIX}matmul{i}", f"{PREFIX}add{i}"
        g.node.extend(
            [
                helper.make_node("MatMul", [x, wn], [mm + ":0"], name=mm),
                helper.make_node("Add", [mm + ":0", bn], [add + ":0"], name=add),
            ]
        )
        x = add + ":0"
        if i < len(layers) - 1:
            r = f"{PREFIX}relu{i}"
            g.node.append(helper.make_node("Relu", [x], [r + ":0"], name=r))
            x = r + ":0"
    g.node.append(helper.make_node("Sigmoid", [x], ["other"], name=f"{PREFIX}sigmoid"))
    dim = embedding_dim(tensors, embedding)
    if embedding == "dense":
        g.node.append(
            helper.make_node("Identity", [tensors.embedding], ["embedding"], name=f"{PREFIX}embedding")
        )
    else:
        shape = f"{PREFIX}bands_shape"
        g.initializer.append(
            numpy_helper.from_array(np.array([-1, tensors.pooled_dim // dim, dim], np.int64), shape)
        )
        g.node.append(
            helper.make_node("Reshape", [tensors.pooled, shape], [f"{PREFIX}bands:0"], name=f"{PREFIX}bands")
        )
        g.node.append(
            helper.make_node(
                "ReduceMean",
                [f"{PREFIX}bands:0"],
                ["embedding"],
                name=f"{PREFIX}embedding",
                axes=[1],
                keepdims=0,
            )
        )
    g.output.extend(
        [
            helper.make_tensor_value_info("other", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim]),
        ]
    )
    g.name = graph_name
    onnx.checker.check_model(out, full_check=True)
    return out


def features(
    model: Any, tensors: GraphTensors, x: np.ndarray, *, batch: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities, head input, embedding)`` of the family graph on log-mel windows
    ``x [n, n_mels, frames]`` (float16 or float32), ``batch`` windows per run; the head input is
    computed by the graph :func:`head_input` adds, the very nodes :func:`graft` keeps."""
    from onnx import TensorProto, helper

    m = head_input(model, tensors)
    for name in (HEAD_INPUT, tensors.embedding):
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = onnx_session(m.SerializeToString(), RuntimeOptions(intra_op_threads=0))
    names = [tensors.output, HEAD_INPUT, tensors.embedding]
    parts: list[Sequence[np.ndarray]] = []
    for i in range(0, len(x), batch):
        xb = np.asarray(x[i : i + batch], np.float32)
        if xb.ndim == 3:
            xb = xb[..., None]
        parts.append(sess.run(names, {tensors.input: xb}))
    if not parts:
        raise ExportError("no windows to compute features on")
    p, h, emb = (np.concatenate([r[k] for r in parts]) for k in range(3))
    return p, h, emb
