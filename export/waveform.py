"""Waveform-in artifacts: the log-mel front end built inside the ONNX graph.

:func:`frontend_graph` writes :mod:`instrunet_core.features` — the one reference front end —
as plain ONNX operators (opset 17, no custom ops), and :func:`export_waveform` composes it
with any log-mel-input artifact (``input.kind == "logmel"``), so that the result takes
22,050 Hz mono samples ``[batch, window_samples]`` and returns the network's probabilities.
Any ONNX Runtime host (C, C++, C#, JavaScript, mobile) can then classify raw audio without
re-implementing the front end. The numpy front end stays the reference and the path that
training uses.

The graph, for one batch of windows ``audio [B, n]`` (``n = window_samples``), with the
default ``dft="stages"``:

1. centred zero padding by ``n_fft // 2`` on each side (librosa ``center=True``);
2. framing without a gather, frames in the last axis: the padded signal is reshaped into
   hop-sized blocks and transposed once (``[hop, B, frames + n_fft/hop - 1]``), and the frames
   ``[n_fft, B, frames]`` are the concatenation of ``n_fft/hop`` shifted slices of it;
3. periodic Hann window, then the real DFT as three stages of batched ``MatMul``
   (``n_fft = 2048 = 32 x 8 x 8``): a real DFT of length 32 over the most significant digit
   of the sample index for bins ``0 .. 16`` (the others are their conjugates), then complex
   DFTs of length 8 over the next digits, one matrix per earlier bin with the twiddle factors
   folded in, so no elementwise twiddles and no transposes between stages (about 18 M
   multiply-adds per window, against 51 M for the four-step graph below and 537 M for one
   dense DFT matrix); bins above ``n_fft / 2`` are mirrors of bins below;
4. power ``re**2 + im**2``, projected on the Slaney mel filterbank block by block
   (16 mel bands per block, each with only the FFT bins its triangles cover, gathered
   straight from the stages' bin order: about a tenth of a dense projection's work);
5. ``ln(max(mel, 1e-10))`` minus its window maximum, times ``10 / ln(10) / top_db``, plus 1,
   clipped to [0, 1] (the same as ``(dB - peak dB + top_db) / top_db``); a window whose mel
   peak is at most ``1e-10`` maps to zeros.

``dft="four-step"`` (frames in rows, a four-step FFT with elementwise twiddles, the same
banded mel projection) and
``dft="stft"`` (ONNX's ``STFT`` operator) give the same features; ``python -m
benchmarks.frontend`` times the three side by side (``docs/speed.md``).

Everything runs in float32 (the numpy front end transforms in float64); the features agree
with the numpy front end within 1e-4 on the [0, 1] scale, which :func:`export_waveform`
checks before writing anything.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import ModelError, describe
from instrunet_core.features import FrontEnd, _mel_bands, batch_features, window_audio
from instrunet_core.manifest import INPUT_NAME, NAME_RE, SEMVER_RE
from instrunet_core.session import onnx_session
from instrunet_core.verify import check_io, verify_artifact

from . import DEFAULT_ATOL, PARITY_RUNTIME, ExportError
from .artifact import AUDIO_INPUT, build_manifest, check_artifact, write_artifact

__all__ = [
    "AUDIO_INPUT",
    "FRONTEND_PREFIX",
    "frontend_graph",
    "compose",
    "parity_windows",
    "export_waveform",
]

#: Prefix of every node and tensor name the front end adds to a composed graph.
FRONTEND_PREFIX = "frontend/"
_OPSET = 17
_AMIN = 1e-10


def _split(n: int) -> tuple[int, int]:
    """``n = n1 * n2`` with ``n1`` the smallest divisor >= sqrt(n) (2048 → 64 x 32)."""
    for d in range(math.isqrt(n - 1) + 1 if n > 1 else 1, n + 1):
        if n % d == 0:
            return d, n // d
    return n, 1


def _radices(n: int) -> tuple[int, ...]:
    """Stage lengths of the real DFT: about 32, then about 8 (2048 → 32 x 8 x 8).

    Chosen by measurement (``benchmarks/frontend.py``): for ``n_fft=2048`` all of 16x16x8,
    32x8x8, 16x8x16 and 16x8x4x4 were within 5 % of each other, 64x32 and 8x16x16 slower.
    """
    primes, m, d = [], n, 2
    while d * d <= m:
        while m % d == 0:
            primes.append(d)
            m //= d
        d += 1
    if m > 1:
        primes.append(m)
    out: list[int] = []
    target = 32
    for q in sorted(primes, reverse=True):
        if out and out[-1] * q <= target:
            out[-1] *= q
        else:
            out.append(q)
            target = 32 if len(out) == 1 else 8
    return tuple(out) if out else (1,)


class _Builder:
    """Nodes and initializers of one graph, every name prefixed with :data:`FRONTEND_PREFIX`."""

    def __init__(self, output_name: str) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._names: set[str] = set()
        self.output_name = output_name

    def const(self, name: str, arr: Any) -> str:
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(arr), FRONTEND_PREFIX + name))
        return FRONTEND_PREFIX + name

    def node(self, op: str, ins: Sequence[str], outs: Sequence[str], **attrs: Any) -> str:
        """Add a node; returns the name of its (first) output."""
        return self.nodes_outputs(op, ins, outs, **attrs)[0]

    def nodes_outputs(self, op: str, ins: Sequence[str], outs: Sequence[str], **attrs: Any) -> list[str]:
        """Add a node; returns the names of all its outputs (``Split``)."""
        from onnx import helper

        outs = [o if o == self.output_name else FRONTEND_PREFIX + o for o in outs]
        self.nodes.append(
            helper.make_node(op, list(ins), outs, name=FRONTEND_PREFIX + f"{op}_{len(self.nodes)}", **attrs)
        )
        return outs


def _complex_block(m: np.ndarray) -> np.ndarray:
    """Complex matrix ``[out, in]`` as the real matrix acting on ``(re, im)``-stacked vectors:
    rows ``(k, c)`` (each output's real then imaginary part), columns ``(c, i)``."""
    top = np.concatenate([m.real, -m.imag], axis=1)
    bottom = np.concatenate([m.imag, m.real], axis=1)
    return np.stack([top, bottom], axis=1).reshape(2 * m.shape[0], 2 * m.shape[1])


def _padded(b: _Builder, fe: FrontEnd, input_name: str) -> str:
    """``input_name`` [B, n] zero-padded by ``n_fft // 2`` on each side (librosa's ``center=True``)."""
    pads = np.array([0, fe.n_fft // 2, 0, fe.n_fft // 2], np.int64)
    return b.node("Pad", [input_name, b.const("pads", pads)], ["padded"], mode="constant")


def _framed(b: _Builder, fe: FrontEnd, input_name: str, *, frames_last: bool) -> str:
    """Centred frames of ``input_name`` [B, n] without a gather: zero padding by ``n_fft // 2``
    on each side, the padded signal reshaped into hop-sized blocks, and the frames the
    concatenation of ``n_fft / hop`` shifted slices of them.

    Returns the tensor ``[n_fft, B, frames]`` (``frames_last``: the blocks transposed once) or
    ``[B, frames, n_fft]``.
    """
    n_fft, hop, frames = fe.n_fft, fe.hop_length, fe.frames
    r = n_fft // hop
    i64 = np.int64
    x = _padded(b, fe, input_name)
    if frames_last:
        shape = np.array([-1, frames + r - 1, hop], i64)
        x = b.node("Reshape", [x, b.const("block_shape", shape)], ["blocks"])
        x = b.node("Transpose", [x], ["blocks_t"], perm=[2, 0, 1])  # [hop, B, frames + r - 1]
        axis, cat_axis, out = 2, 0, "frames_t"
    else:
        x = b.node("Reshape", [x, b.const("block_shape", np.array([0, -1, hop], i64))], ["blocks"])
        axis, cat_axis, out = 1, 2, "frames"
    ax = b.const(f"axis{axis}", np.array([axis], i64))
    parts = [
        b.node(
            "Slice",
            [
                x,
                b.const(f"start{j}", np.array([j], i64)),
                b.const(f"end{j}", np.array([j + frames], i64)),
                ax,
            ],
            [f"blocks{j}"],
        )
        for j in range(r)
    ]
    return b.node("Concat", parts, [out], axis=cat_axis) if r > 1 else parts[0]


def _power_stages(b: _Builder, fe: FrontEnd, input_name: str) -> tuple[str, list[int]]:
    """Framing, window and the real DFT as stages of batched ``MatMul`` s, then ``re**2 + im**2``.

    Layout: frames in the last axis (``[n_fft, B * frames]`` after framing), so that every stage
    is ``constant @ tensor`` over the second-last axis with the earlier stages' bins as batch
    axes, and no transpose is needed between stages. The sample index is
    ``n = i1 * (n_fft / r1) + m``; stage 1 is a real DFT of length ``r1`` over ``i1`` for bins
    ``k1 = 0 .. r1 / 2`` (the others are their complex conjugates: a real input); each later
    stage is a complex DFT of length ``r_s`` over the next digit of ``m``, with the twiddle
    factors of the earlier stages folded into its matrices (one matrix per earlier bin), so no
    elementwise twiddle multiplications are left. Bin ``k`` of the output is
    ``k1 + r1 * (k2 + r2 * (k3 + ...))``; bins above ``n_fft / 2`` are the mirrors of the
    ones below, whose power they equal.

    Returns
    -------
    power : str
        Tensor ``[P, B * frames]`` (``P`` computed bins, in the stages' order).
    bins : list of int
        For each natural bin ``0 .. n_fft/2``, its row in ``power``.
    """
    n_fft = fe.n_fft
    i64 = np.int64
    x = _framed(b, fe, input_name, frames_last=True)  # [n_fft, B, frames]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    x = b.node("Mul", [x, b.const("hann", hann.astype(np.float32)[:, None, None])], ["windowed"])
    rad = _radices(n_fft)
    r1 = rad[0]
    k1 = np.arange(r1 // 2 + 1)
    x = b.node("Reshape", [x, b.const("stage1_shape", np.array([r1, -1], i64))], ["stage1_in"])
    d1 = np.exp(-2j * np.pi * np.outer(k1, np.arange(r1)) / r1)
    c1 = np.stack([d1.real, d1.imag], axis=1).reshape(2 * len(k1), r1)  # rows (k1, c)
    x = b.node("MatMul", [b.const("dft1", c1.astype(np.float32)), x], ["stage1"])
    prefix = k1.astype(np.int64)  # bin digits known so far, one per batch entry
    stride, rem, batch = r1, n_fft // r1, [len(k1)]
    for s, rs in enumerate(rad[1:], start=2):
        rem //= rs  # m = i * rem + (lower digits)
        x = b.node(
            "Reshape", [x, b.const(f"stage{s}_shape", np.array([*batch, 2 * rs, -1], i64))], [f"stage{s}_in"]
        )
        i = np.arange(rs)
        # twiddle of the earlier bins (the part that depends on this digit) x DFT of length rs
        mats = (
            np.exp(-2j * np.pi * prefix[:, None, None] * i[None, None, :] * rem / n_fft)
            * np.exp(-2j * np.pi * np.outer(i, i) / rs)[None]
        )
        cs = np.stack([_complex_block(mm) for mm in mats]).reshape(*batch, 2 * rs, 2 * rs)
        x = b.node("MatMul", [b.const(f"dft{s}", cs.astype(np.float32)), x], [f"stage{s}"])
        prefix = (prefix[:, None] + stride * i[None, :]).reshape(-1)
        stride *= rs
        batch.append(rs)
    n_rows = len(prefix)
    x = b.node("Reshape", [x, b.const("spectrum_shape", np.array([n_rows, 2, -1], i64))], ["spectrum"])
    x = b.node("Mul", [x, x], ["spectrum_sq"])
    re2, im2 = b.nodes_outputs(
        "Split", [x, b.const("split_c", np.array([1, 1], i64))], ["power_re", "power_im"], axis=1
    )
    x = b.node("Add", [re2, im2], ["power_3d"])
    x = b.node("Reshape", [x, b.const("power_shape", np.array([n_rows, -1], i64))], ["power"])
    row: dict[int, int] = {}
    for idx, k in enumerate(prefix.tolist()):
        row.setdefault(k if k <= n_fft // 2 else n_fft - k, idx)
    return x, [row[k] for k in range(n_fft // 2 + 1)]


def _power_four_step(b: _Builder, fe: FrontEnd, input_name: str) -> tuple[str, list[int]]:
    """The four-step DFT: frames in rows, a four-step FFT with elementwise twiddles (followed by
    the same banded mel projection and dB tail as the default). Slower than the stages; kept to
    compare against (``benchmarks/frontend.py``)."""
    n_fft, frames = fe.n_fft, fe.frames
    n1, n2 = _split(n_fft)
    k2n = (n_fft // 2) // n1 + 1
    i64 = np.int64
    x = _framed(b, fe, input_name, frames_last=False)  # [B, F, n_fft]
    x = b.node("Reshape", [x, b.const("frame_shape", np.array([0, frames, n1, n2], i64))], ["frames4"])
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    x = b.node("Mul", [x, b.const("hann", hann.reshape(n1, n2).astype(np.float32))], ["windowed"])
    k1 = np.arange(n1)[:, None]
    a1 = 2.0 * np.pi * k1 * np.arange(n1)[None, :] / n1
    x = b.node(
        "MatMul",
        [b.const("dft1", np.concatenate([np.cos(a1), -np.sin(a1)]).astype(np.float32)), x],
        ["stage1"],
    )
    ar, ai = b.nodes_outputs(
        "Split", [x, b.const("split1", np.array([n1, n1], i64))], ["stage1_re", "stage1_im"], axis=2
    )
    tw = 2.0 * np.pi * k1 * np.arange(n2)[None, :] / n_fft
    tc = b.const("twiddle_cos", np.cos(tw).astype(np.float32))
    ts = b.const("twiddle_sin", np.sin(tw).astype(np.float32))
    br = b.node(
        "Add", [b.node("Mul", [ar, tc], ["t_rc"]), b.node("Mul", [ai, ts], ["t_is"])], ["twiddled_re"]
    )
    bi = b.node(
        "Sub", [b.node("Mul", [ai, tc], ["t_ic"]), b.node("Mul", [ar, ts], ["t_rs"])], ["twiddled_im"]
    )
    x = b.node("Concat", [br, bi], ["twiddled"], axis=3)
    a2 = 2.0 * np.pi * np.arange(n2)[:, None] * np.arange(k2n)[None, :] / n2
    c2, s2 = np.cos(a2), np.sin(a2)
    x = b.node(
        "MatMul", [x, b.const("dft2", np.block([[c2, -s2], [s2, c2]]).astype(np.float32))], ["spectrum"]
    )
    x = b.node("Mul", [x, x], ["spectrum_sq"])
    sr_, si_ = b.nodes_outputs(
        "Split", [x, b.const("split2", np.array([k2n, k2n], i64))], ["power_re", "power_im"], axis=3
    )
    x = b.node("Add", [sr_, si_], ["power4"])  # [B, F, n1, k2n]; bin k1 + n1*k2 at [k1, k2]
    x = b.node("Reshape", [x, b.const("power_shape", np.array([-1, n1 * k2n], i64))], ["power_rows"])
    x = b.node("Transpose", [x], ["power"], perm=[1, 0])  # [n1*k2n, B*F]
    kk = (np.arange(n1)[:, None] + n1 * np.arange(k2n)[None, :]).ravel()
    row = {int(k): i for i, k in enumerate(kk) if k <= n_fft // 2}
    return x, [row[k] for k in range(n_fft // 2 + 1)]


def _power_stft(b: _Builder, fe: FrontEnd, input_name: str) -> tuple[str, list[int]]:
    """ONNX's ``STFT`` operator (opset 17) with the periodic Hann window."""
    n_fft, hop = fe.n_fft, fe.hop_length
    i64 = np.int64
    x = _padded(b, fe, input_name)
    x = b.node("Unsqueeze", [x, b.const("axis2", np.array([2], i64))], ["signal"])
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    x = b.node(
        "STFT",
        [
            x,
            b.const("step", np.array(hop, i64)),
            b.const("window", hann.astype(np.float32)),
            b.const("length", np.array(n_fft, i64)),
        ],
        ["stft"],
        onesided=1,
    )  # [B, F, bins, 2]
    x = b.node("Mul", [x, x], ["stft_sq"])
    x = b.node("ReduceSum", [x, b.const("axis3", np.array([3], i64))], ["power_fb"], keepdims=0)
    x = b.node("Reshape", [x, b.const("power_shape", np.array([-1, n_fft // 2 + 1], i64))], ["power_rows"])
    x = b.node("Transpose", [x], ["power"], perm=[1, 0])  # [bins, B*F]
    return x, list(range(n_fft // 2 + 1))


def _graph_description(fe: FrontEnd, dft: str) -> str:
    """What ``exporter.front_end_graph`` says about the graph."""
    if dft == "four-step":
        return "four-step DFT as MatMul (n_fft = {} x {})".format(*_split(fe.n_fft))
    if dft == "stft":
        return "ONNX STFT operator"
    return "real DFT as {} stages of batched MatMul (n_fft = {})".format(
        len(_radices(fe.n_fft)), " x ".join(str(r) for r in _radices(fe.n_fft))
    )


_DFTS = {"stages": _power_stages, "four-step": _power_four_step, "stft": _power_stft}
#: What each ``dft`` choice writes into the manifest's ``exporter.front_end_graph``.
DFT_METHODS = tuple(_DFTS)


def frontend_graph(
    fe: FrontEnd,
    *,
    input_name: str = AUDIO_INPUT,
    output_name: str = INPUT_NAME,
    dft: str = "stages",
) -> Any:
    """The front end as a standalone ONNX model.

    Parameters
    ----------
    fe : FrontEnd
        Front-end parameters (from the log-mel-input artifact's manifest).
    input_name, output_name : str
        Graph input and output names; every other name starts with :data:`FRONTEND_PREFIX`.
    dft : {"stages", "four-step", "stft"}
        How the spectrum is computed: ``"stages"`` (the default and the fastest: a real DFT
        as stages of batched ``MatMul`` with the twiddles folded in), ``"four-step"`` (a
        four-step FFT with elementwise twiddles) or ``"stft"`` (ONNX's ``STFT`` operator). All three give the
        same features within float32 rounding; ``benchmarks/frontend.py`` times them.

    Returns
    -------
    onnx.ModelProto
        Input ``[batch, fe.window_samples]`` float32, output ``[batch, n_mels, frames, 1]``
        float32 (NHWC, as log-mel-input models take it), opset 17, IR version 8.

    Raises
    ------
    ExportError
        When ``n_fft`` is not a multiple of ``hop_length`` (framing by blocks needs it), or
        ``dft`` is unknown.
    """
    import onnx
    from onnx import TensorProto, helper

    if fe.n_fft % fe.hop_length:
        raise ExportError(f"front end: n_fft={fe.n_fft} is not a multiple of hop_length={fe.hop_length}")
    if dft not in _DFTS:
        raise ExportError(f"front end: dft must be one of {list(_DFTS)}, got {dft!r}")
    b = _Builder(output_name)
    i64 = np.int64
    power, bins = _DFTS[dft](b, fe, input_name)  # [P, B * frames]
    # Mel projection band block by band block (features._mel_bands: each block of mel bands
    # with only the FFT bins its triangles cover), rows gathered straight from the power.
    blocks = []
    for m0, _m1, b0, b1, w in _mel_bands(fe):
        rows = b.node(
            "Gather", [power, b.const(f"bins_{m0}", np.array(bins[b0:b1], i64))], [f"power_{m0}"], axis=0
        )
        blocks.append(
            b.node("MatMul", [b.const(f"mel_weights_{m0}", np.ascontiguousarray(w.T)), rows], [f"mel_{m0}"])
        )
    x = b.node("Concat", blocks, ["mel_flat"], axis=0) if len(blocks) > 1 else blocks[0]  # [n_mels, B*F]
    x = b.node("Reshape", [x, b.const("mel_shape", np.array([fe.n_mels, -1, fe.frames], i64))], ["mel_t"])
    mel = x = b.node("Transpose", [x], ["mel_power"], perm=[1, 0, 2])  # [B, n_mels, F]
    # dB re. the window's peak, scaled to [0, 1]: ln(max(mel, amin)) - its maximum, times
    # 10 / ln(10) / top_db, plus 1, clipped; a window whose peak is <= amin is all zeros.
    amin = b.const("amin", np.array(_AMIN, np.float32))
    ln_x = b.node("Log", [b.node("Max", [x, amin], ["mel_floor"])], ["mel_ln"])
    ln_peak = b.node("ReduceMax", [ln_x], ["peak_ln"], axes=[1, 2], keepdims=1)
    scale = b.const("db_scale", np.array(10.0 / math.log(10.0) / fe.top_db, np.float32))
    one = b.const("one", np.array(1.0, np.float32))
    zero = b.const("zero", np.array(0.0, np.float32))
    x = b.node(
        "Add",
        [b.node("Mul", [b.node("Sub", [ln_x, ln_peak], ["rel_ln"]), scale], ["rel_unit"]), one],
        ["unit_raw"],
    )
    x = b.node("Clip", [x, zero, one], ["unit"])
    peak = b.node("ReduceMax", [mel], ["peak"], axes=[1, 2], keepdims=1)
    silent = b.node("LessOrEqual", [peak, amin], ["silent"])
    x = b.node("Where", [silent, zero, x], ["unit_or_silence"])
    b.node("Unsqueeze", [x, b.const("axis3", np.array([3], i64))], [output_name])
    graph = helper.make_graph(
        b.nodes,
        "instrunet-frontend",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", fe.window_samples])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", fe.n_mels, fe.frames, 1])],
        b.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="instrunet-export"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def compose(frontend: Any, network: Any, *, network_input: str, graph_name: str) -> Any:
    """``frontend`` (audio → features) followed by ``network`` (features → probabilities).

    Returns
    -------
    onnx.ModelProto
        One graph with the front end's input and the network's outputs; the network's
        opsets and IR version are kept.
    """
    import onnx
    from onnx import compose as oc

    fe_out = frontend.graph.output[0].name
    clash = {n.name for n in frontend.graph.node} & {n.name for n in network.graph.node}
    if clash:
        raise ExportError(f"node names used by both graphs: {sorted(clash)[:5]}")
    front = onnx.ModelProto()
    front.CopyFrom(frontend)
    front.ir_version = network.ir_version
    # The network may import more domains (tf2onnx adds ai.onnx.ml); give the front end the same set.
    front.ClearField("opset_import")
    front.opset_import.extend(network.opset_import)
    merged = oc.merge_models(front, network, io_map=[(fe_out, network_input)])
    merged.graph.name = graph_name
    merged.producer_name = "instrunet-export"
    merged.doc_string = ""
    onnx.checker.check_model(merged, full_check=True)
    return merged


def parity_windows(
    fe: FrontEnd, audio: Sequence[Path], *, max_windows: int = 32, seed: int = 0
) -> np.ndarray:
    """Windows the parity check runs on: real recordings plus the corner cases.

    Windows of every file in ``audio``, the ones the runtime analyses (decoded, mixed to mono
    and resampled by :func:`instrunet_core.audio.iter_blocks`, cut by
    :func:`instrunet_core.features.window_audio`), plus digital silence, a window at -100 dBFS,
    a partial window padded with silence, an impulse and a clipped square wave.

    Returns
    -------
    np.ndarray [shape=(n, fe.window_samples), dtype=float32]
    """
    from instrunet_core.audio import iter_blocks

    win = fe.window_samples
    out: list[np.ndarray] = []
    per_file = max(1, (max_windows - 5) // max(1, len(audio)))
    for path in audio:
        got: list[np.ndarray] = []
        for _, windows in window_audio(iter_blocks(path, target_sr=fe.sample_rate), fe=fe):
            got.extend(windows)
        idx = np.linspace(0, len(got) - 1, min(per_file, len(got))).round().astype(int)
        out.extend(got[i] for i in idx)
    rng = np.random.default_rng(seed)
    t = np.arange(win) / fe.sample_rate
    quiet = (1e-5 * rng.standard_normal(win)).astype(np.float32)
    partial = np.zeros(win, np.float32)
    partial[: win // 3] = 0.3 * np.sin(2 * np.pi * 220.0 * t[: win // 3])
    impulse = np.zeros(win, np.float32)
    impulse[win // 2] = 1.0
    square = np.sign(np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    out.extend([np.zeros(win, np.float32), quiet, partial, impulse, square])
    return np.stack(out).astype(np.float32)


def _default_audio() -> list[Path]:
    ex = Path(__file__).resolve().parents[1] / "examples"
    return [p for p in (ex / "solo_flute.wav", ex / "ensemble.flac") if p.is_file()]


def export_waveform(
    source: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    audio: Sequence[Path] | None = None,
    n_references: int = 4,
    atol: float = DEFAULT_ATOL,
    force: bool = False,
    dft: str = "stages",
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> dict[str, Any]:
    """Compose the ONNX front end with a log-mel-input artifact and write a waveform-in artifact.

    Parameters
    ----------
    source : path
        Log-mel-input artifact folder (``<name>/<version>/`` with ``manifest.json``), verified
        by :func:`instrunet_core.verify_artifact` (manifest and sha256) before use.
    out : path
        Folder that receives ``NAME/VERSION/``.
    name, version : str, optional
        Default: ``<source name>-waveform`` and the source's version.
    audio : list of path, optional
        Recordings for the parity check (default: the repository's ``examples/``).
    n_references : int
        Windows stored (float16) in ``references.npz`` with the outputs they give.
    atol : float
        Largest accepted difference, both on the features (against
        :func:`instrunet_core.features.batch_features`) and on the outputs (against the
        source artifact run on those features).
    dft : {"stages", "four-step", "stft"}
        How the graph computes the spectrum (see :func:`frontend_graph`).

    Returns
    -------
    dict
        ``{"path", "sha256", "parity"}``.

    Raises
    ------
    ExportError
        Source unusable, or a parity check failed (nothing written).
    """
    import onnx

    try:
        checked = verify_artifact(source, references=False)
    except ModelError as e:
        raise ExportError(str(e)) from None
    src_dir, src = checked.path, checked.manifest
    if src.input_kind != "logmel":
        raise ExportError(
            f"{src_dir}: input kind is {src.input_kind!r}; the source must take log-mel spectrograms"
        )
    src_file = src_dir / src.file
    name = name or f"{src.name}-waveform"
    version = version or src.version
    # said before anything is composed or checked (the manifest would refuse them after parity)
    if not (NAME_RE.match(name) and len(name) <= 128):
        raise ExportError(
            f"--name {name!r}: use a lower-case identifier ([a-z0-9_.-], at most 128 characters)"
        )
    if not SEMVER_RE.match(version):
        raise ExportError(f"--version {version!r}: expected semver X.Y.Z")
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol >= 0):
        raise ExportError(f"--atol {atol!r}: must be a finite number >= 0")
    if n_references < 0:
        raise ExportError(f"--n-references {n_references}: must be >= 0")
    dest = Path(out) / name / version
    if dest.exists() and not force:
        raise ExportError(f"{dest}: already exists (pass --force to replace it)")
    fe = src.front_end
    if fe is None:  # a log-mel input always has one (validate_manifest)
        raise ExportError(f"{src_dir}: the manifest has no front_end")
    try:  # the source's graph must load and fit its manifest before it is composed
        check_io(onnx_session(src_file, PARITY_RUNTIME), src, str(src_file))
        network = onnx.load(str(src_file))
        frontend = frontend_graph(fe, dft=dft)
        composed = compose(frontend, network, network_input=src.input["name"], graph_name=f"{name}-{version}")
    except ModelError as e:
        raise ExportError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - onnx's own errors for a graph it cannot read or join
        raise ExportError(
            f"{src_file}: cannot compose the front end with this graph: {describe(e)}"
        ) from None
    model_bytes = composed.SerializeToString()

    clips = list(audio) if audio is not None else _default_audio()
    if not clips:
        raise ExportError("no audio for the parity check: pass --audio FILE ...")
    x = parity_windows(fe, clips)
    ref_feats = batch_features(x, fe=fe)
    sess_fe = onnx_session(frontend.SerializeToString(), PARITY_RUNTIME)
    got_feats = np.concatenate(
        [sess_fe.run(None, {AUDIO_INPUT: x[i : i + 8]})[0] for i in range(0, len(x), 8)]
    )
    feat_diff = float(np.abs(got_feats[..., 0] - ref_feats).max())
    # Every output the source declares (the families, "other", the embedding), by name: the
    # graph's own output order need not put the families first.
    outs = [src.output["name"], *(d["name"] for d in (src.other, src.embedding) if d is not None)]
    sess_src = onnx_session(src_file, PARITY_RUNTIME)
    ys_src = sess_src.run(outs, {src.input["name"]: ref_feats[..., None]})
    sess = onnx_session(model_bytes, PARITY_RUNTIME)
    runs = [sess.run(outs, {AUDIO_INPUT: x[i : i + 8]}) for i in range(0, len(x), 8)]
    ys = [np.concatenate([r[k] for r in runs]) for k in range(len(outs))]
    y, y_src = ys[0], ys_src[0]
    out_diff = max(float(np.abs(a - b).max()) for a, b in zip(ys, ys_src, strict=True))
    agree = float(np.mean(y.argmax(1) == y_src.argmax(1)))
    log(
        f"parity on {len(x)} windows: features max |onnx - numpy| {feat_diff:.3g}, outputs max |waveform - "
        f"log-mel artifact| {out_diff:.3g}, top-1 agreement {agree:.0%}"
    )
    if not (feat_diff <= atol and out_diff <= atol) or agree < 1.0:
        raise ExportError(
            f"parity failed: features {feat_diff:.3g}, outputs {out_diff:.3g} (atol {atol:g}), "
            f"top-1 agreement {agree:.2%}; nothing written"
        )

    idx: np.ndarray = (
        np.linspace(0, len(x) - 1, min(n_references, len(x))).round().astype(int)
        if n_references > 0
        else np.zeros(0, dtype=int)
    )
    x_ref16 = x[idx].astype(np.float16)
    y_ref = sess.run(outs[:1], {AUDIO_INPUT: x_ref16.astype(np.float32)})[0] if len(idx) else None
    import onnxruntime as ort

    raw = src.to_dict()
    m = build_manifest(
        name=name,
        version=version,
        task=src.task,
        labels=list(src.labels),
        front_end=fe.to_dict(),
        input_shape=[None, fe.window_samples],
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        parity={
            "max_abs_diff": out_diff,
            "top1_agreement": agree,
            "n": int(len(x)),
            "features_max_abs_diff": feat_diff,
            "atol": atol,
            "against": f"{src.name} {src.version} on instrunet_core.features (numpy) features",
        },
        exporter={
            **dict(src.exporter),
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "opset": _OPSET,
            "front_end_graph": _graph_description(fe, dft),
        },
        metrics=raw.get("metrics"),
        training_data=raw.get("training_data"),
        thresholds=raw.get("thresholds"),
        license=raw.get("license"),
        description=(
            f"{src.name} {src.version} with the log-mel front end inside the graph: "
            f"{fe.sample_rate} Hz mono samples in"
        ),
        references=y_ref is not None,
        waveform=True,
        output_name=src.output["name"],
        other_threshold=src.other.get("threshold") if src.other is not None else None,
        other_veto=src.other.get("veto") if src.other is not None else None,
        # the gate is nodes after the network: composed with the front end, the graph keeps it
        noise_gate=src.other.get("noise_gate") if src.other is not None else None,
        embedding_dim=src.embedding_dim,
        secondary=src.secondary,
        source={"name": src.name, "version": src.version, "sha256": src.sha256},
    )
    refs = {"inputs": x_ref16, "outputs": y_ref} if y_ref is not None else None
    write_artifact(
        dest,
        model_bytes=model_bytes,
        manifest=m,
        references=refs,
        force=force,
        verify=lambda f: check_artifact(f, atol=atol),
    )
    return {"path": str(dest), "sha256": m["sha256"], "parity": m["parity"]}
