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
import math
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .errors import InputError, ModelError
from .features import FrontEnd
from .timeline import OTHER_VETO

__all__ = [
    "MANIFEST_SCHEMA",
    "is_veto",
    "MANIFEST_SCHEMAS",
    "INPUT_KINDS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "LOGMEL_LAYOUT",
    "DEFAULT_THRESHOLDS",
    "MANIFEST_FILENAME",
    "FEATURES_LAYOUT",
    "SEMVER_RE",
    "NAME_RE",
    "Manifest",
    "validate_manifest",
    "read_manifest",
    "sha256_file",
    "open_regular_file",
    "parse_semver",
    "manifest_digest",
    "seal_manifest",
    "MAX_MANIFEST_BYTES",
]

#: Schema identifier written into new manifests (``schema`` key).
MANIFEST_SCHEMA = "instrunet.manifest/3"
#: Schemas this runtime reads. A ``/1`` manifest reads as a ``/2`` one whose audio input is
#: log-mel (``input.kind == "logmel"``); ``/2`` adds waveform-input artifacts (the front end
#: inside the ONNX graph) and the optional ``source`` key; ``/3`` adds the optional outputs
#: ``other`` (the probability that a window is none of the labels) and ``embedding``. See
#: ``docs/manifest.md``, *Migration*.
MANIFEST_SCHEMAS = ("instrunet.manifest/1", "instrunet.manifest/2", MANIFEST_SCHEMA)
#: Most dimensions of an ``embedding`` output.
MAX_EMBEDDING = 4096
#: ``input.kind`` of an audio model: ``"logmel"`` (the default; log-mel spectrograms
#: ``[batch, n_mels, frames, 1]`` computed by the runtime with :mod:`instrunet_core.features`)
#: or ``"waveform"`` (22,050 Hz mono samples ``[batch, window_samples]``; the graph computes
#: the same spectrograms itself). Models with ``input.layout == "features"`` take a vector of
#: named features instead and have no ``kind``.
INPUT_KINDS = ("logmel", "waveform")
#: Tensor names of the log-mel models this project trains and exports (``training.models``,
#: ``export``); a manifest may name others, the runtime reads them from ``input``/``output``.
INPUT_NAME = "mel"
OUTPUT_NAME = "probabilities"
#: ``input.layout`` of a log-mel input ``[batch, n_mels, frames, 1]``.
LOGMEL_LAYOUT = "NHWC"
#: Presence threshold of a label the manifest's ``thresholds`` leaves out, per task.
DEFAULT_THRESHOLDS = {"multilabel": 0.5, "multiclass": 0.1}
MANIFEST_FILENAME = "manifest.json"
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)\Z")
#: What a model name may be: a lower-case identifier (the manifest and the exporter check it).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*\Z")

TASKS = ("multiclass", "multilabel")
ACTIVATIONS = {"multiclass": "softmax", "multilabel": "sigmoid"}
#: Largest manifest file read (bytes).
MAX_MANIFEST_BYTES = 4 << 20
#: Deepest JSON nesting accepted in a manifest.
MAX_MANIFEST_DEPTH = 32
#: Largest integer magnitude in a manifest (any key): shapes, counts and rates are far smaller,
#: and Python's own limit (4,300 digits) would otherwise surface as a ValueError.
MAX_MANIFEST_INT = 2**63
#: Most labels a model may have, and the longest label.
MAX_LABELS = 4096
MAX_LABEL_CHARS = 128
DIGEST_KEY = "manifest_sha256"

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
    DIGEST_KEY,
)
#: The keys of a manifest's ``front_end`` (``FrontEnd.to_dict()``; ``window_samples``, derived, may be left out).
#: Names no model label may take, in any case: ``silence`` (the timeline's silent stretch),
#: ``other`` (the open-set answer) and the columns every window has beside the labels' in the
#: timeline CSV and ``Analysis.to_dataframe()`` (a label ``silent`` overwrote the silence flag).
RESERVED_LABELS = ("silence", "other", "start", "end", "rms_db", "silent")
_FRONT_END_KEYS = frozenset(f.name for f in dataclasses.fields(FrontEnd))
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
    "features",
    "other",
    "embedding",
    "secondary",
)
#: ``input.layout`` of a model that takes a vector of named features (no log-mel front end).
FEATURES_LAYOUT = "features"


