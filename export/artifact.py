"""Manifest, reference file and atomic writing of an artifact folder (no TensorFlow here)."""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import ModelError
from instrunet_core.manifest import (
    INPUT_NAME,
    LOGMEL_LAYOUT,
    MANIFEST_FILENAME,
    MANIFEST_SCHEMA,
    OUTPUT_NAME,
    seal_manifest,
    sha256_file,
    validate_manifest,
)
from instrunet_core.verify import verify_artifact

from . import DEFAULT_ATOL, ExportError

__all__ = [
    "AUDIO_INPUT",
    "MODEL_FILE",
    "REFERENCES_FILE",
    "created_timestamp",
    "build_manifest",
    "save_npz",
    "write_artifact",
    "check_artifact",
    "reseal_artifact",
    "training_data_info",
    "report_metrics",
]

MODEL_FILE = "model.onnx"
REFERENCES_FILE = "references.npz"
#: Name of a waveform-input artifact's input tensor (mono samples at the front end's rate).
AUDIO_INPUT = "audio"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def created_timestamp() -> str:
    """UTC ISO-8601 time of the export; ``SOURCE_DATE_EPOCH`` (seconds) overrides the clock."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.strip():
        try:
            t = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ExportError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    else:
        t = _dt.datetime.now(tz=_dt.timezone.utc)
    return t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def report_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation part of a training report (``training/reports/<model>/<version>/metrics.json``)."""
    keys = (
        "model",
        "version",
        "task",
        "parameters",
        "train_seconds",
        "epochs_run",
        "best_epoch",
        "selection",
        "init",
        "valid",
        "dev",
        "test",
    )
    return {k: report[k] for k in keys if k in report}


def training_data_info(report: Mapping[str, Any] | None, corpus: Path | None) -> dict[str, Any]:
    """Corpus sources and counts: from the report when given, completed from ``corpus.json``."""
    info: dict[str, Any] = {}
    if report:
        rc = report.get("corpus") or {}
        if rc.get("counts"):
            info["counts"] = rc["counts"]
        if rc.get("soundfonts"):
            info["sources"] = list(rc["soundfonts"])
        cfg = report.get("config") or {}
        kept = {
            k: cfg[k]
            for k in ("seed", "epochs", "batch_size", "n_train", "n_valid", "mix_prob", "augment")
            if k in cfg
        }
        if kept:
            info["training"] = kept
    meta = corpus / "corpus.json" if corpus is not None else None
    if meta is not None and meta.is_file():
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        info.setdefault("format", data.get("format", "nsynth-json-wav"))
        fonts = data.get("soundfonts") or []
        if fonts:
            info["soundfonts"] = [{k: f.get(k) for k in ("key", "description", "license")} for f in fonts]
        if "counts" not in info and data.get("counts"):
            info["counts"] = data["counts"]
        real = data.get("real_instruments") or []
        if real:
            info["real_libraries"] = _real_libraries(real)
    counts = info.get("counts")
    if isinstance(counts, Mapping):
        info["notes_per_split"] = {
            split: sum(int(v.get("notes", 0)) for v in fams.values())
            for split, fams in counts.items()
            if isinstance(fams, Mapping)
        }
    return info


