"""The runtime never imports TensorFlow or Keras (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import instrunet_core

CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import instrunet_core
from instrunet_core.registry import build_registry
sys.path.insert(0, {tests!r})
after_import = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
from conftest import ModelPlugin
from pathlib import Path
reg = build_registry(extra_plugins=[ModelPlugin(Path({model_dir!r}))])
m = instrunet_core.load_model("tiny", registry=reg)  # the built-in family stays the default
p = m.predict(np.zeros(65024, np.float32) + 0.1 * np.sin(np.arange(65024) / 5).astype(np.float32), 22050)
after_load = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print(json.dumps({{"import": after_import, "load": after_load, "label": p.label,
                  "seconds": time.perf_counter() - t0}}))
"""


def test_no_tensorflow_or_keras(tiny_model_dir: Path) -> None:
    code = CODE.format(tests=str(Path(__file__).parent), model_dir=str(tiny_model_dir))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["import"] == [] and res["load"] == []
    assert res["label"] == "brass"


def test_public_api() -> None:
    for name in (
        "load_model",
        "analyze",
        "Model",
        "Prediction",
        "Analysis",
        "FrontEnd",
        "FAMILIES",
        "hookimpl",
        "errors",
        "list_models",
        "get_registry",
        "__version__",
    ):
        assert name in instrunet_core.__all__ and hasattr(instrunet_core, name)
    assert isinstance(instrunet_core.__version__, str) and instrunet_core.__version__
