"""Artifact verification: the one home of the checks a model artifact must pass.

:func:`verify_artifact` checks a ``<name>/<version>/`` folder against its manifest: the
manifest itself (schema and ``manifest_sha256``, by :func:`~instrunet_core.manifest.read_manifest`),
the ONNX file's SHA-256 and, when asked, that onnxruntime reproduces the stored
``references.npz`` (inputs and the outputs the exporter got for them). Every caller uses it:
:class:`~instrunet_core.Model` when it loads a model (``references=False``: loading stays
fast), ``instrunet models --check``, the exporter (``export.artifact.check_artifact``, also for
the source of a waveform-in artifact), the condition plugin and ``tests/test_artifacts.py``.

The replay does not depend on what the model takes: log-mel spectrograms (float16
``(N, n_mels, frames, 1)`` references), feature vectors (float32 ``(N, n_features)``, the
condition model) or waveform windows all feed the stored ``inputs`` to the manifest's input
tensor, cast to float32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, describe, one_line
from .manifest import MANIFEST_FILENAME, Manifest, open_regular_file, read_manifest
from .session import RuntimeOptions, onnx_session

__all__ = [
    "ArtifactCheck",
    "verify_artifact",
    "verified_session",
    "check_io",
    "probability_problem",
    "REFERENCES_ATOL",
]

#: Largest |onnxruntime output - stored reference| accepted (probabilities in [0, 1]).
REFERENCES_ATOL = 1e-4


@dataclasses.dataclass(frozen=True)
class ArtifactCheck:
    """What :func:`verify_artifact` checked, all of it passed.

    Attributes
    ----------
    path : pathlib.Path
        The artifact folder.
    manifest : Manifest
    sha256 : str
        SHA-256 of the ONNX file (equal to the manifest's).
    n_references : int or None
        Reference inputs replayed; ``None`` when not asked for or the artifact stores none.
    max_abs_diff : float or None
        Largest |onnxruntime output - stored output| over the references.
    top1_agreement : float or None
        Share of references whose top label matches the stored one (1.0 when it passed).
    """

    path: Path
    manifest: Manifest = dataclasses.field(repr=False)
    sha256: str
    n_references: int | None = None
    max_abs_diff: float | None = None
    top1_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "sha256", "sha256_ok", "n", "max_abs_diff", "top1_agreement"}`` (JSON-ready)."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "sha256_ok": True,
            "n": self.n_references,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
        }


#: The largest export tolerance (``parity.atol``) the replay of references accepts.
MAX_DECLARED_ATOL = 0.05


def verify_artifact(
    folder: str | os.PathLike[str],
    *,
    references: bool = True,
    manifest: Manifest | None = None,
    atol: float = REFERENCES_ATOL,
) -> ArtifactCheck:
    """Check a model artifact against its manifest.

    Parameters
    ----------
    folder : str or PathLike
        The artifact folder (``<name>/<version>/``) or its ``manifest.json``.
    references : bool
        Also replay ``references.npz`` through onnxruntime (CPU, one thread) and require every
        output within ``atol`` of the stored one and the same top label. An artifact whose
        manifest names no references passes with ``n_references=None``.
    manifest : Manifest, optional
        The folder's manifest when already read and validated (a registry entry's).
    atol : float
        Largest absolute difference accepted in the replay (the manifest's own ``parity.atol``,
        the tolerance its export was held to, when larger; at most :data:`MAX_DECLARED_ATOL`).

    Returns
    -------
    ArtifactCheck

    Raises
    ------
    ModelError
        Invalid manifest, missing ONNX file, SHA-256 mismatch, unreadable or misshapen
        references, or references not reproduced; the message names the file.
    """
    p = Path(folder)
    if p.name == MANIFEST_FILENAME:
        p = p.parent
    m = manifest if manifest is not None else read_manifest(p)
    onnx_path = p / m.file
    if not references:  # the digest alone: streamed, not the whole file in memory
        return ArtifactCheck(path=p, manifest=m, sha256=_digest_checked(p, m, None))
    data, digest = _read_verified(p, m)
    sess = onnx_session(data, where=str(onnx_path))
    del data
    check_io(sess, m, str(onnx_path))  # what loading checks, so a model that passes loads
    if not m.references:
        # nothing to reproduce: the outputs must still be probabilities fitting the task (a
        # graph that ends in logits passed, and failed on first use)
        shape = [1 if d is None else int(d) for d in m.input["shape"][1:]]
        rng = np.random.default_rng(0)
        if m.input_kind == "waveform":
            x = np.stack(
                [np.zeros(shape), 0.1 * rng.standard_normal(shape), 0.5 * rng.standard_normal(shape)]
            )
        else:
            x = np.stack([np.zeros(shape), np.full(shape, 0.5), rng.random(shape)])
        out = _replay(sess, onnx_path, m, x.astype(np.float32))
        why = probability_problem(out, m.task, m.output["name"], "on test input (no references stored)")
        if why is not None:
            raise ModelError(f"{onnx_path}: {why}")
        return ArtifactCheck(path=p, manifest=m, sha256=digest)
    x, y = _read_references(p / m.references, m)
    # the references hold the source framework's outputs: the artifact was accepted within the
    # tolerance its export declares (parity.atol, sealed), so that is what the replay allows when
    # larger (an export with --atol 0.01 wrote artifacts every check then refused: a tools audit)
    declared = m.parity.get("atol") if isinstance(m.parity, Mapping) else None
    if isinstance(declared, (int, float)) and not isinstance(declared, bool) and math.isfinite(declared):
        atol = max(atol, min(float(declared), MAX_DECLARED_ATOL))
    out = _replay(sess, onnx_path, m, x)
    diff = float(np.abs(out - y).max()) if len(y) else 0.0
    agree = float(np.mean(out.argmax(1) == y.argmax(1))) if len(y) else 1.0
    if not diff <= atol or agree < 1.0:
        raise ModelError(
            f"{p / m.references}: references not reproduced: max |diff| {diff:.3g} (atol {atol:g}), "
            f"top-1 agreement {agree:.2%}"
        )
    why = probability_problem(out, m.task, m.output["name"], "on the references")
    if why is not None:
        raise ModelError(f"{onnx_path}: {why}")
    return ArtifactCheck(
        path=p, manifest=m, sha256=digest, n_references=int(len(y)), max_abs_diff=diff, top1_agreement=agree
    )


def _read_verified(p: Path, m: Manifest) -> tuple[bytes, str]:
    """The bytes of the artifact's ONNX file and their SHA-256, equal to the manifest's: hashed
    first without keeping anything, then read again, kept and hashed again (what is hashed is
    what is loaded: a file replaced between a check and a reading never runs unchecked)."""
    # hashed first without keeping anything: a file whose digest is wrong (a sparse file of
    # gigabytes, say) costs no memory; then read once more, kept and hashed again, and those
    # bytes are what is loaded
    _digest_checked(p, m, None)
    kept: list[bytes] = []
    try:
        digest = _digest_checked(p, m, kept, again=True)
        return b"".join(kept), digest
    except MemoryError:
        raise ModelError(f"{p / m.file}: too large to load into memory") from None


#: The largest ONNX file loaded: protobuf's own limit, which onnxruntime cannot read past.
MAX_ONNX_BYTES = 2**31 - 1


def _digest_checked(p: Path, m: Manifest, keep: list[bytes] | None, *, again: bool = False) -> str:
    """SHA-256 of the artifact's ONNX file, read in chunks (kept in ``keep`` when given), checked
    against the manifest's (``again``: a second reading, after a first that matched)."""
    onnx_path = p / m.file
    try:
        is_file = onnx_path.is_file()
    except OSError as e:  # a name too long for the file system (pathlib passes only a few errors)
        raise ModelError(
            f"{onnx_path}: cannot be read: {e.strerror or e} (named by {p / MANIFEST_FILENAME})"
        ) from None
    if not is_file:
        if onnx_path.exists():  # a device (a link to /dev/zero would hash for ever), a folder, a FIFO
            raise ModelError(f"{onnx_path}: not a regular file (named by {p / MANIFEST_FILENAME})")
        raise ModelError(f"{onnx_path}: model file not found (named by {p / MANIFEST_FILENAME})")
    h = hashlib.sha256()
    try:
        with open_regular_file(onnx_path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_ONNX_BYTES:
                raise ModelError(
                    f"{onnx_path}: {size / 2**30:.1f} GiB, larger than an ONNX file can be (2 GiB): not loaded"
                )
            while chunk := f.read(1 << 20):
                h.update(chunk)
                if keep is not None:
                    keep.append(chunk)
    except OSError as e:
        raise ModelError(f"{onnx_path}: cannot read: {e.strerror or e}") from None
    digest = h.hexdigest()
    if digest != m.sha256 and again:
        raise ModelError(
            f"{onnx_path}: changed while it was read (its sha256 no longer matches the manifest's)"
        )
    if digest != m.sha256:
        raise ModelError(
            f"{onnx_path}: sha256 {digest} does not match the manifest's {m.sha256} "
            "(the file was changed or corrupted; re-export the model)"
        )
    return digest


def verified_session(
    folder: str | os.PathLike[str], m: Manifest, options: RuntimeOptions | None = None
) -> Any:
    """An onnxruntime session of the artifact's ONNX file, built from the very bytes whose
    SHA-256 matched the manifest's (:func:`verify_artifact` with ``references=False``, then the
    session; a model whose weights sit in another file, ONNX external data, does not load).

    Raises
    ------
    ModelError
        The file is missing, not a regular file, unreadable, or its SHA-256 differs; or
        onnxruntime cannot load it.
    """
    p = Path(folder)
    data, _ = _read_verified(p, m)
    return onnx_session(data, options, where=str(p / m.file))


def probability_problem(y: np.ndarray, task: str, name: str, on: str) -> str | None:
    """What makes ``y`` (rows of an output named ``name``, ``on`` some inputs: "on the
    references") not what the runtime reads for ``task``, or ``None``: values outside [0, 1] (a
    linear layer's logits), ``multiclass`` rows that do not sum to 1, ``multilabel`` rows that all
    sum to 1 (a softmax declared as sigmoids). The one rule of the exporter and of
    ``models --check``."""
    y = np.asarray(y, np.float64)
    if not len(y):
        return None
    lo, hi = float(y.min()), float(y.max())
    if not (lo >= -1e-3 and hi <= 1 + 1e-3):
        return f"output {name!r} holds {lo:.4g} to {hi:.4g} {on}, not probabilities in [0, 1] (a linear layer's logits?)"
    sums = y.sum(axis=1)
    if task == "multiclass" and not np.all(np.abs(sums - 1.0) <= 1e-3):
        return (
            f"the task is multiclass (softmax) but the rows of {name!r} sum to {float(sums.min()):.4g} to "
            f"{float(sums.max()):.4g} {on}, not 1"
        )
    if task == "multilabel" and y.shape[1] > 1 and len(y) >= 2 and np.all(np.abs(sums - 1.0) <= 1e-5):
        return (
            f"the task is multilabel (independent sigmoids) but every row of {name!r} sums to 1 {on}: a "
            "softmax output (export it as multiclass)"
        )
    return None


#: The most reference rows replayed (the exporter writes 24): a small ``.npz`` of zeros can
#: hold thousands of windows, each costing the model's activations.
MAX_REFERENCES = 1024
#: Reference rows per onnxruntime run in the replay.
REPLAY_BATCH = 16
#: The most values an array of references may hold (256 MB as float32): rows are capped, but a
#: manifest may declare long inputs (a waveform model's window).
MAX_REFERENCE_VALUES = 64 * 2**20


def _npz_shape(z: Any, key: str, path: Path) -> tuple[int, ...] | None:
    """The shape an ``.npz`` member's header declares, read without loading the array (``None``
    when there is no such member: loading it then says so). The member is the one ``z[key]``
    reads: ``key``, else ``key.npy``.

    Raises
    ------
    ModelError
        The member's header cannot be read (what cannot be sized is not loaded), or its dtype is
        not float16 or float32.
    """
    names = z.zip.namelist()
    member = key if key in names else f"{key}.npy" if f"{key}.npy" in names else None  # as numpy picks
    if member is None:
        return None
    try:
        with z.zip.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fp)
    except Exception as e:  # noqa: BLE001 - numpy and zipfile raise several types
        raise ModelError(
            f"{path}: cannot read the references: the header of {member!r}: {describe(e, 200)}"
        ) from None
    if np.dtype(dtype) not in (np.float16, np.float32):  # said from the header, before it is read
        raise ModelError(f"{path}: references must be float16 or float32, got {np.dtype(dtype)} ({key})")
    return tuple(int(d) for d in shape)


