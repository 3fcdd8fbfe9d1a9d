"""Batches of files and their resumable results: the one home of ``instrunet batch``'s rules,
shared by the CLI and the Ray engine (``plugins/instrunet-ray``).

* :func:`collect_files`: which files a folder holds (recursively, by extension), each named
  once by its resolved path;
* :func:`file_record`: one file through a :class:`~instrunet_core.Classifier` into an
  ``instrunet.classification/2`` record (or its error record);
* :func:`done_paths` / :func:`read_records`: which files already have a result, so that a
  rerun skips them and retries the failed ones; a torn last line from an interrupted run is
  cut off when the file is opened again (that file is redone); :func:`pending`: the files a
  rerun classifies, including those changed since their record (size or modification time);
* :func:`check_one_model` / :func:`check_one_hop`: one output holds one model's results at one
  hop;
* :class:`ResultsFile`: the JSON lines file itself, locked while a batch appends to it; a
  record that cannot be written whole (a full disk) is rolled back, so every line is a record;
  an existing file that is not such JSON lines (notes, an audio file) is refused untouched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._files import HoldsFile, file_identity
from .audio import AUDIO_EXTENSIONS
from .errors import InputError, InstrunetError, OutputError, warn
from .inputs import is_seconds, path_problem
from .output import CLASSIFICATION_SCHEMA, classification_record, error_record
from .writers import make_folder

if TYPE_CHECKING:  # annotations only: the classifier is passed in
    from .inference import Classifier

__all__ = [
    "collect_files",
    "special_file",
    "file_record",
    "error_message",
    "read_records",
    "done_paths",
    "earlier_results",
    "earlier_text",
    "ResultsFile",
    "ResultsLocked",
    "is_results_file",
    "try_lock",
    "model_key",
    "check_one_model",
    "check_one_hop",
    "hops_of",
    "pending",
    "pending_text",
    "file_stamp",
    "record_stamp",
]


class ResultsLocked(InstrunetError):
    """Another batch is appending to the same results file."""


def collect_files(source: str | os.PathLike[str] | Iterable[str]) -> list[str]:
    """Audio files under a directory (recursive, the extensions of
    :data:`~instrunet_core.audio.AUDIO_EXTENSIONS`), or the given paths; resolved to real
    paths and sorted, so that the same folder given relative or absolute, or through a
    symlink, names each file once.

    Raises
    ------
    InputError
        ``source`` is a path but not a directory (or is empty).
    """
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == "":  # Path("") is "." : an unset variable would take the whole cwd
            raise InputError("an empty path names no directory (give '.' for this one)")
        root = Path(source)
        if not root.is_dir():
            gone = not os.path.lexists(os.fspath(source))
            raise InputError(f"{os.fspath(source)}: {'not found' if gone else 'not a directory'}")

        def unreadable(e: OSError) -> None:  # a folder that cannot be listed is said, not skipped unsaid
            warn(f"{e.filename}: cannot read this folder ({e.strerror or e}); the files in it are not listed")

        found: list[str] = []
        for folder, _, names in os.walk(root, onerror=unreadable):  # symlinked folders not followed
            for name in names:
                if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                    path = os.path.join(folder, name)
                    if special_file(path):
                        # a named pipe would wait for a writer for ever (and hold up every file after
                        # it); a socket or a device is no recording either: said, and left out
                        warn(f"{path}: not a regular file (a named pipe, socket or device); left out")
                        continue
                    found.append(path)
        return _once(found)
    return sorted({os.path.realpath(p) for p in source})


def special_file(path: str) -> bool:
    """Whether ``path`` (followed through links) is a FIFO, socket or device (not a link that leads
    nowhere: reading it says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _once(paths: Iterable[str]) -> list[str]:
    """Each file once, by its resolved path, sorted: the same file through a symlink or a hard
    link (the same device and inode) counts once (the first name in order). A link that leads
    nowhere, or in a loop, is kept under its own name: reading it says what is wrong."""
    found: dict[str, tuple[int, int] | None] = {}  # name → (device, inode), None: cannot be read
    for p in paths:
        real = os.path.realpath(p)
        try:
            st = os.stat(real)
        except OSError:
            found[os.path.abspath(p)] = None
        else:
            found[real] = (st.st_dev, st.st_ino)
    out, seen = [], set()
    for name in sorted(found):
        key = found[name]
        if key is None or key not in seen:
            out.append(name)
            if key is not None:
                seen.add(key)
    return out


def is_results_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` begins as the JSON lines ``instrunet batch`` writes, or is empty (a run
    stopped before its first record leaves the file it opened: nothing there to protect)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_RECORD_START))
            return head == _RECORD_START or head == b""
    except OSError:
        return False


def error_message(path: str, e: BaseException) -> str:
    """``e``'s message, prefixed with ``path`` unless it already names it: the line a failed
    file gets on stderr and in its error record."""
    msg = str(e) or type(e).__name__
    return msg if msg.startswith(path) else f"{path}: {msg}"


def file_stamp(path: str) -> dict[str, int] | None:
    """``{"file_size", "file_mtime_ns"}`` of ``path`` as it is now (``None`` when it cannot be
    stat-ed): what a record holds so that a resumed batch notices a file changed since."""
    ident = file_identity(path)
    return None if ident is None else {"file_size": ident[2], "file_mtime_ns": ident[3]}


def record_stamp(rec: Mapping[str, Any]) -> dict[str, int] | None:
    """The :func:`file_stamp` a record holds (``None`` for a record without one: an error
    record, a stream's, or one an earlier version wrote)."""
    size, mtime = rec.get("file_size"), rec.get("file_mtime_ns")
    if isinstance(size, int) and isinstance(mtime, int) and not isinstance(size, bool):
        return {"file_size": size, "file_mtime_ns": mtime}
    return None


def file_record(classifier: Classifier, path: str, data: bytes | None = None) -> dict[str, Any]:
    """One file's ``instrunet.classification/2`` record, through ``classifier`` (decoded from
    ``data`` when given, named ``path``); a file that cannot be classified gives its error
    record (``error``: the message, starting with ``path``).

    A result records the classifier's ``hop`` (seconds) and, for a file on disk, its
    ``file_size`` and ``file_mtime_ns`` as they were before it was read (:func:`file_stamp`):
    a file written to while it is read is classified again by the next run."""
    src: Any = path
    stamp = None
    if data is not None:
        src = io.BytesIO(data)
        src.name = path
    else:
        stamp = file_stamp(path)
    try:
        classifier.classify(src)
        return classification_record(
            path,
            classifier.prediction(),
            classifier.model,
            duration=classifier.duration,
            hop=classifier.hop_seconds,
            stamp=stamp,
            damage=classifier.damage,
        )
    except (InstrunetError, OSError) as e:
        return error_record(path, error_message(path, e), classifier.model)


def read_records(lines: Iterable[bytes | str]) -> Iterator[dict[str, Any]]:
    """The records of JSON lines; blank lines, and a line cut short by an interrupted run, are
    skipped."""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # not JSON or not UTF-8; nested absurdly
            continue
        if isinstance(rec, dict):
            yield rec


def model_key(model: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """A record's ``model`` as ``(name, version, sha256, manifest_sha256)``: what makes two
    results comparable. The manifest's digest (its labels, thresholds and front end) is ``""``
    in records written before outputs carried it."""
    digest = model.get("manifest_sha256")
    return (
        str(model.get("name")),
        str(model.get("version")),
        str(model.get("sha256")),
        digest if isinstance(digest, str) else "",
    )


def _same_model(a: tuple[str, str, str, str], b: tuple[str, str, str, str]) -> bool:
    """The same ONNX file under the same name and version, and the same manifest where both
    records say which (an older record's unknown manifest is taken as the same)."""
    return a[:3] == b[:3] and (not a[3] or not b[3] or a[3] == b[3])


def check_one_model(
    where: str | os.PathLike[str], held: Iterable[tuple[str, str, str, str]], model: Mapping[str, Any]
) -> None:
    """Refuse to add ``model``'s results to an output ``where`` whose results came from other
    models (``held``: their :func:`model_key`), as a batch's JSON lines or Ray's Parquet parts.

    Raises
    ------
    InputError
        Naming the model found, the run's model and the way out.
    """
    mine = model_key(model)
    others = sorted(m for m in held if not _same_model(m, mine))
    if others:
        name, version, sha, digest = others[0]
        if (name, version, sha) == mine[:3]:
            raise InputError(
                f"{os.fspath(where)}: holds results of {name} {version} with another manifest "
                f"(manifest_sha256 {digest[:12]}, this run's {mine[3][:12]}: other labels, "
                "thresholds or front end for the same ONNX file); resume with the model folder "
                "that wrote them, or choose another output"
            )
        raise InputError(
            f"{os.fspath(where)}: holds results of {name} {version} (sha256 {sha[:12]}), not of this "
            f"run's {mine[0]} {mine[1]}; resume with that model (--model {name}@{version}, or its "
            "folder), or choose another output"
        )


def check_one_hop(where: str | os.PathLike[str], held: Iterable[float], hop: float) -> None:
    """Refuse to add results at ``hop`` seconds to an output ``where`` whose results were made
    at another hop (``held``: :func:`hops_of` its records): a file's overall answer depends on
    its windows, so one output holds one hop's.

    Raises
    ------
    InputError
        Naming the hop found, the run's and the way out.
    """
    others = sorted(h for h in held if abs(h - hop) > 1e-6)
    if others:
        theirs, mine = f"{round(others[0], 3):g}", f"{round(hop, 3):g}"  # snapped to whole frames
        raise InputError(
            f"{os.fspath(where)}: holds results made with a hop of {theirs} s, not this run's "
            f"{mine} s; resume with --hop {theirs}, or choose another output"
        )


def hops_of(records: Iterable[Mapping[str, Any]]) -> set[float]:
    """The hops (seconds) of the results among ``records`` (records written before hops were
    recorded, and error records, hold none)."""
    return {
        float(h)
        for r in records
        if r.get("error") is None and (h := r.get("hop")) is not None and _unusable({"hop": h}) is None
    }


def earlier_results(records: Iterable[Mapping[str, Any]]) -> int:
    """How many of ``records``' results hold no ``hop``: written by an instrunet from before
    results recorded it (before 0.2.0), whose windows were not always today's (until 2026-12-06
    the last window was zero-padded past the end, not aligned to it), so the same model may answer
    those files otherwise now. A resume keeps them; :func:`earlier_text` says so."""
    return sum(
        1
        for r in records
        if r.get("error") is None and isinstance(r.get("path"), str) and r.get("hop") is None
    )


def earlier_text(where: str | os.PathLike[str], n: int) -> str:
    """The warning for an output holding ``n`` :func:`earlier_results`."""
    return (
        f"{os.fspath(where)}: {n} result{'' if n == 1 else 's'} written by an earlier instrunet (before "
        "0.2.0: no hop recorded) kept; its windows were not always today's, so the same model may answer "
        "those files otherwise now (choose another output to have every file done by this version)"
    )


def done_paths(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int] | None]:
    """Real paths that already have a result (error records are not done: they are retried),
    each with the :func:`file_stamp` its last result recorded (``None``: none recorded)."""
    return {
        os.path.realpath(r["path"]): record_stamp(r)
        for r in records
        if isinstance(r.get("path"), str)
        and r.get("error") is None
        and _unusable({"path": r["path"]}) is None
    }


def pending_text(files: int, todo: int, changed: int) -> str:
    """``"N files, D already done, T to go (C changed since their result)"``: what a run says
    before it starts (``instrunet batch`` and instrunet-ray)."""
    again = f" ({changed} changed since their result)" if changed else ""
    return f"{files} file{'' if files == 1 else 's'}, {files - todo} already done, {todo} to go{again}"


def pending(files: Iterable[str], done: Mapping[str, dict[str, int] | None]) -> tuple[list[str], int]:
    """The ``files`` a run classifies, in order, and how many of them have a result that is
    out of date: those without a result, and those whose size or modification time differs
    from what their last result recorded (their new record is appended: the last record of a
    path is its result). A result that recorded no stamp (an older version's) stands."""
    todo, changed = [], 0
    for f in files:
        if f not in done:
            todo.append(f)
            continue
        stamp = done[f]
        if stamp is not None and file_stamp(f) not in (stamp, None):
            todo.append(f)
            changed += 1
    return todo, changed


#: How every line batch writes begins (its records' first member, whatever the schema's
#: version): a last line cut short that begins so (or is the start of it) is a torn record.
_RECORD_START = b'{"schema": "' + CLASSIFICATION_SCHEMA.rsplit("/", 1)[0].encode() + b"/"
#: Bytes of an existing results file checked before the rest is read: a file that is plainly
#: something else (an audio file given as ``--out``) is refused without reading it all.
_HEAD_BYTES = 1 << 16


def _record(line: bytes) -> dict[str, Any] | None:
    """One line's JSON object, or ``None`` (not JSON, not UTF-8, nested absurdly, or no object)."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):  # not JSON or not UTF-8 (ValueErrors), nested absurdly
        return None
    return rec if isinstance(rec, dict) else None


def _head_not_results(head: bytes) -> str | None:
    """Why ``head``, the first bytes of an existing results file, shows it is not JSON lines of
    records; ``None`` when it may be one (its last, unfinished line need only start as a JSON
    object: it may go on past these bytes)."""
    *lines, tail = head.split(b"\n")
    for n, line in enumerate(lines, 1):
        if line.strip() and _record(line) is None:
            return f"line {n} is not a JSON record"
    if tail.strip() and not tail.lstrip().startswith(b"{"):
        return f"line {len(lines) + 1} is not a JSON record"
    return None


class _Unnumbered(str):
    """Why a file is refused when it holds results of the first ``instrunet batch`` (records
    without a ``schema``, the model as a ``"name/version"`` string, relative paths): instrunet's
    own output, which this version cannot resume."""


def _unnumbered(rec: Mapping[str, Any]) -> bool:
    """A record of the first ``instrunet batch``: no ``schema``, a path and a label or error."""
    return "schema" not in rec and isinstance(rec.get("path"), str) and ("label" in rec or "error" in rec)


def _results(data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The records of a whole results file, each line parsed once and kept as what a resume
    reads of it (:data:`_RESUME_KEYS`), and why it is not one (``None`` when it is). Blank lines
    pass; so does a last line without newline that is a record or the start of one batch writes
    (a torn record, left for :meth:`ResultsFile._mend_tail`). The lines are read one at a time
    from the data, and records keep only those keys: a resume held the file about 6.8 times over
    (its text, its lines, every record whole: 1.39 GB for 187 MB of results, a scale audit)."""
    records = []
    tail = b""
    for n, line in enumerate(io.BytesIO(data), 1):
        if not line.endswith(b"\n"):  # (only the last line can lack it)
            tail = line
            break
        if line.strip():
            rec = _record(line)
            if rec is None:
                return [], f"line {n} is not a JSON record"
            if not _classification(rec):  # an embed output, paths alone: its files are not "done"
                if _unnumbered(rec):
                    return [], _Unnumbered(f"line {n} has no schema")
                return [], f"line {n} is not an {_SCHEMA_PREFIX}* record (schema {rec.get('schema')!r})"
            if (bad := _unusable(rec)) is not None:
                return [], f"line {n}: {bad}"
            records.append({k: rec[k] for k in _RESUME_KEYS if k in rec})
    if tail.strip():
        rec = _record(tail)
        if rec is not None:
            if not _classification(rec):
                return [], f"its last line is not an {_SCHEMA_PREFIX}* record (schema {rec.get('schema')!r})"
            if (bad := _unusable(rec)) is not None:
                return [], f"its last line: {bad}"
            records.append({k: rec[k] for k in _RESUME_KEYS if k in rec})
        elif not (tail.startswith(_RECORD_START) or _RECORD_START.startswith(tail)):
            return [], "its last line (no newline) is not a JSON record"
    return records, None


#: What a resume reads of a results record (:func:`done_paths`, :func:`hops_of`,
#: :func:`earlier_results`, the models): the rest (probabilities, ...) is not kept.
_RESUME_KEYS = ("path", "error", "hop", "file_size", "file_mtime_ns", "model")

#: What the ``schema`` of every record batch writes begins with (any version of it).
_SCHEMA_PREFIX = CLASSIFICATION_SCHEMA.rsplit("/", 1)[0] + "/"


def _unusable(rec: Mapping[str, Any]) -> str | None:
    """What in a results record no run could have written and a resume cannot use (a path the
    system cannot take, a hop that is no number of seconds); ``None`` when nothing is."""
    path = rec.get("path")
    if path is not None:
        if not isinstance(path, str):
            return "'path' is not a string"
        if path_problem(path) is not None:
            return "'path' is not a file name"
    hop = rec.get("hop")
    if hop is not None and not is_seconds(hop):
        return "'hop' is not a number of seconds"
    return None


def _classification(rec: Mapping[str, Any]) -> bool:
    schema = rec.get("schema")
    return isinstance(schema, str) and schema.startswith(_SCHEMA_PREFIX)


def try_lock(f: IO[bytes]) -> bool:
    """Exclusive, non-blocking lock on an open file (False when another process holds it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        return True
    return True


class ResultsFile(HoldsFile):
    """A batch's JSON lines results file, opened to resume: read what is done, then append
    one record per line, each written whole or not at all; locked for as long as it is open.

    Use as a context manager. :attr:`done` holds the real paths already classified. The file
    is written without a buffer, so nothing is left to write when it is closed.

    Raises
    ------
    ResultsLocked
        Another process holds the lock (another batch on the same file).
    InputError
        The file exists and is not JSON lines of records (a line that is no JSON object, or
        binary data): it is left as it was.
    OSError
        The file cannot be opened.
    OutputError
        The path exists and is not a regular file (a FIFO, a device such as ``/dev/full``, a
        folder); or a record cannot be written (:meth:`append`): the file is cut back to the
        records before it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not os.path.isfile(self.path):  # a FIFO, a device, a folder
            raise OutputError(
                f"{self.path}: not a regular file (batch results are read back to resume and appended to)"
            )
        if self.path.endswith(("/", os.sep)):
            raise OutputError(f"{self.path}: an output file name ends in '/' (name the file in that folder)")
        make_folder(self.path)  # a file where a folder should be: "x is not a directory"
        # closed in close(): read and append under one lock; unbuffered, so every write is a syscall
        self._f = open(self.path, "a+b", buffering=0)  # noqa: SIM115
        try:
            if not try_lock(self._f):
                raise ResultsLocked(
                    f"{self.path}: another instrunet batch is writing this file; wait for it or choose another --out"
                )
            self._f.seek(0)
            head = self._f.read(_HEAD_BYTES)
            why = _head_not_results(head)  # an audio file given as --out: refused unread
            data = head
            records: list[dict[str, Any]] = []
            if why is None:
                data = head + self._f.readall()
                records, why = _results(data)
            if isinstance(why, _Unnumbered):
                raise InputError(
                    f"{self.path}: results of an earlier instrunet batch ({why}: written before results "
                    "had schema numbers), which this version cannot resume; refusing to change it "
                    "(choose another --out)"
                )
            if why:
                raise InputError(
                    f"{self.path}: not the results of instrunet batch ({why}); refusing to change it "
                    "(choose another --out)"
                )
            #: Real path → the :func:`file_stamp` of its last result (see :func:`pending`).
            self.done = done_paths(records)
            #: The hops (seconds) of the results the file holds.
            self.hops = hops_of(records)
            #: How many results an instrunet before 0.2.0 wrote (:func:`earlier_results`).
            self.earlier = earlier_results(records)
            #: ``(name, version, sha256, manifest_sha256)`` of every model whose results the file holds.
            self.models = {
                model_key(m)
                for r in records
                if isinstance(m := r.get("model"), dict) and r.get("error") is None
            }
            if data and not data.endswith(b"\n"):
                self._mend_tail(data)
        except BaseException:
            self._f.close()
            raise

    def check_model(self, model: Mapping[str, Any]) -> None:
        """Refuse to add ``model``'s results (:func:`~instrunet_core.output.model_info`) to a
        file that holds another model's: resuming would mix two models' answers in one file.

        Raises
        ------
        InputError
            The file holds results of another model (named, with the way out).
        """
        check_one_model(self.path, self.models, model)

    def check_hop(self, hop: float) -> None:
        """Refuse to add results made at ``hop`` seconds to a file that holds another hop's.

        Raises
        ------
        InputError
            The file holds results made with another hop (named, with the way out).
        """
        check_one_hop(self.path, self.hops, hop)

    def _mend_tail(self, data: bytes) -> None:
        """The last line has no newline: a record cut short by an interrupted run is cut off
        (its file is redone); a whole record only gets its newline (anything else was refused
        by :func:`_results`)."""
        start = data.rfind(b"\n") + 1
        if any(True for _ in read_records([data[start:]])):
            self._write(b"\n")
        else:
            try:
                os.ftruncate(self._f.fileno(), start)
            except OSError as e:
                raise OutputError(f"{self.path}: cannot cut its torn last line: {e.strerror or e}") from None

    def _write(self, b: bytes) -> None:
        """``b`` whole, or the file back to its length before and :class:`OutputError`."""
        fd = self._f.fileno()
        size = os.fstat(fd).st_size
        view = memoryview(b)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise OutputError(f"{self.path}: cannot write: {e.strerror or e}") from None

    def append(self, record: Mapping[str, Any]) -> None:
        """One record as one line (file names that are not valid UTF-8 as their own bytes).

        Raises
        ------
        OutputError
            The line could not be written whole; the file holds the records before it.
        """
        self._write((json.dumps(record, allow_nan=False) + "\n").encode("utf-8", "surrogateescape"))
