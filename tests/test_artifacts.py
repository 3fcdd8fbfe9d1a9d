"""Every shipped model artifact reproduces its stored references (no TensorFlow needed).

Artifacts are found under ``instrunet_core/models/<name>/<version>/`` and
``plugins/*/src/**/models/<name>/<version>/``. For each: the manifest validates, the
folder is named after the manifest's name and version, and
:func:`instrunet_core.verify.verify_artifact` passes: ``model.onnx`` matches the manifest's
sha256 and onnxruntime reproduces ``references.npz`` within 1e-4.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from instrunet_core.errors import ModelError
from instrunet_core.manifest import read_manifest
from instrunet_core.verify import verify_artifact

ROOT = Path(__file__).resolve().parent.parent
ATOL = 1e-4


def shipped_artifacts() -> list[Path]:
    found = set(ROOT.glob("instrunet_core/models/*/*/manifest.json"))
    found |= set(ROOT.glob("plugins/*/src/**/models/*/*/manifest.json"))
    return sorted(p.parent for p in found)


ARTIFACTS = shipped_artifacts()
PARAMS = [pytest.param(d, id=str(d.relative_to(ROOT))) for d in ARTIFACTS] or [
    pytest.param(
        None,
        id="no-artifacts",
        marks=pytest.mark.skip(
            reason="no model artifacts shipped yet (none under instrunet_core/models "
            "or plugins/*/src/**/models); export one with python -m export"
        ),
    ),
]


@pytest.mark.parametrize("folder", PARAMS)
def test_artifact_reproduces_references(folder: Path) -> None:
    pytest.importorskip("onnxruntime")
    check = verify_artifact(folder, references=True, atol=ATOL)  # manifest, sha256, references replayed
    man = check.manifest
    assert (man.name, man.version) == (folder.parent.name, folder.name), "folder must be <name>/<version>/"
    assert man.references, f"{folder}: a shipped artifact must carry references"
    assert check.n_references and check.top1_agreement == 1.0 and check.max_abs_diff <= ATOL
    # What the exporter stores: log-mel spectrograms as float16 (a small file), feature vectors
    # (e.g. the condition model) as float32.
    with np.load(folder / man.references, allow_pickle=False) as z:
        dtype = z["inputs"].dtype
    assert dtype == (np.float32 if man.input.get("layout") == "features" else np.float16)


def test_verify_artifact_refuses_changed_references(tmp_path: Path) -> None:
    """A reference output nudged past the tolerance, or a changed ONNX byte, is a ModelError naming the file."""
    pytest.importorskip("onnxruntime")
    src = ROOT / "instrunet_core" / "models" / "family" / "1.0.0"
    dst = tmp_path / "family" / "1.0.0"
    shutil.copytree(src, dst)
    man = read_manifest(dst)
    with np.load(dst / man.references, allow_pickle=False) as z:
        x, y = z["inputs"], z["outputs"].copy()
    y[0, 0] += 1e-2
    np.savez(dst / man.references, inputs=x, outputs=y)
    assert verify_artifact(dst, references=False).n_references is None  # sha256 alone still passes
    with pytest.raises(ModelError, match=r"references\.npz: references not reproduced: max \|diff\| 0\.01"):
        verify_artifact(dst)
    onnx = dst / man.file
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="model.onnx: sha256 .* does not match the manifest's"):
        verify_artifact(dst, references=False)