def _read_references(path: Path, m: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """``inputs`` (float32, the manifest's input shape) and ``outputs`` ``(N, n_labels)``."""
    try:
        # a FIFO would block np.load for ever (ModelError: not a regular file)
        with open_regular_file(path) as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
                raise ModelError(f"{path}: cannot read the references: one array, not an .npz archive")
            with z:
                for key in ("inputs", "outputs"):
                    shape = _npz_shape(z, key, path)
                    if shape and shape[0] > MAX_REFERENCES:
                        raise ModelError(
                            f"{path}: {key} holds {shape[0]} references, more than the {MAX_REFERENCES} "
                            "a check replays"
                        )
                    if shape and math.prod(shape) > MAX_REFERENCE_VALUES:
                        raise ModelError(
                            f"{path}: {key} hold {math.prod(shape):,} values, more than the "
                            f"{MAX_REFERENCE_VALUES:,} a check reads"
                        )
                    want = m.input["shape"][1:] if key == "inputs" else [len(m.labels)]
                    if shape is not None and (
                        len(shape) != len(want) + 1
                        or any(d is not None and d != s for d, s in zip(want, shape[1:], strict=True))
                    ):
                        raise ModelError(
                            f"{path}: {key} have shape {shape}, the manifest's {key[:-1]} is {want}"
                        )
                x, y = np.asarray(z["inputs"]), np.asarray(z["outputs"])
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,  # an empty file
        zipfile.BadZipFile,  # a file cut short, or no zip at all
        zlib.error,  # a damaged compressed member
        NotImplementedError,  # a zip compression method that Python lacks
    ) as e:
        raise ModelError(
            f"{path}: cannot read the references (need arrays 'inputs' and 'outputs'): "
            f"{str(e) or type(e).__name__}"
        ) from None
    want = m.input["shape"][1:]
    if x.ndim != len(want) + 1 or any(
        d is not None and d != s for d, s in zip(want, x.shape[1:], strict=True)
    ):
        raise ModelError(f"{path}: inputs have shape {x.shape}, the manifest's input is {m.input['shape']}")
    if y.shape != (len(x), len(m.labels)):
        raise ModelError(f"{path}: outputs have shape {y.shape}, expected ({len(x)}, {len(m.labels)})")
    if x.dtype.kind != "f" or y.dtype.kind != "f":
        raise ModelError(f"{path}: references must be floating point, got {x.dtype} and {y.dtype}")
    return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)


