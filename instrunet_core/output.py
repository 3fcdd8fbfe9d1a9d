"""The output contract: the JSON records instrunet writes, in one place.

Every JSON document the project writes carries ``schema`` (what it is, and the version of
its shape) and ``instrunet_version`` (the runtime that wrote it), and describes the model
with one shape, :func:`model_info`. The shapes are published as JSON Schema in
``docs/schema/`` (``analysis.json``, ``classification.json``); ``tests/test_output.py``
validates every output against them.

* ``instrunet.analysis/1`` — :meth:`Analysis.to_dict() <instrunet_core.Analysis.to_dict>`,
  written by ``instrunet analyze --json`` and the ``json`` writer.
* ``instrunet.classification/1`` — one file's overall result (or its error): each item of
  ``instrunet classify --json`` and each line of ``instrunet batch``.

A change that removes or retypes a field bumps the number after the slash; adding an
optional field does not.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .analysis import Prediction
    from .session import ModelSession as Model

__all__ = [
    "ANALYSIS_SCHEMA",
    "CLASSIFICATION_SCHEMA",
    "instrunet_version",
    "model_info",
    "classification_record",
    "error_record",
]

ANALYSIS_SCHEMA = "instrunet.analysis/1"
CLASSIFICATION_SCHEMA = "instrunet.classification/1"


@functools.lru_cache(maxsize=1)
def instrunet_version() -> str:
    """The installed ``instrunet`` version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version("instrunet")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def model_info(model: Model) -> dict[str, str]:
    """The ``model`` field of every output: ``{name, version, sha256, task, input[, provider]}``.

    ``model`` is a :class:`~instrunet_core.Model` or a
    :class:`~instrunet_core.session.ModelSession` (anything with a ``manifest``). ``input`` is
    the artifact's input kind (``"logmel"`` or ``"waveform"``); ``provider`` the onnxruntime
    execution provider that actually ran it, when ``model`` is a loaded session."""
    m = model.manifest
    info = {"name": m.name, "version": m.version, "sha256": m.sha256, "task": m.task, "input": m.input_kind}
    provider = getattr(model, "provider", None)
    if isinstance(provider, str):
        info["provider"] = provider
    return info


def _num(x: float, ndigits: int | None = None) -> float | None:
    f = float(x)
    if not math.isfinite(f):
        return None
    return round(f, ndigits) if ndigits is not None else f


def classification_record(
    path: str, prediction: Prediction, model: Model, *, duration: float | None = None
) -> dict[str, Any]:
    """One file's overall result as an ``instrunet.classification/1`` record.

    Parameters
    ----------
    path : str
        The file as named in the output (``batch`` writes absolute paths).
    prediction : Prediction
    model : Model
    duration : float, optional
        Seconds of audio, when known.

    Returns
    -------
    dict
        ``{schema, instrunet_version, path, model, label, confidence, probabilities,
        n_windows, silent, low_evidence, sounding_seconds[, duration]}``.
    """
    rec: dict[str, Any] = {
        "schema": CLASSIFICATION_SCHEMA,
        "instrunet_version": instrunet_version(),
        "path": path,
        "model": model_info(model),
        "label": prediction.label,
        "confidence": _num(prediction.confidence),
        "probabilities": {k: _num(v) for k, v in prediction.probabilities.items()},
        "n_windows": int(prediction.n_windows),
        "silent": bool(prediction.silent),
        "low_evidence": bool(prediction.low_evidence),
        "sounding_seconds": _num(prediction.sounding_seconds, 4),
    }
    if duration is not None:
        rec["duration"] = _num(duration, 4)
    return rec


def error_record(path: str, message: str, model: Model | None = None) -> dict[str, Any]:
    """A file that could not be classified, as an ``instrunet.classification/1`` record.

    Returns
    -------
    dict
        ``{schema, instrunet_version, path, error[, model]}``.
    """
    rec: dict[str, Any] = {
        "schema": CLASSIFICATION_SCHEMA,
        "instrunet_version": instrunet_version(),
        "path": path,
        "error": message,
    }
    if model is not None:
        rec["model"] = model_info(model)
    return rec
