"""The verified ONNX session: the one place that opens and checks a model artifact.

:class:`ModelSession` verifies an artifact against its manifest (SHA-256, tensor names,
shapes and dtypes, label count, front-end parameters) and runs the network on log-mel
features (:meth:`ModelSession.predict_features`). :func:`resolve_artifact` turns a
registered name, an artifact folder or a ``manifest.json`` path into the folder and its
manifest. A session holds no mutable per-call state, so one instance can be shared
between threads (``onnxruntime.InferenceSession.run`` is thread-safe).

Audio-level inference (windows, resampling, aggregation) is
:class:`instrunet_core.inference.Classifier`, built on this module; :class:`instrunet_core.Model`
adds ``predict`` on top of both.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, ModelError
from .features import FrontEnd, batch_features
from .manifest import DEFAULT_THRESHOLDS, MANIFEST_FILENAME, Manifest, read_manifest
from .registry import Registry, get_registry
from .validate import DEFAULT_BATCH_SIZE  # windows per InferenceSession.run call
from .verify import verify_artifact

__all__ = [
    "ModelSession",
    "onnx_session",
    "ModelSpec",
    "resolve_artifact",
    "open_session",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_INTRA_OP_THREADS",
]

#: What names a model: a loaded session, a registered name, an artifact folder (or its
#: ``manifest.json``), or ``None`` for the default model.
ModelSpec = Any

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str) and "," in providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
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


#: Most windows per run of a waveform-input graph (its intermediates are ~1-2 MB per window):
#: per window, runs of 1 to 4 were within a few percent of each other and runs of 8 or more
#: slower, their intermediates leaving the CPU's caches (benchmarks/frontend.py measures it).
_WAVEFORM_BATCH = 4

#: onnxruntime intra-op threads when none are asked for, chosen by measurement on the 2-core
#: development machine (docs/benchmarks.md, "Threads"): one thread per session was the fastest
#: or tied setting for the timeline, and it leaves the other core to decoding, the front end
#: and the host. 0 means onnxruntime's own default (one thread per core).
DEFAULT_INTRA_OP_THREADS = 1


def _thread_count(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise InputError(f"{what} must be an integer >= 0 (0: onnxruntime's default), got {value!r}")
    return int(value)


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


def onnx_session(
    onnx_path: str | os.PathLike[str],
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
    inter_op_threads: int = 1,
    spinning: bool = False,
) -> Any:
    """An onnxruntime ``InferenceSession`` set up as every instrunet model runs.

    The one place session options are chosen: sequential execution, no idle-thread spinning
    (unless ``spinning``), quiet logs; a GPU provider that cannot start falls back to the CPU
    with a warning. Used by :class:`ModelSession` and by plugins that run their own models (the
    condition analyzer). Verify the artifact first (:func:`~instrunet_core.verify.verify_artifact`).

    Raises
    ------
    ModelError
        onnxruntime is missing or cannot load the file.
    """
    where = os.fspath(onnx_path)
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - a hard dependency
        raise ModelError(f"onnxruntime is not installed: {e}") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # onnxruntime's idle workers spin for a while after each run; here every run is
    # followed by numpy work (decoding, the front end), which they would starve. Measured
    # in benchmarks/run.py: front end + model per 3 s clip 8.3 ms with spinning, 3-4 ms without.
    # With several intra-op threads and nothing else to run (a waveform-in artifact, one clip at
    # a time), spinning instead saves a thread wake-up per operator: ``spinning=True``.
    spin = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    wanted = list(providers)
    try:
        return ort.InferenceSession(where, sess_options=so, providers=wanted)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several private types
        if wanted == ["CPUExecutionProvider"]:
            raise ModelError(f"{where}: onnxruntime cannot load the model: {e}") from None
        # A GPU provider that is installed but cannot start (no device, driver or CUDA
        # libraries): fall back to the CPU, and say so.
        warnings.warn(
            f"instrunet: {wanted[0]} failed to start ({e}); using CPUExecutionProvider",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        return ort.InferenceSession(where, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e2:  # noqa: BLE001
        raise ModelError(f"{where}: onnxruntime cannot load the model: {e2}") from None


class ModelSession:
    """A verified ONNX session plus its manifest: features in, probabilities out.

    This is the model as :class:`~instrunet_core.inference.Classifier` uses it. Use
    :func:`instrunet_core.load_model` (which returns a :class:`~instrunet_core.Model`, a
    ``ModelSession`` with audio-level ``predict``) rather than the constructor.

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
        Execution providers the session actually uses, in priority order (what onnxruntime
        reports after loading, e.g. ``["CPUExecutionProvider"]``).
    input_kind : {"logmel", "waveform"}
        What the graph takes: log-mel spectrograms (computed by :mod:`instrunet_core.features`)
        or mono samples at the front end's rate (the front end is inside the graph).
    session_options : dict
        ``intra_op_threads``, ``inter_op_threads``, ``spinning`` and the ``providers`` asked for.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        spinning: bool = False,
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
        verify_artifact(p, references=False, manifest=m)  # file present, sha256 (references: models --check)
        if threads is not None and intra_op_threads is None:
            intra_op_threads = threads  # the older name
        intra = _thread_count(intra_op_threads, "intra_op_threads", DEFAULT_INTRA_OP_THREADS)
        inter = _thread_count(inter_op_threads, "inter_op_threads", 1)
        wanted = _resolve_providers(providers)
        if not isinstance(spinning, bool):
            raise InputError(f"spinning must be True or False, got {spinning!r}")
        self._session = onnx_session(
            onnx_path, providers=wanted, intra_op_threads=intra, inter_op_threads=inter, spinning=spinning
        )
        # What onnxruntime actually uses (it drops providers that fail to initialise).
        self.providers: list[str] = list(self._session.get_providers())
        self.session_options = {
            "intra_op_threads": intra,
            "inter_op_threads": inter,
            "spinning": spinning,
            "providers": list(wanted),
        }
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
            raise ModelError(
                f"{where}: ONNX input is named {i0.name!r}, the manifest says {m.input['name']!r}"
            )
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
                raise ModelError(
                    f"{where}: ONNX {what} shape {shape} disagrees with the manifest's {spec['shape']}"
                )

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
        assert fe is not None  # features-input manifests are refused in __init__
        return fe

    @property
    def input_kind(self) -> str:
        """``"logmel"`` or ``"waveform"`` (see :attr:`Manifest.input_kind`)."""
        return self.manifest.input_kind

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph (the first of :attr:`providers`)."""
        return self.providers[0]

    @property
    def thresholds(self) -> dict[str, float]:
        """Presence threshold per label (manifest ``thresholds``, else 0.5 multilabel / 0.1 multiclass)."""
        base = DEFAULT_THRESHOLDS[self.task]
        given = dict(self.manifest.thresholds or {})
        return {lab: float(given.get(lab, base)) for lab in self.labels}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, task={self.task!r}, labels={len(self.labels)})"

    # ------------------------------------------------------------------ inference
    def predict_features(self, x: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
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
        if self.input_kind != "logmel":
            raise ModelError(
                f"{self.path}: this artifact takes {self.input_kind} input, not features; use predict_windows"
            )
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
        return self._run(x, batch_size)

    def _run(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Session runs of at most ``batch_size`` items (one run when the batch fits)."""
        step = max(1, int(batch_size))
        if x.shape[0] <= step:
            (y,) = self._session.run([self._output_name], {self._input_name: x})
        else:
            outs = []
            for i in range(0, x.shape[0], step):
                (yi,) = self._session.run([self._output_name], {self._input_name: x[i : i + step]})
                outs.append(yi)
            y = np.concatenate(outs)
        y = np.asarray(y, dtype=np.float32)
        if not np.all(np.isfinite(y)):
            raise ModelError(f"{self.path}: the model produced NaN or infinite outputs")
        return y

    def predict_windows(self, windows: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Run the network on analysis windows of mono audio at the front end's rate.

        A feature-input artifact gets its features from
        :func:`instrunet_core.features.batch_features`; a waveform-input artifact computes the
        same features inside its graph. (Streams go through
        :class:`~instrunet_core.inference.Classifier`, which shares STFT frames between
        overlapping windows of feature-input models.)

        Parameters
        ----------
        windows : np.ndarray [shape=(B, n), dtype=float32]
            Mono windows at ``front_end.sample_rate``, each cut or silence-padded to
            ``front_end.window_samples``.
        batch_size : int
            Windows per ``InferenceSession.run`` call.

        Returns
        -------
        np.ndarray [shape=(B, n_labels), dtype=float32]
        """
        fe = self.front_end
        if self.input_kind == "logmel":
            return self.predict_features(batch_features(windows, fe=fe), batch_size=batch_size)
        w = np.asarray(windows)
        if w.ndim != 2:
            raise InputError(f"predict_windows: expected shape (batch, n), got shape {w.shape}")
        if not np.issubdtype(w.dtype, np.floating):
            raise InputError(f"predict_windows: expected floating-point audio, got dtype {w.dtype}")
        n = fe.window_samples
        if w.shape[1] != n:
            fitted = np.zeros((w.shape[0], n), dtype=np.float32)
            m = min(n, w.shape[1])
            fitted[:, :m] = w[:, :m]
            w = fitted
        w = np.ascontiguousarray(w, dtype=np.float32)
        if not np.all(np.isfinite(w)):
            raise InputError("predict_windows: audio contains NaN or infinite samples")
        if w.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        # The graph's STFT intermediates take ~2 MB per window: runs of at most
        # _WAVEFORM_BATCH windows keep onnxruntime's arena (and the peak RSS) small.
        return self._run(w, min(int(batch_size), _WAVEFORM_BATCH))


def _looks_like_path(spec: Any) -> bool:
    """A PathLike, or a string with a path separator or ending in ``.json``; a bare word is a name
    (a folder in the working directory is ``./folder``)."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and (os.sep in spec or "/" in spec or spec.endswith(".json"))


def resolve_artifact(
    spec: str | os.PathLike[str] | None = None,
    version: str | None = None,
    *,
    registry: Registry | None = None,
) -> tuple[Path, Manifest | None]:
    """Folder and (when known) manifest of a model named by ``spec``.

    Parameters
    ----------
    spec : str, PathLike or None
        A registered model name, an artifact folder (``<name>/<version>/``) or its
        ``manifest.json``, or ``None`` for the default model. A string is a path when it holds
        a path separator or ends in ``.json`` (``./folder`` for a folder here), else a name.
    version : str, optional
        Semver ``X.Y.Z`` of a registered name; the highest when omitted.
    registry : Registry, optional
        Where names are resolved (default: :func:`instrunet_core.get_registry`).

    Returns
    -------
    (pathlib.Path, Manifest or None)
        The manifest is ``None`` for a folder; the session reads and checks it.

    Raises
    ------
    ModelError
        Unknown name or version, no model installed, or a path that does not exist.
    """
    if spec is not None and _looks_like_path(spec):
        p = Path(os.fspath(spec))
        if not p.exists():
            raise ModelError(f"{p}: model artifact not found (need a folder with {MANIFEST_FILENAME})")
        if version is not None:
            raise InputError(f"{p}: version applies to registered names, not to an artifact folder")
        return (p.parent if p.name == MANIFEST_FILENAME else p), None
    reg = registry or get_registry()
    entry = reg.resolve_model(None if spec is None else os.fspath(spec), version)
    return entry.path, entry.manifest


def open_session(
    spec: ModelSpec = None,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    spinning: bool = False,
    registry: Registry | None = None,
) -> ModelSession:
    """``spec`` itself when it is already a session, else the verified session it names.

    See :func:`resolve_artifact` for what ``spec`` may be.
    """
    if isinstance(spec, ModelSession):
        return spec
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        raise InputError(
            f"model must be a Model, a model name or an artifact folder, got {type(spec).__name__}"
        )
    path, manifest = resolve_artifact(spec, registry=registry)
    return ModelSession(
        path,
        providers=providers,
        threads=threads,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        spinning=spinning,
        manifest=manifest,
    )
