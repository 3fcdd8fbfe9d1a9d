"""The ONNX teacher: YAMNet's AudioSet scores, embeddings and family scores, without TensorFlow.

Needs numpy, onnxruntime and soxr only, and the graphs that ``python -m training.teacher
prepare`` and ``convert`` wrote (``cache/teacher``). Audio at any rate is resampled to 16 kHz
with soxr (quality HQ, as :mod:`instrunet_core.audio` does).

* :meth:`Teacher.patches` — any audio → one row per 0.96 s patch (hop 0.48 s), with
  YAMNet's own padding (the SavedModel's signature, ``yamnet.onnx``).
* :meth:`Teacher.score_windows` — a batch of project windows (65,024 samples at 22,050 Hz,
  2.949 s) → per window: the AudioSet scores and embeddings of the five patches that lie wholly
  inside it (0 to 2.895 s), and the family / group scores pooled over them
  (``yamnet_windows.onnx``, batched).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .convert import MANIFEST, WAVEFORM_ONNX, WINDOWS_ONNX
from .families import GROUPS, check_mapping, pool
from .weights import (
    PATCH_HOP_SECONDS,
    PATCH_SECONDS,
    TEACHER_RATE,
    TeacherError,
    class_names,
    default_cache,
    sha256_file,
)

__all__ = ["Teacher", "PatchScores", "WindowScores", "PATCH_SECONDS", "PATCH_HOP_SECONDS"]


@dataclasses.dataclass(frozen=True)
class PatchScores:
    """Per-patch outputs of :meth:`Teacher.patches`.

    Attributes
    ----------
    scores : np.ndarray [shape=(P, 521), dtype=float32]
        AudioSet class probabilities (sigmoid).
    embeddings : np.ndarray [shape=(P, 1024), dtype=float32]
    starts : np.ndarray [shape=(P,), dtype=float64]
        Start of each patch in seconds (the patch lasts :data:`PATCH_SECONDS`).
    """

    scores: np.ndarray
    embeddings: np.ndarray
    starts: np.ndarray


@dataclasses.dataclass(frozen=True)
class WindowScores:
    """Outputs of :meth:`Teacher.score_windows` for ``B`` windows of ``P`` patches each.

    Attributes
    ----------
    scores : np.ndarray [shape=(B, P, 521)]
    embeddings : np.ndarray [shape=(B, P, 1024)]
    groups : np.ndarray [shape=(B, n_groups)]
        Family and group scores (order :attr:`Teacher.group_names`, the eight families first):
        classes pooled by ``how`` within each patch, then patches by ``over``.
    embedding : np.ndarray [shape=(B, 1024)]
        Mean of the patches' embeddings.
    """

    scores: np.ndarray
    embeddings: np.ndarray
    groups: np.ndarray
    embedding: np.ndarray


def _session(path: Path, threads: int) -> object:
    from instrunet_core.session import RuntimeOptions, onnx_session

    return onnx_session(path, RuntimeOptions(intra_op_threads=threads))


class Teacher:
    """YAMNet through onnxruntime.

    Parameters
    ----------
    cache : Path, optional
        Folder with ``yamnet.onnx``, ``yamnet_windows.onnx``, ``teacher.json`` and the
        SavedModel's class map (default :func:`~training.teacher.weights.default_cache`).
    threads : int
        onnxruntime intra-op threads (1 = one core).

    The graphs' sha256 must match ``teacher.json``, and the family mapping must hold on the
    class map, or :class:`TeacherError` is raised.
    """

    def __init__(self, cache: Path | None = None, *, threads: int = 1) -> None:
        cache = cache or default_cache()
        path = cache / MANIFEST
        if not path.is_file():
            raise TeacherError(
                f"{path}: no teacher here (run `python -m training.teacher prepare` and `convert`)"
            )
        self.manifest = json.loads(path.read_text())
        for name in (WAVEFORM_ONNX, WINDOWS_ONNX):
            want = self.manifest["graphs"][name]["sha256"]
            if sha256_file(cache / name) != want:
                raise TeacherError(f"{cache / name}: sha256 differs from {path}")
        self.class_names = class_names(cache)
        check_mapping(self.class_names)
        self.group_names = list(GROUPS)
        win = self.manifest["graphs"][WINDOWS_ONNX]["window"]
        self.window_samples = int(win["samples"])
        self.window_rate = int(win["sample_rate"])
        self.window_samples_16k = int(win["samples_16k"])
        self._wave = _session(cache / WAVEFORM_ONNX, threads)
        self._windows = _session(cache / WINDOWS_ONNX, threads)

    def patches(self, audio: np.ndarray, sample_rate: int) -> PatchScores:
        """Per-patch AudioSet scores and embeddings of ``audio`` (mono or ``(n, channels)``)."""
        from instrunet_core.audio import load_audio

        y = load_audio(np.asarray(audio, dtype=np.float32), sample_rate, target_sr=TEACHER_RATE)
        scores, emb = self._wave.run(["scores", "embeddings"], {"waveform": y})  # type: ignore[attr-defined]
        starts = np.arange(len(scores)) * PATCH_HOP_SECONDS
        return PatchScores(scores, emb, starts)

    def resample_windows(self, windows: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """``[B, window_samples]`` at ``sample_rate`` → ``[B, window_samples_16k]`` at 16 kHz.

        All windows go through one multichannel soxr call (each window a channel; soxr
        filters channels independently, so the result equals resampling each alone).
        """
        import soxr

        sr = self.window_rate if sample_rate is None else int(sample_rate)
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window_samples or sr != self.window_rate:
            raise TeacherError(
                f"windows must be [batch, {self.window_samples}] at {self.window_rate} Hz, "
                f"got {x.shape} at {sr} Hz"
            )
        if len(x) == 0:
            return np.zeros((0, self.window_samples_16k), np.float32)
        y = soxr.resample(np.ascontiguousarray(x.T), sr, TEACHER_RATE, quality="HQ")
        return np.ascontiguousarray(y.T, dtype=np.float32)

    def score_windows(
        self,
        windows: np.ndarray,
        sample_rate: int | None = None,
        *,
        batch_size: int = 32,
        how: str = "max",
        over: str = "mean",
    ) -> WindowScores:
        """Score project windows ``[B, 65024]`` (22,050 Hz) by pooling over the patches inside each.

        ``how``: pooling over a family's classes (``"max"`` or ``"noisy_or"``); ``over``:
        pooling of the per-patch family scores over the window's patches (``"mean"`` or
        ``"max"``).
        """
        if over not in ("mean", "max"):
            raise ValueError(f"over must be 'mean' or 'max', got {over!r}")
        y16 = self.resample_windows(windows, sample_rate)
        scores, embs = [], []
        for i in range(0, len(y16), batch_size):
            s, e = self._windows.run(["scores", "embeddings"], {"audio16k": y16[i : i + batch_size]})  # type: ignore[attr-defined]
            scores.append(s)
            embs.append(e)
        n_p = self.manifest["graphs"][WINDOWS_ONNX].get("patches", 5)
        s = np.concatenate(scores) if scores else np.zeros((0, n_p, len(self.class_names)), np.float32)
        e = np.concatenate(embs) if embs else np.zeros((0, n_p, 1024), np.float32)
        per_patch = pool(s, how=how)
        groups = per_patch.mean(axis=1) if over == "mean" else per_patch.max(axis=1)
        return WindowScores(s, e, groups.astype(np.float32), e.mean(axis=1))
