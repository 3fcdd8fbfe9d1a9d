"""onnxruntime sessions: the one place a session is created, and the one options object.

:class:`RuntimeOptions` says how onnxruntime runs a model (execution providers, threads,
spinning); :func:`onnx_session` creates every ``InferenceSession`` the project uses, from an
ONNX file or its bytes: the models the runtime loads (:class:`instrunet_core.Model`), the
references replay (:func:`~instrunet_core.verify.verify_artifact`), the condition plugin's
model, the exporter's parity checks, training's warm start, the benchmarks and the tests. So
every session gets the same settings (sequential execution, quiet logs, no idle-thread
spinning unless asked) and the same fallback from a GPU provider that cannot start.

This module knows nothing of artifacts or audio: verify an artifact first
(:func:`~instrunet_core.verify.verify_artifact`), or load it with
:func:`instrunet_core.load_model`, which does both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from .errors import InputError, ModelError, warn
from .inputs import check_flag, check_threads

__all__ = ["RuntimeOptions", "onnx_session", "DEFAULT_INTRA_OP_THREADS"]

#: onnxruntime intra-op threads when none are asked for, chosen by measurement on the 2-core
#: development machine (docs/benchmarks.md, "Threads"): one thread per session was the fastest
#: or tied setting for the timeline, and it leaves the other core to decoding, the front end
#: and the host. 0 means onnxruntime's own default (one thread per core).
DEFAULT_INTRA_OP_THREADS = 1

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_CPU = "CPUExecutionProvider"


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs a model: the one options object of every loader.

    Attributes
    ----------
    providers : str or sequence of str, optional
        onnxruntime execution providers: ``"cpu"`` (default), ``"cuda"``, ``"auto"`` (CUDA
        when available), full provider names, or a comma-separated string of these.
        Unavailable ones are skipped with a warning; CPU is always the fallback.
    intra_op_threads : int, optional
        onnxruntime threads inside one operator; default :data:`DEFAULT_INTRA_OP_THREADS` (1,
        chosen by measurement: see ``docs/benchmarks.md``); 0 lets onnxruntime start one per core;
        at most :data:`~instrunet_core.inputs.MAX_THREADS` (256).
    inter_op_threads : int, optional
        Threads running independent operators in parallel (default 1: the graphs are chains);
        at most 256.
    spinning : bool
        Let onnxruntime's idle intra-op threads spin between operators instead of sleeping
        (default False). Only worth it with several intra-op threads and nothing else to run on
        the cores: one waveform-in clip at a time comes out faster (``docs/speed.md``); next to
        numpy work or other processes the spinning threads take their CPU.
    profile_prefix : str, optional
        Record onnxruntime's per-operator profile into ``<profile_prefix>_<time>.json``
        (``session.end_profiling()`` returns the file): ``benchmarks/frontend.py`` uses it.

    Raises
    ------
    InputError
        A thread count that is not an int from 0 to 256, ``spinning`` that is not a bool, or
        ``providers`` that is not a string or a sequence of strings.
    """

    providers: str | Sequence[str] | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    spinning: bool = False
    profile_prefix: str | None = None

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, name) is not None:
                check_threads(getattr(self, name), name=name, minimum=0, unit="0: onnxruntime's default")
        check_flag(self.spinning, name="spinning")
        p = self.providers
        if p is not None and (
            isinstance(p, bytes)
            or not isinstance(p, (str, Sequence))
            or (not isinstance(p, str) and not all(isinstance(x, str) for x in p))
        ):
            raise InputError(
                f"providers must be a name, a comma-separated string or a list of names, got {p!r}"
            )

    @property
    def intra(self) -> int:
        """Intra-op threads, the default filled in."""
        return DEFAULT_INTRA_OP_THREADS if self.intra_op_threads is None else int(self.intra_op_threads)

    @property
    def inter(self) -> int:
        """Inter-op threads, the default filled in."""
        return 1 if self.inter_op_threads is None else int(self.inter_op_threads)

    def provider_list(self) -> list[str]:
        """The execution providers asked for, resolved against what onnxruntime has here (CPU last).

        Raises
        ------
        ModelError
            onnxruntime is not installed (or cannot be imported).
        """
        ort = _onnxruntime()
        available = ort.get_available_providers()
        providers = self.providers
        if providers is None:
            return [_CPU]
        if isinstance(providers, str) and "," in providers:
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        if not isinstance(providers, str) and len(providers) == 1 and isinstance(providers[0], str):
            providers = providers[0]  # ["auto"] (the command line's list) means "auto" too
        if isinstance(providers, str):
            if providers.lower() == "auto":
                return [*(p for p in ("CUDAExecutionProvider",) if p in available), _CPU]
            providers = [providers]
        out: list[str] = []
        for p in providers:
            full = _PROVIDER_ALIASES.get(str(p).lower(), str(p))
            if full not in available:
                warn(
                    f"instrunet: execution provider {full} is not available here (available: {available}); skipping it"
                )
                continue
            if full not in out:
                out.append(full)
        if _CPU not in out:
            out.append(_CPU)
        return out


