"""Tag a collection of audio files with Ray Data: paths → actor pool → JSONL / Parquet.

The pipeline::

    ray.data.from_items([{"path": os.fsencode(p)}, ...])     # the files' names, as bytes
      .map_batches(TaggingActor, concurrency=workers, ...)   # actors read and tag each file
      .iter_batches()                                        # records stream back to the driver
    → appended to results.jsonl (or Parquet parts) as they arrive, in blocks of at most
      :data:`BLOCK_FILES` files

Each actor reads its files with the core's decoder, so a file that vanishes during the run,
or cannot be decoded, is that file's error record (never the whole run's failure), and a name
that is not UTF-8 (carried as bytes: Arrow's strings would drop the bytes) works as in
``instrunet batch``.

Files, records and resuming follow ``instrunet batch`` because they are its code
(:mod:`instrunet_core.batch`): each record is an ``instrunet.classification/2`` record, files
whose ``path`` is already in the output are skipped, failed ones retried, a torn last line from
an interrupted run is ignored (that file is redone), and a JSON lines output is locked while
the collection runs. Parquet parts take their columns from
:data:`instrunet_core.output.CLASSIFICATION_FIELDS` (objects as JSON strings).

Ray is imported inside the functions, so importing this module (as the ``instrunet`` entry
point does) costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.audio import audio_info
from instrunet_core.batch import (
    ResultsFile,
    ResultsLocked,
    check_one_hop,
    check_one_model,
    collect_files,
    done_paths,
    earlier_results,
    earlier_text,
    error_message,
    file_record,
    hops_of,
    model_key,
    pending,
    pending_text,
    read_records,
    special_file,
    try_lock,
)
from instrunet_core.errors import InputError, InstrunetError, OutputError, warn
from instrunet_core.inputs import check_count
from instrunet_core.output import CLASSIFICATION_FIELDS, error_record, model_info
from instrunet_core.writers import atomic_path

__all__ = ["collect_files", "done_paths_in", "file_record", "TaggingActor", "tag_collection", "FORMATS"]

FORMATS = ("jsonl", "parquet")


def _format_of(out: Path, fmt: str | None) -> str:
    if fmt is None:
        parquet = out.suffix == "" or out.suffix.lower() == ".parquet" or out.is_dir()
        fmt = "parquet" if parquet else "jsonl"
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def done_paths_in(out: str | os.PathLike[str], *, fmt: str | None = None) -> dict[str, dict[str, int] | None]:
    """Real paths that already have a result in ``out`` (JSON lines file, or folder of Parquet
    parts), each with the size and modification time its last result recorded
    (:func:`instrunet_core.batch.done_paths`); error records are not done: those files are
    retried, as ``instrunet batch`` does."""
    out = Path(out)
    fmt = _format_of(out, fmt)
    if not out.exists():
        return {}
    if fmt == "jsonl":
        with open(out, "rb") as f:
            return done_paths(read_records(f))
    return done_paths(_parquet_rows(out))


def _parquet_rows(out: Path) -> list[dict[str, Any]]:
    """The ``path``, ``error``, ``model``, ``hop``, ``file_size`` and ``file_mtime_ns`` of every
    record in the Parquet parts in ``out`` (those a part has: parts of earlier versions lack the
    last three), read once for what is done and whose results they are, at which hop (``model``
    as written: a JSON string)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for part in sorted(out.glob("part-*.parquet")):
        try:
            names = set(pq.read_schema(part).names)
            columns = [c for c in _RESUME_COLUMNS if c in names]
            rows += pq.read_table(part, columns=columns).to_pylist()
        except Exception:  # noqa: BLE001 - a part cut short by an interruption: its files are redone
            continue
    return rows


#: The columns a resumed run reads from Parquet parts.
_RESUME_COLUMNS = ("path", "error", "model", "hop", "file_size", "file_mtime_ns")


