"""Built-in plugin: the packaged models and the ``json``, ``csv``, ``ranges``, ``audacity``,
``jams`` and ``png`` writers.

Registered through the same hooks as third-party plugins. Packaged models live at
``instrunet_core/models/<name>/<version>/manifest.json`` (next to ``model.onnx``);
the model named :data:`DEFAULT_MODEL_NAME` is flagged as the default.
"""

from __future__ import annotations

from pathlib import Path

from ..hookspecs import RegisterModel, RegisterWriter, hookimpl
from ..writers import write_audacity, write_csv, write_jams, write_json, write_png, write_ranges

__all__ = ["MODELS_DIR", "DEFAULT_MODEL_NAME", "instrunet_register_models", "instrunet_register_writers"]

#: Where packaged model artifacts live.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Name of the packaged default model.
DEFAULT_MODEL_NAME = "family"


@hookimpl
def instrunet_register_models(register: RegisterModel) -> None:
    if not MODELS_DIR.is_dir():
        return
    for manifest in sorted(MODELS_DIR.glob("*/*/manifest.json")):
        if manifest.parent.name.startswith(".") or manifest.parent.parent.name.startswith("."):
            continue  # an export's unfinished work (.1.0.0.x1y2.tmp), never a version
        name = manifest.parent.parent.name
        register(name, manifest.parent, default=(name == DEFAULT_MODEL_NAME))


@hookimpl
def instrunet_register_writers(register: RegisterWriter) -> None:
    register("json", write_json)
    register("csv", write_csv)
    register("ranges", write_ranges)
    register("audacity", write_audacity)
    register("jams", write_jams)
    register("png", write_png)