def _replay(sess: Any, onnx_path: Path, m: Manifest, x: np.ndarray) -> np.ndarray:
    """The model's outputs for ``x`` (``sess``: on the CPU, one thread, the exporter's own
    setting), checked to be one row of ``len(m.labels)`` values per reference."""
    try:
        # in batches: the activations of every reference at once were the replay's memory
        parts = [
            np.asarray(
                sess.run([m.output["name"]], {m.input["name"]: x[i : i + REPLAY_BATCH]})[0], dtype=np.float32
            )
            for i in range(0, max(len(x), 1), REPLAY_BATCH)
        ]
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
    except ValueError as e:  # rows of different widths from different batches
        raise ModelError(
            f"{onnx_path}: output {m.output['name']!r} changes shape between batches: {e}"
        ) from None
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several private types
        raise ModelError(f"{onnx_path}: onnxruntime cannot run the references: {one_line(str(e))}") from None
    if out.shape != (len(x), len(m.labels)):
        raise ModelError(
            f"{onnx_path}: output {m.output['name']!r} has shape {out.shape} for {len(x)} references, "
            f"expected ({len(x)}, {len(m.labels)}): one probability per label"
        )
    return out


def _dims_match(onnx_shape: Sequence[Any], manifest_shape: Sequence[Any]) -> bool:
    """The graph's shape against the manifest's: the same rank and sizes, and where the
    manifest says ``None`` (the batch axis) a dynamic size in the graph: the runtime runs
    batches of several windows, which a graph fixed at one cannot take."""
    if len(onnx_shape) != len(manifest_shape):
        return False
    for a, b in zip(onnx_shape, manifest_shape, strict=True):
        a_dyn = not isinstance(a, int) or a <= 0
        if a_dyn != (b is None) or (b is not None and a != b):
            return False
    return True


