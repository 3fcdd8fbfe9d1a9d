"""instrunet model plugin: the seed's baseline CNN (softmax over the eight families).

Installed, this distribution exposes the entry point ``baseline`` in group ``instrunet``;
instrunet then lists the model (``instrunet plugins``) and loads it with
``instrunet_core.load_model("baseline")``. The artifact folders
``models/baseline/<version>/{model.onnx, manifest.json, references.npz}`` are package data
written by ``python -m export`` (see ``docs/export.md`` in the instrunet repository).
"""

from __future__ import annotations

from pathlib import Path

from instrunet_core.registry import packaged_versions, packaged_versions_hook

__all__ = ["MODEL_NAME", "MODELS_DIR", "model_dirs", "instrunet_register_models"]

MODEL_NAME = "baseline"
MODELS_DIR = Path(__file__).resolve().parent / "models"


def model_dirs() -> list[Path]:
    """Every shipped version folder of the model (those holding a ``manifest.json``), oldest first."""
    return packaged_versions(MODELS_DIR, MODEL_NAME)


#: The plugin's hook: registers each shipped version of ``baseline`` (never as the default model).
instrunet_register_models = packaged_versions_hook(MODELS_DIR, MODEL_NAME)
