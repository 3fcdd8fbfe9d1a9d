"""A noise gate on a family model's open-set output, added to its ONNX graph.

Every family instrunet names is pitched: brass, flute, guitar, keyboard, mallet, reed, string and
vocal sounds have partials, so their spectra (averaged over a window) have peaks and valleys
along frequency. Noise (pink, white, hiss, a burst of it between silences), most unpitched
percussion and keyboard clicks do not: their averaged spectrum is smooth. The network does not
always see that: a 0.3 s burst of pink noise between silences reads to it as a plucked note
(``guitar`` 0.57). The gate measures it where the network reads its input:

* the window's log-mel input ``mel`` [B, n_mels, frames, 1] (dB relative to the window's peak,
  ``top_db`` scaled to [0, 1]),
* its **sounding frames**: those whose loudest band is within ``floor_db`` of the window's peak,
* the bands' mean over those frames (a spectrum in dB),
* its **spectral contrast**: the mean absolute second difference along the bands ``lo:hi``
  (each band against the mean of its two neighbours), in dB, over the bands within
  ``band_floor_db`` of the loudest of those bands (:func:`spectral_contrast`): a pure tone's
  few loud bands are all peak (high contrast), noise's many are smooth (low),

and raises the open-set probability where the contrast is low:
``other = max(other, sigmoid((contrast_db - contrast) / softness_db))``. The family outputs and
the embedding are untouched, to the last bit; everything downstream of ``other`` (a window's
answer, the timeline's veto, the routes of the Pedalboard adapter, the JSON) follows.

:func:`add_noise_gate` builds the graph (standard ONNX operators, opset 13 on); the manifest's
``other.noise_gate`` records the parameters (:func:`gate_description`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import ExportError

__all__ = ["NoiseGate", "add_noise_gate", "gate_probability", "spectral_contrast"]

#: Prefix of every node, initializer and tensor the gate adds.
PREFIX = "noisegate/"


@dataclasses.dataclass(frozen=True)
class NoiseGate:
    """The gate's parameters.

    Attributes
    ----------
    contrast_db : float
        The spectral contrast (dB) at which the gate's probability is 0.5.
    softness_db : float
        The logistic's scale (dB): at ``contrast_db - 3 * softness_db`` the gate says 0.95.
    lo, hi : int
        The mel bands whose contrast is measured (``lo:hi``).
    floor_db : float
        A frame counts as sounding where its loudest band is within this many dB of the window's peak.
    band_floor_db : float
        The contrast is the mean over the bands within this many dB of the loudest of ``lo:hi``.
    top_db : float
        The front end's ``top_db`` (the input's scale: 1.0 is ``top_db`` dB).
    """

    contrast_db: float
    softness_db: float = 0.15
    lo: int = 4
    hi: int = 96
    floor_db: float = 40.0
    band_floor_db: float = 30.0
    top_db: float = 80.0

    def __post_init__(self) -> None:
        def positive(k: str) -> float:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ExportError(f"noise gate: {k} must be a number > 0, got {v!r}")
            if not (math.isfinite(float(v)) and float(v) > 0):
                raise ExportError(f"noise gate: {k} must be a number > 0, got {v!r}")
            return float(v)

        for k in ("contrast_db", "softness_db", "top_db"):
            positive(k)
        for k in ("lo", "hi"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ExportError(f"noise gate: {k} must be a whole band index, got {v!r}")
        if not (0 <= self.lo and self.hi - self.lo >= 3):
            raise ExportError(f"noise gate: bands lo:hi must hold 3 or more bands, got {self.lo}:{self.hi}")
        for k in ("floor_db", "band_floor_db"):
            if positive(k) > float(self.top_db):
                raise ExportError(f"noise gate: {k} must be in (0, top_db], got {getattr(self, k)!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, top_db: float = 80.0) -> NoiseGate:
        """The gate a manifest's ``other.noise_gate`` records (:meth:`to_dict` read back; ``top_db``
        is the front end's, which the manifest keeps there)."""
        lo, hi = d["bands"]
        return cls(
            contrast_db=d["contrast_db"],
            softness_db=d["softness_db"],
            lo=lo,
            hi=hi,
            floor_db=d["floor_db"],
            band_floor_db=d["band_floor_db"],
            top_db=top_db,
        )

    def to_dict(self) -> dict[str, Any]:
        """What the manifest's ``other.noise_gate`` records."""
        return {
            "contrast_db": float(self.contrast_db),
            "softness_db": float(self.softness_db),
            "bands": [int(self.lo), int(self.hi)],
            "floor_db": float(self.floor_db),
            "band_floor_db": float(self.band_floor_db),
        }