def _models_of(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """``(name, version, sha256, manifest_sha256)`` of every model whose results ``rows``
    (:func:`_parquet_rows`) hold."""
    models: set[tuple[str, str, str, str]] = set()
    for r in rows:
        try:
            m = json.loads(r["model"]) if r.get("error") is None and r.get("model") else None
        except (TypeError, ValueError):
            m = None
        if isinstance(m, dict):
            models.add(model_key(m))
    return models


#: Most files in one Ray Data block: records come back block by block, so an interrupted run
#: loses at most the blocks in flight (a block per actor), not a share of the whole collection.
BLOCK_FILES = 8


def _warnings_as_notes() -> None:
    """In a Ray worker (a process of this run's own): instrunet's warnings stay warnings whatever
    ``PYTHONWARNINGS`` says (``=error`` made a damaged file's note an exception that ended the
    whole run: a review); the damage itself is in the file's record and said by the driver."""
    import warnings

    from instrunet_core.errors import InstrunetWarning

    warnings.filterwarnings("default", category=InstrunetWarning)
    warnings.filterwarnings("default", module=r"ray(\.|$)")


class TaggingActor:
    """The Ray Data actor: loads one model when it starts, then reads and tags batches of files.

    Parameters
    ----------
    model : str, optional
        Registered model (``name`` or ``name@version``; the default model when omitted) or an
        artifact path, resolved on the worker (the driver passes the model it resolved).
    expect_sha256 : str, optional
        The driver's model's ONNX sha256: another model loaded here is a ``ModelError``.
    expect_manifest : str, optional
        The driver's model's manifest digest (``manifest_sha256``): the same ONNX file under
        another manifest (other labels, thresholds or front end) is a ``ModelError`` too.
    hop : float, optional
        Seconds between windows.
    intra_op_threads : int
        onnxruntime threads per actor (1: one actor per CPU the pool is given).
    """

    def __init__(
        self,
        model: str | None = None,
        hop: float | None = None,
        intra_op_threads: int = 1,
        expect_sha256: str | None = None,
        expect_manifest: str | None = None,
    ) -> None:
        from instrunet_core import load_model
        from instrunet_core.errors import ModelError

        _warnings_as_notes()
        self.model = load_model(model, intra_op_threads=intra_op_threads)
        if expect_sha256 is not None and self.model.manifest.sha256 != expect_sha256:
            # a worker whose installed models (or INSTRUNET_DEFAULT_MODEL) differ from the
            # driver's: its results would go into one output under another model's name
            raise ModelError(
                f"this Ray worker ({os.uname().nodename}) loaded {self.model.name} {self.model.version} "
                f"(sha256 {self.model.manifest.sha256[:12]}), not the driver's model (sha256 "
                f"{expect_sha256[:12]}): install the same model on every node"
            )
        digest = self.model.manifest.raw.get("manifest_sha256")
        if expect_manifest is not None and digest != expect_manifest:
            raise ModelError(
                f"this Ray worker ({os.uname().nodename}) loaded {self.model.name} {self.model.version} "
                f"with another manifest (manifest_sha256 {str(digest)[:12]}, the driver's "
                f"{expect_manifest[:12]}: other labels, thresholds or front end): install the same "
                "model folder on every node"
            )
        # one pipeline worker: Ray gives each actor one CPU and runs one actor per CPU
        self.classifier = self.model.classifier(hop=hop, workers=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for raw in batch["path"]:
            name = os.fsdecode(bytes(raw))  # the file system's own bytes, as collect_files named it
            out.append(json.dumps(file_record(self.classifier, name)))  # its error record if it fails
        return {"record": np.array(out, dtype=object)}


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster's ``host:port`` that does not answer is one error line: ``ray.init`` retried for
    minutes with Ray's own log lines and did not end on SIGTERM (a Ray audit). ``None``,
    ``"auto"``, ``"local"`` and ``ray://`` addresses are left to Ray."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--address {address}: expected host:port (or auto)")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise InputError(
            f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})"
        ) from None


def _is_path_spec(model: str) -> bool:
    """Whether a ``--model`` value names an artifact on disk rather than a registered model."""
    return os.sep in model or model.endswith((".onnx", ".json")) or os.path.exists(model)


def _unreadable(path: str, model: Any) -> dict[str, Any] | None:
    """The error record of a file the actors could not read (missing, a folder, unreadable)
    or that is empty, with the core's message (``instrunet batch``'s); ``None`` for a file to
    send to the actors. Only a failed ``stat`` or an empty file is opened here; a named pipe,
    socket or device is an error record at once (opened here it hung for a writer, or was
    drained, and the actor then waited for ever: a Ray audit)."""
    try:
        if special_file(path):
            return error_record(
                path,
                f"{path}: not a regular file (a named pipe, socket or device): instrunet-ray's actors "
                "read files themselves (classify it with `instrunet classify`)",
                model,
            )
        if os.stat(path).st_size > 0 and os.access(path, os.R_OK) and not os.path.isdir(path):
            return None
    except OSError:
        pass
    try:
        audio_info(path)  # raises the core's DecodeError: file not found / empty file (0 bytes) ...
    except (InstrunetError, OSError) as e:
        return error_record(path, error_message(path, e), model)
    return None


