"""instrunet_core: which instrument families play in a recording.

A framework-agnostic runtime (numpy + onnxruntime + pluggy) for InstruNet models:
log-mel CNNs exported to ONNX that classify NSynth's eight acoustic instrument
families. It never imports TensorFlow or Keras.

Examples
--------
>>> import instrunet_core
>>> model = instrunet_core.load_model()  # doctest: +SKIP
>>> analysis = instrunet_core.analyze("song.wav", model=model)  # doctest: +SKIP
>>> analysis.label, [i.label for i in analysis.instruments]  # doctest: +SKIP
>>> clf = instrunet_core.Classifier(model)  # push-style: clf.process(block, rate), clf.flush()  # doctest: +SKIP
"""

from __future__ import annotations

from . import errors
from .analysis import MEASURES, OTHER_LABEL, Analysis, Embedding, Prediction, WindowResult
from .errors import DecodeError, InputError, InstrunetError, ModelError, PluginError
from .features import FrontEnd
from .hookspecs import hookimpl
from .inference import Classifier
from .labels import FAMILIES
from .model import Model, load_model
from .orchestration import analyze
from .output import instrunet_version
from .registry import build_registry, get_registry, list_models
from .session import RuntimeOptions
from .verify import ArtifactCheck, verify_artifact

__version__ = instrunet_version()

__all__ = [
    "__version__",
    "load_model",
    "analyze",
    "Model",
    "Prediction",
    "Analysis",
    "Classifier",
    "WindowResult",
    "Embedding",
    "OTHER_LABEL",
    "MEASURES",
    "RuntimeOptions",
    "FrontEnd",
    "FAMILIES",
    "hookimpl",
    "errors",
    "InstrunetError",
    "DecodeError",
    "InputError",
    "ModelError",
    "PluginError",
    "list_models",
    "get_registry",
    "build_registry",
    "verify_artifact",
    "ArtifactCheck",
]