def spectral_contrast(x: np.ndarray, gate: NoiseGate) -> np.ndarray:
    """The gate's measure of windows' log-mel input ``x`` [B, n_mels, frames(, 1)] (scaled to
    [0, 1]): the mean absolute second difference along bands ``lo:hi`` of the bands' mean over
    the sounding frames, in dB. The numpy reference of the graph's nodes (float32, the same
    operations in the same order).

    Returns
    -------
    np.ndarray [shape=(B,), dtype=float32]
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4:
        x = x[..., 0]
    peak = x.max(axis=1, keepdims=True)  # [B, 1, frames]
    level = np.float32(1.0 - gate.floor_db / gate.top_db)
    sounding = (peak >= level).astype(np.float32)
    mean = (x * sounding).sum(axis=2) / np.maximum(sounding.sum(axis=2), np.float32(1.0))
    b = mean[:, gate.lo : gate.hi]
    mid = b[:, 1:-1]  # the bands with two neighbours: at least the loudest of them counts
    d2 = mid - np.float32(0.5) * (b[:, :-2] + b[:, 2:])
    loud = (mid >= mid.max(axis=1, keepdims=True) - np.float32(gate.band_floor_db / gate.top_db)).astype(
        np.float32
    )
    total = (np.abs(d2) * loud).sum(axis=1)
    return (total / np.maximum(loud.sum(axis=1), np.float32(1.0)) * np.float32(gate.top_db)).astype(
        np.float32
    )


def gate_probability(contrast: np.ndarray, gate: NoiseGate) -> np.ndarray:
    """``sigmoid((contrast_db - contrast) / softness_db)``: how far a window's contrast says
    "no pitched instrument" (float32)."""
    z = (np.float32(gate.contrast_db) - np.asarray(contrast, np.float32)) / np.float32(gate.softness_db)
    # exp(-logaddexp(0, -z)) = 1 / (1 + exp(-z)), without overflow for a tone's large contrast
    return np.exp(-np.logaddexp(np.float32(0.0), -z)).astype(np.float32)


def add_noise_gate(model: Any, gate: NoiseGate, *, input_name: str = "mel", other_name: str = "other") -> Any:
    """A copy of the ONNX ``model`` whose ``other_name`` output is ``max(other, gate)``.

    The graph must take ``input_name`` [B, n_mels, frames, 1] (the log-mel layout) and have an
    ``other_name`` output [B, 1]; nothing else changes (the other outputs are the same tensors).

    Raises
    ------
    ExportError
        The graph has no such input or output, the bands do not fit its input, or it was gated
        before.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inputs = {i.name: i for i in g.input}
    if input_name not in inputs:
        raise ExportError(f"noise gate: the graph has no input {input_name!r}")
    dims = [d.dim_value for d in inputs[input_name].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 1 or dims[1] < gate.hi:
        raise ExportError(
            f"noise gate: input {input_name!r} must be [B, n_mels >= {gate.hi}, frames, 1], got {dims}"
        )
    outs = {o.name: o for o in g.output}
    if other_name not in outs:
        raise ExportError(f"noise gate: the graph has no output {other_name!r}")
    t = outs[other_name].type.tensor_type
    odims = [d.dim_value for d in t.shape.dim]
    if t.elem_type != TensorProto.FLOAT or len(odims) != 2 or odims[1] not in (0, 1):
        raise ExportError(f"noise gate: output {other_name!r} must be float32 [B, 1], got {odims}")
    if inputs[input_name].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ExportError(f"noise gate: input {input_name!r} must be float32")
    if any(n.name.startswith(PREFIX) for n in g.node):
        raise ExportError("noise gate: the graph has one already")
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ExportError(f"noise gate: needs opset 13 or later, the graph has {opset}")
    # the producer of `other` now writes a renamed tensor; the gate writes `other`
    raw = PREFIX + "network_other"
    for n in g.node:
        n.output[:] = [raw if o == other_name else o for o in n.output]
        n.input[:] = [raw if i == other_name else i for i in n.input]

    def name(s: str) -> str:
        return PREFIX + s

    def const(s: str, value: Any, dtype: Any = np.float32) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name(s)))
        return name(s)

    nodes: list[Any] = []

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [name(out)], name=name(out), **attrs))
        return name(out)

    def reduce(op: str, x: str, axis: int, out: str, keepdims: int) -> str:
        # ReduceSum takes its axes as an input from opset 13, the others from opset 18
        if op == "ReduceSum" or opset >= 18:
            return node(op, [x, const(out + "_axes", [axis], np.int64)], out, keepdims=keepdims)
        return node(op, [x], out, axes=[axis], keepdims=keepdims)

    axis1 = const("axis1", [1], np.int64)

    def sl(x: str, a: int, b: int, out: str) -> str:  # x[:, a:b]
        return node(
            "Slice",
            [x, const(out + "_starts", [a], np.int64), const(out + "_ends", [b], np.int64), axis1],
            out,
        )

    x = node("Squeeze", [input_name, const("squeeze_axes", [3], np.int64)], "x")  # [B, mels, frames]
    peak = reduce("ReduceMax", x, 1, "peak", 1)  # [B, 1, frames]
    level = const("level", 1.0 - gate.floor_db / gate.top_db)
    sounding = node(
        "Cast", [node("GreaterOrEqual", [peak, level], "is_sounding")], "sounding", to=TensorProto.FLOAT
    )
    total = reduce("ReduceSum", node("Mul", [x, sounding], "x_sounding"), 2, "total", 0)  # [B, mels]
    count = reduce("ReduceSum", sounding, 2, "count", 0)  # [B, 1]
    mean = node("Div", [total, node("Max", [count, const("one", 1.0)], "count_1")], "mean")
    n = gate.hi - gate.lo
    bands = sl(mean, gate.lo, gate.hi, "bands")
    mid = sl(bands, 1, n - 1, "mid")
    left = sl(bands, 0, n - 2, "left")
    right = sl(bands, 2, n, "right")
    d2 = node(
        "Sub",
        [mid, node("Mul", [const("half", 0.5), node("Add", [left, right], "sides")], "halfsides")],
        "d2",
    )
    top = reduce("ReduceMax", mid, 1, "loudest", 1)  # [B, 1]: of the bands with two neighbours
    cut = node("Sub", [top, const("band_floor", gate.band_floor_db / gate.top_db)], "cut")
    loud = node("Cast", [node("GreaterOrEqual", [mid, cut], "is_loud")], "loud", to=TensorProto.FLOAT)
    total_d2 = reduce(
        "ReduceSum", node("Mul", [node("Abs", [d2], "abs_d2"), loud], "loud_d2"), 1, "total_d2", 1
    )
    n_loud = node("Max", [reduce("ReduceSum", loud, 1, "n_loud", 1), const("one_b", 1.0)], "n_loud_1")
    contrast = node(
        "Mul", [node("Div", [total_d2, n_loud], "mean_abs"), const("top_db", gate.top_db)], "contrast"
    )  # [B, 1] dB
    z = node(
        "Div",
        [
            node("Sub", [const("contrast_db", gate.contrast_db), contrast], "below"),
            const("softness_db", gate.softness_db),
        ],
        "z",
    )
    gated = node("Sigmoid", [z], "gate")
    nodes.append(helper.make_node("Max", [raw, gated], [other_name], name=name("other")))
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m
