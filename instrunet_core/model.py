"""Loading models: :func:`load_model` and :class:`Model`.

A :class:`Model` is the verified ONNX session (:class:`~instrunet_core.session.ModelSession`:
manifest checks, ``predict_features``) plus :meth:`Model.predict` on audio, which runs the
one inference path, :class:`~instrunet_core.inference.Classifier`. Layers import one way:
``session`` ← ``inference`` ← ``model``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .analysis import SILENCE_LABEL, Prediction
from .audio import AudioSource
from .inference import Classifier
from .registry import Registry
from .session import DEFAULT_BATCH_SIZE, ModelSession, resolve_artifact

__all__ = ["Model", "Prediction", "load_model", "SILENCE_LABEL"]


class Model(ModelSession):
    """A verified ONNX model plus its manifest; classifies features and audio.

    Use :func:`load_model` rather than the constructor. See
    :class:`~instrunet_core.session.ModelSession` for the attributes (``name``,
    ``version``, ``labels``, ``task``, ``front_end``, ``thresholds``, ``manifest``, ``path``,
    ``providers``) and :meth:`predict_features`.
    """

    def classifier(
        self, *, hop: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None
    ) -> Classifier:
        """A new push-style :class:`~instrunet_core.inference.Classifier` on this model
        (``workers``: threads of its ``classify`` pipeline, default the usable cores, at most 4)."""
        return Classifier(self, hop=hop, batch_size=batch_size, workers=workers)

    def predict(
        self,
        audio: AudioSource,
        sample_rate: int | None = None,
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
            Rate of ``audio`` (required for arrays).
        hop : float, optional
            Seconds between window starts (default 1.5, snapped to whole STFT frames).
        top_k : int, optional
            Labels kept in :attr:`Prediction.top` (all when omitted).
        batch_size : int
            Most windows per batch (see :class:`~instrunet_core.inference.Classifier`).

        Returns
        -------
        Prediction
            Loudness-weighted mean of the non-silent windows; ``"silence"`` if none;
            ``low_evidence`` set for audio with less than one second of sound.
        """
        clf = self.classifier(hop=hop, batch_size=batch_size)
        clf.classify(audio, sample_rate)
        return clf.prediction(top_k=top_k)

    def predict_batch(
        self,
        audios: Sequence[np.ndarray],
        sample_rate: int,
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
        """
        clf = self.classifier(hop=hop, batch_size=batch_size)
        out = []
        for a in audios:
            clf.classify(a, sample_rate)
            out.append(clf.prediction(top_k=top_k))
        return out


def load_model(
    name: str | os.PathLike[str] | None = None,
    version: str | None = None,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
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
    providers : str or list of str, optional
        onnxruntime execution providers: ``"cpu"`` (default), ``"cuda"``, ``"auto"``
        (CUDA when available) or full provider names. Unavailable ones are skipped
        with a warning; CPU is always the fallback.
    threads : int, optional
        Older name of ``intra_op_threads``.
    intra_op_threads : int, optional
        onnxruntime threads inside one operator; default
        :data:`~instrunet_core.session.DEFAULT_INTRA_OP_THREADS` (1, chosen by measurement:
        see ``docs/benchmarks.md``); 0 lets onnxruntime start one per core.
    inter_op_threads : int, optional
        Threads running independent operators in parallel (default 1: the graphs are chains).
    spinning : bool
        Let onnxruntime's idle intra-op threads spin between operators instead of sleeping
        (default False). Only worth it with several intra-op threads and nothing else to run on
        the cores: one waveform-in clip at a time comes out faster (``docs/speed.md``); next to
        numpy work or other processes the spinning threads take their CPU.
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

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> model = instrunet_core.load_model()  # doctest: +SKIP
    >>> model.predict(np.zeros(22050, np.float32), 22050).label  # doctest: +SKIP
    'silence'
    """
    path, manifest = resolve_artifact(name, version, registry=registry)
    return Model(
        path,
        providers=providers,
        threads=threads,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        spinning=spinning,
        manifest=manifest,
    )
