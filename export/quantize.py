"""Dynamic int8 quantisation of an exported model, with its measured cost and gain."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.session import onnx_session

from . import PARITY_RUNTIME, ExportError
from .convert import onnx_predict

__all__ = ["quantize_bytes", "latency_ms", "compare"]


def quantize_bytes(model_bytes: bytes) -> bytes:
    """``onnxruntime.quantization.quantize_dynamic`` (weights uint8, activations quantised per batch).

    Weights are unsigned because onnxruntime's CPU ``ConvInteger`` kernel takes uint8 × uint8
    only; signed weights would give a model that cannot be loaded.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="instrunet-quant-") as d:
        src, dst = Path(d) / "model.onnx", Path(d) / "model.int8.onnx"
        src.write_bytes(model_bytes)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QUInt8)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"dynamic quantisation failed: {e}") from None
        return dst.read_bytes()


def latency_ms(session: Any, x: np.ndarray, *, batch: int, reps: int = 10) -> float:
    """Median wall time of one ``session.run`` on ``batch`` windows, in milliseconds."""
    xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])), dtype=np.float32)
    name = session.get_inputs()[0].name
    session.run(None, {name: xb})  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        session.run(None, {name: xb})
        times.append((time.perf_counter() - t) * 1000)
    return float(statistics.median(times))


def compare(
    float_bytes: bytes,
    int8_bytes: bytes,
    x: np.ndarray,
    labels: np.ndarray,
    keras_out: np.ndarray,
    *,
    output: str | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy of both models on the labelled windows, int8 deviation, latency, size
    (``output``: the probabilities' name in a graph with more outputs, ``other`` and
    ``embedding``, which onnxruntime may list first)."""
    fs, qs = onnx_session(float_bytes, PARITY_RUNTIME), onnx_session(int8_bytes, PARITY_RUNTIME)
    if output is None:
        pf, pq = onnx_predict(fs, x), onnx_predict(qs, x)
    else:
        pf, pq = onnx_predict(fs, x, names=[output])[0], onnx_predict(qs, x, names=[output])[0]
    known = labels >= 0
    if not np.any(known):
        raise ExportError("no parity window has a label the model knows: cannot measure accuracy")
    acc_f = float(np.mean(pf[known].argmax(1) == labels[known]))
    acc_q = float(np.mean(pq[known].argmax(1) == labels[known]))
    return {
        "n": int(known.sum()),
        "accuracy_float32": acc_f,
        "accuracy_int8": acc_q,
        "accuracy_drop_points": round(100 * (acc_f - acc_q), 4),
        "max_abs_diff_vs_keras": float(np.abs(pq - keras_out).max()),
        "top1_agreement_vs_float32": float(np.mean(pq.argmax(1) == pf.argmax(1))),
        "latency_ms_float32": {"batch1": latency_ms(fs, x, batch=1), "batch32": latency_ms(fs, x, batch=32)},
        "latency_ms_int8": {"batch1": latency_ms(qs, x, batch=1), "batch32": latency_ms(qs, x, batch=32)},
        "bytes_float32": len(float_bytes),
        "bytes_int8": len(int8_bytes),
        "int8_outputs": pq,
    }
