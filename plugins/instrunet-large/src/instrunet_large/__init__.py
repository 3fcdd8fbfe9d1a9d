"""instrunet model plugin: ``family-large``, YAMNet's AudioSet knowledge for instrunet.

Google's YAMNet (trained on AudioSet; Apache-2.0, see the ``NOTICE`` file next to this module)
with its MobileNetV1 backbone fine-tuned on instrunet's corpus and a head for the eight
families, "none of the eight" (``other``) and a 128-d embedding. It takes the window's audio
(the YAMNet log-mel front end is inside the ONNX graph) and costs about six times the default
model's time per window (docs/models.md in the instrunet repository has its accuracy and
speed beside the default's: best at "none of the eight" and ensembles, not yet on single
instruments).

Installed, this distribution exposes the entry point ``family-large`` in group ``instrunet``:
``instrunet classify --model family-large song.wav``, ``instrunet_core.load_model("family-large")``.
The artifact folders ``models/family-large/<version>/{model.onnx, manifest.json,
references.npz}`` are package data written by ``python -m export``.
"""

from __future__ import annotations

from pathlib import Path

from instrunet_core.registry import packaged_versions, packaged_versions_hook

__all__ = ["MODEL_NAME", "MODELS_DIR", "NOTICE", "model_dirs", "instrunet_register_models"]

MODEL_NAME = "family-large"
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: The Apache-2.0 notice of the YAMNet weights the model derives from.
NOTICE = Path(__file__).resolve().parent / "NOTICE"


def model_dirs() -> list[Path]:
    """Every shipped version folder of the model (those holding a ``manifest.json``), oldest first."""
    return packaged_versions(MODELS_DIR, MODEL_NAME)


#: The plugin's hook: registers each shipped version of ``family-large`` (never as the default model).
instrunet_register_models = packaged_versions_hook(MODELS_DIR, MODEL_NAME)
