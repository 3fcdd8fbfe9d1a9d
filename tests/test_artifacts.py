"""Every shipped model artifact reproduces its stored references (no TensorFlow needed).

Artifacts are found under ``instrunet_core/models/<name>/<version>/`` and
``plugins/*/src/**/models/<name>/<version>/``. For each: the manifest validates, the
folder is named after the manifest's name and version, and
:func:`instrunet_core.verify.verify_artifact` passes: ``model.onnx`` matches the manifest's
sha256 and onnxruntime reproduces ``references.npz`` within 1e-4.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ModelPlugin, write_model_dir

from instrunet_core import registry as plugins_mod
from instrunet_core.cli import main
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


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf, inputs=np.zeros((2, 128, 128, 1), np.float16), outputs=np.zeros((2, 8), np.float32)
    )
    return buf.getvalue()


BROKEN_REFERENCES = {
    "cut-in-half": lambda: _npz_bytes()[: len(_npz_bytes()) // 2],
    "zip-magic-then-garbage": lambda: b"PK\x03\x04garbage",
    "empty": lambda: b"",
    "damaged-member": lambda: _npz_bytes()[:200] + b"\xff" * 64 + _npz_bytes()[264:],
    "one-npy-array": lambda: _npy_bytes(),
}


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, np.float32))
    return buf.getvalue()


@pytest.mark.parametrize("make", BROKEN_REFERENCES.values(), ids=BROKEN_REFERENCES.keys())
def test_audit_unreadable_references_are_a_model_error(tmp_path: Path, make: Any) -> None:
    d = write_model_dir(tmp_path, references="references.npz")
    (d / "references.npz").write_bytes(make())
    verify_artifact(d, references=False)  # the manifest and the ONNX file are fine
    with pytest.raises(ModelError, match=r"references\.npz: cannot read the references"):
        verify_artifact(d)


def test_audit_references_that_are_a_fifo_are_refused_without_waiting(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path, references="references.npz")
    os.mkfifo(d / "references.npz")
    with pytest.raises(ModelError, match=r"references\.npz: not a regular file"):
        verify_artifact(d)


def test_audit_models_check_lists_every_model_when_one_has_broken_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_model_dir(tmp_path, "good")
    bad = write_model_dir(tmp_path, "bad", references="references.npz")
    (bad / "references.npz").write_bytes(_npz_bytes()[:300])
    reg = plugins_mod.build_registry(extra_plugins=[("t", ModelPlugin(good, bad, default=False))])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["models", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "good 1.0.0: multilabel" in out and "bad 1.0.0: multilabel" in out
    assert f"  error: {bad / 'references.npz'}: cannot read the references" in out
    assert main(["models", "--check", "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert "error" not in rows["good"] and rows["bad"]["error"].startswith(str(bad / "references.npz"))


def test_the_replay_allows_the_tolerance_the_export_declared(tmp_path: Path) -> None:
    """A tools audit (2026-12-06): `export --atol 0.01` accepted a conversion 6e-4 from Keras
    and wrote its references, which `models --check` then replayed at 1e-4 and refused. The
    replay allows the manifest's sealed parity.atol when larger (at most MAX_DECLARED_ATOL)."""
    import json
    import shutil

    import numpy as np

    from instrunet_core.errors import ModelError
    from instrunet_core.manifest import seal_manifest
    from instrunet_core.verify import MAX_DECLARED_ATOL, verify_artifact

    src = Path(__file__).resolve().parent.parent / "instrunet_core" / "models" / "family" / "2.1.0"
    d = tmp_path / "family" / "2.1.0"
    shutil.copytree(src, d)
    z = dict(np.load(d / "references.npz"))
    z["outputs"] = np.clip(z["outputs"] + 0.004 * (z["outputs"] < 0.5), 0.0, 1.0).astype(z["outputs"].dtype)
    np.savez(d / "references.npz", **z)
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps(seal_manifest(m)))
    with pytest.raises(ModelError, match="references not reproduced"):
        verify_artifact(d)  # declared 1e-4: 4e-3 is too far
    m["parity"]["atol"] = 0.01
    (d / "manifest.json").write_text(json.dumps(seal_manifest(m)))
    assert verify_artifact(d).n_references  # the export's own tolerance
    m["parity"]["atol"] = 1.0
    (d / "manifest.json").write_text(json.dumps(seal_manifest(m)))
    z["outputs"] = np.clip(z["outputs"] + 2 * MAX_DECLARED_ATOL * (z["outputs"] < 0.5), 0.0, 1.0).astype(
        z["outputs"].dtype
    )
    np.savez(d / "references.npz", **z)
    with pytest.raises(ModelError, match="references not reproduced"):
        verify_artifact(d)  # a declared tolerance is capped
