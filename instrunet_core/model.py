"""Models: :func:`load_model` and :class:`Model`, the one model class.

A :class:`Model` is a verified artifact (manifest, SHA-256, tensor names and shapes) with its
onnxruntime session (:func:`~instrunet_core.session.onnx_session`): log-mel features or
waveform windows in, probabilities out, and :meth:`Model.predict` on audio, which runs the one
inference path, :class:`~instrunet_core.inference.Classifier`. Whatever names a model (a
loaded one, a registered name, an artifact folder) becomes a :class:`Model` through
:func:`open_model`, so ``Classifier(...).model`` is a :class:`Model` whichever way it was made.

The classifier is built on the model, so :meth:`Model.predict` and :meth:`Model.classifier`
import it when called: the model module stays below the inference module in the layers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, ModelError, UnknownModelError, one_line, warn
from .features import DEFAULT_BATCH_SIZE, SILENCE_DB, FrontEnd, batch_features
from .inputs import SampleRate, check_count, check_float_samples
from .manifest import DEFAULT_THRESHOLDS, MANIFEST_FILENAME, Manifest, parse_semver, read_manifest
from .registry import DEFAULT_ENV_VAR, Registry, get_registry
from .session import RuntimeMissingError, RuntimeOptions
from .timeline import DEFAULT_MIN_DURATION, DEFAULT_SMOOTHING, OTHER_VETO, Detection
from .verify import check_io, verified_session

if TYPE_CHECKING:  # annotations only: the classifier imports this module
    from .analysis import Embedding, Prediction
    from .audio import AudioSource
    from .inference import Classifier

__all__ = [
    "Model",
    "ModelOutputs",
    "ModelSpec",
    "RUN_WINDOWS",
    "load_model",
    "open_model",
    "resolve_artifact",
]

#: What names a model: a loaded :class:`Model`, a registered name, an artifact folder (or its
#: ``manifest.json``), or ``None`` for the default model.
ModelSpec = Any

#: Most windows per run of a waveform-input graph (its intermediates are ~1-2 MB per window):
#: per window, runs of 1 to 4 were within a few percent of each other and runs of 8 or more
#: slower, their intermediates leaving the CPU's caches (benchmarks/frontend.py measures it).
_WAVEFORM_BATCH = 4


@dataclasses.dataclass(frozen=True)
class ModelOutputs:
    """What a model computes for a batch of ``B`` windows.

    Attributes
    ----------
    probabilities : np.ndarray [shape=(B, n_labels), dtype=float32]
    other : np.ndarray [shape=(B,), dtype=float32] or None
        Probability that the window's sound is none of the labels (models with an open-set
        output; ``None`` otherwise).
    embedding : np.ndarray [shape=(B, dim), dtype=float32] or None
        The network's embedding of each window, when asked for and the model has one.
    """

    probabilities: np.ndarray
    other: np.ndarray | None = None
    embedding: np.ndarray | None = None


#: Most windows per onnxruntime run in :meth:`Model.outputs` (the classifier's batches). Per
#: window, runs of 4 were the fastest measured here for both packaged networks
#: (``family-compact`` about a sixth faster than runs of 16, ``family`` a few per cent): larger
#: runs outgrow the core's cache.
RUN_WINDOWS = 4

#: How far outside [0, 1] a probability may stray by float rounding (a softmax summed on a GPU):
#: within it, it is clipped into [0, 1]; beyond, the model is broken (a ModelError).
PROBABILITY_SLACK = 1e-3


def _unpickle_model(path: str, options: RuntimeOptions, sha256: str) -> Model:
    """A pickled :class:`Model` loaded again from its folder (the same weights, or an error)."""
    m = Model(path, options=options)
    if m.manifest.sha256 != sha256:
        raise ModelError(
            f"{path}: the artifact changed since this model was pickled (sha256 {sha256[:12]}, "
            f"now {m.manifest.sha256[:12]})"
        )
    return m


class Model:
    """A verified ONNX model plus its manifest; classifies features, windows and audio.

    Use :func:`load_model` rather than the constructor. A model holds no mutable per-call
    state, so one instance can be shared between threads and classifiers
    (``onnxruntime.InferenceSession.run`` is thread-safe).

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
    provider : str
        The execution provider that runs the graph (the first of ``providers``).
    input_kind : {"logmel", "waveform"}
        What the graph takes: log-mel spectrograms (computed by :mod:`instrunet_core.features`)
        or mono samples at the front end's rate (the front end is inside the graph)
        (:attr:`Manifest.input_kind`).
    other_threshold : float or None
        Probability of "none of the labels" from which a window is answered ``"other"``
        (models with an open-set output; ``None`` otherwise).
    other_veto : float
        This model's level of :attr:`~instrunet_core.timeline.Detection.other_veto`, what a
        timeline uses unless told otherwise: its manifest's ``other.veto``, else
        :data:`~instrunet_core.timeline.OTHER_VETO`.
    embedding_dim : int or None
        Size of :meth:`embed`'s vectors (``None``: the model has no embedding output).
    leading : int
        How many of the most probable labels at a moment need only their thresholds on the
        time axis; a label behind them needs its threshold plus its margin (:attr:`margins`):
        the manifest's ``secondary`` (0 without one: every label needs only its threshold).
    margins : dict
        ``{label: float}``, the manifest's ``secondary.margins`` (empty without one).
    options : RuntimeOptions
        How onnxruntime runs it.
    session_options : dict
        ``intra_op_threads``, ``inter_op_threads``, ``spinning`` and the ``providers`` asked for.
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its folder and options (a process pool's workers, ``spawn``): unpickling
        loads the artifact again there, checked against the sha256 this model had."""
        return (_unpickle_model, (str(self.path), self.options, self.manifest.sha256))

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        options: RuntimeOptions | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        p = Path(path)
        if p.name == MANIFEST_FILENAME:
            p = p.parent
        self.path = p
        # Read again even when given one (a registry's, read when it was built): a process that
        # lives long (the app, a notebook) sees a model exported again since, not its old manifest.
        self.manifest = read_manifest(p)
        if manifest is not None and (manifest.name, manifest.version) != (
            self.manifest.name,
            self.manifest.version,
        ):
            raise ModelError(
                f"{p / MANIFEST_FILENAME}: now names {self.manifest.name} {self.manifest.version}, not "
                f"{manifest.name} {manifest.version} as when the registry read it (changed since: "
                "instrunet_core.get_registry(refresh=True) reads the models again)"
            )
        m = self.manifest
        if m.front_end is None:
            raise ModelError(
                f"{p / MANIFEST_FILENAME}: {m.name} {m.version} takes a feature vector (input.layout "
                "'features'), not audio; it is loaded by the plugin that computes its features"
            )
        self.front_end: FrontEnd = m.front_end
        self.name, self.version, self.labels, self.task = m.name, m.version, m.labels, m.task
        self.input_kind = m.input_kind
        opts = options or RuntimeOptions()
        wanted = opts.provider_list()
        self.options = dataclasses.replace(opts, providers=tuple(wanted))
        # the file read once: its sha256 checked, the session built from those bytes (the
        # references are replayed by models --check)
        self._session = verified_session(p, m, self.options)
        # What onnxruntime actually uses (it drops providers that fail to initialise).
        self.providers: list[str] = list(self._session.get_providers())
        self.provider = self.providers[0]
        self.session_options = {
            "intra_op_threads": self.options.intra,
            "inter_op_threads": self.options.inter,
            "spinning": self.options.spinning,
            "providers": list(wanted),
        }
        check_io(self._session, m, str(p / m.file))
        self._input_name: str = m.input["name"]
        self._output_name: str = m.output["name"]
        self._other_name: str | None = m.other["name"] if m.other else None
        self._embedding_name: str | None = m.embedding["name"] if m.embedding else None
        self.other_threshold: float | None = m.other_threshold
        self.other_veto: float = OTHER_VETO if m.other_veto is None else m.other_veto
        self.embedding_dim: int | None = m.embedding_dim
        self.leading: int = m.leading
        self.margins: dict[str, float] = m.margins

    @property
    def thresholds(self) -> dict[str, float]:
        """Presence threshold per label: the manifest's ``thresholds``, else the task's
        :data:`~instrunet_core.manifest.DEFAULT_THRESHOLDS`."""
        base = DEFAULT_THRESHOLDS[self.task]
        given = dict(self.manifest.thresholds or {})
        return {lab: float(given.get(lab, base)) for lab in self.labels}

    def detection(
        self,
        *,
        smoothing: float = DEFAULT_SMOOTHING,
        min_duration: float = DEFAULT_MIN_DURATION,
        other_veto: float | None = None,
        leading: int | None = None,
    ) -> Detection:
        """How a timeline decides presence with this model: the model's own veto level
        (:attr:`other_veto`) and leading labels with their margins (:attr:`leading`,
        :attr:`margins`) unless given (``leading=0``: every label at its threshold alone). A
        ``leading`` given for a model without margins changes nothing, and is warned about."""
        det = Detection(
            smoothing=smoothing,
            min_duration=min_duration,
            silence_db=SILENCE_DB,
            other_veto=self.other_veto if other_veto is None else other_veto,
            leading=self.leading if leading is None else leading,
            margins=tuple(self.margins.items()),
        )
        if leading is not None and det.leading and not any(self.margins.values()):
            warn(
                f"{self.name} {self.version} has no margins (no secondary in its manifest): leading "
                f"{det.leading} changes nothing; every label needs its threshold alone"
            )
        return det

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, task={self.task!r}, labels={len(self.labels)})"

    # ------------------------------------------------------------------ the network
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
        return self.outputs_features(x, batch_size=batch_size).probabilities

    def outputs_features(
        self, x: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE, embedding: bool = False
    ) -> ModelOutputs:
        """:meth:`predict_features` with every output of the model: the probabilities, the
        open-set probability and (``embedding=True``) the embeddings."""
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
        return self._run(x, batch_size, embedding)

    def predict_windows(self, windows: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Run the network on analysis windows of mono audio at the front end's rate.

        A log-mel-input artifact gets its features from
        :func:`instrunet_core.features.batch_features`; a waveform-input artifact computes the
        same features inside its graph. (Streams go through
        :class:`~instrunet_core.inference.Classifier`, which shares STFT frames between
        overlapping windows of log-mel-input models.)

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
        return self.outputs_windows(windows, batch_size=batch_size).probabilities

    def outputs_windows(
        self, windows: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE, embedding: bool = False
    ) -> ModelOutputs:
        """:meth:`predict_windows` with every output of the model (see :meth:`outputs_features`)."""
        fe = self.front_end
        if self.input_kind == "logmel":
            return self.outputs_features(
                batch_features(windows, fe=fe), batch_size=batch_size, embedding=embedding
            )
        w = check_float_samples(windows, what="predict_windows", ndim=2)
        n = fe.window_samples
        if w.shape[1] != n:
            fitted = np.zeros((w.shape[0], n), dtype=np.float32)
            m = min(n, w.shape[1])
            fitted[:, :m] = w[:, :m]
            w = fitted
        # The graph's STFT intermediates take ~2 MB per window: runs of at most
        # _WAVEFORM_BATCH windows keep onnxruntime's arena (and the peak RSS) small.
        return self._run(np.ascontiguousarray(w), min(int(batch_size), _WAVEFORM_BATCH), embedding)

    def outputs(self, x: np.ndarray, *, embedding: bool = False) -> ModelOutputs:
        """Every output for a batch of the model's own input, as the
        :class:`~instrunet_core.inference.Classifier` makes it: features
        (:attr:`input_kind` ``"logmel"``) or window audio (``"waveform"``), in onnxruntime runs
        of at most :data:`RUN_WINDOWS` windows."""
        if self.input_kind == "waveform":
            return self.outputs_windows(x, batch_size=RUN_WINDOWS, embedding=embedding)
        return self.outputs_features(x, batch_size=RUN_WINDOWS, embedding=embedding)

    def _run(self, x: np.ndarray, batch_size: int, embedding: bool = False) -> ModelOutputs:
        """Session runs of at most ``batch_size`` items (one run when the batch fits), their
        outputs checked once for the whole batch (:meth:`_check_outputs`)."""
        # (name, columns, probabilities?) of each output asked for
        wanted = [(self._output_name, len(self.labels), True)]
        if self._other_name:
            wanted.append((self._other_name, 1, True))
        if embedding and self._embedding_name:
            wanted.append((self._embedding_name, self.embedding_dim or 0, False))
        names = [name for name, _, _ in wanted]
        if x.shape[0] == 0:
            runs = [[np.zeros((0, width), np.float32) for _, width, _ in wanted]]
        else:
            step = max(1, int(batch_size))
            try:
                runs = [
                    self._session.run(names, {self._input_name: x[i : i + step]})
                    for i in range(0, x.shape[0], step)
                ]
            except MemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - onnxruntime raises several private types
                raise ModelError(
                    f"{self.path / self.manifest.file}: onnxruntime failed running the model on a batch of "
                    f"shape {x[:step].shape}: {one_line(str(e))}"
                ) from None
        try:
            cols = [
                np.asarray(np.concatenate([r[j] for r in runs]), dtype=np.float32) for j in range(len(names))
            ]
        except ValueError as e:  # runs of different shapes, or a scalar output
            raise ModelError(f"{self.path / self.manifest.file}: outputs of unusable shapes ({e})") from None
        if not all(np.all(np.isfinite(c)) for c in cols):
            raise ModelError(f"{self.path}: the model produced NaN or infinite outputs")
        if self._other_name and cols[1].ndim == 1:  # "other" as [N] reads as [N, 1]
            cols[1] = cols[1].reshape(-1, 1)
        self._check_outputs(wanted, cols, x.shape[0])
        other = cols[1].reshape(-1) if self._other_name else None
        emb = cols[-1] if embedding and self._embedding_name else None
        return ModelOutputs(cols[0], other, emb)

    def _check_outputs(self, wanted: list[tuple[str, int, bool]], cols: list[np.ndarray], n: int) -> None:
        """Each output ``cols[j]`` (``wanted[j]``: its name, its width in the manifest, whether it
        holds probabilities) has one row for each of the ``n`` inputs and that width, and
        probabilities lie in [0, 1] within :data:`PROBABILITY_SLACK` (clipped into it in place):
        a pass or two over the batch's outputs, nothing per window.

        Raises
        ------
        ModelError
            Naming the ONNX file, the output and what is wrong with it.
        """
        where = self.path / self.manifest.file
        for (name, width, probabilities), c in zip(wanted, cols, strict=True):
            if c.ndim != 2 or len(c) != n:
                raise ModelError(
                    f"{where}: output {name!r} has shape {c.shape}: not one row for each of {n} inputs"
                )
            if c.shape[1] != width:
                raise ModelError(
                    f"{where}: output {name!r} has {c.shape[1]} columns, the manifest says {width}"
                )
            if probabilities and c.size:
                lo, hi = float(c.min()), float(c.max())
                if lo < -PROBABILITY_SLACK or hi > 1.0 + PROBABILITY_SLACK:
                    raise ModelError(
                        f"{where}: output {name!r} holds {lo:.4g} to {hi:.4g}, not probabilities in [0, 1]"
                    )
                if lo < 0.0 or hi > 1.0:
                    np.clip(c, 0.0, 1.0, out=c)

    # ------------------------------------------------------------------ audio
    def classifier(
        self, *, hop: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None
    ) -> Classifier:
        """A new push-style :class:`~instrunet_core.inference.Classifier` on this model
        (``workers``: threads of its ``classify`` pipeline, default the usable cores - 1, at most 4)."""
        from .inference import Classifier

        return Classifier(self, hop=hop, batch_size=batch_size, workers=workers)

    def predict(
        self,
        audio: AudioSource,
        sample_rate: SampleRate | None = None,
        *,
        hop: float | None = None,
        top_k: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Prediction:
        """Overall prediction for a piece of audio (all windows aggregated).

        Parameters
        ----------
        audio : np.ndarray [shape=(n,) or (n, channels)], path or file object
            Audio at any rate and channel count (arrays: int or float samples).
        sample_rate : int
            Rate of ``audio`` (required for arrays; with a file, its header's rate or nothing).
        hop : float, optional
            Seconds between window starts (default 1.5, snapped to whole STFT frames).
        top_k : int, optional
            Labels kept in :attr:`Prediction.top` (all when omitted; at least 1).
        batch_size : int
            Most windows per batch (see :class:`~instrunet_core.inference.Classifier`).

        Returns
        -------
        Prediction
            Loudness-weighted mean of the non-silent windows; ``"silence"`` if none;
            ``low_evidence`` set for audio with less than one second of sound.
        """
        if top_k is not None:  # before the audio is read
            check_count(top_k, name="top_k")
        # closed however the call ends: a failed call's traceback, kept by a host (a Future),
        # held the classifier's worker threads and buffers
        with self.classifier(hop=hop, batch_size=batch_size) as clf:
            clf.classify(audio, sample_rate)
            return clf.prediction(top_k=top_k)

    def embed(
        self,
        audio: AudioSource,
        sample_rate: SampleRate | None = None,
        *,
        hop: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
    ) -> Embedding:
        """Embeddings of a piece of audio: one vector per window and one for the whole.

        The model's ``embedding`` output (:attr:`embedding_dim` values: for the default the last
        convolution block's channels pooled over time and frequency, for the trained open-set
        models the layer before the output; the manifest's description says which),
        L2-normalised, so that the dot product of two vectors is their cosine similarity:
        recordings of the same kind of instrument lie close together (docs/embeddings.md has a
        similarity search).

        Parameters
        ----------
        audio, sample_rate, hop, batch_size
            As for :meth:`predict`.
        workers : int, optional
            Worker threads of the pipeline (:class:`~instrunet_core.Classifier`'s ``workers``);
            the vectors are the same for any number.

        Returns
        -------
        Embedding
            ``vector [dim]`` for the recording (the loudness-weighted mean of its non-silent
            windows), ``windows [T, dim]``, ``times [T, 2]``, ``silent [T]``, ``hop``.

        Raises
        ------
        InputError
            The model has no embedding output.
        """
        from .inference import Classifier

        with Classifier(self, hop=hop, batch_size=batch_size, workers=workers, embeddings=True) as clf:
            clf.classify(audio, sample_rate)
            return clf.embedding()

    def predict_batch(
        self,
        audios: Sequence[np.ndarray],
        sample_rate: SampleRate,
        *,
        hop: float | None = None,
        top_k: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[Prediction]:
        """:meth:`predict` for several arrays at one ``sample_rate``.

        Returns
        -------
        list of Prediction
            One per input, in order.

        Raises
        ------
        InputError
            ``audios`` is not a list or tuple (a string was read letter by letter as file names,
            an array sample by sample, a dict by its keys), or as :meth:`predict`.
        """
        if not isinstance(audios, (list, tuple)):
            hint = " (one clip: [audio])" if isinstance(audios, np.ndarray) else ""
            raise InputError(
                f"predict_batch: audios must be a list or tuple of arrays, got {type(audios).__name__}{hint}"
            )
        if top_k is not None:  # before the audio is read
            check_count(top_k, name="top_k")
        out = []
        with self.classifier(hop=hop, batch_size=batch_size) as clf:
            for a in audios:
                clf.classify(a, sample_rate)
                out.append(clf.prediction(top_k=top_k))
        return out


def _looks_like_path(spec: Any) -> bool:
    """A PathLike, or a string with a path separator or ending in ``.json``; a bare word is a name
    (a folder in the working directory is ``./folder``)."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and (os.sep in spec or "/" in spec or spec.endswith(".json"))


def _refuse_name_folder(p: Path) -> None:
    """A ``<name>/`` folder given where its ``<name>/<version>/`` was meant: say which versions
    it holds (else the manifest's own "not found" follows)."""
    try:
        versions = [q.name for q in p.iterdir() if (q / MANIFEST_FILENAME).is_file()]
    except OSError:
        return
    good = sorted((v for v in versions if _semver_or_none(v)), key=lambda v: _semver_or_none(v) or ())
    if versions:
        best = good[-1] if good else sorted(versions)[-1]
        raise ModelError(
            f"{p}: holds no {MANIFEST_FILENAME} but the versions {', '.join(sorted(versions))}: "
            f"give one of them ({p / best})"
        )


def _semver_or_none(text: str) -> tuple[int, int, int] | None:
    try:
        return parse_semver(text)
    except InputError:
        return None


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
        The manifest is ``None`` for a folder; :class:`Model` reads and checks it.

    Raises
    ------
    ModelError
        Unknown name or version, no model installed, or a path that does not exist.
    InputError
        ``spec`` is neither a string nor a path.
    """
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        raise InputError(
            f"model must be a registered model name or an artifact folder, got {type(spec).__name__}"
        )
    if spec is not None and _looks_like_path(spec):
        p = Path(os.fspath(spec))
        if not p.exists():
            raise UnknownModelError(f"{p}: model artifact not found (need a folder with {MANIFEST_FILENAME})")
        if version is not None:
            raise InputError(f"{p}: version applies to registered names, not to an artifact folder")
        if p.name == MANIFEST_FILENAME:
            return p.parent, None
        if not p.is_dir():
            raise ModelError(
                f"{p}: not a model artifact folder (give the folder holding {MANIFEST_FILENAME} and the ONNX "
                f"file, or its {MANIFEST_FILENAME})"
            )
        if not (p / MANIFEST_FILENAME).exists():
            _refuse_name_folder(p)
        return p, None
    if registry is not None and not isinstance(registry, Registry):
        raise InputError(f"registry must be an instrunet_core Registry, got {type(registry).__name__}")
    reg = registry or get_registry()
    try:
        entry = reg.resolve_model(None if spec is None else os.fspath(spec), version)
    except ModelError as e:
        word = None if spec is None else os.fspath(spec)
        if word is None or not Path(word).exists():
            raise
        # A bare word is a name; a folder (or file) of that name here gets a hint, not a guess.
        raise ModelError(f"{e} (to load the artifact folder {word!r} here, give ./{word})") from None
    return entry.path, entry.manifest


def open_model(
    spec: ModelSpec = None, *, options: RuntimeOptions | None = None, registry: Registry | None = None
) -> Model:
    """``spec`` itself when it is already a :class:`Model`, else the verified model it names
    (see :func:`resolve_artifact`), run with ``options``."""
    if isinstance(spec, Model):
        return spec
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        raise InputError(
            f"model must be a Model, a model name or an artifact folder, got {type(spec).__name__}"
        )
    return _open_resolved(spec, None, options=options, registry=registry)


def _open_resolved(
    spec: str | os.PathLike[str] | None,
    version: str | None,
    *,
    options: RuntimeOptions | None,
    registry: Registry | None,
) -> Model:
    """The model :func:`resolve_artifact` names. A registered newest version that fails to
    open (its ONNX file damaged, a graph its manifest does not describe: checked only now, not
    when it was registered) is an error that says so and names the newest older version that
    registered cleanly, as a broken manifest's is (the version was not pinned)."""
    path, manifest = resolve_artifact(spec, version, registry=registry)
    try:
        return Model(path, options=options, manifest=manifest)
    except RuntimeMissingError:
        raise  # no version of any model loads: none is to blame
    except ModelError as e:
        raw = os.environ.get(DEFAULT_ENV_VAR, "").strip()
        pinned = (
            version is not None
            or (isinstance(spec, str) and "@" in spec)
            or (spec is None and "@" in raw)  # INSTRUNET_DEFAULT_MODEL=name@version
        )
        if manifest is None or pinned:  # a folder given, or the version asked for
            raise
        reg = registry or get_registry()
        top = parse_semver(manifest.version)
        older = [
            x.version
            for x in reg.models
            if x.error is None
            and x.name == manifest.name
            and x.version != "?"
            and parse_semver(x.version) < top
        ]
        if not older:
            raise
        best = max(older, key=parse_semver)
        by_env = f"{DEFAULT_ENV_VAR}={raw!r}: " if spec is None and raw else ""
        raise ModelError(
            f"{by_env}model {manifest.name} {manifest.version}, its newest version, is broken: {e} "
            f"(to use {best}: {manifest.name}@{best})"
        ) from None


def load_model(
    name: str | os.PathLike[str] | None = None,
    version: str | None = None,
    *,
    providers: str | Sequence[str] | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    spinning: bool = False,
    registry: Registry | None = None,
) -> Model:
    """Load a registered model, or an artifact folder.

    Parameters
    ----------
    name : str or PathLike, optional
        Registered model name, or the path of an artifact folder (``<name>/<version>/``
        holding ``manifest.json`` and the ONNX file) or of its ``manifest.json``; the
        default model when omitted.
    version : str, optional
        Semver ``X.Y.Z`` of a registered name; the highest registered version when omitted.
    providers, intra_op_threads, inter_op_threads, spinning
        How onnxruntime runs the model: the fields of
        :class:`~instrunet_core.session.RuntimeOptions` (default: the CPU, one thread).
    registry : Registry, optional
        Registry to resolve names in (default: :func:`instrunet_core.get_registry`).

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        No model installed, unknown name/version, a missing folder, or an artifact that
        fails verification.
    InputError
        ``name`` is neither a string nor a path, or a runtime option is out of range.

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> model = instrunet_core.load_model()  # doctest: +SKIP
    >>> model.predict(np.zeros(22050, np.float32), 22050).label  # doctest: +SKIP
    'silence'
    """
    options = RuntimeOptions(
        providers=providers,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        spinning=spinning,
    )
    return _open_resolved(name, version, options=options, registry=registry)
