"""Model manifest: the JSON file that describes one exported model artifact.

Every model directory ``<name>/<version>/`` holds ``manifest.json`` next to
``model.onnx`` (and optionally ``references.npz``). The schema is documented in
``docs/manifest.md``; :func:`validate_manifest` checks a parsed manifest and
returns a frozen :class:`Manifest`. The export tool imports
:data:`MANIFEST_SCHEMA` and :func:`validate_manifest` from here, so exporter and
runtime agree on one definition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InputError, ModelError
from .features import FrontEnd

__all__ = [
    "MANIFEST_SCHEMA",
    "MANIFEST_SCHEMAS",
    "INPUT_KINDS",
    "MANIFEST_FILENAME",
    "SEMVER_RE",
    "Manifest",
    "validate_manifest",
    "read_manifest",
    "sha256_file",
    "parse_semver",
]

#: Schema identifier written into new manifests (``schema`` key).
MANIFEST_SCHEMA = "instrunet.manifest/2"
#: Schemas this runtime reads. ``/1`` manifests are ``/2`` manifests whose input is log-mel
#: features (``input.kind == "features"``); ``/2`` adds waveform-input artifacts (the front end
#: inside the ONNX graph) and the optional ``source`` key. See ``docs/manifest.md``, *Migration*.
MANIFEST_SCHEMAS = ("instrunet.manifest/1", MANIFEST_SCHEMA)
#: What a model's input tensor holds: log-mel features ``[batch, n_mels, frames, 1]`` (the
#: runtime computes them with :mod:`instrunet_core.features`) or 22,050 Hz mono samples
#: ``[batch, window_samples]`` (the graph computes the same features itself).
INPUT_KINDS = ("features", "waveform")
MANIFEST_FILENAME = "manifest.json"
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

TASKS = ("multiclass", "multilabel")
ACTIVATIONS = {"multiclass": "softmax", "multilabel": "sigmoid"}
_REQUIRED = (
    "schema",
    "name",
    "version",
    "task",
    "labels",
    "input",
    "output",
    "front_end",
    "file",
    "sha256",
)
_OPTIONAL = (
    "thresholds",
    "metrics",
    "training_data",
    "parity",
    "exporter",
    "created",
    "license",
    "references",
    "description",
    "source",
)


def parse_semver(version: str) -> tuple[int, int, int]:
    """``"1.2.3"`` → ``(1, 2, 3)``; raises :class:`~instrunet_core.errors.InputError` otherwise."""
    m = SEMVER_RE.match(str(version))
    if not m:
        raise InputError(f"version {version!r} is not semver X.Y.Z")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated model manifest (see ``docs/manifest.md``).

    Attributes
    ----------
    name, version : str
        Model name (lower-case identifier) and semver ``X.Y.Z``.
    task : {"multiclass", "multilabel"}
    labels : tuple of str
        Output order of the model.
    input, output : dict
        Tensor descriptions: ``name``, ``shape``, ``dtype`` (+ ``layout`` / ``activation``).
    front_end : FrontEnd
        The log-mel parameters the model was trained with.
    file, sha256 : str
        ONNX file name (relative to the manifest) and its hex SHA-256.
    thresholds : dict or None
        Optional per-label presence thresholds in (0, 1).
    references : str or None
        Optional file of reference inputs/outputs (``references.npz``).
    raw : dict
        The manifest as parsed (JSON types only).
    """

    schema: str
    name: str
    version: str
    task: str
    labels: tuple[str, ...]
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    front_end: FrontEnd
    file: str
    sha256: str
    thresholds: Mapping[str, float] | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training_data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    parity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    exporter: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created: str | None = None
    license: str | None = None
    references: str | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def input_kind(self) -> str:
        """``"features"`` (log-mel input) or ``"waveform"`` (22,050 Hz mono samples in)."""
        return str(self.input.get("kind", "features"))

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_semver(self.version)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (a copy of what was validated)."""
        return json.loads(json.dumps(dict(self.raw)))


def _fail(where: str, msg: str) -> ModelError:
    return ModelError(f"{where}: invalid manifest: {msg}")


def _check_tensor(d: Any, key: str, where: str, n_labels: int) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise _fail(where, f"{key!r} must be an object, got {type(d).__name__}")
    for k in ("name", "shape", "dtype"):
        if k not in d:
            raise _fail(where, f"{key}.{k} is missing")
    if not isinstance(d["name"], str) or not d["name"]:
        raise _fail(where, f"{key}.name must be a non-empty string, got {d['name']!r}")
    shape = d["shape"]
    if not isinstance(shape, list) or not all(s is None or (isinstance(s, int) and s > 0) for s in shape):
        raise _fail(where, f"{key}.shape must be a list of positive ints or null, got {shape!r}")
    if d["dtype"] != "float32":
        raise _fail(where, f"{key}.dtype must be 'float32', got {d['dtype']!r}")
    if key == "input" and d.get("kind", "features") == "waveform":
        if len(shape) != 2 or shape[0] is not None:
            raise _fail(where, f"input.shape of a waveform input must be [null, window_samples], got {shape!r}")
    elif key == "input":
        if d.get("kind", "features") not in INPUT_KINDS:
            raise _fail(where, f"input.kind must be one of {list(INPUT_KINDS)}, got {d.get('kind')!r}")
        if len(shape) != 4 or shape[0] is not None or shape[3] != 1:
            raise _fail(where, f"input.shape must be [null, n_mels, frames, 1], got {shape!r}")
        if d.get("layout", "NHWC") != "NHWC":
            raise _fail(where, f"input.layout must be 'NHWC', got {d.get('layout')!r}")
    else:
        if len(shape) != 2 or shape[0] is not None:
            raise _fail(where, f"output.shape must be [null, n_labels], got {shape!r}")
        if shape[1] != n_labels:
            raise _fail(where, f"output.shape[1]={shape[1]} but there are {n_labels} labels")
        if d.get("activation") not in ("softmax", "sigmoid"):
            raise _fail(where, f"output.activation must be 'softmax' or 'sigmoid', got {d.get('activation')!r}")
    return dict(d)


def validate_manifest(data: Mapping[str, Any], *, where: str) -> Manifest:
    """Check a parsed manifest and return it as a frozen :class:`Manifest`.

    Parameters
    ----------
    data : dict
        Parsed ``manifest.json``.
    where : str
        File (or other origin) named in error messages.

    Returns
    -------
    Manifest

    Raises
    ------
    ModelError
        Naming ``where`` and the bad key or value.

    Examples
    --------
    >>> from instrunet_core.manifest import validate_manifest
    >>> validate_manifest({"schema": "nope"}, where="m.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    instrunet_core.errors.ModelError: m.json: invalid manifest: ...
    """
    if not isinstance(data, Mapping):
        raise _fail(where, f"top level must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _fail(where, f"missing required key(s) {missing}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}")
    if data["schema"] not in MANIFEST_SCHEMAS:
        raise _fail(where, f"schema must be one of {list(MANIFEST_SCHEMAS)}, got {data['schema']!r}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(where, f"name must be a lower-case identifier ([a-z0-9_.-]), got {name!r}")
    version = data["version"]
    if not isinstance(version, str) or not SEMVER_RE.match(version):
        raise _fail(where, f"version must be semver X.Y.Z, got {version!r}")
    task = data["task"]
    if task not in TASKS:
        raise _fail(where, f"task must be one of {list(TASKS)}, got {task!r}")
    labels = data["labels"]
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(x, str) and x for x in labels)
    ):
        raise _fail(where, f"labels must be a non-empty list of strings, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise _fail(where, f"labels must be unique, got {labels!r}")
    if "silence" in labels:
        raise _fail(where, "'silence' is reserved and cannot be a model label")
    inp = _check_tensor(data["input"], "input", where, len(labels))
    out = _check_tensor(data["output"], "output", where, len(labels))
    if out["activation"] != ACTIVATIONS[task]:
        raise _fail(
            where, f"output.activation {out['activation']!r} does not match task {task!r} "
            f"(expected {ACTIVATIONS[task]!r})"
        )
    if not isinstance(data["front_end"], Mapping):
        raise _fail(where, "front_end must be an object")
    try:
        fe = FrontEnd.from_dict(data["front_end"])
    except (InputError, TypeError, ValueError) as e:
        raise _fail(where, f"front_end: {e}") from None
    kind = inp.get("kind", "features")
    if kind == "waveform":
        if data["schema"] == MANIFEST_SCHEMAS[0]:
            raise _fail(where, f"a waveform input needs schema {MANIFEST_SCHEMA!r} (this manifest says "
                        f"{data['schema']!r})")
        if inp["shape"][1] != fe.window_samples:
            raise _fail(where, f"input.shape {inp['shape']} disagrees with front_end "
                        f"(window_samples={fe.window_samples})")
        if inp.get("sample_rate", fe.sample_rate) != fe.sample_rate:
            raise _fail(where, f"input.sample_rate {inp.get('sample_rate')!r} disagrees with front_end "
                        f"(sample_rate={fe.sample_rate})")
    elif inp["shape"][1] != fe.n_mels or inp["shape"][2] != fe.frames:
        raise _fail(
            where, f"input.shape {inp['shape']} disagrees with front_end "
            f"(n_mels={fe.n_mels}, frames={fe.frames})"
        )
    file = data["file"]
    if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
        raise _fail(where, f"file must be a plain file name like 'model.onnx', got {file!r}")
    sha = data["sha256"]
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _fail(where, f"sha256 must be 64 lower-case hex digits, got {sha!r}")
    thresholds = data.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, Mapping):
            raise _fail(where, "thresholds must be an object {label: float}")
        for k, v in thresholds.items():
            if k not in labels:
                raise _fail(where, f"thresholds has unknown label {k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
                raise _fail(where, f"thresholds[{k!r}] must be a number in (0, 1), got {v!r}")
        thresholds = {k: float(v) for k, v in thresholds.items()}
    objs = {}
    for key in ("metrics", "training_data", "parity", "exporter"):
        v = data.get(key, {})
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise _fail(where, f"{key} must be an object, got {type(v).__name__}")
        objs[key] = dict(v)
    parity = objs["parity"]
    for k in ("max_abs_diff", "top1_agreement"):
        if k in parity and (isinstance(parity[k], bool) or not isinstance(parity[k], (int, float))):
            raise _fail(where, f"parity.{k} must be a number, got {parity[k]!r}")
    strs = {}
    for key in ("created", "license", "references"):
        v = data.get(key)
        if v is not None and not isinstance(v, str):
            raise _fail(where, f"{key} must be a string, got {v!r}")
        strs[key] = v
    source = data.get("source")
    if source is not None:
        if not isinstance(source, Mapping) or not all(
            isinstance(source.get(k), str) for k in ("name", "version", "sha256")
        ):
            raise _fail(where, f"source must be an object with string name, version and sha256, got {source!r}")
    refs = strs["references"]
    if refs is not None and ("/" in refs or "\\" in refs or refs.startswith(".")):
        raise _fail(where, f"references must be a plain file name, got {refs!r}")
    return Manifest(
        schema=data["schema"],
        name=name,
        version=version,
        task=task,
        labels=tuple(labels),
        input=inp,
        output=out,
        front_end=fe,
        file=file,
        sha256=sha,
        thresholds=thresholds,
        metrics=objs["metrics"],
        training_data=objs["training_data"],
        parity=parity,
        exporter=objs["exporter"],
        created=strs["created"],
        license=strs["license"],
        references=refs,
        raw=json.loads(json.dumps(dict(data))),
    )


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` (or a directory holding one).

    Raises
    ------
    ModelError
        Missing file, invalid JSON, or invalid content; the message names the file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILENAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{p}: manifest not found") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read manifest: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"{p}: manifest is not valid JSON: {e}") from None
    return validate_manifest(data, where=str(p))