def parse_semver(version: str) -> tuple[int, int, int]:
    """``"1.2.3"`` → ``(1, 2, 3)``; raises :class:`~instrunet_core.errors.InputError` otherwise."""
    m = SEMVER_RE.match(str(version))
    if not m:
        raise InputError(f"version {version!r} is not semver X.Y.Z")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def manifest_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON, every key but ``manifest_sha256`` itself.

    Canonical form: ``json.dumps(data, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True, allow_nan=False)`` encoded as ASCII. The digest stored under
    ``manifest_sha256`` covers the labels, their order, the front end, the thresholds and
    the ONNX file's ``sha256`` — so the whole artifact is covered by one check.
    """
    return _canonical_sha256({k: v for k, v in data.items() if k != DIGEST_KEY})


def _canonical_sha256(body: Any) -> str:
    """SHA-256 of ``body``'s canonical JSON (the form :func:`manifest_digest` documents)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal_manifest(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with ``manifest_sha256`` set (written by the exporter)."""
    out = {k: v for k, v in data.items() if k != DIGEST_KEY}
    out[DIGEST_KEY] = manifest_digest(out)
    return out


def _r(v: Any, n: int = 60) -> str:
    """``repr`` cut to ``n`` characters: a hostile value never builds a huge message."""
    text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."


def _check_values(x: Any, where: str) -> None:
    """Every value of parsed JSON bounded before any check uses it: nesting at most
    :data:`MAX_MANIFEST_DEPTH` deep, integers within :data:`MAX_MANIFEST_INT`, numbers finite
    (iteratively: no recursion)."""
    stack = [(x, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > MAX_MANIFEST_DEPTH:
                raise _fail(where, f"JSON nested deeper than {MAX_MANIFEST_DEPTH} levels")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int) and not -MAX_MANIFEST_INT <= v <= MAX_MANIFEST_INT:
            raise _fail(where, f"an integer of {v.bit_length()} bits (at most 2**63 in magnitude)")
        elif isinstance(v, float) and not math.isfinite(v):
            raise _fail(where, f"a number is {v} (JSON numbers must be finite)")


def _parse_int(text: str) -> int:
    """``json.loads``'s integer hook: bounded before Python converts it."""
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most 19)")
    return int(text)


def _no_constant(text: str) -> float:
    """``json.loads``'s hook for ``NaN`` / ``Infinity``, which are not JSON."""
    raise ValueError(f"{text} is not a JSON number")


