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

import os

# onnxruntime (1.32 here) collects telemetry on Linux and macOS unless ORT_DISABLE_TELEMETRY is set
# before it starts: a persistent device ID and a cache of events (the executable's path, the OS,
# the CPU, sessions) under ~/.cache/Microsoft/DeveloperTools/.onnxruntime, uploaded to Microsoft
# when the machine is online. instrunet makes no network access at run time, so it turns that off
# before any onnxruntime session of its own starts; a value already set (ORT_DISABLE_TELEMETRY=0
# keeps it on) is left as it is, and an onnxruntime the host application started first keeps
# what it started with (docs/inference.md, "Privacy").
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from . import errors
from .analysis import MEASURES, OTHER_LABEL, Analysis, Embedding, Prediction, WindowResult
from .errors import DecodeError, InputError, InstrunetError, InstrunetWarning, ModelError, PluginError
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
    "InstrunetWarning",
    "list_models",
    "get_registry",
    "build_registry",
    "verify_artifact",
    "ArtifactCheck",
]