class RuntimeMissingError(ModelError):
    """onnxruntime cannot be imported: no model loads, whichever is asked for (so no version is
    blamed for it)."""


def _onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a :class:`RuntimeMissingError` saying it cannot be imported
    (a hard dependency, but one a GPU swap can leave missing: docs/speed.md)."""
    try:
        import onnxruntime
    except ImportError as e:
        what = (
            "is not installed"
            if isinstance(e, ModuleNotFoundError) and e.name == "onnxruntime"
            else "cannot be imported"
        )
        raise RuntimeMissingError(
            f"onnxruntime {what} ({e}); install it: pip install onnxruntime (or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def onnx_session(
    model: str | os.PathLike[str] | bytes, options: RuntimeOptions | None = None, *, where: str | None = None
) -> Any:
    """An onnxruntime ``InferenceSession`` set up as every instrunet model runs.

    Sequential execution, quiet logs, and no idle-thread spinning unless
    ``options.spinning``; a GPU provider that cannot start falls back to the CPU with a warning.

    Parameters
    ----------
    model : str, PathLike or bytes
        An ONNX file, or a serialised ONNX model (a graph built in memory, or a file's bytes
        once hashed: :func:`~instrunet_core.verify.verified_session`).
    options : RuntimeOptions, optional
        Default: the CPU, one intra-op and one inter-op thread.
    where : str, optional
        The file the bytes came from, for messages.

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    ModelError
        onnxruntime is missing or cannot load the model.
    """
    opts = options or RuntimeOptions()
    where = where or ("<in-memory ONNX model>" if isinstance(model, bytes) else os.fspath(model))
    ort = _onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = opts.intra
    so.inter_op_num_threads = opts.inter
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 4  # errors reach the caller as ModelError; onnxruntime prints none of its own
    # onnxruntime's idle workers spin for a while after each run; here every run is
    # followed by numpy work (decoding, the front end), which they would starve. Measured
    # in benchmarks/run.py: front end + model per 3 s clip 8.3 ms with spinning, 3-4 ms without.
    # With several intra-op threads and nothing else to run (a waveform-in artifact, one clip at
    # a time), spinning instead saves a thread wake-up per operator: ``spinning=True``.
    spin = "1" if opts.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if opts.profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = opts.profile_prefix
    wanted = opts.provider_list()
    src: bytes
    if isinstance(model, bytes):
        src = model
    else:
        # A file is given to onnxruntime as its bytes, as a verified artifact's are: one reading
        # (also of a name that is not UTF-8, which onnxruntime cannot take as a path).
        try:
            with open(where, "rb") as f:
                src = f.read()
        except OSError as e:
            raise ModelError(f"{where}: cannot read: {e.strerror or e}") from None
    if src[4:8] == b"ORTM":
        # onnxruntime's own (flatbuffer) format, which it would load from these bytes: the scan
        # reads ONNX protobuf only, so only ONNX is loaded
        raise ModelError(f"{where}: an onnxruntime (ORT) format model, not ONNX: refused (export it as ONNX)")
    try:
        outside = external_tensors(src)
    except ValueError as e:
        raise ModelError(
            f"{where}: not a well-formed ONNX model (its protobuf cannot be read: {e})"
        ) from None
    if outside:
        # onnxruntime resolves ONNX external data of a model given as bytes against the current
        # working directory: a model could read any file below it into its outputs, and weights
        # beside it would load unchecked by the manifest's sha256
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
        raise ModelError(
            f"{where}: keeps tensors outside the file as ONNX external data ({shown}): refused (the "
            "manifest's sha256 covers this file only; export the model with its weights inside it)"
        )
    # and should a tensor slip past that scan, onnxruntime looks for external data in an empty folder
    so.add_session_config_entry("session.model_external_initializers_file_folder_path", _no_external_dir())
    so.add_session_config_entry("session.load_model_format", "ONNX")  # never onnxruntime's own format
    try:
        return ort.InferenceSession(src, sess_options=so, providers=wanted)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several private types
        if wanted == [_CPU]:
            raise ModelError(
                f"{where}: onnxruntime cannot load the model: {e}{_external_hint(e, src)}"
            ) from None
        # A GPU provider that is installed but cannot start (no device, driver or CUDA
        # libraries): fall back to the CPU, and say so.
        warn(f"instrunet: {wanted[0]} failed to start ({e}); using CPUExecutionProvider")
    try:
        return ort.InferenceSession(src, sess_options=so, providers=[_CPU])
    except Exception as e2:  # noqa: BLE001
        raise ModelError(
            f"{where}: onnxruntime cannot load the model: {e2}{_external_hint(e2, src)}"
        ) from None


def _no_external_dir() -> str:
    """A folder that does not exist, where onnxruntime is told to look for ONNX external data
    (none is allowed: :func:`external_tensors`); nothing is created (a read-only temporary folder,
    or a forked worker that never cleans up, must not matter)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-external-data", "none")


