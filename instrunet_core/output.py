"""The output contract: the JSON records instrunet writes, in one place.

Every JSON document the project writes carries ``schema`` (what it is, and the version of
its shape) and ``instrunet_version`` (the runtime that wrote it), and describes the model
with one shape, :func:`model_info`. The shapes are published as JSON Schema in
``instrunet_core/schema/``, installed with the package (:func:`json_schemas`; ``analysis.json``, ``classification.json``); ``tests/test_output.py``
validates every output against them.

* ``instrunet.analysis/3`` — :meth:`Analysis.to_dict() <instrunet_core.Analysis.to_dict>`,
  written by ``instrunet analyze --json`` and the ``json`` writer.
* ``instrunet.classification/2`` — one file's overall result (or its error): each item of
  ``instrunet classify --json`` and each line of ``instrunet batch``.

A change that removes or retypes a field bumps the number after the slash; adding an
optional field does not.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.metadata
import json
import math
import os
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .analysis import Prediction
    from .model import Model

__all__ = [
    "display_name",
    "ANALYSIS_SCHEMA",
    "CLASSIFICATION_SCHEMA",
    "EMBEDDING_SCHEMA",
    "SEARCH_SCHEMA",
    "SCHEMA_DIR",
    "json_schemas",
    "CLASSIFICATION_FIELDS",
    "instrunet_version",
    "model_info",
    "classification_record",
    "error_record",
    "jsonable",
]

#: Where machine output written to ``-`` goes while plugin code runs with its prints sent to
#: stderr (:func:`instrunet_core.registry.plugin_stdout`): the stdout from before, so that a
#: writer's data reaches stdout and its prints do not. ``None`` outside such a stretch.
DATA_STDOUT: contextvars.ContextVar[Any] = contextvars.ContextVar("instrunet_data_stdout", default=None)
#: :data:`DATA_STDOUT` when the stdout from before was closed (``sys.stdout`` was ``None``).
STDOUT_CLOSED = object()


def data_stdout() -> Any:
    """Where machine output to ``-`` goes now: :data:`DATA_STDOUT` inside
    :func:`~instrunet_core.registry.plugin_stdout`, else ``sys.stdout`` (``None``: closed)."""
    out = DATA_STDOUT.get() or sys.stdout
    return None if out is STDOUT_CLOSED else out


ANALYSIS_SCHEMA = "instrunet.analysis/3"
CLASSIFICATION_SCHEMA = "instrunet.classification/2"
#: Each line of ``instrunet embed`` (``schema/embedding.json``).
EMBEDDING_SCHEMA = "instrunet.embedding/1"
#: ``instrunet search --json`` (``schema/search.json``).
SEARCH_SCHEMA = "instrunet.search/1"

#: The JSON Schemas (draft 2020-12) of every JSON document instrunet writes, installed with the
#: package: ``analysis.json``, ``classification.json``, ``embedding.json``, ``search.json`` and
#: ``model.json`` (the ``model`` field, which the others refer to).
SCHEMA_DIR = Path(__file__).with_name("schema")


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of instrunet's outputs by file name (:data:`SCHEMA_DIR`), each a new dict.

    Their ``$id`` (``https://instrunet.invalid/schema/NAME``) names them without resolving
    anywhere, and they refer to each other (``"$ref": "model.json"``): give a validator all of
    them, e.g. a ``referencing.Registry`` of every schema under its ``$id`` (docs/cli.md,
    "Output contract").
    """
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMA_DIR.glob("*.json"))}


#: Every field an ``instrunet.classification/2`` record may have, in order, with its JSON type
#: (``dict``: an object). A table of records (the Ray engine's Parquet parts) takes its columns
#: from here, so a field added to the records reaches it; :func:`classification_record` and
#: :func:`error_record` refuse to write a field that is not listed.
CLASSIFICATION_FIELDS: dict[str, type] = {
    "schema": str,
    "instrunet_version": str,
    "path": str,
    "model": dict,
    "label": str,
    "confidence": float,
    "probabilities": dict,
    "n_windows": int,
    "silent": bool,
    "low_evidence": bool,
    "sounding_seconds": float,
    "other": float,
    "duration": float,
    "hop": float,
    "file_size": int,
    "file_mtime_ns": int,
    "damage": str,
    "error": str,
}


