"""Loading and running exported ONNX models.

:func:`load_model` resolves a name/version through the plugin registry, verifies the
artifact against its manifest (SHA-256, tensor names, shapes and dtypes, label
count, front-end parameters) and returns a :class:`Model`. A :class:`Model` holds no
mutable per-call state, so one instance can be shared between threads
(``onnxruntime.InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, ModelError
from .features import FrontEnd
from .manifest import MANIFEST_FILENAME, Manifest, read_manifest, sha256_file

if TYPE_CHECKING:
    from .audio import AudioSource
    from .plugins import Registry

__all__ = ["Model", "Prediction", "load_model", "load_model_from_path", "SILENCE_LABEL"]

#: Label reported when every window is below the silence level.
SILENCE_LABEL = "silence"

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Overall prediction for one piece of audio.

    Attributes
    ----------
    label : str
        Most probable label, or ``"silence"`` when all windows are silent.
    confidence : float
        Probability of ``label`` (1.0 for silence).
    probabilities : dict[str, float]
        Mean probability per label over the non-silent windows (all 0 for silence).
    n_windows : int
        Windows analysed.
    silent : bool
        True when every window was silent.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    n_windows: int = 0
    silent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": float(self.confidence),
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "n_windows": int(self.n_windows),
            "silent": bool(self.silent),
        }


def _resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        if providers.lower() == "auto":
            wanted = [p for p in ("CUDAExecutionProvider",) if p in available]
            return [*wanted, "CPUExecutionProvider"]
        providers = [providers]
    out: list[str] = []
    for p in providers:
        full = _PROVIDER_ALIASES.get(str(p).lower(), str(p))
        if full not in available:
            warnings.warn(
                f"instrunet: execution provider {full} is not available here (available: {available}); skipping it",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if full not in out:
            out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def _dims_match(onnx_shape: Sequence[Any], manifest_shape: Sequence[Any]) -> bool:
    if len(onnx_shape) != len(manifest_shape):
        return False
    for a, b in zip(onnx_shape, manifest_shape, strict=True):
        a_dyn = not isinstance(a, int) or a <= 0
        if b is None:
            continue  # batch axis: any
        if a_dyn or a != b:
            return False
    return True


class Model:
    """A verified ONNX model plus its manifest.

    Use :func:`load_model` rather than the constructor.

    Attributes
    ----------
    name, version : str
    labels : tuple of str
        Output order.
    task : {"multiclass", "multilabel"}
    front_end : FrontEnd
    manifest : Manifest
    path : pathlib.Path
        Directory holding ``manifest.json`` and the ONNX file.
    providers : list of str
        Execution providers in use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        p = Path(path)
        if p.name == MANIFEST_FILENAME:
            p = p.parent
        self.path = p
        self.manifest = manifest if manifest is not None else read_manifest(p)
        m = self.manifest
        if m.front_end is None:
            raise ModelError(
                f"{p / MANIFEST_FILENAME}: {m.name} {m.version} takes a feature vector (input.layout "
                "'features'), not audio; it is loaded by the plugin that computes its features"
            )
        onnx_path = p / m.file
        where = str(onnx_path)
        if not onnx_path.is_file():
            raise ModelError(f"{where}: model file not found (named by {p / MANIFEST_FILENAME})")
        digest = sha256_file(onnx_path)
        if digest != m.sha256:
            raise ModelError(
                f"{where}: sha256 {digest} does not match the manifest's {m.sha256} "
                "(the file was changed or corrupted; re-export the model)"
            )
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a hard dependency
            raise ModelError(f"onnxruntime is not installed: {e}") from None
        so = ort.SessionOptions()
        if threads is not None:
            if int(threads) < 0:
                raise InputError(f"threads must be >= 0, got {threads!r}")
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # onnxruntime's idle workers spin for a while after each run; here every run is
        # followed by numpy work (decoding, the front end), which they would starve. Measured
        # in benchmarks/run.py: front end + model per 3 s clip 8.3 ms with spinning, 3-4 ms without.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.providers = _resolve_providers(providers)
        try:
            self._session = ort.InferenceSession(os.fspath(onnx_path), sess_options=so, providers=self.providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several private types
            raise ModelError(f"{where}: onnxruntime cannot load the model: {e}") from None
        self._check_io(where)
        self._input_name: str = m.input["name"]
        self._output_name: str = m.output["name"]

    def _check_io(self, where: str) -> None:
        m = self.manifest
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{where}: expected 1 input, the ONNX graph has {len(inputs)}")
        i0 = inputs[0]
        out = next((o for o in outputs if o.name == m.output["name"]), None)
        if i0.name != m.input["name"]:
            raise ModelError(f"{where}: ONNX input is named {i0.name!r}, the manifest says {m.input['name']!r}")
        if out is None:
            raise ModelError(
                f"{where}: ONNX outputs are {[o.name for o in outputs]}, the manifest says {m.output['name']!r}"
            )
        for what, t, spec in (("input", i0, m.input), ("output", out, m.output)):
            if t.type != "tensor(float)":
                raise ModelError(f"{where}: ONNX {what} dtype is {t.type}, the manifest says {spec['dtype']}")
            shape = list(t.shape)
            if what == "output" and (not shape or shape[-1] != len(m.labels)):
                raise ModelError(
                    f"{where}: ONNX output has {shape[-1] if shape else '?'} classes (shape {shape}) "
                    f"but the manifest lists {len(m.labels)} labels"
                )
            if not _dims_match(shape, spec["shape"]):
                raise ModelError(f"{where}: ONNX {what} shape {shape} disagrees with the manifest's {spec['shape']}")

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def front_end(self) -> FrontEnd:
        fe = self.manifest.front_end
        assert fe is not None  # checked in __init__
        return fe

    @property
    def thresholds(self) -> dict[str, float]:
        """Presence threshold per label (manifest ``thresholds``, else 0.5 multilabel / 0.1 multiclass)."""
        base = 0.5 if self.task == "multilabel" else 0.1
        given = dict(self.manifest.thresholds or {})
        return {lab: float(given.get(lab, base)) for lab in self.labels}

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, version={self.version!r}, task={self.task!r}, labels={len(self.labels)})"

    # ------------------------------------------------------------------ inference
    def predict_features(self, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Run the network on log-mel features.

        Parameters
        ----------
        x : np.ndarray [shape=(B, n_mels, frames) or (B, n_mels, frames, 1)]
            Output of :func:`instrunet_core.features.batch_features`.
        batch_size : int
            Items per ``InferenceSession.run`` call.

        Returns
        -------
        np.ndarray [shape=(B, n_labels), dtype=float32]
        """
        x = np.asarray(x)
        fe = self.front_end
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[1:] != (fe.n_mels, fe.frames, 1):
            raise InputError(
                f"predict_features: expected shape (B, {fe.n_mels}, {fe.frames}[, 1]), got {np.shape(x)}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise InputError("predict_features: features contain NaN or infinite values")
        if x.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        outs = []
        for i in range(0, x.shape[0], max(1, int(batch_size))):
            (y,) = self._session.run([self._output_name], {self._input_name: x[i : i + batch_size]})
            outs.append(np.asarray(y, dtype=np.float32))
        y = np.concatenate(outs)
        if not np.all(np.isfinite(y)):
            raise ModelError(f"{self.path}: the model produced NaN or infinite outputs")
        return y

    def predict(
        self, audio: AudioSource, sample_rate: int | None = None, *, hop: float = 1.5, batch_size: int = 16
    ) -> Prediction:
        """Overall prediction for a piece of audio (all windows aggregated).

        Parameters
        ----------
        audio : np.ndarray [shape=(n,) or (n, channels)], path or file object
            Audio at any rate and channel count (arrays: int or float samples).
        sample_rate : int
            Rate of ``audio`` (required for arrays).
        hop : float
            Seconds between window starts.

        Returns
        -------
        Prediction
            Mean probabilities of the non-silent windows; ``"silence"`` if none.
        """
        from .analysis import aggregate, run_windows

        res = run_windows(self, audio, sample_rate, hop=hop, batch_size=batch_size)
        return aggregate(self, res.probabilities, res.silent)

    def predict_batch(
        self, audios: Sequence[np.ndarray], sample_rate: int, *, hop: float = 1.5, batch_size: int = 16
    ) -> list[Prediction]:
        """:meth:`predict` for several arrays at one ``sample_rate``.

        Returns
        -------
        list of Prediction
            One per input, in order.
        """
        return [self.predict(a, sample_rate, hop=hop, batch_size=batch_size) for a in audios]


def load_model_from_path(
    path: str | os.PathLike[str],
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
) -> Model:
    """Load a model directly from its directory (or its ``manifest.json``)."""
    return Model(path, providers=providers, threads=threads)


def load_model(
    name: str | None = None,
    version: str | None = None,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    registry: Registry | None = None,
) -> Model:
    """Load a registered model.

    Parameters
    ----------
    name : str, optional
        Registered model name; the default model when omitted.
    version : str, optional
        Semver ``X.Y.Z``; the highest registered version when omitted.
    providers : str or list of str, optional
        onnxruntime execution providers: ``"cpu"`` (default), ``"cuda"``, ``"auto"``
        (CUDA when available) or full provider names. Unavailable ones are skipped
        with a warning; CPU is always the fallback.
    threads : int, optional
        Intra-op threads (onnxruntime's default when omitted).
    registry : Registry, optional
        Registry to resolve in (default: :func:`instrunet_core.get_registry`).

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        No model installed, unknown name/version, or an artifact that fails verification.

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> model = instrunet_core.load_model()  # doctest: +SKIP
    >>> model.predict(np.zeros(22050, np.float32), 22050).label  # doctest: +SKIP
    'silence'
    """
    from .plugins import get_registry

    reg = registry or get_registry()
    entry = reg.resolve_model(name, version)
    return Model(entry.path, providers=providers, threads=threads, manifest=entry.manifest)