def check_io(session: Any, m: Manifest, where: str) -> None:
    """The graph of an onnxruntime ``session`` against its manifest: one input, and the input,
    the output and the ``other`` and ``embedding`` outputs named, typed (float32) and shaped as
    the manifest says, with one output column per label. :class:`~instrunet_core.Model` calls
    it when it loads a model, and :func:`verify_artifact` when it checks one.

    Raises
    ------
    ModelError
        Naming ``where`` (the ONNX file) and what disagrees.
    """
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{where}: expected 1 input, the ONNX graph has {len(inputs)}")
    i0 = inputs[0]
    out = next((o for o in outputs if o.name == m.output["name"]), None)
    if i0.name != m.input["name"]:
        raise ModelError(f"{where}: ONNX input is named {i0.name!r}, the manifest says {m.input['name']!r}")
    if out is None:
        raise ModelError(
            f"{where}: ONNX outputs are {[o.name for o in outputs]}, the manifest says {m.output['name']!r}"
        )
    for what, t, spec in (("input", i0, m.input), ("output", out, m.output)):
        if t.type != "tensor(float)":
            raise ModelError(f"{where}: ONNX {what} dtype is {t.type}, the manifest says {spec['dtype']}")
        shape = list(t.shape)
        if what == "output" and (not shape or shape[-1] != len(m.labels)):
            raise ModelError(
                f"{where}: ONNX output has {shape[-1] if shape else '?'} classes (shape {shape}) "
                f"but the manifest lists {len(m.labels)} labels"
            )
        if not _dims_match(shape, spec["shape"]):
            raise ModelError(
                f"{where}: ONNX {what} shape {shape} disagrees with the manifest's {spec['shape']} "
                "(None: a dynamic batch axis)"
            )
    for key in ("other", "embedding"):
        spec = getattr(m, key)
        if spec is None:
            continue
        t = next((o for o in outputs if o.name == spec["name"]), None)
        if t is None:
            raise ModelError(
                f"{where}: the manifest's {key} output {spec['name']!r} is not among the ONNX outputs "
                f"{[o.name for o in outputs]}"
            )
        if t.type != "tensor(float)" or not _dims_match(list(t.shape), spec["shape"]):
            raise ModelError(
                f"{where}: ONNX {key} output is {t.type} {list(t.shape)}, the manifest says {spec['shape']}"
            )
