"""Tag a collection of audio files with Ray Data: read files → actor pool → JSONL / Parquet.

The pipeline::

    ray.data.read_binary_files(paths, include_paths=True)   # Ray tasks read the bytes
      .map_batches(Tagger, concurrency=workers, ...)         # actors, one loaded model each
      .iter_batches()                                        # records stream back to the driver
    → appended to results.jsonl (or Parquet parts) as they arrive

Each record has exactly the shape of an ``instrunet batch`` line (``path``, ``label``,
``confidence``, ``probabilities``, ``duration``, ``model``; or ``path`` and ``error``), and
the output is resumable the same way: files whose ``path`` is already in the output are
skipped, and a torn last line from an interrupted run is ignored (that file is redone).

Ray is imported inside the functions, so importing this module (as the ``instrunet`` entry
point does) costs nothing.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["collect_files", "done_paths", "file_record", "Tagger", "tag_collection", "FORMATS"]

FORMATS = ("jsonl", "parquet")


def collect_files(source: str | os.PathLike[str] | Iterable[str]) -> list[str]:
    """Audio files under a directory (recursive; the extensions ``instrunet batch`` takes), or the
    given list of paths; resolved to absolute real paths and sorted, as ``instrunet batch`` names them.

    Returns
    -------
    list of str
        Paths as they will appear in the records.
    """
    from instrunet_core.audio import AUDIO_EXTENSIONS
    from instrunet_core.errors import InputError

    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"{source}: not a directory")
        return sorted(
            {
                os.path.realpath(p)
                for p in root.rglob("*")
                if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
            }
        )
    return sorted({os.path.realpath(p) for p in source})


def _format_of(out: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = "parquet" if out.suffix == "" or out.is_dir() else "jsonl"
    if fmt not in FORMATS:
        from instrunet_core.errors import InputError

        raise InputError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def done_paths(out: str | os.PathLike[str], *, fmt: str | None = None) -> set[str]:
    """Real paths that already have a result in ``out`` (JSON lines file, or folder of Parquet
    parts); error records are not done: those files are retried, as ``instrunet batch`` does."""
    out = Path(out)
    fmt = _format_of(out, fmt)
    done: set[str] = set()
    if not out.exists():
        return done
    if fmt == "jsonl":
        with open(out, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from an interrupted run: redo that file
                if isinstance(rec, dict) and isinstance(rec.get("path"), str) and "error" not in rec:
                    done.add(os.path.realpath(rec["path"]))
        return done
    import pyarrow.parquet as pq

    for part in sorted(out.glob("part-*.parquet")):
        try:
            t = pq.read_table(part, columns=["path", "error"]).to_pylist()
            done.update(os.path.realpath(r["path"]) for r in t if r["path"] and r["error"] is None)
        except Exception:  # noqa: BLE001 - a part cut short by an interruption: its files are redone
            continue
    return done


def file_record(classifier: Any, path: str, data: bytes | None = None) -> dict[str, Any]:
    """One ``instrunet batch`` line for ``path`` (decoded from ``data`` when given): an
    ``instrunet.classification/1`` record from :mod:`instrunet_core.output`, the functions
    ``instrunet batch`` writes its lines with, so the two cannot drift apart.

    Returns
    -------
    dict
        :func:`~instrunet_core.output.classification_record` (with ``duration``) or
        :func:`~instrunet_core.output.error_record`.
    """
    from instrunet_core.errors import InstrunetError
    from instrunet_core.output import classification_record, error_record

    src: Any = path
    if data is not None:
        src = io.BytesIO(data)
        src.name = path
    try:
        classifier.classify(src)
        return classification_record(
            path, classifier.prediction(), classifier.model, duration=classifier.duration
        )
    except (InstrunetError, OSError) as e:
        msg = str(e) or type(e).__name__
        return error_record(path, msg if msg.startswith(path) else f"{path}: {msg}", classifier.model)


class Tagger:
    """The Ray Data actor: loads one model when it starts, then tags batches of files.

    Parameters
    ----------
    model : str, optional
        Registered model name (default model when omitted); resolved on the worker.
    hop : float, optional
        Seconds between windows.
    intra_op_threads : int
        onnxruntime threads per actor (1: one actor per CPU the pool is given).
    names : dict, optional
        Path as Ray reports it → path as it goes into the record.
    """

    def __init__(
        self,
        model: str | None = None,
        hop: float | None = None,
        intra_op_threads: int = 1,
        names: dict[str, str] | None = None,
    ) -> None:
        from instrunet_core import load_model

        self.model = load_model(model, intra_op_threads=intra_op_threads)
        # one pipeline worker: Ray gives each actor one CPU and runs one actor per CPU
        self.classifier = self.model.classifier(hop=hop, workers=1)
        self.names = names or {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            name = self.names.get(str(path), str(path))
            out.append(json.dumps(file_record(self.classifier, name, bytes(data))))
        return {"record": np.array(out, dtype=object)}


def _ray_key(path: str) -> str:
    """How ``read_binary_files(include_paths=True)`` reports a local path (absolute, no scheme)."""
    return os.path.abspath(path)


class _Writer:
    """Appends records to a JSON lines file, or writes Parquet parts of ``part_size`` records."""

    def __init__(self, out: Path, fmt: str, part_size: int = 256) -> None:
        self.out, self.fmt, self.part_size = out, fmt, part_size
        self.pending: list[dict[str, Any]] = []
        if fmt == "jsonl":
            out.parent.mkdir(parents=True, exist_ok=True)
            needs_nl = False
            if out.exists() and out.stat().st_size:
                with open(out, "rb") as fb:
                    fb.seek(-1, os.SEEK_END)
                    needs_nl = fb.read(1) != b"\n"
            self.f = open(out, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            if needs_nl:
                self.f.write("\n")
        else:
            out.mkdir(parents=True, exist_ok=True)

    def write(self, rec_json: str) -> None:
        if self.fmt == "jsonl":
            self.f.write(rec_json + "\n")
            self.f.flush()
        else:
            self.pending.append(json.loads(rec_json))
            if len(self.pending) >= self.part_size:
                self._flush_part()

    def _flush_part(self) -> None:
        if not self.pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [
            {**r, **{k: json.dumps(r[k]) for k in ("probabilities", "model") if k in r}} for r in self.pending
        ]
        schema = pa.schema(
            [
                ("schema", pa.string()),
                ("instrunet_version", pa.string()),
                ("path", pa.string()),
                ("model", pa.string()),
                ("label", pa.string()),
                ("confidence", pa.float64()),
                ("probabilities", pa.string()),
                ("n_windows", pa.int64()),
                ("silent", pa.bool_()),
                ("low_evidence", pa.bool_()),
                ("sounding_seconds", pa.float64()),
                ("duration", pa.float64()),
                ("error", pa.string()),
            ]
        )
        table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.perf_counter_ns()}.parquet"
        tmp = self.out / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.out / name)  # a part appears whole or not at all
        self.pending.clear()

    def close(self) -> None:
        if self.fmt == "jsonl":
            self.f.close()
        else:
            self._flush_part()


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
        Registered model name on the workers (default model when omitted).
    workers : int
        Actors in the pool, each holding one model and using one CPU.
    batch_size : int
        Files per actor call.
    address : str, optional
        ``ray.init(address=...)`` when Ray is not initialised yet (``"auto"``, ``"ray://host:10001"``);
        default: a local Ray instance. An already initialised Ray is used as it is.

    Returns
    -------
    dict
        ``{"files", "skipped", "written", "errors", "seconds", "files_per_s", "workers",
        "first_record_s", "steady_files_per_s"}``: ``first_record_s`` is the time to the first
        record (starting the actors, each loading its model, and Ray Data's planning), and
        ``steady_files_per_s`` the rate after it (``None`` with fewer than two records).
    """
    import ray

    from instrunet_core.errors import InputError

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an int >= 1, got {workers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out = Path(out)
    fmt = _format_of(out, fmt)
    files = collect_files(source)
    done = done_paths(out, fmt=fmt)
    todo = [f for f in files if f not in done]
    log(f"instrunet-ray: {len(files)} files, {len(files) - len(todo)} already done, {len(todo)} to go")
    summary: dict[str, Any] = {
        "files": len(files),
        "skipped": len(files) - len(todo),
        "written": 0,
        "errors": 0,
        "workers": workers,
        "seconds": 0.0,
        "files_per_s": 0.0,
        "first_record_s": None,
        "steady_files_per_s": None,
    }
    if not todo:
        return summary
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    names = {_ray_key(p): p for p in todo}
    t0 = time.perf_counter()
    # The read tasks ask for no CPU: the actors hold one CPU each, and on a machine with
    # exactly `workers` CPUs reads that need one would never be scheduled. Tasks that need no
    # CPU are not limited by Ray's scheduler, though: every block's read would start at once,
    # each in a newly started worker process, so at most `workers` reads run at a time (one per
    # actor). Unlimited, the worker processes' start-up took the cores from the actors: on two
    # cores two actors tagged more slowly than one (docs/benchmarks.md, "Ray Data engine").
    ds = ray.data.read_binary_files(
        [_ray_key(p) for p in todo],
        include_paths=True,
        override_num_blocks=max(1, min(len(todo), workers * 4)),
        num_cpus=0,
        concurrency=workers,
    )
    ds = ds.map_batches(
        Tagger,
        fn_constructor_kwargs={"model": model, "hop": hop, "names": names},
        concurrency=workers,
        num_cpus=1,
        batch_size=batch_size,
    )
    writer = _Writer(out, fmt, part_size)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for rec in batch["record"]:
                if summary["first_record_s"] is None:
                    summary["first_record_s"] = time.perf_counter() - t0
                writer.write(str(rec))
                summary["written"] += 1
                summary["errors"] += '"error"' in rec and "error" in json.loads(rec)
    finally:
        writer.close()
    summary["seconds"] = time.perf_counter() - t0
    summary["files_per_s"] = summary["written"] / summary["seconds"] if summary["seconds"] else 0.0
    after = summary["seconds"] - (summary["first_record_s"] or 0.0)
    if summary["written"] > 1 and after > 0:
        summary["steady_files_per_s"] = (summary["written"] - 1) / after
    log(
        f"instrunet-ray: {summary['written']} files in {summary['seconds']:.1f} s "
        f"({summary['files_per_s']:.1f} files/s, {workers} workers), {summary['errors']} errors"
    )
    return summary