#: ONNX protobuf fields that hold messages which can hold tensors: ``{message: {field: message}}``
#: (onnx.proto: ModelProto, GraphProto, NodeProto, AttributeProto, FunctionProto,
#: TrainingInfoProto, SparseTensorProto; a TensorProto's field 13 is ``external_data``, 14
#: ``data_location``, 8 ``name``).
_ONNX_NESTED: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "function": {7: "node", 11: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


class _NotProtobuf(ValueError):
    """The bytes are not a protobuf message this scan can follow."""


#: The most protobuf fields :func:`external_tensors` reads (a model of millions of tiny fields
#: took seconds per MB to scan; a real model holds thousands to a few hundred thousand).
MAX_PROTOBUF_FIELDS = 5_000_000


def external_tensors(data: bytes) -> list[str]:
    """The names of the tensors of a serialised ONNX model that keep their data outside it (ONNX
    external data: a TensorProto with ``external_data`` entries or ``data_location`` EXTERNAL),
    anywhere: initializers, sparse initializers, Constant nodes' and other attributes' tensors,
    subgraphs, functions, training info. ``[]`` when there are none.

    The bytes are read as protobuf reads them (a key or an enum value is its varint's low 32
    bits); anything else is refused rather than passed on unchecked.

    Raises
    ------
    ValueError
        The bytes are not a well-formed protobuf message, or hold more than
        :data:`MAX_PROTOBUF_FIELDS` fields.
    """
    found: list[str] = []
    view = memoryview(data)
    stack: list[tuple[str, int, int]] = [("model", 0, len(data))]
    fields = [0]  # read so far (MAX_PROTOBUF_FIELDS)
    try:
        while stack:
            kind, pos, end = stack.pop()
            name, external = "?", False
            while pos < end:
                field, wire, pos = _key(view, pos, fields)
                if wire == 0:
                    value, pos = _varint(view, pos)
                    if kind == "tensor" and field == 14 and value & 0xFFFFFFFF == 1:  # an int32 enum
                        external = True
                elif wire == 2:
                    size, pos = _varint(view, pos)
                    if size > 0x7FFFFFFF or pos + size > end:
                        raise _NotProtobuf("a field runs past its message")
                    inner = _ONNX_NESTED.get(kind, {}).get(field)
                    if inner is not None:
                        stack.append((inner, pos, pos + size))
                    elif kind == "tensor" and field == 13:
                        external = True
                    elif kind == "tensor" and field == 8:
                        name = bytes(view[pos : pos + size]).decode("utf-8", "replace")
                    pos += size
                elif wire == 1:
                    pos += 8
                elif wire == 5:
                    pos += 4
                elif wire == 3:  # a group (not in onnx.proto): skipped, as protobuf skips it
                    pos = _skip_group(view, pos, end, field, fields)
                else:  # an end of group with no start, or wire types 6 and 7
                    raise _NotProtobuf(f"wire type {wire}")
                if pos > end:
                    raise _NotProtobuf("a field runs past its message")
            if external:
                found.append(name)
    except IndexError:
        raise _NotProtobuf("cut short") from None
    return found


def _key(view: memoryview, pos: int, fields: list[int]) -> tuple[int, int, int]:
    """A field's key at ``pos``: ``(field number, wire type, next position)``, its varint's low 32
    bits as protobuf reads a tag (five bytes whose upper bits protobuf drops must not hide a
    field from the scan); ``fields[0]``, the fields read so far, is counted up and held to
    :data:`MAX_PROTOBUF_FIELDS`."""
    fields[0] += 1
    if fields[0] > MAX_PROTOBUF_FIELDS:
        raise _NotProtobuf(f"more than {MAX_PROTOBUF_FIELDS:,} fields")
    key, pos = _varint(view, pos)
    key &= 0xFFFFFFFF
    field = key >> 3
    if field == 0:
        raise _NotProtobuf("field number 0")
    return field, key & 7, pos


def _skip_group(view: memoryview, pos: int, end: int, field: int, fields: list[int]) -> int:
    """The position after the group of ``field`` that starts at ``pos`` (its fields, nested
    groups included, up to its end-group key; ``fields`` as :func:`_key` counts them)."""
    open_groups = [field]
    while pos < end:
        f, wire, pos = _key(view, pos, fields)
        if wire == 4:
            if f != open_groups.pop():
                raise _NotProtobuf("a group ends with another field's end")
            if not open_groups:
                return pos
        elif wire == 3:
            open_groups.append(f)
        elif wire == 0:
            _, pos = _varint(view, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(view, pos)
            pos += size
        else:
            raise _NotProtobuf(f"wire type {wire}")
    raise _NotProtobuf("a group without its end")


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: ``(value, next position)``; ``IndexError`` past the end."""
    value = shift = 0
    while True:
        b = view[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _external_hint(e: BaseException, src: str | bytes) -> str:
    """Why a model given as bytes cannot read weights kept in another file."""
    if isinstance(src, bytes) and "external" in str(e).lower():
        return (
            " (its weights are kept in another file, as ONNX external data: instrunet loads the "
            "model file alone, whose sha256 the manifest holds, so weights must be inside it)"
        )
    return ""