def _real_libraries(real: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per real library of the corpus: where it comes from (pinned), its licence, split, instruments."""
    from training.sources import load_lock

    lock = {e["key"]: e for e in load_lock()["sources"]}
    out = []
    for key in sorted({str(r["source"]) for r in real}):
        e = lock.get(key, {})
        out.append(
            {
                "key": key,
                "source": e.get("repo") or e.get("package"),
                "revision": e.get("commit") or e.get("version"),
                "sha256": e.get("sha256"),
                "license": e.get("license"),
                "split": sorted({str(r["split"]) for r in real if r["source"] == key}),
                "instruments": sorted(f"{r['name']} ({r['family']})" for r in real if r["source"] == key),
            }
        )
    return out


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def build_manifest(
    *,
    name: str,
    version: str,
    task: str,
    labels: list[str],
    front_end: Mapping[str, Any] | None,
    input_shape: list[int | None],
    sha256: str,
    parity: Mapping[str, Any],
    exporter: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    training_data: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
    license: str | None = "MIT",
    description: str | None = None,
    created: str | None = None,
    references: bool = True,
    features: Mapping[str, Any] | None = None,
    waveform: bool = False,
    output_name: str = OUTPUT_NAME,
    source: Mapping[str, Any] | None = None,
    other_threshold: float | None = None,
    other_veto: float | None = None,
    noise_gate: Mapping[str, Any] | None = None,
    embedding_dim: int | None = None,
    secondary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest dict in schema order, validated by :func:`instrunet_core.manifest.validate_manifest`.

    The input is a log-mel spectrogram (``mel`` [null, n_mels, frames, 1], layout NHWC) unless:

    * ``features`` (``{"names": [...], ...}``): a features-input model, input ``features``
      [null, n_features] with layout ``"features"``, and no ``front_end``;
    * ``waveform``: a waveform-input model, input :data:`AUDIO_INPUT` [null, window_samples]
      (``kind: "waveform"``) at the front end's rate; ``source`` names the log-mel artifact it
      was composed from (when it was);
    * ``other_threshold``: the model has the open-set output ``other`` [null, 1] (sigmoid), and
      answers "other" from that probability (``other_veto``: its own level of the timeline's
      "other" veto, ``other.veto``; ``noise_gate``: the parameters of the gate its graph applies
      to ``other``, ``other.noise_gate``, export.noisegate); ``embedding_dim``: it has the output
      ``embedding`` [null, dim];
    * ``secondary``: the time axis's margins for labels behind the leading ones
      (``{"leading": int, "margins": {label: float}}``, docs/manifest.md).
    """
    m: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "task": task,
        "labels": list(labels),
        "input": {
            "name": INPUT_NAME,
            "shape": list(input_shape),
            "dtype": "float32",
            "layout": LOGMEL_LAYOUT,
        },
        "output": {
            "name": output_name,
            "shape": [None, len(labels)],
            "dtype": "float32",
            "activation": "sigmoid" if task == "multilabel" else "softmax",
        },
    }
    if other_threshold is not None:
        m["other"] = {
            "name": "other",
            "shape": [None, 1],
            "dtype": "float32",
            "activation": "sigmoid",
            "threshold": float(other_threshold),
        }
        if other_veto is not None:
            m["other"]["veto"] = float(other_veto)
        if noise_gate is not None:
            m["other"]["noise_gate"] = dict(noise_gate)
    if embedding_dim is not None:
        m["embedding"] = {"name": "embedding", "shape": [None, int(embedding_dim)], "dtype": "float32"}
    if waveform:
        m["input"] = {
            "name": AUDIO_INPUT,
            "shape": list(input_shape),
            "dtype": "float32",
            "kind": "waveform",
            "sample_rate": int((front_end or {})["sample_rate"]),
        }
    if features is not None:
        m["input"] = {
            "name": "features",
            "shape": list(input_shape),
            "dtype": "float32",
            "layout": "features",
        }
        m["features"] = dict(features)
    else:
        m["front_end"] = dict(front_end or {})
    if description:
        m["description"] = description
    if thresholds:
        m["thresholds"] = {k: float(v) for k, v in thresholds.items()}
    if secondary is not None:
        m["secondary"] = {"leading": secondary["leading"], "margins": dict(secondary["margins"])}
    m["metrics"] = dict(metrics or {})
    m["training_data"] = dict(training_data or {})
    m["parity"] = dict(parity)
    m["exporter"] = dict(exporter)
    m["file"] = MODEL_FILE
    m["sha256"] = sha256
    m["created"] = created or created_timestamp()
    if license:
        m["license"] = license
    if references:
        m["references"] = REFERENCES_FILE
    if source is not None:
        m["source"] = dict(source)
    # JSON types only (tuples → lists; numpy scalars are rejected here); NaN/inf, which a
    # report may hold and strict JSON cannot, become null.
    m = _finite(json.loads(json.dumps(m)))
    m = seal_manifest(m)  # manifest_sha256: the labels, front end, thresholds... are covered too
    try:
        validate_manifest(m, where=f"manifest of {name} {version}")
    except Exception as e:  # ModelError
        raise ExportError(str(e)) from None
    return m


