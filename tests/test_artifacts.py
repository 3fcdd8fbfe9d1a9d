"""Every shipped model artifact reproduces its stored references (no TensorFlow needed).

Artifacts are found under ``instrunet_core/models/<name>/<version>/`` and
``plugins/*/src/**/models/<name>/<version>/``. For each: the manifest validates, the
folder is named after the manifest's name and version, ``model.onnx`` matches the
manifest's sha256, and onnxruntime reproduces ``references.npz`` within 1e-4.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from instrunet_core.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
ATOL = 1e-4


def shipped_artifacts() -> list[Path]:
    found = set(ROOT.glob("instrunet_core/models/*/*/manifest.json"))
    found |= set(ROOT.glob("plugins/*/src/**/models/*/*/manifest.json"))
    return sorted(p.parent for p in found)


ARTIFACTS = shipped_artifacts()
PARAMS = [pytest.param(d, id=str(d.relative_to(ROOT))) for d in ARTIFACTS] or [
    pytest.param(None, id="no-artifacts",
                 marks=pytest.mark.skip(reason="no model artifacts shipped yet (none under instrunet_core/models "
                                        "or plugins/*/src/**/models); export one with python -m export")),
]


@pytest.mark.parametrize("folder", PARAMS)
def test_artifact_reproduces_references(folder: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    man = read_manifest(folder)
    assert (man.name, man.version) == (folder.parent.name, folder.name), "folder must be <name>/<version>/"
    model = folder / man.file
    assert hashlib.sha256(model.read_bytes()).hexdigest() == man.sha256, f"{model}: sha256 differs from manifest"
    assert man.references, f"{folder}: a shipped artifact must carry references"
    with np.load(folder / man.references, allow_pickle=False) as z:
        x, y = z["inputs"], z["outputs"]
    if man.input.get("layout") == "features":  # a feature vector per row (e.g. the condition model)
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1:] == tuple(man.input["shape"][1:])
    else:  # log-mel spectrograms, stored as float16 to keep the file small
        assert x.dtype == np.float16 and x.ndim == 4 and x.shape[1:] == tuple(man.input["shape"][1:])
    assert y.shape == (len(x), len(man.labels)) and len(x) > 0
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [man.input["name"]]
    assert [o.name for o in sess.get_outputs()] == [man.output["name"]]
    out = sess.run(None, {man.input["name"]: x.astype(np.float32)})[0]
    diff = float(np.abs(out - y).max())
    assert diff <= ATOL, f"{folder}: max |onnxruntime - stored| = {diff:.3g} > {ATOL:g}"
    assert np.array_equal(out.argmax(1), y.argmax(1))