def open_regular_file(path: str | os.PathLike[str]) -> IO[bytes]:
    """``path`` opened for binary reading, once it is known to be a regular file: a FIFO would
    block for ever, a device (``/dev/zero``) never end. It is opened without waiting for a
    FIFO's writer, then looked at.

    Raises
    ------
    ModelError
        ``path`` is not a regular file (a FIFO, a device, a folder).
    OSError
        It cannot be opened (``FileNotFoundError`` when it is missing).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(f"{os.fspath(path)}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    front_end : FrontEnd or None
        The log-mel parameters the model was trained with; ``None`` for a features-input
        model (``input.layout == "features"``).
    file, sha256 : str
        ONNX file name (relative to the manifest) and its hex SHA-256.
    thresholds : dict or None
        Optional per-label presence thresholds in (0, 1).
    references : str or None
        Optional file of reference inputs/outputs (``references.npz``).
    features : dict or None
        For a features-input model: ``names`` (input order) and whatever else the host
        needs to compute them (free-form); ``None`` otherwise.
    other : dict or None
        Schema ``/3``: the open-set output, ``name``, ``shape`` ``[null, 1]``, ``dtype``,
        ``activation`` ``"sigmoid"`` and ``threshold``: the probability that a window holds
        sound that is none of the labels (drums, synths, speech, noise); optionally ``veto``,
        the model's own level of :attr:`~instrunet_core.timeline.Detection.other_veto` (the
        runtime's :data:`~instrunet_core.timeline.OTHER_VETO` without it).
    embedding : dict or None
        Schema ``/3``: ``name``, ``shape`` ``[null, dim]``, ``dtype`` of the output that
        :meth:`instrunet_core.Model.embed` returns (the network's penultimate layer).
    secondary : dict or None
        Optional: ``leading`` (a count of labels) and ``margins`` (``{label: float in [0, 1)}``):
        on the time axis, a label that is not among the ``leading`` most probable at a moment
        needs its threshold plus its margin there
        (:attr:`~instrunet_core.timeline.Detection.leading`).
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
    front_end: FrontEnd | None
    file: str
    sha256: str
    thresholds: Mapping[str, float] | None = None
    # (left out of repr: a family model's metrics and training data are 20 KB of text)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    training_data: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    parity: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    exporter: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    created: str | None = None
    license: str | None = None
    references: str | None = None
    features: Mapping[str, Any] | None = None
    other: Mapping[str, Any] | None = None
    embedding: Mapping[str, Any] | None = None
    secondary: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def input_kind(self) -> str:
        """``"logmel"`` (log-mel spectrograms in), ``"waveform"`` (22,050 Hz mono samples in) or
        ``"features"`` (a vector of named features, ``input.layout == "features"``)."""
        if self.input.get("layout") == FEATURES_LAYOUT:
            return "features"
        return str(self.input.get("kind", "logmel"))

    @property
    def other_threshold(self) -> float | None:
        """The open-set output's threshold (``other.threshold``, 0.5 when not given); ``None``
        for a model without one."""
        return float(self.other.get("threshold", 0.5)) if self.other else None

    @property
    def embedding_dim(self) -> int | None:
        """Size of the embedding output's vectors; ``None`` for a model without one."""
        return int(self.embedding["shape"][1]) if self.embedding else None

    @property
    def other_veto(self) -> float | None:
        """The open-set model's level of the timeline's "other" veto (``other.veto``, else the
        runtime's :data:`~instrunet_core.timeline.OTHER_VETO`); ``None`` for a model without an
        open-set output."""
        return float(self.other.get("veto", OTHER_VETO)) if self.other else None

    @property
    def embedding_sha256(self) -> str | None:
        """SHA-256 of what decides the vectors :meth:`instrunet_core.Model.embed` returns: the
        ONNX file (its ``sha256``), the input it takes, the front end that reads the audio, and
        the embedding output (name and size). Two manifests with the same digest embed every
        recording alike, whatever their labels, thresholds or detection rules (``family`` 3.0.0
        and 3.1.0 do); ``None`` for a model without an embedding output.

        The ONNX file is named by ``embedding.weights_sha256`` where the manifest gives one (the
        file of the network this graph's embedding output equals: ``family`` 3.2.0 is 3.1.0's
        graph with a gate after the network), else by ``sha256``. Canonical JSON as
        :func:`manifest_digest`'s, of ``{"sha256", "input": {"name", "kind", "shape"},
        "front_end": {...}, "embedding": {"name", "dim"}}``, every value resolved and of one type
        (``fmax`` in Hz, whole numbers as ints, the rest as floats) and the front end by a fixed
        list of fields: a manifest that writes a default out and one that leaves it implicit
        (``fmin: 0`` or ``0.0``, ``fmax: null`` or the Nyquist rate) give the same digest."""
        if not self.embedding:
            return None
        fe = self.front_end
        front = None
        if fe is not None:
            front = {
                "sample_rate": int(fe.sample_rate),
                "n_fft": int(fe.n_fft),
                "hop_length": int(fe.hop_length),
                "n_mels": int(fe.n_mels),
                "fmin": float(fe.fmin),
                "fmax": float(fe.fmax_hz),
                "frames": int(fe.frames),
                "top_db": float(fe.top_db),
                "normalization": str(fe.normalization),
            }
        body = {
            # a graph made by adding nodes after a network (export.noisegate) embeds as that
            # network's file, which ``embedding.weights_sha256`` names
            "sha256": str(self.embedding.get("weights_sha256") or self.sha256),
            "input": {
                "name": str(self.input.get("name")),
                "kind": self.input_kind,
                "shape": [None if d is None else int(d) for d in self.input.get("shape", [])],
            },
            "front_end": front,
            "embedding": {"name": str(self.embedding.get("name")), "dim": self.embedding_dim},
        }
        return _canonical_sha256(body)

    @property
    def leading(self) -> int:
        """``secondary.leading``: how many of the most probable labels need only their thresholds
        at a moment (0: every label, the manifest has no ``secondary``)."""
        return int(self.secondary["leading"]) if self.secondary else 0

    @property
    def margins(self) -> dict[str, float]:
        """``secondary.margins``: what a label behind the leading ones needs above its threshold."""
        return {k: float(v) for k, v in self.secondary["margins"].items()} if self.secondary else {}

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_semver(self.version)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (a copy of what was validated)."""
        return json.loads(json.dumps(dict(self.raw)))


def _fail(where: str, msg: str) -> ModelError:
    return ModelError(f"{where}: invalid manifest: {msg}")


#: The keys each tensor description may hold (a misspelt ``threshold`` or ``activation`` is an
#: error, as an unknown top-level key is, not a value silently left at its default).
_TENSOR_KEYS = {
    "input": ("name", "shape", "dtype", "layout", "kind", "sample_rate"),
    "output": ("name", "shape", "dtype", "activation"),
    "other": ("name", "shape", "dtype", "activation", "threshold", "veto", "noise_gate"),
    "embedding": ("name", "shape", "dtype", "weights_sha256"),
}


def _check_tensor_keys(d: Mapping[str, Any], key: str, where: str) -> None:
    unknown = sorted(str(k) for k in d if k not in _TENSOR_KEYS[key])
    if unknown:
        raise _fail(where, f"unknown key(s) in {key}: {_r(unknown)} (allowed: {list(_TENSOR_KEYS[key])})")


def _check_tensor(d: Any, key: str, where: str, n_labels: int) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise _fail(where, f"{key!r} must be an object, got {type(d).__name__}")
    _check_tensor_keys(d, key, where)
    for k in ("name", "shape", "dtype"):
        if k not in d:
            raise _fail(where, f"{key}.{k} is missing")
    if not isinstance(d["name"], str) or not d["name"] or len(d["name"]) > 256:
        raise _fail(where, f"{key}.name must be a non-empty string, got {_r(d['name'])}")
    shape = d["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 1 << 20) for s in shape
        )
    ):
        raise _fail(where, f"{key}.shape must be a short list of positive ints or null, got {_r(shape)}")
    if d["dtype"] != "float32":
        raise _fail(where, f"{key}.dtype must be 'float32', got {_r(d['dtype'])}")
    if key == "input" and d.get("layout") == FEATURES_LAYOUT:
        if len(shape) != 2 or shape[0] is not None or shape[1] is None:
            raise _fail(
                where, f"input.shape must be [null, n_features] for layout 'features', got {_r(shape)}"
            )
    elif key == "input" and d.get("kind", "logmel") == "waveform":
        if len(shape) != 2 or shape[0] is not None:
            raise _fail(
                where, f"input.shape of a waveform input must be [null, window_samples], got {_r(shape)}"
            )
    elif key == "input":
        if d.get("kind", "logmel") not in INPUT_KINDS:
            raise _fail(where, f"input.kind must be one of {list(INPUT_KINDS)}, got {_r(d.get('kind'))}")
        if len(shape) != 4 or shape[0] is not None or shape[3] != 1:
            raise _fail(where, f"input.shape must be [null, n_mels, frames, 1], got {_r(shape)}")
        if d.get("layout", LOGMEL_LAYOUT) != LOGMEL_LAYOUT:
            raise _fail(where, f"input.layout must be {LOGMEL_LAYOUT!r}, got {_r(d.get('layout'))}")
    else:
        if len(shape) != 2 or shape[0] is not None:
            raise _fail(where, f"output.shape must be [null, n_labels], got {_r(shape)}")
        if shape[1] != n_labels:
            raise _fail(where, f"output.shape[1]={shape[1]} but there are {n_labels} labels")
        if d.get("activation") not in ("softmax", "sigmoid"):
            raise _fail(
                where, f"output.activation must be 'softmax' or 'sigmoid', got {_r(d.get('activation'))}"
            )
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
    is_features = _check_keys(data, where)
    name, version, task, labels = _check_identity(data, where)
    inp = _check_tensor(data["input"], "input", where, len(labels))
    out = _check_tensor(data["output"], "output", where, len(labels))
    if out["activation"] != ACTIVATIONS[task]:
        raise _fail(
            where,
            f"output.activation {out['activation']!r} does not match task {task!r} "
            f"(expected {ACTIVATIONS[task]!r})",
        )
    fe, feats = _check_input_source(data, inp, is_features, where)
    file = data["file"]
    if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
        raise _fail(where, f"file must be a plain file name like 'model.onnx', got {_r(file)}")
    if len(file.encode("utf-8", "surrogatepass")) > 255:  # longer than file systems take
        raise _fail(
            where, f"file must be a plain file name like 'model.onnx', got one of {len(file)} characters"
        )
    sha = data["sha256"]
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _fail(where, f"sha256 must be 64 lower-case hex digits, got {_r(sha)}")
    thresholds = _check_thresholds(data.get("thresholds"), labels, where)
    objs, strs = _check_optional(data, where)
    other, embedding = _check_extra_outputs(data, where)
    secondary = _check_secondary(data.get("secondary"), labels, where)
    _check_digest(data, where)
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
        parity=objs["parity"],
        exporter=objs["exporter"],
        created=strs["created"],
        license=strs["license"],
        references=strs["references"],
        features=feats,
        other=other,
        embedding=embedding,
        secondary=secondary,
        raw=json.loads(json.dumps(dict(data))),
    )


def _check_keys(data: Mapping[str, Any], where: str) -> bool:
    """Keys present, none unknown, depth bounded, a schema this runtime reads; True for a
    features-input manifest (``input.layout == "features"``, no ``front_end``)."""
    if not all(isinstance(k, str) for k in data):
        raise _fail(where, "keys must be strings")
    is_features = isinstance(data.get("input"), Mapping) and data["input"].get("layout") == FEATURES_LAYOUT
    required = tuple(k for k in _REQUIRED if not (is_features and k == "front_end"))
    missing = [k for k in required if k not in data]
    if missing == [DIGEST_KEY]:
        raise _fail(
            where,
            f"{DIGEST_KEY} is missing: this manifest predates integrity digests; check its content, then "
            "seal it: python -m export.reseal <artifact folder> in a checkout of instrunet, or "
            "instrunet_core.manifest.seal_manifest(data) written back as manifest.json (docs/manifest.md)",
        )
    if missing:
        raise _fail(where, f"missing required key(s) {missing}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown key(s) {_r(unknown, 200)}")
    _check_values(data, where)
    if data["schema"] not in MANIFEST_SCHEMAS:
        raise _fail(where, f"schema must be one of {list(MANIFEST_SCHEMAS)}, got {_r(data['schema'])}")
    return is_features


#: Zero-width (non-)joiners: allowed inside a label (its spelling may need them), never counted.
_JOINERS = "\u200c\u200d"


def _label_key(label: str, *, fold: bool = True) -> str:
    """What a label reads as: NFC, its zero-width joiners left out, case folded (``fold``):
    ``other`` with a joiner inside prints as ``other`` (a review)."""
    key = unicodedata.normalize("NFC", label)
    for joiner in _JOINERS:
        key = key.replace(joiner, "")
    return key.casefold() if fold else key


def _check_identity(data: Mapping[str, Any], where: str) -> tuple[str, str, str, list[str]]:
    """``name``, ``version``, ``task`` and ``labels``."""
    name = data["name"]
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 128:
        raise _fail(where, f"name must be a lower-case identifier ([a-z0-9_.-]), got {_r(name)}")
    version = data["version"]
    if not isinstance(version, str) or not SEMVER_RE.match(version):
        raise _fail(where, f"version must be semver X.Y.Z, got {_r(version)}")
    task = data["task"]
    if task not in TASKS:
        raise _fail(where, f"task must be one of {list(TASKS)}, got {_r(task)}")
    labels = data["labels"]
    if (
        not isinstance(labels, list)
        or not labels
        or len(labels) > MAX_LABELS
        or not all(isinstance(x, str) and x and len(x) <= MAX_LABEL_CHARS for x in labels)
    ):
        raise _fail(
            where,
            f"labels must be a non-empty list of at most {MAX_LABELS} strings of 1-{MAX_LABEL_CHARS} "
            f"characters, got {_r(labels)}",
        )
    if len(set(labels)) != len(labels):
        raise _fail(where, f"labels must be unique, got {_r(labels)}")
    # (a word's spelling may need a zero-width (non-)joiner: Persian, emoji sequences; inside it)
    bad = next(
        (
            x
            for x in labels
            if not _label_key(x, fold=False).isprintable() or x[0] in _JOINERS or x[-1] in _JOINERS
        ),
        None,
    )
    if bad is not None:  # a newline, a tab or a terminal escape would break every text output
        raise _fail(where, f"labels must be printable text (no control characters), got {bad!r}")
    spaced = next((x for x in labels if x != x.strip() or not x.strip()), None)
    if spaced is not None:  # `other ` beside `other`: two labels that print the same
        raise _fail(where, f"labels must not be blank or start or end with spaces, got {spaced!r}")
    forms: dict[str, str] = {}
    for x in labels:  # 'café' and 'cafe' + a combining accent: one word, two labels
        twin = forms.setdefault(_label_key(x), x)
        if twin != x:
            raise _fail(
                where,
                f"labels {twin!r} and {x!r} are the same word (in another case or Unicode form): "
                f"one label each",
            )
    if task == "multiclass" and len(labels) < 2:
        raise _fail(
            where,
            "a multiclass (softmax) model needs 2 or more labels: a softmax over one label is always "
            "1 (a detector of one label is a multilabel model, with a sigmoid output)",
        )
    formula = next((x for x in labels if x[0] in "=+-@"), None)
    if formula is not None:  # labels head CSV columns and fill CSV cells: a spreadsheet runs these
        raise _fail(
            where,
            f"labels must not start with '=', '+', '-' or '@' (a spreadsheet opening the CSV output "
            f"would run it as a formula), got {formula!r}",
        )
    for x in labels:
        if _label_key(x) in RESERVED_LABELS:
            raise _fail(
                where,
                f"{x!r} is reserved and cannot be a model label (reserved, in any case: "
                f"{', '.join(RESERVED_LABELS)}: the timeline's silent stretch, the open-set answer and "
                "the columns every window has in the CSV and the DataFrame)",
            )
    return name, version, task, labels


def _check_input_source(
    data: Mapping[str, Any], inp: Mapping[str, Any], is_features: bool, where: str
) -> tuple[FrontEnd | None, dict[str, Any] | None]:
    """What feeds the input: ``features`` (a features-input model) or ``front_end`` (log-mel or
    waveform input), each consistent with ``input.shape``. Returns ``(front_end, features)``."""
    fe: FrontEnd | None = None
    feats = data.get("features")
    if is_features:
        if "front_end" in data:
            raise _fail(where, "a features-input model (input.layout 'features') has no front_end")
        if not isinstance(feats, Mapping) or not isinstance(feats.get("names"), list):
            raise _fail(where, "input.layout 'features' needs features.names, the list of input features")
        names = feats["names"]
        if not names or not all(isinstance(x, str) and x for x in names) or len(set(names)) != len(names):
            raise _fail(where, f"features.names must be unique non-empty strings, got {_r(names)}")
        if inp["shape"][1] != len(names):
            raise _fail(where, f"input.shape {inp['shape']} disagrees with {len(names)} features.names")
        return None, json.loads(json.dumps(dict(feats)))
    if feats is not None:
        raise _fail(where, "features is only allowed with input.layout 'features'")
    if not isinstance(data["front_end"], Mapping):
        raise _fail(where, "front_end must be an object")
    lacking = sorted(_FRONT_END_KEYS - set(data["front_end"]))
    if lacking:  # filled with the runtime's defaults, the model would read another front end
        raise _fail(
            where, f"front_end lacks {lacking}: a model's front end is given whole (FrontEnd.to_dict())"
        )
    try:
        fe = FrontEnd.from_dict(data["front_end"])
    except (InputError, TypeError, ValueError) as e:
        raise _fail(where, f"front_end: {str(e)[:300]}") from None
    kind = inp.get("kind", "logmel")
    if kind == "waveform":
        if data["schema"] == MANIFEST_SCHEMAS[0]:
            raise _fail(
                where,
                f"a waveform input needs schema {MANIFEST_SCHEMA!r} (this manifest says "
                f"{_r(data['schema'])})",
            )
        if inp["shape"][1] != fe.window_samples:
            raise _fail(
                where,
                f"input.shape {inp['shape']} disagrees with front_end (window_samples={fe.window_samples})",
            )
        if inp.get("sample_rate", fe.sample_rate) != fe.sample_rate:
            raise _fail(
                where,
                f"input.sample_rate {_r(inp.get('sample_rate'))} disagrees with front_end "
                f"(sample_rate={fe.sample_rate})",
            )
    elif inp["shape"][1] != fe.n_mels or inp["shape"][2] != fe.frames:
        raise _fail(
            where,
            f"input.shape {inp['shape']} disagrees with front_end (n_mels={fe.n_mels}, frames={fe.frames})",
        )
    return fe, None


def _check_thresholds(thresholds: Any, labels: list[str], where: str) -> dict[str, float] | None:
    """``{label: float in (0, 1)}`` for known labels, or ``None``."""
    if thresholds is None:
        return None
    if not isinstance(thresholds, Mapping):
        raise _fail(where, "thresholds must be an object {label: float}")
    for k, v in thresholds.items():
        if k not in labels:
            raise _fail(where, f"thresholds has unknown label {_r(k)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
            raise _fail(where, f"thresholds[{_r(k)}] must be a number in (0, 1), got {_r(v)}")
    return {k: float(v) for k, v in thresholds.items()}


def _check_secondary(secondary: Any, labels: list[str], where: str) -> dict[str, Any] | None:
    """``{"leading": int in [1, labels), "margins": {label: float in [0, 1)}}``, or ``None``."""
    if secondary is None:
        return None
    if not isinstance(secondary, Mapping) or sorted(secondary) != ["leading", "margins"]:
        raise _fail(where, "secondary must be an object with exactly leading and margins")
    k = secondary["leading"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(labels):
        raise _fail(where, f"secondary.leading must be an integer from 1 to {len(labels) - 1}, got {_r(k)}")
    margins = secondary["margins"]
    if not isinstance(margins, Mapping):
        raise _fail(where, "secondary.margins must be an object {label: float}")
    for lab, v in margins.items():
        if lab not in labels:
            raise _fail(where, f"secondary.margins has unknown label {_r(lab)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
            raise _fail(where, f"secondary.margins[{_r(lab)}] must be a number in [0, 1), got {_r(v)}")
    return {"leading": k, "margins": {lab: float(v) for lab, v in margins.items()}}


def _check_optional(
    data: Mapping[str, Any], where: str
) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """The free-form objects (``metrics``, ``training_data``, ``parity``, ``exporter``), the
    strings (``created``, ``license``, ``references``) and ``source``."""
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
            raise _fail(where, f"parity.{k} must be a number, got {_r(parity[k])}")
    strs = {}
    for key in ("created", "license", "references"):
        v = data.get(key)
        if v is not None and not isinstance(v, str):
            raise _fail(where, f"{key} must be a string, got {_r(v)}")
        strs[key] = v
    source = data.get("source")
    if source is not None:
        if not isinstance(source, Mapping) or not all(
            isinstance(source.get(k), str) for k in ("name", "version", "sha256")
        ):
            raise _fail(
                where, f"source must be an object with string name, version and sha256, got {source!r}"
            )
    refs = strs["references"]
    if refs is not None and ("/" in refs or "\\" in refs or refs.startswith(".")):
        raise _fail(where, f"references must be a plain file name, got {_r(refs)}")
    return objs, strs


def _check_extra_outputs(
    data: Mapping[str, Any], where: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The optional ``other`` and ``embedding`` output descriptions (schema ``/3`` only)."""
    found: list[dict[str, Any] | None] = []
    for key in ("other", "embedding"):
        d = data.get(key)
        if d is None:
            found.append(None)
            continue
        if data["schema"] != MANIFEST_SCHEMA:
            raise _fail(
                where, f"{key} needs schema {MANIFEST_SCHEMA!r} (this manifest says {_r(data['schema'])})"
            )
        if not isinstance(d, Mapping) or not all(k in d for k in ("name", "shape", "dtype")):
            raise _fail(where, f"{key} must be an object with name, shape and dtype")
        _check_tensor_keys(d, key, where)
        if not isinstance(d["name"], str) or not d["name"] or len(d["name"]) > 256:
            raise _fail(where, f"{key}.name must be a non-empty string, got {_r(d['name'])}")
        if d["name"] in (data["output"].get("name"), data["input"].get("name")):
            raise _fail(where, f"{key}.name {_r(d['name'])} is already the model's input or output")
        shape, dtype = d["shape"], d["dtype"]
        if dtype != "float32":
            raise _fail(where, f"{key}.dtype must be 'float32', got {_r(dtype)}")
        ok_dim = (
            isinstance(shape, list)
            and len(shape) == 2
            and shape[0] is None
            and isinstance(shape[1], int)
            and not isinstance(shape[1], bool)
        )
        if key == "other":
            if not ok_dim or shape[1] != 1:
                raise _fail(where, f"other.shape must be [null, 1], got {_r(shape)}")
            if d.get("activation") != "sigmoid":
                raise _fail(where, f"other.activation must be 'sigmoid', got {_r(d.get('activation'))}")
            t = d.get("threshold", 0.5)
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
                raise _fail(where, f"other.threshold must be a number in (0, 1), got {_r(t)}")
            if "veto" in d and not is_veto(d["veto"]):
                raise _fail(where, f"other.veto must be a number in (0, 1], got {_r(d['veto'])}")
            if "noise_gate" in d:
                _check_noise_gate(d["noise_gate"], where, data)
        elif not ok_dim or not 1 <= shape[1] <= MAX_EMBEDDING:
            raise _fail(
                where,
                f"embedding.shape must be [null, dim] with 1 <= dim <= {MAX_EMBEDDING}, got {_r(shape)}",
            )
        elif "weights_sha256" in d and not (
            isinstance(d["weights_sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", d["weights_sha256"])
        ):
            raise _fail(
                where, f"embedding.weights_sha256 must be 64 hex digits, got {_r(d['weights_sha256'])}"
            )
        elif "weights_sha256" in d and not (
            isinstance(data.get("other"), Mapping) and "noise_gate" in data["other"]
        ):
            # the one graph that embeds as another file: a network with a gate after it; a retrained
            # network whose manifest was copied from such an artifact must not inherit the claim
            raise _fail(
                where,
                "embedding.weights_sha256 names the network a gated graph embeds as (export.noisegate), "
                "but this manifest has no other.noise_gate",
            )
        found.append(dict(d))
    return found[0], found[1]


def _check_noise_gate(g: Any, where: str, data: Mapping[str, Any]) -> None:
    """``other.noise_gate``: the parameters of a gate inside the graph (``export.noisegate``):
    the runtime computes nothing from them, they say what the graph does."""
    keys = ("contrast_db", "softness_db", "bands", "floor_db", "band_floor_db")

    def positive(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0

    if not isinstance(g, Mapping) or sorted(g) != sorted(keys):
        raise _fail(where, f"other.noise_gate must be an object with exactly {list(keys)}, got {_r(g)}")
    for k in ("contrast_db", "softness_db", "floor_db", "band_floor_db"):
        if not positive(g[k]):
            raise _fail(where, f"other.noise_gate.{k} must be a number > 0, got {_r(g[k])}")
    b = g["bands"]
    if not (
        isinstance(b, list)
        and len(b) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in b)
        and 0 <= b[0]
        and b[1] - b[0] >= 3
    ):
        raise _fail(
            where, f"other.noise_gate.bands must be [lo, hi] band indices, 3 or more apart, got {_r(b)}"
        )
    fe = data.get("front_end")
    if isinstance(fe, Mapping):  # (what the gate reads: the input's bands and its dB scale)
        n_mels, top_db = fe.get("n_mels", 128), fe.get("top_db", 80.0)
        if isinstance(n_mels, int) and b[1] > n_mels:
            raise _fail(where, f"other.noise_gate.bands {_r(b)} reach past the input's {n_mels} mel bands")
        for k in ("floor_db", "band_floor_db"):
            if isinstance(top_db, (int, float)) and g[k] > top_db:
                raise _fail(
                    where, f"other.noise_gate.{k} {_r(g[k])} exceeds the front end's top_db {_r(top_db)}"
                )


def is_veto(v: object) -> bool:
    """Whether ``v`` can be a model's ``other.veto``: a number in (0, 1] (1: no veto)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0.0 < float(v) <= 1.0


def _check_digest(data: Mapping[str, Any], where: str) -> None:
    """``manifest_sha256`` well-formed and equal to the digest of the content."""
    digest = data[DIGEST_KEY]
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise _fail(where, f"{DIGEST_KEY} must be 64 lower-case hex digits, got {_r(digest)}")
    try:
        actual = manifest_digest(data)
    except (TypeError, ValueError) as e:
        raise _fail(where, f"not canonical JSON ({e})") from None
    if actual != digest:
        raise _fail(
            where,
            f"{DIGEST_KEY} {digest} does not match the content ({actual}): the manifest was edited after "
            "export (labels, front end, thresholds and sha256 are all covered); re-export the model, or "
            "seal the edit (instrunet_core.manifest.seal_manifest, docs/manifest.md)",
        )


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` (or a directory holding one).

    Raises
    ------
    ModelError
        Missing file, not a regular file (a FIFO), invalid JSON, or invalid content; the message
        names the file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILENAME
    try:
        with open_regular_file(p) as f:  # a FIFO named manifest.json would block for ever
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ModelError(f"{p}: manifest not found") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read manifest: {e.strerror or e}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ModelError(f"{p}: manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{p}: manifest is not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        data = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ModelError(f"{p}: manifest is not valid JSON: {e}") from None
    except RecursionError:
        raise ModelError(f"{p}: manifest is not usable JSON: nested too deeply") from None
    except ValueError as e:  # from the hooks above
        raise ModelError(f"{p}: manifest is not usable JSON: {str(e)[:200]}") from None
    return validate_manifest(data, where=str(p))