_ARROW_TYPES = {str: "string", float: "float64", int: "int64", bool: "bool_", dict: "string"}


def _utf8(v: Any) -> Any:
    """A text value as Parquet can hold it: a file name's byte that is not UTF-8 (carried by
    Python as a lone surrogate) written as ``\\xff`` (JSON lines keep it exactly)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return v


#: Seconds of finished records a Parquet output holds in memory at most: a part is written
#: when ``part_size`` records or this long have gone by, so a driver killed outright (SIGKILL,
#: the OOM killer) loses no more (it lost up to 255 records: a Ray audit).
PART_SECONDS = 30.0


def _parts_schema() -> Any:
    """The Arrow schema of a Parquet part: :data:`CLASSIFICATION_FIELDS` in order."""
    import pyarrow as pa

    return pa.schema([(k, getattr(pa, _ARROW_TYPES[t])()) for k, t in CLASSIFICATION_FIELDS.items()])


class _Parts:
    """Parquet parts of ``part_size`` records in the folder ``out``, each written whole or not at
    all; the folder is locked (``out/.instrunet-ray.lock``) while a run appends to it, as a JSON
    lines output is."""

    def __init__(self, out: Path, part_size: int = 256) -> None:
        self.out, self.part_size = out, part_size
        self.pending: list[dict[str, Any]] = []
        self._flushed = time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(out / ".instrunet-ray.lock", "a+b")  # noqa: SIM115 - closed in close()
        if not try_lock(self._lockfile):
            self._lockfile.close()
            raise ResultsLocked(
                f"{out}: another instrunet-ray run is writing this folder; wait for it or choose another --out"
            )

    def close(self) -> None:
        self._lockfile.close()

    def append(self, rec: dict[str, Any]) -> None:
        self.pending.append(rec)
        if len(self.pending) >= self.part_size or time.monotonic() - self._flushed >= PART_SECONDS:
            self.flush()

    def upgrade(self) -> list[str]:
        """Give every part that an earlier version wrote (a readable part whose columns are some
        of today's) today's columns, the missing ones null, written whole or not at all: a folder
        of parts is read with its first part's schema (``pandas.read_parquet``,
        ``pyarrow.parquet.read_table``), and the oldest parts sort first, so every row lost the
        newer columns (``hop``, the file stamps, ``damage``: an upgrade audit). Returns the names
        of the parts upgraded; a part that cannot be read or cast is left as it is."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _parts_schema()
        done = []
        for part in sorted(self.out.glob("part-*.parquet")):
            try:
                names = pq.read_schema(part).names
                if set(names) >= set(schema.names) or not set(names) <= set(schema.names):
                    continue  # today's (or a later version's, or foreign) columns: as it is
                table = pq.read_table(part)
                cols = [
                    table.column(f.name).cast(f.type) if f.name in names else pa.nulls(len(table), f.type)
                    for f in schema
                ]
                upgraded = pa.Table.from_arrays(cols, schema=schema)
            except Exception:  # noqa: BLE001 - a part cut short by an interruption: redone, not upgraded
                continue
            with atomic_path(part, suffix=".parquet") as tmp:
                pq.write_table(upgraded, tmp)
            done.append(part.name)
        return done

    def flush(self) -> None:
        if not self.pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _parts_schema()
        rows = [
            {
                k: json.dumps(r[k]) if t is dict and k in r else _utf8(r.get(k))
                for k, t in CLASSIFICATION_FIELDS.items()
            }
            for r in self.pending
        ]
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.perf_counter_ns()}.parquet"
        with atomic_path(self.out / name, suffix=".parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        self.pending.clear()
        self._flushed = time.monotonic()


def tag_collection(
    source: str | os.PathLike[str] | Sequence[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    workers: int = 2,
    batch_size: int = 4,
    hop: float | None = None,
    fmt: str | None = None,
    address: str | None = None,
    part_size: int = 256,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Tag every audio file of ``source`` on Ray and write ``instrunet batch`` records to ``out``.

    Parameters
    ----------
    source : path or list of str
        A directory (searched recursively) or a list of files.
    out : path
        ``*.jsonl``: one JSON line per file, appended as results arrive; a folder (or
        ``fmt="parquet"``): Parquet parts of ``part_size`` records (``probabilities`` and
        ``model`` as JSON strings). Either way, files already done in ``out`` are skipped and
        failed ones retried (resume).
    model : str, optional
        Registered model name on the workers (default model when omitted). It is loaded once
        on the driver first (as ``instrunet batch`` loads it), so a model that is not installed
        or is broken is a ``ModelError`` before Ray starts.
    workers : int
        Actors in the pool, each holding one model and using one CPU.
    batch_size : int
        Files per actor call.
    address : str, optional
        ``ray.init(address=...)`` when Ray is not initialised yet (``"auto"``, ``"ray://host:10001"``);
        default: a local Ray instance. An already initialised Ray is used as it is.
    log : callable
        Receives the progress lines and one ``instrunet-ray: error: <file>: <problem>`` line per
        file that failed (default: stderr).

    A file that is missing, a folder, unreadable or empty when the run starts gets its error
    record from the driver, with ``instrunet batch``'s message (the run goes on).

    Returns
    -------
    dict
        ``{"files", "skipped", "written", "errors", "seconds", "files_per_s", "workers",
        "first_record_s", "steady_files_per_s"}``: ``first_record_s`` is the time to the first
        record (starting the actors, each loading its model, and Ray Data's planning), and
        ``steady_files_per_s`` the rate after it (``None`` with fewer than two records).

    Raises
    ------
    InputError
        A bad argument, a ``source`` path that is not a directory, or a JSON lines ``out``
        that holds another model's results (resuming would mix them).
    ModelError
        ``model`` is not installed or cannot be loaded (before Ray starts).
    OutputError
        ``out`` cannot be the output: a JSON lines output that is a directory, a Parquet
        output that is a file, a file that cannot be opened.
    """
    import ray

    from instrunet_core import load_model

    check_count(workers, name="workers")
    check_count(batch_size, name="batch_size")
    check_count(part_size, name="part_size")
    if not isinstance(out, (str, os.PathLike)):
        raise InputError(f"tag_collection: out must be a path, got {type(out).__name__}")
    if not isinstance(source, (str, os.PathLike)) and not (
        isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source)
    ):
        raise InputError(
            f"tag_collection: source must be a directory or a list of file paths, got {type(source).__name__}"
        )
    out = Path(out)
    fmt = _format_of(out, fmt)
    if fmt == "jsonl" and out.is_dir():
        raise OutputError(
            f"{out}: is a directory; a JSON lines output is a file (a folder takes fmt='parquet')"
        )
    if fmt == "parquet" and out.exists() and not out.is_dir():
        raise OutputError(f"{out}: not a directory; Parquet output is a folder of parts")
    files = collect_files(source)
    summary: dict[str, Any] = {
        "files": len(files),
        "skipped": 0,
        "changed": 0,
        "written": 0,
        "errors": 0,
        "workers": workers,
        "seconds": 0.0,
        "files_per_s": 0.0,
        "first_record_s": None,
        "steady_files_per_s": None,
    }
    if not files and isinstance(source, (str, os.PathLike)):
        # a mistyped or unmounted folder is not a finished job (instrunet batch says so too)
        warn(f"{os.fspath(source)}: no audio files under it; nothing written to {out}")
        return summary
    # The model the actors will load, once here: 'not installed' or a broken artifact is one
    # ModelError before any Ray process starts (the actors' own errors would come back as
    # Ray's ActorDiedError tracebacks); it also goes into the driver's error records.
    driver_model = load_model(model, intra_op_threads=1)
    # a bad hop is an InputError here, not an actor's death in Ray; the hop the results record
    hop_seconds = driver_model.classifier(hop=hop).hop_seconds
    with contextlib.ExitStack() as stack:
        # A JSON lines output is opened (and locked) before anything runs, as instrunet batch does.
        try:
            results = stack.enter_context(ResultsFile(out)) if fmt == "jsonl" else None
        except OutputError:  # its own words (a FIFO or a device: not a regular file)
            raise
        except OSError as e:
            raise OutputError(f"{out}: cannot open the results file: {e.strerror or e}") from None
        sink: ResultsFile | _Parts
        if results is not None:
            results.check_model(model_info(driver_model))  # another model's results: refused
            sink = results
        else:
            sink = _Parts(out, part_size)  # locked: a second run on the same folder is refused
            stack.callback(sink.close)
            stack.callback(sink.flush)  # the records so far are kept, also after an error
            rows = _parquet_rows(out)
            check_one_model(out, _models_of(rows), model_info(driver_model))
            check_one_hop(out, hops_of(rows), hop_seconds)
            upgraded = sink.upgrade()  # (after the checks: a refused run leaves the folder as it was)
            if upgraded:
                n_up = len(upgraded)
                log(
                    f"instrunet-ray: {n_up} part{'' if n_up == 1 else 's'} of an earlier version given "
                    "today's columns (null where it wrote none), so that the folder reads as one table"
                )
        if results is not None:
            results.check_hop(hop_seconds)
        earlier = results.earlier if results is not None else earlier_results(rows)
        if earlier:
            warn(earlier_text(out, earlier))
        done = results.done if results is not None else done_paths(rows)
        todo, changed = pending(files, done)
        summary["skipped"] = len(files) - len(todo)
        summary["changed"] = changed
        log(f"instrunet-ray: {pending_text(len(files), len(todo), changed)}")
        t0 = time.perf_counter()

        ray_records = [0]  # the rates are the actors': the driver's error records are not timed

        def record(rec: dict[str, Any], *, from_ray: bool = True) -> None:
            if from_ray:
                if summary["first_record_s"] is None:
                    summary["first_record_s"] = time.perf_counter() - t0
                ray_records[0] += 1
            sink.append(rec)
            summary["written"] += 1
            if "error" in rec:  # the file and its problem, as instrunet batch says them
                summary["errors"] += 1
                log(f"instrunet-ray: error: {rec['error']}")
            elif "damage" in rec:  # tagged on what decoded (an actor's warning goes nowhere)
                log(f"instrunet-ray: warning: {rec['damage']}")

        # Files that cannot be read when the run starts get their error records here, without
        # starting Ray for them (an actor would give the same record).
        readable = []
        for f in todo:
            failed = _unreadable(f, driver_model)
            if failed is None:
                readable.append(f)
            else:
                record(failed, from_ray=False)
        todo = readable
        if not todo:
            return _finish(summary, t0, workers, log, ray_records[0]) if summary["written"] else summary
        if not ray.is_initialized():
            _check_reachable(address)
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            stack.callback(ray.shutdown)  # the instance this call started ends with it
        # The actors read the files themselves (the core's decoder: a file that vanishes meanwhile
        # is its own error record); the names travel as bytes, so any name the file system holds
        # gets through Arrow. Blocks of at most BLOCK_FILES files: records come back as blocks end.
        blocks = max(1, min(len(todo), max(workers * 4, -(-len(todo) // BLOCK_FILES))))
        names = ray.data.from_items([{"path": os.fsencode(p)} for p in todo], override_num_blocks=blocks)
        # The actors load the driver's model, named as resolved here (name@version, or the
        # user's artifact path), and check its digest: a worker's own default or newest version
        # put another model's records in the output (a Ray audit).
        spec = (
            model
            if model is not None and _is_path_spec(model)
            else f"{driver_model.name}@{driver_model.version}"
        )
        ds = names.map_batches(
            TaggingActor,
            fn_constructor_kwargs={
                "model": spec,
                "hop": hop,
                "expect_sha256": driver_model.manifest.sha256,
                "expect_manifest": driver_model.manifest.raw.get("manifest_sha256"),
            },
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            batch_size=batch_size,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for line in batch["record"]:
                record(json.loads(str(line)))
    return _finish(summary, t0, workers, log, ray_records[0])


def _finish(
    summary: dict[str, Any], t0: float, workers: int, log: Callable[[str], None], from_ray: int
) -> dict[str, Any]:
    """The run's times and rates in ``summary`` (``from_ray``: the records the actors made),
    and its last progress line."""
    summary["seconds"] = time.perf_counter() - t0
    summary["files_per_s"] = summary["written"] / summary["seconds"] if summary["seconds"] else 0.0
    after = summary["seconds"] - (summary["first_record_s"] or 0.0)
    if from_ray > 1 and after > 0:
        summary["steady_files_per_s"] = (from_ray - 1) / after
    log(
        f"instrunet-ray: {summary['written']} files in {summary['seconds']:.1f} s "
        f"({summary['files_per_s']:.1f} files/s, {workers} workers), {summary['errors']} errors"
    )
    return summary