def write_artifact(
    dest: Path,
    *,
    model_bytes: bytes,
    manifest: Mapping[str, Any],
    references: Mapping[str, np.ndarray] | None,
    force: bool = False,
    verify: Callable[[Path], Any] | None = None,
) -> Path:
    """Write ``dest/{model.onnx, manifest.json, references.npz}`` atomically.

    Everything is written into a temporary sibling folder which is then renamed to ``dest``;
    a failure leaves no ``dest`` (and no parent folder this call created). An existing
    ``dest`` is an error unless ``force``, in which case it is replaced. ``verify`` is called
    on the complete temporary folder before the rename; if it raises, nothing is written.
    """
    dest = Path(dest)
    if os.path.lexists(dest) and not force:
        raise ExportError(f"{dest}: already exists (pass --force to replace it)")
    created_dirs = [p for p in reversed(dest.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as e:  # a file in the way, no permission, a full disk
        _remove_empty(created_dirs)
        raise ExportError(f"{dest}: cannot write: {e.strerror or e}") from None
    old: Path | None = None
    try:
        (tmp / MODEL_FILE).write_bytes(model_bytes)
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
        (tmp / MANIFEST_FILENAME).write_text(text, encoding="utf-8")
        if references is not None:
            save_npz(tmp / REFERENCES_FILE, **references)
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        if verify is not None:
            verify(tmp)
        if os.path.lexists(dest):
            # a backup name of this export's own (two exports side by side never share one)
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and os.path.lexists(old) and not os.path.lexists(dest):
            os.replace(old, dest)
        _remove_empty(created_dirs)
        if isinstance(e, OSError):
            raise ExportError(f"{dest}: cannot write: {e.strerror or e}") from None
        raise
    if old is not None:
        _remove(old)
    return dest


def _remove(p: Path) -> None:
    """A replaced version: a link is unlinked (its target is not ours to delete), a folder removed."""
    if p.is_symlink():
        p.unlink(missing_ok=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def _remove_empty(created: list[Path]) -> None:
    """The folders a failed write created (innermost first), where they are empty again."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            pass


def reseal_artifact(folder: str | Path) -> dict[str, Any]:
    """Add (or renew) ``manifest_sha256`` in an existing artifact's manifest, nothing else.

    For artifacts exported before manifests carried a digest. The ONNX file must still match
    the manifest's ``sha256``, and every other check of :func:`validate_manifest` must pass;
    the manifest is rewritten atomically by the same serialiser as :func:`write_artifact`.
    Check the manifest's content (labels, front end) before sealing it: sealing vouches for it.

    Returns
    -------
    dict
        The sealed manifest.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: cannot read the manifest: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("file"), str):
        raise ExportError(f"{path}: not a manifest object with a 'file'")
    model = folder / Path(data["file"]).name
    if not model.is_file():
        raise ExportError(f"{model}: {'not a regular file' if model.exists() else 'model file not found'}")
    try:
        got = sha256_file(model)
    except OSError as e:
        raise ExportError(f"{model}: cannot read: {e.strerror or e}") from None
    if got != data.get("sha256"):
        raise ExportError(
            f"{model}: sha256 {got} does not match the manifest's {data.get('sha256')}; re-export"
        )
    sealed = seal_manifest(data)
    try:
        m = validate_manifest(sealed, where=str(path))
        # what `instrunet models --check` will ask, before sealing vouches for it: the graph loads and
        # fits the manifest, and its references (or, without them, its outputs on test input) are
        # reproduced as probabilities of its task (a missing references.npz, or a sigmoid graph
        # relabelled multiclass, were sealed and then refused: a tools audit)
        from instrunet_core.verify import verify_artifact

        verify_artifact(folder, manifest=m)
    except Exception as e:  # ModelError
        raise ExportError(str(e)) from None
    text = json.dumps(sealed, indent=2, allow_nan=False) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ExportError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    return sealed


def check_artifact(folder: str | Path, *, atol: float = DEFAULT_ATOL) -> dict[str, Any]:
    """What the runtime checks of an artifact (:func:`instrunet_core.verify.verify_artifact`):
    manifest valid, sha256, references reproduced.

    Returns ``{"sha256_ok", "max_abs_diff", "top1_agreement", "n"}``; raises
    :class:`ExportError` when a check fails.
    """
    try:
        res = verify_artifact(folder, references=True, atol=atol).to_dict()
    except ModelError as e:
        raise ExportError(str(e)) from None
    return {k: res[k] for k in ("sha256_ok", "max_abs_diff", "top1_agreement", "n") if res[k] is not None}