@functools.lru_cache(maxsize=1)
def instrunet_version() -> str:
    """The installed ``instrunet`` version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version("instrunet")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def model_info(model: Model, *, embedding: bool = False) -> dict[str, str]:
    """The ``model`` field of every output:
    ``{name, version, sha256, manifest_sha256, task, input[, provider][, embedding_sha256]}``.

    ``model`` is a :class:`~instrunet_core.Model` (anything with a ``manifest``). ``sha256`` is
    the ONNX file's, ``manifest_sha256`` the manifest's digest (its labels, thresholds and front
    end: two manifests for one ONNX file answer differently); ``input`` is the artifact's input
    kind (``"logmel"`` or ``"waveform"``); ``provider`` the onnxruntime execution provider that
    actually ran it, when ``model`` is a loaded session; ``embedding_sha256`` (``embedding=True``,
    for a model with an embedding output: embedding records and searches) the digest of what
    decides its vectors (:attr:`~instrunet_core.manifest.Manifest.embedding_sha256`)."""
    m = model.manifest
    info = {"name": m.name, "version": m.version, "sha256": m.sha256}
    digest = m.raw.get("manifest_sha256")  # (manifest.DIGEST_KEY: a layer above this one)
    if isinstance(digest, str):
        info["manifest_sha256"] = digest
    info.update(task=m.task, input=m.input_kind)
    provider = getattr(model, "provider", None)
    if isinstance(provider, str):
        info["provider"] = provider
    key = m.embedding_sha256 if embedding else None
    if key is not None:
        info["embedding_sha256"] = key
    return info


def _num(x: float, ndigits: int | None = None) -> float | None:
    f = float(x)
    if not math.isfinite(f):
        return None
    return round(f, ndigits) if ndigits is not None else f


def classification_record(
    path: str,
    prediction: Prediction,
    model: Model,
    *,
    duration: float | None = None,
    hop: float | None = None,
    stamp: Mapping[str, int] | None = None,
    damage: str | None = None,
) -> dict[str, Any]:
    """One file's overall result as an ``instrunet.classification/2`` record.

    Parameters
    ----------
    path : str
        The file as named in the output (``batch`` writes absolute paths).
    prediction : Prediction
    model : Model
    duration : float, optional
        Seconds of audio, when known.
    hop : float, optional
        Seconds between the starts of the windows that made the answer (``batch`` records it).
    stamp : mapping, optional
        ``{"file_size", "file_mtime_ns"}`` of the file when it was read
        (:func:`instrunet_core.batch.file_stamp`).
    damage : str, optional
        Why decoding ended before the file's end (:attr:`Classifier.damage
        <instrunet_core.Classifier>`): the answer covers what decoded.

    Returns
    -------
    dict
        ``{schema, instrunet_version, path, model, label, confidence, probabilities,
        n_windows, silent, low_evidence, sounding_seconds[, other][, duration][, hop]
        [, file_size, file_mtime_ns][, damage]}``; ``other`` (open-set models) is the probability that
        the sound is none of the labels, and ``label`` is then ``"other"`` when that wins.
    """
    rec: dict[str, Any] = {
        "schema": CLASSIFICATION_SCHEMA,
        "instrunet_version": instrunet_version(),
        "path": path,
        "model": model_info(model),
        "label": prediction.label,
        "confidence": _num(prediction.confidence),
        "probabilities": {k: _num(v) for k, v in prediction.probabilities.items()},
        "n_windows": int(prediction.n_windows),
        "silent": bool(prediction.silent),
        "low_evidence": bool(prediction.low_evidence),
        "sounding_seconds": _num(prediction.sounding_seconds, 4),
    }
    if prediction.other is not None:
        rec["other"] = _num(prediction.other)
    if duration is not None:
        rec["duration"] = _num(duration, 4)
    if hop is not None:
        rec["hop"] = _num(hop, 6)
    if stamp is not None:
        rec["file_size"] = int(stamp["file_size"])
        rec["file_mtime_ns"] = int(stamp["file_mtime_ns"])
    if damage is not None:
        rec["damage"] = str(damage)
    return _listed(rec)


def _listed(rec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(rec) - set(CLASSIFICATION_FIELDS)
    if unknown:  # a programming error: the field must be listed (and documented) first
        raise AssertionError(f"classification record fields not in CLASSIFICATION_FIELDS: {sorted(unknown)}")
    return rec


def error_record(path: str, message: str, model: Model | None = None) -> dict[str, Any]:
    """A file that could not be classified, as an ``instrunet.classification/2`` record.

    Returns
    -------
    dict
        ``{schema, instrunet_version, path, error[, model]}``.
    """
    rec: dict[str, Any] = {
        "schema": CLASSIFICATION_SCHEMA,
        "instrunet_version": instrunet_version(),
        "path": path,
        "error": message,
    }
    if model is not None:
        rec["model"] = model_info(model)
    return _listed(rec)


def jsonable(x: Any, *, max_values: int | None = None) -> Any:
    """``x`` with plain JSON types only: mappings → dicts with str keys, sequences and arrays →
    lists, numpy scalars → Python numbers, NaN and infinities → ``None``, anything else → ``str``.

    ``max_values`` bounds what is converted: numbers, keys, lists, dicts and other leaves count
    one each, a string one per started 100 characters, an array of numbers its size (counted
    before it is converted; an array of objects is counted as a list of them).
    Past it, ``ValueError`` (nothing large is built first).
    """
    if max_values is None:
        return _jsonable(x, None)
    return _jsonable(x, [int(max_values), int(max_values)])


def _count(left: list[int] | None, n: int) -> None:
    if left is not None:
        left[0] -= n
        if left[0] < 0:
            raise ValueError(f"too large: more than {left[1]:,} values")


def _jsonable(x: Any, left: list[int] | None) -> Any:
    if isinstance(x, Mapping):
        _count(left, 1 + len(x))  # itself, and each key
        out = {str(k): _jsonable(v, left) for k, v in x.items()}
        if len(out) < len(x):  # 1 and "1": one value would be lost without a word
            seen: dict[str, Any] = {}
            for k in x:
                if str(k) in seen:
                    raise ValueError(
                        f"ambiguous: keys {seen[str(k)]!r} and {k!r} are both {str(k)!r} as JSON keys"
                    )
                seen[str(k)] = k
        return out
    if isinstance(x, (list, tuple)):
        _count(left, 1)
        return [_jsonable(v, left) for v in x]
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "biufc":  # numbers: counted before they are converted
            _count(left, x.size)
            return _jsonable(x.tolist(), None)
        return _jsonable(x.tolist(), left)  # objects, strings: counted as they are
    if isinstance(x, (bool, np.bool_)):
        _count(left, 1)
        return bool(x)
    if isinstance(x, (int, np.integer)):
        _count(left, 1)
        return int(x)
    if isinstance(x, (float, np.floating)):
        _count(left, 1)
        f = float(x)
        return f if math.isfinite(f) else None
    if x is None or isinstance(x, str):
        _count(left, 1 + len(x) // 100 if x is not None else 1)
        return x
    s = str(x)
    _count(left, 1 + len(s) // 100)
    return s


#: Invisible characters that reorder the text around them ("Trojan source"): shown escaped.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


_ESCAPE_BACKSLASH = os.sep != "\\"


def display_name(name: str) -> str:
    """A file name as a terminal line, a plot title or a report may show it.

    Bytes that are not UTF-8 (which Python surrogate-escapes) become ``\\xNN``; control
    characters (newline, ESC, ...), line separators and bidirectional overrides become escapes
    (``\\n``, ``\\x1b``, ``\\u202e``), so a name is one line that cannot drive a terminal or
    reorder its neighbours. A backslash itself is written ``\\`` (not on Windows, where it
    separates folders), so the escape can be undone: a file named ``a\nb.wav`` with a real
    backslash and one with a newline no longer print the same line. Letters of any script and
    emoji stay as they are. Machine output (JSON) keeps the name itself.
    """
    out = []
    for ch in name:
        o = ord(ch)
        if ch == "\\" and _ESCAPE_BACKSLASH:
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's escape of a byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)
